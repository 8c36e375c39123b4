"""The state store: SQLite by default, PostgreSQL for many hosts, one schema (SQLAlchemy Core).

It holds the inventory of everything the controller created, lane memory (backoff), and the
append-only event log. Schema changes are Alembic migrations under ``migrations/``; after one,
regenerate the compiled reads (``python -m controller.store.reads``), which a pass on a SQLite
store runs without loading SQLAlchemy (``sqlite.py``).
"""
