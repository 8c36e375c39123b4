"""Alembic migrations for the store; ``env.py`` runs them on a connection handed in by code."""
