"""Observers: read one source each, once per pass, and return ``core.world`` snapshots.

A source that cannot be read becomes ``world.Unknown`` with the reason, never an empty result.
"""
