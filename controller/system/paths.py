"""Path containment: every path the controller acts on must stay inside the root it belongs to.

Resolution follows symlinks, so a link inside the root that points outside it is refused too.
"""

from __future__ import annotations

from pathlib import Path

from controller import errors


def inside(root: str | Path, path: str | Path) -> Path:
    """Resolve ``path`` and return it if it lies strictly inside ``root``, else raise."""
    base = Path(root).resolve()
    target = Path(path)
    resolved = (base / target if not target.is_absolute() else target).resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise errors.OutsideRoot(f"{path} resolves to {resolved}, outside {base}")
    return resolved


def child_of(root: str | Path, path: str | Path) -> Path:
    """Like ``inside``, and also refuse a path that is itself a symlink."""
    resolved = inside(root, path)
    if Path(path).is_symlink():
        raise errors.OutsideRoot(f"{path} is a symbolic link; the controller never follows one")
    return resolved


def entry_in(root: str | Path, relative: str | Path) -> Path:
    """The entry ``relative`` of ``root``, never followed: its folder must resolve inside.

    For moving what git lists (a symlink is moved as a link, wherever it points). The entry
    itself is not resolved; its parent must be ``root`` or lie inside it, and ``..`` is refused.
    """
    base = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.name:
        raise errors.OutsideRoot(f"{relative} is not a path inside {base}")
    parent = (base / rel).parent.resolve()
    if parent != base and not parent.is_relative_to(base):
        raise errors.OutsideRoot(f"{relative} lies in {parent}, outside {base}")
    return parent / rel.name
