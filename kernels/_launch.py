"""The launch numbers the kernels share with the simulator, read as data.

They are stated once, in ``hardware_specs/kernel_launch.yaml``; the simulator reads the
same file through ``hardware_specs.kernel_launch``. This module reads the file by path,
not by import, so that kernels/ still imports nothing of ours. kernels/decode.py takes
LANES, LANE_WORDS, MAX_REGISTERS and its default threads from ``DECODE``.
"""
from __future__ import annotations

from pathlib import Path

import yaml

LAUNCH_FILE = Path(__file__).resolve().parent.parent / "hardware_specs" / "kernel_launch.yaml"


def launch_values(kernel: str) -> dict[str, int]:
    """{name: value} of one kernel's section of the launch file."""
    return {k: v["value"] for k, v in yaml.safe_load(LAUNCH_FILE.read_text())[kernel].items()}


DECODE = launch_values("decode")
