"""The store's one style (controller/store/__init__.py), checked on the source."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from controller import store
from controller.store import jobs, messaging, participants, runs

FOLDER = Path(store.__file__).parent
AREAS = (jobs, messaging, participants, runs)


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.py")), ids=lambda p: p.name)
def test_no_store_module_imports_private_names(path: Path) -> None:
    tree = ast.parse(path.read_text())
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("controller.")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []


@pytest.mark.parametrize("module", AREAS, ids=lambda m: m.__name__)
def test_an_area_is_functions_taking_the_store_first(module: object) -> None:
    public = [
        fn
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if not name.startswith("_") and fn.__module__ == getattr(module, "__name__", "")
    ]
    assert public
    for fn in public:
        first = next(iter(inspect.signature(fn).parameters.values()))
        assert (first.name, first.annotation) == ("store", "Store"), fn.__qualname__
