"""The launch configuration our Numba kernels run with, as the simulator reads it.

The numbers live in ``kernel_launch.yaml`` beside this file, once: ``kernels/_launch.py``
reads the same file as data (kernels import nothing of ours), so that a kernel and its
schedule in ``simulators/`` cannot drift apart.
"""
from __future__ import annotations

import functools
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

LAUNCH_FILE = Path(__file__).with_name("kernel_launch.yaml")


class DecodeLaunch(BaseModel):
    """kernels/decode.py: threads a block, lanes per key row, words a lane holds, register cap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(gt=0, multiple_of=32)
    lanes_per_key: int = Field(gt=0)
    lane_words: int = Field(gt=0)
    max_registers: int = Field(gt=0)


@functools.lru_cache(maxsize=1)
def _raw() -> dict:
    return yaml.safe_load(LAUNCH_FILE.read_text())


def decode_launch() -> DecodeLaunch:
    """The decode kernels' launch (``kernel_launch.yaml``, section ``decode``), validated."""
    return DecodeLaunch.model_validate({k: v["value"] for k, v in _raw()["decode"].items()})
