"""Safeguards for waking agents: collision, rate limits, loops, payload, fallback. Pure.

Each returns a ``Decision`` (allow, defer until a time, block with a reason code) from values
and ``now``; none reads a clock, a terminal or the store.
"""
