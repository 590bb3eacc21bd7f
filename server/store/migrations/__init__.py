"""The Alembic migrations of the database schema, run at start-up by simplane.server.store.migrate."""
