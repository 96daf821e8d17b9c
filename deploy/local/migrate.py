"""Bring every service's schema to its newest migration (the set-up's `migrate` step), then seed local data."""

import asyncio

from deploy.local import SERVICES, database_url
from services.assignment.seed import seed
from shared.migrations import upgrade
from shared.security import ensure_dev_keys


def main() -> None:
    for service in SERVICES:
        upgrade(service, database_url(service))
    ensure_dev_keys()
    print(f"migrations: {', '.join(SERVICES)} at head")
    print(f"local seed: {asyncio.run(seed(database_url('assignment')))} practitioners in the directory")


if __name__ == "__main__":
    main()
