"""What the kernel sweep (``costmodel.validation.kernel_sweep``) checks, counts and records.

Inputs are drawn on the device (``kernels.microbench.uniform_fill``); outputs are compared
with the float64 reference on the first and last (batch, head), on all rows up to N = 2048
and on 512 rows past it; a record gets TFLOP/s and bandwidth from its counts, and the
environment block names the device, driver and versions.
"""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import time

import numpy as np
from numba import cuda

from costmodel.flops import attention_core_flops
from kernels import reference
from kernels._cuda import SIMULATOR
from kernels.microbench import uniform_fill
from kernels.timing import kernel_resources

# ---------------------------------------------------------------------------
# inputs


_seed = int(time.time())


def rand(shape, dtype):
    global _seed
    _seed += 1
    arr = cuda.device_array(shape, dtype=dtype)
    n = int(np.prod(shape))
    uniform_fill[(n + 255) // 256, 256](arr.reshape(n), np.uint32(_seed % 2**32), np.int64(n))
    return arr


def check_rows(n: int, rng) -> np.ndarray:
    if n <= 2048:
        return np.arange(n)
    mid = rng.choice(np.arange(128, n - 128), size=256, replace=False)
    return np.sort(np.concatenate([np.arange(128), mid, np.arange(n - 128, n)]))


# ---------------------------------------------------------------------------
# counting

def fwd_flops(bh, n, d, causal, window=None):
    """Forward matmul FLOPs of bh heads (``costmodel.flops.attention_core_flops``: 4 d per attended pair)."""
    return float(attention_core_flops(bh, n, d, causal=causal or window is not None, sliding_window=window))


def fwd_bytes(b, h, hkv, n, d, itemsize):
    return (2 * b * h * n * d + 2 * b * hkv * n * d) * itemsize + 4 * b * h * n


def regs(dispatcher, name, dyn_smem):
    res = kernel_resources(name, dispatcher, dyn_smem)
    return max((r["regs_per_thread"] for r in res), default=None), res


# ---------------------------------------------------------------------------
# checks

def check_forward(o, lse, q, k, v, causal, window, rng):
    """Rel. errors of o and lse on the first and last (batch, head); fully written?"""
    o_h = o.copy_to_host()
    written = bool(np.isfinite(o_h).all()) and bool(np.isfinite(lse.copy_to_host()).all())
    B, H, N, d = q.shape
    Hkv = k.shape[1]
    rows = check_rows(N, rng)
    errs_o, errs_l = [], []
    lse_h = lse.copy_to_host()
    for b, h in ((0, 0), (B - 1, H - 1)):
        kh = h // (H // Hkv)
        qh = q[b, h].copy_to_host()[rows][None, None]
        kk = k[b, kh].copy_to_host()[None, None]
        vv = v[b, kh].copy_to_host()[None, None]
        ro, rl = reference.attention(qh, kk, vv, causal=causal, window=window, q_pos=rows)
        errs_o.append(reference.rel_error(o_h[b, h][rows], ro[0, 0]))
        errs_l.append(reference.rel_error(lse_h[b, h][rows], rl[0, 0]))
    note = "all rows" if N <= 2048 else f"{len(rows)} rows"
    return dict(rel_err=max(errs_o), rel_err_lse=max(errs_l), fully_written=written,
                check=f"heads (0,0) and ({B - 1},{H - 1}), {note}")


def record(**kw):
    rec = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in kw.items()}
    if rec.get("time_s") and rec.get("flops"):
        rec["tflops"] = rec["flops"] / rec["time_s"] / 1e12
    if rec.get("time_s") and rec.get("hbm_bytes_min"):
        rec["bandwidth_Bps"] = rec["hbm_bytes_min"] / rec["time_s"]
    line = (f"{rec['kernel']:<18} N={rec.get('N', rec.get('L')):<6} d={rec['d']:<4} "
            f"causal={int(bool(rec.get('causal'))):<2}{rec['dtype']:<8} "
            f"t={rec.get('time_s', float('nan')) * 1e3:9.3f} ms  "
            f"{rec.get('tflops', float('nan')):6.2f} TF/s  "
            f"{rec.get('bandwidth_Bps', float('nan')) / 1e12:5.2f} TB/s  "
            f"regs={rec.get('regs_per_thread')}  err={rec.get('rel_err', float('nan')):.2e}"
            f"{'' if rec.get('fully_written', True) else '  UNWRITTEN'}")
    print(line, flush=True)
    return rec


def ref_dq_rows(q, k, v, do, rows, causal, scale):
    """float64 dq for a subset of query rows of one head (q, k, v, do: (N, d))."""
    q, k, v, do = (x.astype(np.float64) for x in (q, k, v, do))
    s = (q[rows] @ k.T) * scale
    s = np.where(reference.mask(rows, k.shape[0], causal), s, -np.inf)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    o = p @ v
    dp = do[rows] @ v.T
    ds = p * (dp - (do[rows] * o).sum(axis=1, keepdims=True))
    return (ds @ k) * scale



# ---------------------------------------------------------------------------

def environment(command: str) -> dict:
    import numba

    try:
        import numba_cuda
        nc_version = numba_cuda.__version__
    except Exception:  # noqa: BLE001
        nc_version = None
    env = dict(command=command, date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
               numba_cuda=nc_version, simulator=SIMULATOR)
    if not SIMULATOR:
        dev = cuda.get_current_device()
        env.update(gpu=dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name),
                   sm_count=int(dev.MULTIPROCESSOR_COUNT), l2_bytes=int(dev.L2_CACHE_SIZE),
                   smem_optin_bytes=int(dev.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
                   cuda_driver_api=".".join(map(str, cuda.cudadrv.driver.driver.get_version())),
                   cuda_runtime=".".join(map(str, cuda.runtime.get_version())))
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm",
                                            "--format=csv,noheader"], capture_output=True, text=True,
                                           timeout=20).stdout.strip()
        except Exception as err:  # noqa: BLE001
            env["driver"] = f"unavailable: {err}"
    env["conventions"] = {
        "flops": "4 d per attended (query, key) pair forward, 10 d backward (N^2 pairs, N (N + 1) / 2 causal, "
                 "the band's with a window; standard counted the same); decode L pairs per query head",
        "hbm_bytes_min": "inputs read once + outputs written once; standard adds S and P (fp32) written and "
                         "read once",
        "time_s": "median of CUDA-event samples; each sample a bracket of `inner` calls / inner",
    }
    return env


