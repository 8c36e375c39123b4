"""The pure core: observed snapshots, memory, actions, phases, the planner and safeguards.

Everything here is a function of values, with ``now`` passed in. It never does I/O: no
subprocess, psutil, libtmux, SQLAlchemy, anyio, watchdog or ``controller.system`` (import-linter
checks this in CI).
"""
