"""Alembic environment: migrations run against the URL the engine is configured with."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

# Imported to register their tables on the metadata.
import matcher.storage.coordination
import matcher.storage.rebalance_tables  # noqa: F401
from matcher.storage.tables import metadata

config = context.config


def run_migrations() -> None:
    """Run migrations on a connection handed in by the engine, or on the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
