"""How close do the decode kernels come to the memory bound, and what does a call cost the
host? Times decode_attention and flash_decoding over a grid of cache shapes, checks each
against the float64 reference, and writes one JSON file.

Grid: batch B in (1, 16), cache length L in (1024, 4096, 16384), head_dim d in (64, 128),
fp32 storage (``--fp16`` adds fp16), heads = 2048 // d (32 at d = 64, 16 at d = 128) and
kv_heads = heads // 4 (GQA, 4 query heads per kv head). Kernels: one block per query head
(``decode_attention``), flash_decoding with its default splits and with 4 and 8, and the
grouped schedule (``heads_per_block`` = 4: one block per kv head serving its 4 query
heads, K/V read once from L2) unsplit and with its default splits.

Each time is the median of 20 CUDA-event samples after 3 warm-up calls. Four brackets:
``time_s_api_host`` and ``time_s`` time the public API call (checks, reshapes, numba
dispatch; output buffers allocated once, ``reused_buffers``); ``time_s_host`` and
``time_s_gpu`` time a ``prepare_decode`` step (its launches alone). ``*_host`` is the plain
bracket of ``kernels.timing.time_launches`` (host launch work included where a kernel is shorter
than it: what a caller waits for); ``time_s`` / ``time_s_gpu`` bracket the call behind a
sleeping kernel that holds the stream back, so the bracket holds GPU work alone. Caches
smaller than twice the L2 rotate over copies so that no call finds them there. ``bytes``
counts K + V + q + o once (the minimum HBM traffic), ``bandwidth_Bps = bytes / time_s_gpu``.
``rel_err`` compares o and lse of the first and the last sequence with ``reference.decode``,
on outputs poisoned (NaN) before the call. ``launch`` holds the host cost of one launch of
an empty six-array kernel through numba and through ``BoundLaunch``.

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
from kernels import decode, decode_step, reference
from kernels._cuda import SIMULATOR, poisoned_outputs, reused_buffers
from kernels.timing import kernel_resources, l2_bytes, rotation_count, time_launches

WARMUP, REPEATS = 3, 20
HOLD_NS = 1_000_000  # the sleeping kernel's hold: far longer than the host takes to issue one call


GROUP_ROWS = 4  # heads_per_block of the grouped schedule: the grid's whole GQA group


def _configs(tiny: bool, fp16: bool):
    """(B, L, d, heads, kv_heads, dtype) of the grid."""
    if tiny:
        return [(2, 20, 64, 8, 2, np.float32)]
    dtypes = (np.float32, np.float16) if fp16 else (np.float32,)
    return [(B, L, d, 2048 // d, 2048 // d // GROUP_ROWS, dt) for dt in dtypes for B in (1, 16)
            for L in (1024, 4096, 16384) for d in (64, 128)]


def _reference(q, k, v, rows):
    """float64 (o, lse) of the sequences ``rows``."""
    outs = [reference.decode(q[b:b + 1], k[b:b + 1], v[b:b + 1]) for b in rows]
    return np.concatenate([o for o, _ in outs]), np.concatenate([s for _, s in outs])


def _plan(B, H, Hkv, L, cfg_of):
    """(kernel, num_splits, heads_per_block, is the default split count) to time."""
    default = decode.default_num_splits(B * H, L, cfg_of(1).keys_per_tile)
    plan = [("decode_attention", 1, 1, True)]
    plan += [("flash_decoding", s, 1, s == default) for s in dict.fromkeys((default, 4, 8))]
    rows = min(GROUP_ROWS, H // Hkv)
    if rows > 1:
        g_default = decode.default_num_splits(B * H // rows, L, cfg_of(rows).keys_per_tile)
        plan += [("grouped", s, rows, s == g_default) for s in dict.fromkeys((1, g_default))]
    return plan


def run_config(B, L, d, H, Hkv, dtype, rng, num_threads, warmup, repeats):
    """Records of every kernel on one shape and storage dtype."""
    q = rng.standard_normal((B, H, 1, d), dtype=np.float32).astype(dtype)
    k, v = (rng.standard_normal((B, Hkv, L, d), dtype=np.float32).astype(dtype) for _ in range(2))
    item = np.dtype(dtype).itemsize
    kv_bytes = 2 * B * Hkv * L * d * item
    n_sets = rotation_count(kv_bytes, l2_bytes())  # 1 in the simulator (no L2)
    sets = [tuple(cuda.to_device(x) for x in (q, k, v)) for _ in range(n_sets)]
    rows = sorted({0, B - 1})
    ro, rl = _reference(q, k, v, rows)
    threads = num_threads or decode.default_threads(d)
    out = []
    for name, splits, hpb, is_default in _plan(B, H, Hkv, L, lambda r: decode.DecodeTiles(d, threads, item, r)):
        cfg = decode.DecodeTiles(d, threads, item, hpb)
        opts = dict(num_splits=splits, num_threads=threads, heads_per_block=hpb)
        with poisoned_outputs():
            steps = [decode_step.prepare_decode(*x, **opts) for x in sets]
        o, lse = steps[0]()
        o_h, lse_h = o.copy_to_host(), lse.copy_to_host()
        calls = 0

        def prepared():
            nonlocal calls
            steps[calls % n_sets]()
            calls += 1

        def api():
            nonlocal calls
            decode_step.flash_decoding(*sets[calls % n_sets], **opts)
            calls += 1

        t_host = statistics.median(time_launches(prepared, repeats, warmup))
        t_gpu = statistics.median(time_launches(prepared, repeats, warmup, hold_us=HOLD_NS // 1000))
        rec = {}
        if hpb == 1:  # the public API, as timed before prepare_decode existed
            with reused_buffers():
                rec = dict(time_s_api_host=statistics.median(time_launches(api, repeats, warmup)),
                           time_s=statistics.median(time_launches(api, repeats, warmup, hold_us=HOLD_NS // 1000)))
        nbytes = kv_bytes + 2 * B * H * d * item
        out.append(dict(
            kernel=name, num_splits=splits, heads_per_block=hpb, default_splits=is_default,
            batch=B, heads=H, kv_heads=Hkv, L=L, d=d, dtype=np.dtype(dtype).name,
            grid=[splits, B * H // hpb], num_threads=threads, keys_per_tile=cfg.keys_per_tile,
            smem_bytes_per_block=cfg.smem_bytes(), time_s_host=t_host, time_s_gpu=t_gpu, **rec, bytes=nbytes,
            bandwidth_Bps=nbytes / t_gpu, input_sets=n_sets, raw_launch=all(b.raw for b in steps[0].bound),
            why_not_raw=steps[0].bound[0].why_not_raw,
            rel_err=reference.rel_error(o_h[rows], ro), rel_err_lse=reference.rel_error(lse_h[rows], rl),
            fully_written=bool(np.isfinite(o_h).all() and np.isfinite(lse_h).all())))
    return out


def launch_costs(launches: int, repeats: int) -> dict:
    """Host cost of one launch of an empty kernel with six device arrays (calibrate's
    ``empty_kernel``): back to back between two events, per launch, and one launch alone
    in a bracket, through numba's dispatch and through ``BoundLaunch``."""
    from kernels._cuda import BoundLaunch
    from kernels.microbench import empty_kernel

    arrays = [cuda.device_array(16, np.float32) for _ in range(6)]
    bound = BoundLaunch(empty_kernel, (1,), 32, 0, *arrays)
    paths = {"numba": lambda: empty_kernel[1, 32](*arrays), "bound": bound}
    out = {"raw": bound.raw, "why_not_raw": bound.why_not_raw}
    for name, fn in paths.items():
        def many():
            for _ in range(launches):
                fn()

        out[f"{name}_back_to_back_s"] = statistics.median(time_launches(many, max(3, repeats // 4), 1)) / launches
        out[f"{name}_one_bracketed_s"] = statistics.median(time_launches(fn, repeats, 3))
    return out


def resources(num_threads) -> list[dict]:
    """Registers, local memory and shared memory of every decode kernel compiled so far."""
    rows = []
    for d in (32, 64, 128):
        for item in (4, 2):
            for hpb in (1, GROUP_ROWS):
                cfg = decode.DecodeTiles(d, num_threads or decode.default_threads(d), item, hpb)
                for final in (True, False):
                    rows += kernel_resources(f"decode d={d} {8 * item}-bit R={hpb} {'final' if final else 'partial'}",
                                             decode.build_kernel(cfg, final), cfg.smem_bytes())
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes for numba's CUDA simulator (a smoke test)")
    ap.add_argument("--fp16", action="store_true", help="fp16 caches too")
    ap.add_argument("--threads", type=int, default=None, help="threads per block (default: the kernel's)")
    ap.add_argument("--max-seconds", type=float, default=None, help="start no new shape after this long")
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    t_start = time.time()
    rng = np.random.default_rng(17)
    threads = args.threads or (32 if args.tiny else None)
    warmup, repeats = (0, 1) if args.tiny else (WARMUP, REPEATS)
    result = dict(
        environment=dict(device_info(), date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                         command=" ".join(["python3", "-m", "costmodel.validation.bench_decode"] + list(argv)),
                         simulator=SIMULATOR),
        conventions=dict(time_s="public API call, median of CUDA-event brackets behind a sleeping kernel (GPU time)",
                         time_s_api_host="public API call, median of kernels.timing.time_launches brackets (host "
                         "work included)", time_s_gpu="prepare_decode step, GPU time as time_s",
                         time_s_host="prepare_decode step, host launch included, as time_s_api_host",
                         bytes="K + V + q + o once", rel_err="o of the first and last sequence vs "
                         "reference.decode (float64)"),
        launch=launch_costs(3 if args.tiny else 2000, 4 if args.tiny else REPEATS), records=[], skipped=[])
    print(f"launch: {result['launch']}", flush=True)
    for B, L, d, H, Hkv, dtype in _configs(args.tiny, args.fp16):
        if args.max_seconds is not None and time.time() - t_start > args.max_seconds:
            result["skipped"].append(dict(batch=B, L=L, d=d, dtype=np.dtype(dtype).name, why="--max-seconds"))
            continue
        for r in run_config(B, L, d, H, Hkv, dtype, rng, threads, warmup, repeats):
            result["records"].append(r)
            api = r.get("time_s_api_host")
            print(f"B={B:2d} L={L:5d} d={d:3d} {r['dtype']:7s} {r['kernel']:16s} S={r['num_splits']:2d} "
                  f"R={r['heads_per_block']} gpu {r['time_s_gpu'] * 1e6:7.1f} us host {r['time_s_host'] * 1e6:7.1f} us "
                  f"api {'-' if api is None else f'{api * 1e6:7.1f}'} us {r['bandwidth_Bps'] / 1e12:6.3f} TB/s "
                  f"err {r['rel_err']:.1e}", flush=True)
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
