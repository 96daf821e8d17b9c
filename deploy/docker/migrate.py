"""The Compose set-up's migration step: bring every service's schema to its newest migration.

Like `deploy.local.migrate`, each service migrates as its own role (role = schema = service name), but the database is
found through DATABASE_HOST / DATABASE_PORT / DATABASE_NAME (Compose: postgres:5432/childrensteams), not 127.0.0.1.
Run from the image's working directory (/app): Alembic finds services/<name>/migrations relative to it.
"""

import os

from deploy.local import SERVICES
from shared.migrations import upgrade


def database_url(service: str) -> str:
    host = os.environ.get("DATABASE_HOST", "postgres")
    port = os.environ.get("DATABASE_PORT", "5432")
    name = os.environ.get("DATABASE_NAME", "childrensteams")
    return f"postgresql+asyncpg://{service}:{service}@{host}:{port}/{name}"


def main() -> None:
    for service in SERVICES:
        upgrade(service, database_url(service))
    print(f"migrations: {', '.join(SERVICES)} at head")


if __name__ == "__main__":
    main()
