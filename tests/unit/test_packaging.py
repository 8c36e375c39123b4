"""The package installs without warnings: metadata in the forms current setuptools expects.

`pip install -e .` builds with the newest setuptools in an isolated environment, which the
tests cannot fetch; these checks pin down the forms that install quietly there (setuptools 77
and later): an SPDX license string, and the flat layout spelled out so that the editable
install is a plain path entry rather than an import hook that warns on every install.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_license_is_an_spdx_string() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    assert project["license"] == "MIT"  # a TOML table is deprecated since setuptools 77


def test_the_build_needs_a_setuptools_that_reads_spdx_licenses() -> None:
    system = _pyproject()["build-system"]
    assert isinstance(system, dict)
    (setuptools,) = [r for r in system["requires"] if r.startswith("setuptools")]
    found = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert found is not None and int(found[1]) >= 77, setuptools


def test_the_layout_is_flat_and_said_so() -> None:
    tool = _pyproject()["tool"]
    assert isinstance(tool, dict)
    assert tool["setuptools"]["package-dir"] == {"": "."}
    assert tool["setuptools"]["packages"]["find"]["include"] == ["controller*"]
