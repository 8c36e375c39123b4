"""The daemon's HTTP server: health, readiness, Prometheus metrics and a JSON API (DESIGN §11).

A layer above ``runtime``: it reads the daemon's state and the status model, and the daemon
runs it as a ``runtime.daemon.Service`` in its own event loop (decision in docs/decisions.md).
"""
