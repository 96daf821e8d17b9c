"""`make run`: every service as a separate process on the local stack; their logs in one stream; Ctrl-C stops all.

    python -m deploy.local.run [--port-base 8100] [--instances 2 | --instances plans=3,hub=2] [--stop-stack] [--demo]

Instance k (from 0) of the n-th service listens on port-base + 10*k + n; all instances of a service share its
consumer groups, so Kafka spreads the partitions (keyed by child) between them.

Expects the stack's environment (`eval "$(deploy/local/stack.sh env)"`), as the Makefile provides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from deploy.local import SERVICES, database_url
from shared.security import ensure_dev_keys, issue_token
from shared.telemetry import setup_tracing

ROOT = Path(__file__).resolve().parents[2]


def instance_port(port_base: int, service: str, instance: int) -> int:
    return port_base + 10 * instance + SERVICES.index(service) + 1


def parse_instances(text: str) -> dict[str, int]:
    """`2` (every service) or `plans=3,hub=2` (the others one each) → instances per service."""
    counts = dict.fromkeys(SERVICES, 1)
    if text.strip().isdigit():
        return dict.fromkeys(SERVICES, int(text))
    for part in filter(None, (p.strip() for p in text.split(","))):
        service, _, count = part.partition("=")
        if service not in counts or not count.isdigit() or int(count) < 1:
            raise ValueError(f"not a service=count pair: {part!r} (services: {', '.join(SERVICES)})")
        counts[service] = int(count)
    return counts


def service_env(service: str, port: int) -> dict[str, str]:
    zipkin = os.environ.get("ZIPKIN_URL", "http://127.0.0.1:29411")
    _, public_key = ensure_dev_keys(ROOT / ".local" / "keys")
    return os.environ | {
        "PYTHONPATH": str(ROOT),
        "CTP_HTTP_PORT": str(port),
        "CTP_DATABASE_URL": database_url(service),
        "CTP_AUTH_PUBLIC_KEY_FILE": str(public_key),
        "OTEL_SERVICE_NAME": service,
        "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "zipkin"),
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{zipkin}/api/v2/spans",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }


def _readable(service: str, line: str) -> str:
    """One JSON log line as `service level message`, or the raw line when it is not JSON."""
    try:
        record = json.loads(line)
    except ValueError:
        return f"{service:<10} {line}"
    trace_id = record.get("trace_id")
    suffix = f"  trace={trace_id}" if trace_id else ""
    failure = f"\n{record['exc_info']}" if record.get("exc_info") else ""
    return f"{service:<10} {record.get('level', ''):<7} {record.get('message', '')}{suffix}{failure}"


async def _stream(service: str, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        print(_readable(service, line.decode(errors="replace").rstrip()), flush=True)


async def _wait_ready(client: httpx.AsyncClient, url: str, process: asyncio.subprocess.Process) -> bool:
    for _ in range(600):
        if process.returncode is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(f"{url}/health/ready")).status_code == 200:
                return True
        await asyncio.sleep(0.1)
    return False


async def _play_demo(port_base: int) -> None:
    """One sample journey once everything is up, so a newcomer sees the system work (`make demo` replays it)."""
    from deploy.local.demo import demo

    try:
        await demo(port_base)
    except Exception as error:
        print(f"the demo journey did not complete: {error}", flush=True)


async def run(port_base: int, play_demo: bool = False, instances: dict[str, int] | None = None) -> int:
    processes: dict[str, asyncio.subprocess.Process] = {}
    urls: dict[str, str] = {}
    streams = []
    for service in SERVICES:
        for instance in range((instances or {}).get(service, 1)):
            name = service if instance == 0 else f"{service}#{instance + 1}"
            port = instance_port(port_base, service, instance)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{service}",
                cwd=ROOT,
                env=service_env(service, port),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop the services in order
            )
            processes[name] = process
            urls[name] = f"http://127.0.0.1:{port}"
            assert process.stdout is not None
            streams.append(asyncio.create_task(_stream(name, process.stdout)))

    # The national contact centre is an outside system: locally a clearly named simulator stands in for it.
    simulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "deploy.contactcentre_simulator",
        "--ack-after",
        os.environ.get("CONTACT_CENTRE_ACK_AFTER", "2"),
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    processes["simulator"] = simulator
    assert simulator.stdout is not None
    streams.append(asyncio.create_task(_stream("simulator", simulator.stdout)))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with httpx.AsyncClient(timeout=2) as client:
        ready = await asyncio.gather(*(_wait_ready(client, url, processes[name]) for name, url in urls.items()))
    failed = [name for name, ok in zip(urls, ready, strict=True) if not ok]
    demo_task: asyncio.Task[None] | None = None
    if failed:
        print(f"not ready: {', '.join(failed)}; stopping", flush=True)
        stop.set()
    else:
        _print_directory(urls)
        if play_demo:
            demo_task = asyncio.create_task(_play_demo(port_base))

    exited = [asyncio.create_task(p.wait()) for p in processes.values()]
    await asyncio.wait([asyncio.create_task(stop.wait()), *exited], return_when=asyncio.FIRST_COMPLETED)
    if demo_task is not None:
        demo_task.cancel()
    for service, process in processes.items():
        if process.returncode is None:
            process.terminate()
        elif not stop.is_set():
            print(f"{service} exited with code {process.returncode}; stopping everything", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*exited), 15)
    for process in processes.values():
        if process.returncode is None:
            process.kill()
    await asyncio.gather(*streams, return_exceptions=True)
    return 1 if failed else 0


def _print_directory(urls: dict[str, str]) -> None:
    zipkin = os.environ.get("ZIPKIN_URL", "http://127.0.0.1:29411")
    token = issue_token(
        subject="dev-hub-worker",
        agency="childrens-hub",
        roles=["hub_social_worker"],
        private_key_pem=ensure_dev_keys(ROOT / ".local" / "keys")[0].read_bytes(),
    )
    lines = ["", "Children's Teams platform is running:"]
    lines += [f"  {service:<11}{url}  (docs {url}/docs, health {url}/health/ready)" for service, url in urls.items()]
    lines += [
        f"  Kafka      {os.environ.get('KAFKA_BOOTSTRAP', '')}",
        f"  PostgreSQL 127.0.0.1:{os.environ.get('PG_PORT', '')} database childrensteams",
        f"  Zipkin     {zipkin}/zipkin/",
        f"  Hub console {urls['hub']}/console (sign in as a development user)",
        f"  Reports    {urls['reporting']}/reports (Bearer token with the governance_group role)",
        f"  A dev token (hub social worker): {token}",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.run")
    parser.add_argument("--port-base", type=int, default=8100, help="service n listens on port-base + n")
    parser.add_argument("--stop-stack", action="store_true", help="also stop PostgreSQL, Kafka and Zipkin on exit")
    parser.add_argument("--demo", action="store_true", help="play one sample journey once the services are ready")
    parser.add_argument(
        "--instances", default="1", help="instances per service: a number for all, or e.g. plans=3,hub=2 (default 1)"
    )
    args = parser.parse_args()
    try:
        instances = parse_instances(args.instances)
    except ValueError as error:
        parser.error(str(error))
    if args.demo:
        zipkin = os.environ.get("ZIPKIN_URL", "http://127.0.0.1:29411")
        os.environ.setdefault("OTEL_EXPORTER_ZIPKIN_ENDPOINT", f"{zipkin}/api/v2/spans")
        os.environ["OTEL_SERVICE_NAME"] = "demo"
        setup_tracing("demo")
    code = asyncio.run(run(args.port_base, play_demo=args.demo, instances=instances))
    if args.stop_stack:
        subprocess.run([str(ROOT / "deploy" / "local" / "stack.sh"), "stop"], check=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
