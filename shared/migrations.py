"""Alembic plumbing every service's migrations share: one schema per service, async engine, backbone tables."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import backbone_metadata
from shared.messaging.tables import BACKBONE_DDL


def create_backbone(connection: Connection) -> None:
    """Create the outbox, inbox, timers and audit tables in the current schema (each service's first migration)."""
    backbone_metadata.create_all(connection)
    for statement in BACKBONE_DDL:
        connection.execute(text(statement))


def run_env(schema: str, target_metadata: MetaData | None = None) -> None:
    """The body of a service's migrations/env.py."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"

    def migrate(connection: Connection) -> None:
        connection.execute(text(f'SET search_path TO "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run())


def upgrade(service: str, database_url: str) -> None:
    """Bring one service's schema to the newest migration."""
    config = Config()
    config.set_main_option("script_location", str(Path("services") / service / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url)
    command.upgrade(config, "head")
