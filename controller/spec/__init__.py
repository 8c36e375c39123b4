"""Desired state: the YAML kinds as frozen pydantic models, their loading, checks and schemas.

Owns what users write under `desired/`: one module per kind, `loading` (texts to a
`DesiredState` or a tuple of `path:line` problems, all-or-nothing), `references` (cross-document
checks) and `schemas` (JSON Schema from the models). Pure: it never does I/O, never reads the
clock or the environment, and imports nothing from the controller but `controller.errors`.
"""
