"""Reading the project's YAML data files strictly: one place for what a data file must be.

PyYAML's safe loader keeps the last of two equal keys without a word, so a spec with
``hbm_bandwidth_Bps`` written twice silently uses the second; here a repeated key is an error
that names it and its line. A file that is not UTF-8 text (a binary given by mistake) is
refused with the file's name, not a codec traceback. A file that reads but does not validate
is told field by field on one line (``field_errors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class DataFileError(ValueError):
    """A data file that cannot be read as the mapping it must hold; the message names the file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with a repeated key."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``, or a ``DataFileError`` naming it."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not a text {what} (it is not UTF-8; a YAML or JSON file is accepted)") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def load_mapping(text: str, origin: str, what: str = "file") -> dict[str, Any]:
    """Parse YAML ``text`` that must hold one mapping with no repeated key."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise DataFileError(f"{origin}: does not parse as YAML: {first}") from None
    if not isinstance(raw, dict):
        raise DataFileError(f"{origin}: a {what} must hold a mapping, got {type(raw).__name__}")
    return raw


__all__ = ["DataFileError", "load_mapping", "read_text"]


def field_errors(exc: ValidationError, root: str, hide: tuple[type, ...] = (dict,)) -> str:
    """pydantic's errors on one line, each ``field.path: what is wrong (got value)``; a field
    path is ``root`` when the error is the whole mapping's, and a value of a ``hide`` type
    (a whole sub-mapping) is not repeated."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or root
        given = err.get("input")
        shown = "" if isinstance(given, hide) else f" (got {given!r})"
        lines.append(f"{loc}: {err['msg']}{shown}")
    return "; ".join(lines)
