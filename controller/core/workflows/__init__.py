"""Workflow runs, pure: run and task values, the scheduler, budgets, prompt composition and the
parsers of agents' usage reports. No I/O, no clock (``now`` is passed in), never dispatches.
"""
