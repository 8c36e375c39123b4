"""Thin, framework-unaware wrappers over the outside world: processes, clock, paths, locks.

Each module is one seam that tests can replace with a fake implementing the same Protocol.
"""
