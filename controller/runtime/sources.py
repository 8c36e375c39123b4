"""Reading desired state from disk: the shell half of loading (the pure half is spec.loading)."""

from __future__ import annotations

from pathlib import Path

from controller.spec import loading
from controller.spec.loading import Problem
from controller.spec.state import DesiredState

SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 4 * 1024 * 1024


def read_desired(folder: Path, *, display_base: Path | None = None) -> dict[str, str]:
    """Every ``*.yaml``/``*.yml`` file under ``folder`` (hidden folders skipped), by display path.

    A missing folder reads as no files: the planner's empty-desired guard then refuses to
    remove anything unless explicitly allowed.
    """
    if not folder.is_dir():
        return {}
    base = display_base or Path.cwd()
    texts: dict[str, str] = {}
    for path in sorted(_files(folder)):
        texts[_display(path, base)] = _read(path)
    return texts


def _files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in SUFFIXES and path.is_file():
            found.append(path)
    return found


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_FILE_BYTES:
        # Loading reports it as a problem at line 1 rather than reading gigabytes.
        return f"!!too-large {path.stat().st_size} bytes"
    return path.read_bytes().decode("utf-8", errors="replace")


def _display(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def load(folder: Path, *, display_base: Path | None = None) -> DesiredState | tuple[Problem, ...]:
    """Read and validate the desired folder, all or nothing."""
    return loading.load(read_desired(folder, display_base=display_base))
