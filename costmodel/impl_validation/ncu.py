"""Nsight Compute for the implementation grid: the command, its CSV, and the split into cases.

The child process runs each case once between two marker kernels (torch's ``spin_kernel``,
``torch.cuda._sleep``), after one unprofiled-in-effect warm-up call that falls outside the
markers. The backward runs on autograd's own thread, so an NVTX range pushed on the main
thread would miss its kernels; the markers are kernels on the same stream instead, and a
case's kernels are found by their place between its two markers and checked by name.
"""

from __future__ import annotations

import csv
import io

METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum",
           "launch__grid_size", "launch__block_size", "launch__registers_per_thread",
           "launch__shared_mem_per_block_dynamic", "launch__shared_mem_per_block_static")
MARKER = "spin_kernel"
_SCALE = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "nsecond": 1e-9, "usecond": 1e-6,
          "msecond": 1e-3, "second": 1.0, "": 1.0, "block": 1.0, "thread": 1.0,
          "register/thread": 1.0, "byte/block": 1.0, "kbyte/block": 1e3, "mbyte/block": 1e6}
# SI names the parsed values are stored under
NAMES = {"dram__bytes_read.sum": "dram_read_bytes", "dram__bytes_write.sum": "dram_write_bytes",
         "gpu__time_duration.sum": "time_s", "launch__grid_size": "grid_blocks",
         "launch__block_size": "threads_per_block", "launch__registers_per_thread": "regs_per_thread",
         "launch__shared_mem_per_block_dynamic": "smem_dynamic_bytes",
         "launch__shared_mem_per_block_static": "smem_static_bytes"}


def command(ncu: str, log_file: str, child: list[str]) -> list[str]:
    """ncu with the clocks left alone (--clock-control none: the lent GPU's settings stay as found)."""
    return [ncu, "--clock-control", "none", "--target-processes", "all", "--csv", "--page", "raw",
            "--metrics", ",".join(METRICS), "--log-file", log_file, *child]


def _number(text: str, unit: str) -> float | None:
    text = text.replace(",", "").strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return value * _SCALE.get(unit.strip().lower(), 1.0)


def parse_csv(text: str) -> list[dict]:
    """Kernels of ``ncu --csv --page raw`` in launch order: name and the METRICS under NAMES' keys
    (missing or unparsable values are None). Lines before the header (``==PROF==``) are skipped."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID",')), None)
    if start is None:
        raise ValueError('ncu: no CSV header (a line starting with "ID",) in the output')
    rows = list(csv.reader(io.StringIO("\n".join(line for line in lines[start:] if line.startswith('"')))))
    header = rows[0]
    units = dict(zip(header, rows[1])) if len(rows) > 1 and rows[1] and rows[1][0] == "" else {}
    out = []
    for row in rows[1 + bool(units):]:
        rec = dict(zip(header, row))
        k = {"name": rec.get("Kernel Name", "")}
        for m in METRICS:
            k[NAMES[m]] = _number(rec[m], units.get(m, "")) if m in rec else None
        out.append(k)
    return out


def split_cases(kernels: list[dict], n_cases: int) -> list[list[dict] | None]:
    """Per case, the kernels between its begin and end markers (markers come in pairs, one pair a
    case, in order; what lies between one case's end and the next begin is set-up and warm-up)."""
    marks = [i for i, k in enumerate(kernels) if MARKER in k["name"]]
    out: list[list[dict] | None] = []
    for c in range(n_cases):
        if 2 * c + 1 >= len(marks):
            out.append(None)
            continue
        a, b = marks[2 * c], marks[2 * c + 1]
        out.append(kernels[a + 1:b])
    return out


def short_name(name: str) -> str:
    """The kernel's identifier without template arguments and parameters."""
    name = name.strip().removeprefix("void ")
    for cut in ("<", "(", "["):
        name = name.split(cut)[0]
    return name.split("::")[-1] or name
