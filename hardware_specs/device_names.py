"""Which bundled datasheet spec a device is: its name as the driver reports it, against each
spec's ``device_names`` (``gpus/*.yaml``).

An entry is the words that must all appear in the lower-cased device name ("h100 pcie"); of
the specs that match, the one whose entry has the most words wins, so "NVIDIA H100 PCIe"
maps to h100-pcie-80gb and "NVIDIA H100 80GB HBM3" to h100-sxm5-80gb.
"""
from __future__ import annotations

from hardware_specs.loader import list_gpus, load_gpu


def spec_for_device(device_name: str) -> str:
    """The bundled spec name for ``device_name``; a ValueError naming the bundled specs if none matches."""
    low = device_name.lower()
    best: tuple[int, str] | None = None
    for name in list_gpus():
        for entry in load_gpu(name).device_names:
            words = entry.lower().split()
            if words and all(w in low for w in words) and (best is None or len(words) > best[0]):
                best = (len(words), name)
    if best is None:
        raise ValueError(f"device name {device_name!r} matches no bundled spec's device_names "
                         f"(bundled: {', '.join(list_gpus())})")
    return best[1]
