"""The state store: SQLite by default, PostgreSQL for many hosts, one schema (SQLAlchemy Core).

It holds the inventory of everything the controller created, lane memory (backoff), and the
append-only event log. Schema changes are Alembic migrations under ``migrations/``; after one,
regenerate the compiled reads (``python -m controller.store.reads``), which a pass on a SQLite
store runs without loading SQLAlchemy (``sqlite.py``).

One style for the store's areas (``jobs``, ``messaging``, ``participants``, ``runs``): a module
of plain functions ``fn(store, ...)`` taking ``queries.Store`` (the engine and the workspace)
first, each one short transaction, returning the module's frozen values. A module names the
tables it owns once at the top (``J = tables.trigger_jobs``), upserts through
``queries.dialect_insert``, spells a dialect difference in one expression (never a second
statement), and imports no other store module's private names. The inventory (lanes, agents,
memory, events) is still methods on ``Store`` in ``queries.py``: docs/decisions.md says why.
"""
