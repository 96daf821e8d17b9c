"""The local stack: PostgreSQL, Kafka and Zipkin started from this folder, and the services on top of them."""

import os

SERVICES = ("referral", "panel", "assignment", "plans", "hub", "reporting")


def database_url(service: str) -> str:
    """Each service connects as its own role to its own schema (the stack creates role = schema = service name)."""
    port = os.environ.get("PG_PORT", "25432")
    return f"postgresql+asyncpg://{service}:{service}@127.0.0.1:{port}/childrensteams"
