"""Run one service's HTTP app (and with it its broker, relay and timers) under uvicorn."""

import uvicorn

from shared.settings import ServiceSettings


def serve(app_factory: str, settings: ServiceSettings) -> None:
    uvicorn.run(
        app_factory,
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our JSON logging is set up by the app
        access_log=False,
    )
