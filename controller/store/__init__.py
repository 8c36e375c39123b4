"""The state store: SQLite by default, PostgreSQL for many hosts, one schema (SQLAlchemy Core).

It holds the inventory of everything the controller created, lane memory (backoff), and the
append-only event log. Schema changes are Alembic migrations under ``migrations/``.
"""
