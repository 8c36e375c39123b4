"""Executors: one module per action family, each a registry of idempotent async handlers.

A handler first checks "already done?" against the live world, then acts, and returns an
``Outcome`` that the apply step turns into memory and events.
"""
