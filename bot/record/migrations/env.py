"""Alembic environment: modbot runs migrations itself, on the connection it hands over."""

from alembic import context

from bot.record.tables import Base

connection = context.config.attributes["connection"]
# Batch mode lets later migrations alter SQLite tables (which have no ALTER COLUMN).
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
