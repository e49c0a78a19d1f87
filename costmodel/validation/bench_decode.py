"""How close do the decode kernels come to the memory bound? Times decode_attention and
flash_decoding over a grid of cache shapes, checks each against the float64 reference,
and writes one JSON file.

Grid: batch B in (1, 16), cache length L in (1024, 4096, 16384), head_dim d in (64, 128),
fp32 and fp16 storage, heads = 2048 // d (32 at d = 64, 16 at d = 128) and
kv_heads = heads // 4 (GQA, 4 query heads per kv head). Kernels: decode_attention, and
flash_decoding with its default splits and with 4 and 8.

Each time is the median of 20 CUDA-event samples after 3 warm-up calls, with the output
buffers allocated once (``reused_buffers``). ``time_s`` brackets the call behind a
sleeping kernel that holds the stream back, so the bracket holds GPU work alone, not the
host's launch overhead; ``time_s_host`` is the plain bracket of ``kernels.timing.time_launches``
(launch overhead included where a kernel is shorter than it). Caches smaller than twice
the L2 rotate over copies so that no call finds them there. ``bytes`` counts K + V + q + o
once (the minimum HBM traffic; GQA re-reads of K and V by the query heads of a group
are not counted), ``bandwidth_Bps = bytes / time_s``. ``rel_err`` and ``rel_err_lse``
compare o and lse of the first and the last sequence with ``reference.decode``.

    python3 -m costmodel.validation.bench_decode --out decode.json            # GPU, about a minute
    NUMBA_ENABLE_CUDASIM=1 python3 -m costmodel.validation.bench_decode --tiny --out /tmp/decode.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import time

import numpy as np
from numba import cuda

from costmodel.validation.device import device_info
from kernels import decode, reference
from kernels._cuda import SIMULATOR, poisoned_outputs, reused_buffers
from kernels.timing import kernel_resources, l2_bytes, rotation_count, time_launches

WARMUP, REPEATS = 3, 20
HOLD_NS = 1_000_000  # the sleeping kernel's hold: far longer than the host takes to issue one call


def _configs(tiny: bool):
    """(B, L, d, heads, kv_heads) of the grid."""
    if tiny:
        return [(2, 20, 64, 2, 1)]
    return [(B, L, d, 2048 // d, 2048 // d // 4) for B in (1, 16) for L in (1024, 4096, 16384) for d in (64, 128)]


def _reference(q, k, v, rows):
    """float64 (o, lse) of the sequences ``rows``."""
    outs = [reference.decode(q[b:b + 1], k[b:b + 1], v[b:b + 1]) for b in rows]
    return np.concatenate([o for o, _ in outs]), np.concatenate([s for _, s in outs])


def run_config(B, L, d, H, Hkv, dtype, rng, num_threads, warmup, repeats, host_kv=None):
    """Records of every kernel on one shape and storage dtype."""
    q = rng.standard_normal((B, H, 1, d), dtype=np.float32).astype(dtype)
    if host_kv is None:
        host_kv = tuple(rng.standard_normal((B, Hkv, L, d), dtype=np.float32) for _ in range(2))
    k, v = (x.astype(dtype, copy=False) for x in host_kv)
    item = np.dtype(dtype).itemsize
    kv_bytes = 2 * B * Hkv * L * d * item
    n_sets = rotation_count(kv_bytes, l2_bytes())  # 1 in the simulator (no L2)
    sets = [tuple(cuda.to_device(x) for x in (q, k, v)) for _ in range(n_sets)]
    rows = sorted({0, B - 1})
    ro, rl = _reference(q, k, v, rows)
    threads = num_threads or decode.default_threads(d)
    cfg = decode.Config(d, threads, item)
    default = decode.default_num_splits(B * H, L, cfg.keys_per_tile)
    plan = [("decode_attention", 1, False)] + [("flash_decoding", s, s == default)
                                               for s in dict.fromkeys((default, 4, 8))]
    out = []
    for name, splits, is_default in plan:
        def fn(qd, kd, vd):
            if name == "decode_attention":
                return decode.decode_attention(qd, kd, vd, num_threads=threads)
            return decode.flash_decoding(qd, kd, vd, num_splits=splits, num_threads=threads)

        with poisoned_outputs():
            o, lse = fn(*sets[0])
        o_h, lse_h = o.copy_to_host(), lse.copy_to_host()
        calls = 0

        def call():
            nonlocal calls
            fn(*sets[calls % n_sets])
            calls += 1

        with reused_buffers():
            t = statistics.median(time_launches(call, repeats, warmup, hold_us=HOLD_NS // 1000))
            t_host = statistics.median(time_launches(call, repeats, warmup))
        nbytes = kv_bytes + 2 * B * H * d * item
        out.append(dict(
            kernel=name, num_splits=splits, default_splits=is_default or name == "decode_attention",
            batch=B, heads=H, kv_heads=Hkv, L=L, d=d, dtype=np.dtype(dtype).name,
            grid=[splits, B * H], num_threads=threads, keys_per_tile=cfg.keys_per_tile,
            smem_bytes_per_block=cfg.smem_bytes(), time_s=t, time_s_host=t_host, bytes=nbytes,
            bandwidth_Bps=nbytes / t, input_sets=n_sets,
            rel_err=reference.rel_error(o_h[rows], ro), rel_err_lse=reference.rel_error(lse_h[rows], rl),
            fully_written=bool(np.isfinite(o_h).all() and np.isfinite(lse_h).all())))
    del sets
    return out


def resources(num_threads) -> list[dict]:
    """Registers, local memory and shared memory of every decode kernel compiled so far."""
    rows = []
    for d in (32, 64, 128):
        for item in (4, 2):
            cfg = decode.Config(d, num_threads or decode.default_threads(d), item)
            for final in (True, False):
                rows += kernel_resources(f"decode d={d} {8 * item}-bit {'final' if final else 'partial'}",
                                         decode.build_kernel(cfg, final), cfg.smem_bytes())
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes for numba's CUDA simulator (a smoke test)")
    ap.add_argument("--threads", type=int, default=None, help="threads per block (default: the kernel's)")
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    t_start = time.time()
    rng = np.random.default_rng()
    threads = args.threads or (32 if args.tiny else None)
    warmup, repeats = (0, 1) if args.tiny else (WARMUP, REPEATS)
    result = dict(
        environment=dict(device_info(), date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                         command=" ".join(["python3", "-m", "costmodel.validation.bench_decode"] + list(argv)),
                         simulator=SIMULATOR),
        conventions=dict(time_s="median of CUDA-event brackets behind a sleeping kernel (GPU time)",
                         time_s_host="median of kernels.timing.time_launches brackets (host launch included)",
                         bytes="K + V + q + o once", rel_err="o of the first and last sequence vs "
                         "reference.decode (float64)"),
        records=[])
    for B, L, d, H, Hkv in _configs(args.tiny):
        host_kv = tuple(rng.standard_normal((B, Hkv, L, d), dtype=np.float32) for _ in range(2))
        for dtype in (np.float32, np.float16):
            recs = run_config(B, L, d, H, Hkv, dtype, rng, threads, warmup, repeats, host_kv)
            result["records"] += recs
            for r in recs:
                print(f"B={B:2d} L={L:5d} d={d:3d} {r['dtype']:7s} {r['kernel']:16s} S={r['num_splits']:2d} "
                      f"{r['time_s'] * 1e6:9.1f} us {r['bandwidth_Bps'] / 1e12:6.3f} TB/s "
                      f"err {r['rel_err']:.1e}", flush=True)
        del host_kv
    result["resources"] = resources(threads)
    result["seconds"] = time.time() - t_start
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    bad = [r for r in result["records"] if not (r["fully_written"] and r["rel_err"] < 3e-3
                                                 and r["rel_err_lse"] < 1e-4)]
    print(f"{len(result['records'])} records, {len(bad)} failing the check, {result['seconds']:.0f} s "
          f"-> {os.path.abspath(args.out)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
