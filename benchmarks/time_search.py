"""How long the full layout search of Llama-3-70B on 1,024 H100s (128 DGX H100 nodes) takes on one core.

Run from the repository root: ``python3 benchmarks/time_search.py``. Prints the wall and CPU time of
``search_layouts`` (after imports), the number of layouts, and the five fastest that fit.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys
import time

sys.path.insert(0, os.getcwd())

from costmodel.parallel.search import row, search_layouts  # noqa: E402
from hardware_specs.loader import load_gpu  # noqa: E402

if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
limit = 0.9 * load_gpu("h100-sxm5-80gb").hbm_bytes
wall, cpu = time.perf_counter(), time.process_time()
r = search_layouts("llama3-70b", "dgx-h100", global_batch=512, seq_len=8192, memory_limit_bytes=limit)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(f"llama3-70b on dgx-h100 (1024 GPUs), global batch 512 x 8192 tokens: {r['count']} layouts in "
      f"{r['units']} work units, {r['fitting']} fit in 0.9 x HBM; wall {wall:.2f} s, CPU {cpu:.2f} s on one core")
for i in r["order"][:5]:
    b = row(r["table"], i)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in b.items()})
