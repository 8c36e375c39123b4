"""The command line loads some commands' modules only when they are asked for."""

from __future__ import annotations

import importlib

import click
import pytest

from controller.cli import main


@pytest.mark.parametrize("module", sorted(set(main.LAZY_COMMANDS.values())))
def test_lazy_commands_are_those_their_module_registers(module: str) -> None:
    group = click.Group()
    importlib.import_module(f"controller.cli.{module}").register(group)
    assert set(group.commands) == {c for c, m in main.LAZY_COMMANDS.items() if m == module}


def test_every_command_is_listed_and_found() -> None:
    ctx = click.Context(main.cli)
    names = main.cli.list_commands(ctx)
    assert set(main.LAZY_COMMANDS) < set(names)
    assert all(main.cli.get_command(ctx, name) is not None for name in names)
