"""Nsight Compute: the profiling run over the cases, its CSV output read, its kernels split per case.

``run_ncu`` runs every case once under ``ncu`` in one child process
(``python -m costmodel.validation.run --one CASES.json``), each case between two empty
marker kernels (``kernels.microbench``), so that the kernels ncu lists can be split back
into cases; ``parse_ncu_csv`` reads DRAM bytes and durations from what ncu prints.
Everything but the child itself runs on the CPU.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from costmodel.validation.schema import NcuKernel

NCU_NOTE = ("DRAM bytes: Nsight Compute (dram__bytes_read.sum + dram__bytes_write.sum, caches flushed before each "
            "kernel, --clock-control none); writes still held in L2 when a kernel ends are not counted.")
MARK_BEGIN, MARK_END = "validate_mark_begin", "validate_mark_end"  # kernels.microbench's marker kernels

# Unit words Nsight Compute prints, to bytes and seconds. "--page raw" spells time units
# out (nsecond); the details page abbreviates (ns); either may scale bytes (Kbyte).
_UNIT_SCALE = {
    "byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12,
    "kibyte": 2.0**10, "mibyte": 2.0**20, "gibyte": 2.0**30,
    "nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
    "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0,
}
NCU_METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum")


def _ncu_number(text: str, unit: str, metric: str) -> float:
    value = float(text.replace(",", ""))
    key = unit.strip().lower()
    if key not in _UNIT_SCALE:
        raise ValueError(f"ncu: unknown unit {unit!r} for {metric}")
    return value * _UNIT_SCALE[key]


def parse_ncu_csv(text: str) -> list[NcuKernel]:
    """Kernels from ``ncu --csv`` output, in launch order, with DRAM bytes and duration.

    Reads both layouts: ``--page raw`` (one row per kernel, one column per metric, a
    second row of units) and the details page (one row per metric, with "Metric Name",
    "Metric Unit", "Metric Value"). Lines before the CSV header (``==PROF==`` progress,
    the program's own output) are skipped. Values may carry thousands separators.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID",')), None)
    if start is None:
        raise ValueError("ncu: no CSV header (a line starting with \"ID\",) in the output")
    body = [line for line in lines[start:] if line.startswith('"')]
    rows = list(csv.reader(io.StringIO("\n".join(body))))
    header = rows[0]
    kernels: dict[str, dict] = {}

    def entry(row: list[str]) -> dict:
        rec = dict(zip(header, row))
        return kernels.setdefault(rec["ID"], {"name": rec["Kernel Name"]})

    if "Metric Name" in header:
        for row in rows[1:]:
            rec = dict(zip(header, row))
            if rec.get("Metric Name") in NCU_METRICS:
                entry(row)[rec["Metric Name"]] = _ncu_number(rec["Metric Value"], rec["Metric Unit"], rec["Metric Name"])
    else:
        missing = [m for m in NCU_METRICS if m not in header]
        if missing:
            raise ValueError(f"ncu: CSV lacks the metric columns {', '.join(missing)}")
        units = dict(zip(header, rows[1])) if len(rows) > 1 and rows[1][0] == "" else {}
        for row in rows[1 + bool(units):]:
            rec = dict(zip(header, row))
            k = entry(row)
            for m in NCU_METRICS:
                k[m] = _ncu_number(rec[m], units.get(m, "byte" if "bytes" in m else "nsecond"), m)
    out = []
    for kid, k in kernels.items():
        missing = [m for m in NCU_METRICS if m not in k]
        if missing:
            raise ValueError(f"ncu: kernel {kid} ({k['name']}) has no value for {', '.join(missing)}")
        out.append(NcuKernel(name=k["name"], dram_read_bytes=k["dram__bytes_read.sum"],
                             dram_write_bytes=k["dram__bytes_write.sum"], time_s=k["gpu__time_duration.sum"]))
    return out


