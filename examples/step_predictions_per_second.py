"""How many whole-step predictions per second does ``predict_step`` make on one core?

Times one vectorized call over a grid of 100 batch sizes x 100 sequence lengths (10^4 decode-step
predictions of Llama-3-8B on the calibrated H200), then the same for prefill and training, and
prints predictions per second; writes the same lines to OUT/predictions_per_second.txt (default
out/examples/step_predictions_per_second). Not a unit test: the number depends on the machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from costmodel.step import predict_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/examples/step_predictions_per_second", help="folder for the results")
    out = Path(p.parse_args().out)
    lines = []
    batch = np.arange(1, 101)[None, :]  # (1, 100)
    seq = np.linspace(128, 8192, 100).astype(np.int64)[:, None]  # (100, 1)
    for phase in ("decode", "prefill", "train"):
        predict_step("llama3-8b", "h200-sxm-141gb-measured", phase, batch=1, seq_len=512)  # warm the caches
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            r = predict_step("llama3-8b", "h200-sxm-141gb-measured", phase, batch=batch, seq_len=seq)
            best = min(best, time.perf_counter() - t0)
        n = np.size(r.time_s)
        lines.append(f"{phase:7s}: {n} predictions in {best * 1e3:6.1f} ms = {n / best:,.0f} predictions/s "
                     f"(time {np.min(r.time_s) * 1e3:.2f}..{np.max(r.time_s) * 1e3:.1f} ms)")
        print(lines[-1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions_per_second.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
