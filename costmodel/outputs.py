"""Where results reach the disk: checked before any work, written whole or not at all.

Every file the package writes (figures, reports, results, calibrated specs) goes through
``write_atomic``: the bytes go to a temporary file in the same folder, then one rename puts
it in place, so a reader never sees half a file and a failure leaves what was there before.
It says whether it replaced a file, so the caller can tell the user.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """A path that cannot be written; the message names the option and the reason."""


def check_writable(path: str | Path, option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Fail now, before any work, if ``path`` cannot become a file: wrong suffix, an existing
    folder, a parent that is a file, or a folder we may not write in."""
    path = Path(path)
    if not str(path).strip():
        raise OutputError(f"{option}: an empty path; a file path is accepted")
    if suffixes and path.suffix not in suffixes:
        raise OutputError(f"{option}: {str(path)!r}; a path ending in {' or '.join(suffixes)} is accepted")
    if path.is_dir():
        raise OutputError(f"{option}: {path} is a folder; a file path is accepted")
    parent = _existing_ancestor(path.parent)
    if not parent.is_dir():
        raise OutputError(f"{option}: {parent} is a file, so {path} cannot be created under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option}: {parent} is not writable")
    return path


def check_writable_folder(path: str | Path, option: str) -> Path:
    """Like ``check_writable`` for a folder that files will be written into."""
    path = Path(path)
    if not str(path).strip():
        raise OutputError(f"{option}: an empty path; a folder path is accepted")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option}: {path} exists and is not a folder; a folder path is accepted")
    parent = _existing_ancestor(path)
    if not parent.is_dir():
        raise OutputError(f"{option}: {parent} is a file, so {path} cannot be created under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option}: {parent} is not writable")
    return path


def write_atomic(path: str | Path, data: str | bytes, option: str = "--out") -> bool:
    """Write ``data`` to ``path`` through a temporary file and a rename; True if it replaced a file."""
    path = check_writable(path, option)
    replaced = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputError(f"{option}: could not write {path}: {exc.strerror or exc}") from None
    return replaced


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name one file (so writing one would overwrite the other)."""
    a, b = Path(a), Path(b)
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _existing_ancestor(path: Path) -> Path:
    path = path if str(path) else Path(".")
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


__all__ = ["OutputError", "check_writable", "check_writable_folder", "same_file", "write_atomic"]