def short_kernel_name(name: str) -> str:
    """A readable kernel name: ncu prints Numba kernels mangled (``_ZN8__main__10copy_kernel...``)."""
    name = name.strip()
    if not name.startswith("_Z"):  # demangled: "cudapy::kernels::flash::fwd[abi:v1](Array<...>)"
        return name.split("(")[0].split("[")[0].split("<")[0].split("::")[-1] or name
    # Itanium mangling: length-prefixed identifiers; the kernel is the last one before the arguments.
    parts, i = [], 2 + (name[2] == "N")
    while i < len(name):
        m = re.match(r"(\d+)", name[i:])
        if not m:
            break
        n = int(m.group(1))
        i += len(m.group(1))
        parts.append(name[i:i + n])
        i += n
    idents = [p for p in parts if p and not p.startswith("_") and p.isidentifier()]
    return idents[-1] if idents else name


# ---------------------------------------------------------------- the profiling run


def ncu_command(cases_file: str | Path, log_file: str | Path, ncu: str = "ncu",
                deadline: float | None = None) -> list[str]:
    """Nsight Compute over the child process that runs each case once between two marker kernels.

    ``deadline`` (a time.time() value) makes the child stop starting cases then and exit
    normally, so that ncu still prints what it profiled (it prints the table at exit).
    """
    return [
        ncu, "--csv", "--page", "raw", "--metrics", "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum",
        "--clock-control", "none", "--target-processes", "all", "--log-file", str(log_file),
        sys.executable, "-m", "costmodel.validation.run", "--one", str(cases_file),
    ] + ([] if deadline is None else ["--deadline", f"{deadline:.0f}"])


def split_on_markers(kernels: list[NcuKernel], n_cases: int) -> list[list[NcuKernel] | None]:
    """The kernels between each begin/end marker pair, in case order (None where a case has no pair)."""
    groups: list[list[NcuKernel] | None] = []
    current: list[NcuKernel] | None = None
    for k in kernels:
        name = short_kernel_name(k.name)
        if name == MARK_BEGIN:
            current = []
        elif name == MARK_END:
            groups.append(current)
            current = None
        elif current is not None:
            current.append(k)
    groups += [None] * (n_cases - len(groups))
    return groups[:n_cases]


def run_ncu(cases: list, timeout_s: float, ncu: str = "ncu") -> tuple[list[list[NcuKernel] | None], str]:
    """Profile every case once; (kernels per case, a note on what happened)."""
    with tempfile.TemporaryDirectory(prefix="ioaware-ncu-") as tmp:
        cases_file = Path(tmp) / "cases.json"
        cases_file.write_text(json.dumps([c.to_json() for c in cases]))
        log = Path(tmp) / "ncu.csv"
        # The child stops starting cases with a margin left for ncu to write its table.
        t_end = time.time() + timeout_s
        cmd = ncu_command(cases_file, log, ncu, deadline=t_end - min(60.0, 0.2 * timeout_s))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=Path.cwd())
            if not log.exists() and proc.returncode != 0:  # an ncu without --log-file: the table on stdout
                cmd = [a for i, a in enumerate(cmd) if a != "--log-file" and cmd[i - 1] != "--log-file"]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30.0, t_end - time.time()),
                                      cwd=Path.cwd())
        except FileNotFoundError:
            return [None] * len(cases), f"ncu not found ({ncu}); no DRAM bytes"
        except subprocess.TimeoutExpired:
            return [None] * len(cases), f"ncu did not finish in {timeout_s:.0f} s; no DRAM bytes"
        text = log.read_text() if log.exists() else proc.stdout
        try:
            kernels = parse_ncu_csv(text)
        except ValueError as exc:
            tail = "\n".join((text, proc.stderr or "")).strip().splitlines()[-3:]
            return [None] * len(cases), f"ncu output unreadable ({exc}; rc {proc.returncode}): {' | '.join(tail)}"
        groups = split_on_markers(kernels, len(cases))
        status_file = Path(str(cases_file) + ".status")
        if status_file.exists():  # a case that failed in the child has its (empty) pair: drop it
            ran = json.loads(status_file.read_text())
            groups = [g if i < len(ran) and ran[i] else None for i, g in enumerate(groups)]
        return groups, f"ncu: {len(kernels)} kernels profiled, {sum(g is not None for g in groups)} cases matched"
