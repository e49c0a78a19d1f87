"""Load GPU specs: the bundled datasheet files, a user's own file, and calibrated overlays.

A calibrated overlay is a YAML file with ``base: <bundled name or path>`` and only the
values it replaces, each written ``{value: ..., measured: {method, date}}``; everything
else comes from the base. The merge happens on the raw mappings, so the result is
validated by the same schema as any spec.
"""

from __future__ import annotations

import datetime as _dt
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hardware_specs.schema import GPUSpec
from hardware_specs.yaml_files import DataFileError, field_errors, load_mapping, read_text

_PACKAGE = "hardware_specs"


class SpecError(ValueError):
    """A spec that could not be found or did not validate; the message names the field."""


def _bundled_dir(sub: str):
    return resources.files(_PACKAGE).joinpath(sub)


def list_gpus() -> list[str]:
    """Names of the bundled datasheet specs."""
    return sorted(p.name[: -len(".yaml")] for p in _bundled_dir("gpus").iterdir() if p.name.endswith(".yaml"))


def list_calibrated() -> list[str]:
    """Names of the bundled calibrated overlays (measured on a real GPU)."""
    d = _bundled_dir("calibrated")
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in d.iterdir() if p.name.endswith(".yaml"))


def _read_raw(name_or_path: str | Path) -> dict[str, Any]:
    """The raw mapping of a bundled spec (by name) or of a file (by path)."""
    text: str
    key = str(name_or_path)
    if key in list_gpus():
        text = _bundled_dir("gpus").joinpath(f"{key}.yaml").read_text()
    elif key in list_calibrated():
        text = _bundled_dir("calibrated").joinpath(f"{key}.yaml").read_text()
    else:
        path = Path(key)
        if not path.is_file():
            raise SpecError(
                f"gpu: unknown GPU {key!r} (not a bundled spec and not a file); "
                f"bundled: {', '.join(list_gpus() + list_calibrated())}"
            )
        try:
            text = read_text(path, "spec file")
        except DataFileError as exc:
            raise SpecError(str(exc)) from None
    try:
        return load_mapping(text, key, "spec file")
    except DataFileError as exc:
        raise SpecError(str(exc)) from None


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay onto base; nested mappings of plain keys (peaks, efficiency) merge key by key."""
    out = dict(base)
    for key, value in overlay.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        is_quantity = isinstance(value, dict) and "value" in value
        if nested and not is_quantity:
            out[key] = _merge(base[key], value)
        else:
            out[key] = value
    # A replaced value must not keep the base's source for it.
    for key, value in overlay.items():
        if isinstance(value, dict) and "measured" in value:
            out.get("sources", {}).pop(key, None)
    return out


def _validate(raw: dict[str, Any], origin: str) -> GPUSpec:
    try:
        return GPUSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{origin}: invalid GPU spec: " + field_errors(exc, "spec")) from None


def load_gpu(name_or_path: str | Path) -> GPUSpec:
    """A bundled spec by name (``list_gpus()``), a calibrated overlay by name, or a YAML file.

    A file with a ``base:`` key is an overlay on that base (bundled name or path); without a
    ``name`` of its own it is named ``<base name>-calibrated``, as ``calibrate`` names its result.
    """
    if not isinstance(name_or_path, (str, Path)):
        raise SpecError(f"gpu: {name_or_path!r} is not a GPU name or a spec file path")
    raw = _read_raw(name_or_path)
    base = raw.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise SpecError(f"{name_or_path}: base: {base!r}; a bundled spec name or a path is accepted")
        base = _resolve_base(base, name_or_path)
        base_raw = _read_raw(base)
        if "base" in base_raw:
            raise SpecError(f"{name_or_path}: base: {base} is itself an overlay; an overlay's base must be a "
                            "datasheet spec (a bundled name, or a file without base:)")
        merged = _merge(base_raw, raw)
        if "name" not in raw:  # the merge has already copied the base's name: decide on the overlay
            merged["name"] = f"{base_raw.get('name')}-calibrated"
        raw = merged
    return _validate(raw, str(name_or_path))


def _resolve_base(base: str, overlay: str | Path) -> str:
    """A bundled name stays a name; a relative path is taken from the overlay file's folder."""
    if base in list_gpus() or base in list_calibrated() or Path(base).is_absolute():
        return base
    here = Path(str(overlay))
    beside = here.parent / base if here.is_file() else Path(base)
    return str(beside) if beside.is_file() else base


def calibrate(base: GPUSpec | str, measurements: dict[str, float], methods: dict[str, str],
              date: _dt.date, info: dict[str, Any] | None = None, name: str | None = None) -> GPUSpec:
    """A calibrated spec: ``base`` with measured values overlaid.

    ``measurements`` maps a field (``hbm_bandwidth_Bps``, ``peak_flops_per_s.fp32``, ...)
    to its measured value, ``methods`` the same keys to how each was measured. Each
    measured value replaces the datasheet's and its source; its ``spec.measured[key]``
    records the method, the date and the datasheet value it replaced
    (``value_datasheet``), so the datasheet stays visible. ``efficiency`` is left as the
    base has it: the measured rate is the new peak, not a fraction of the old one.
    ``info`` goes to ``spec.calibration`` with the date; the name defaults to
    ``<base name>-calibrated``.
    """
    spec = load_gpu(base) if isinstance(base, str) else base
    raw = spec_to_raw(spec)
    for key, value in measurements.items():
        method = methods.get(key)
        if not method:
            raise SpecError(f"measurements: {key} has no method saying how it was measured")
        if key.startswith("peak_flops_per_s."):
            unit = key.split(".", 1)[1]
            old = spec.peak_flops_per_s.get(unit)
            raw["peak_flops_per_s"][unit] = {"value": value, "measured": {"method": method, "date": date, "value_datasheet": old}}
        else:
            if key not in raw:
                raise SpecError(f"measurements: unknown field {key!r}")
            old = getattr(spec, key)
            raw[key] = {"value": value, "measured": {"method": method, "date": date, "value_datasheet": old}}
        raw["sources"].pop(key, None)
    raw["calibration"] = {"date": str(date), **(info or {})}
    raw["name"] = name or f"{spec.name}-calibrated"
    return _validate(raw, raw["name"])


def spec_to_raw(spec: GPUSpec) -> dict[str, Any]:
    """The spec as a file would write it: each number beside its source or measurement."""
    data = spec.model_dump(mode="json")
    sources = data.pop("sources")
    measured = data.pop("measured")

    def wrap(key: str, value: Any) -> Any:
        if key in measured:
            return {"value": value, "measured": measured[key]}
        return {"value": value, "source": sources[key]}

    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "peak_flops_per_s":
            out[key] = {u: wrap(f"{key}.{u}", v) for u, v in value.items()}
        elif key in sources or key in measured:
            out[key] = wrap(key, value)
        elif value is not None:
            out[key] = value
    out["sources"] = {}
    return out


def spec_to_yaml(spec: GPUSpec) -> str:
    """YAML text that ``load_gpu`` reads back into an equal spec."""
    raw = spec_to_raw(spec)
    raw.pop("sources")
    return yaml.safe_dump(raw, sort_keys=False, width=120)
