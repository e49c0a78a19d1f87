"""GPU sweep of the kernels alone: check each against the float64 reference at real sizes, then time it.

    python -m costmodel.validation.kernel_sweep --out FILE.json [--quick] [--inspect DIR] [--sections a,b]

Answers: how fast is each kernel on this GPU (time, TFLOP/s, bandwidth), with which
registers and shared memory, and is it right at that size? Writes FILE.json (the
records and the environment) after every section, and prints a table at the end.

Sizing: forward kernels run batch * heads * N = 16 * 2^16 tokens (heads = 16), so
the FA2 grid has at least 1024 blocks; standard attention is capped so S and P
(float32, 8 N^2 bytes per head) fit in 12 GB; the backward runs 4 * 2^16 tokens.

Correctness: outputs (and every intermediate buffer) start as NaN; after one run
the whole output must be finite (fully written), and the first and last (batch,
head) are compared with the float64 reference on all rows when N <= 2048, else on
512 rows (the first 128, the last 128 and 256 random ones). Backward: the full
gradients of one head for N <= 2048, else dq on those 512 rows. Inputs are fresh
random numbers (uniform, unit variance) for every configuration.

FLOP counting (TFLOP/s = flops / time; ``costmodel.flops.attention_core_flops``): 4 d
per attended (query, key) pair forward, 10 d backward: N^2 per head without a mask,
N (N + 1) / 2 causal (standard attention counted the same, though it does the dense
work), the band's pairs with a sliding window; decoding L pairs per query head.
(Until 2026-12-02 causal counted N^2 / 2: h100_sweep.json's flops are 1/N lower.)
Bytes (bandwidth = bytes / time): each input read once and each output written once
(for standard attention also S and P written and read once, float32).

The checks, the counts and the environment record are ``costmodel.validation.kernel_checks``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
from numba import cuda

from costmodel.flops import attention_core_flops
from costmodel.validation.kernel_checks import (check_forward, check_rows, environment, fwd_bytes, fwd_flops, rand,
                                                record, ref_dq_rows, regs)
from kernels import decode, decode_step, flash1, flash2, flash_backward, reference, standard
from kernels._cuda import SIMULATOR, poisoned_outputs, reused_buffers
from kernels.timing import l2_bytes, rotation_count, time_kernel

TOKENS_FWD = 16 * 2**16
TOKENS_BWD = 4 * 2**16
HEADS = 16
STD_BYTES_CAP = 12e9



# ---------------------------------------------------------------------------
# sections

FA2_CFG = {64: (64, 64, 128), 128: (64, 32, 128)}
FA1_CFG = {64: (64, 64, 128), 128: (64, 32, 128)}


def run_fa2(ns, ds, dtypes, causals, rng, budget, tuning=False, window=None, cfgs=None):
    out = []
    for d in ds:
        for n in ns:
            B = max(1, TOKENS_FWD // (HEADS * n))
            for dt in dtypes:
                for causal in causals:
                    for br, bc, nt in (cfgs[d] if cfgs else [FA2_CFG[d]]):
                        q, k, v = (rand((B, HEADS, n, d), dt) for _ in range(3))
                        kw = dict(causal=causal, block_r=br, block_c=bc, window=window, num_threads=nt)
                        with poisoned_outputs():
                            o, lse = flash2.flash_attention(q, k, v, **kw)
                        chk = check_forward(o, lse, q, k, v, causal, window, rng)
                        with reused_buffers():
                            t = time_kernel(lambda: flash2.flash_attention(q, k, v, **kw), budget_s=budget)
                        cfg = flash2.FA2Tiles(br, bc, d, nt)
                        r, _ = regs(flash2.build_kernel(cfg, causal), "fa2", cfg.smem_bytes())
                        out.append(record(
                            section="fa2_tuning" if tuning else ("window" if window else "fa2"),
                            kernel="flash2", batch=B, heads=HEADS, kv_heads=HEADS, N=n, d=d, causal=causal,
                            window=window, dtype=np.dtype(dt).name, block_r=br, block_c=bc, num_threads=nt,
                            grid=[-(-n // br), B * HEADS], time_s=t.median_s, samples=len(t.samples_s),
                            flops=fwd_flops(B * HEADS, n, d, causal, window),
                            hbm_bytes_min=fwd_bytes(B, HEADS, HEADS, n, d, np.dtype(dt).itemsize),
                            regs_per_thread=r, smem_bytes_per_block=cfg.smem_bytes(), **chk))
                        del q, k, v, o, lse
    return out


def run_fa1(ns, ds, causals, rng, budget):
    out = []
    for d in ds:
        for n in ns:
            B = max(1, TOKENS_FWD // (HEADS * n))
            for causal in causals:
                br, bc, nt = FA1_CFG[d]
                q, k, v = (rand((B, HEADS, n, d), np.float32) for _ in range(3))
                kw = dict(causal=causal, block_r=br, block_c=bc, num_threads=nt)
                with poisoned_outputs():
                    o, lse = flash1.flash_attention_v1(q, k, v, **kw)
                chk = check_forward(o, lse, q, k, v, causal, None, rng)
                with reused_buffers():
                    t = time_kernel(lambda: flash1.flash_attention_v1(q, k, v, **kw), budget_s=budget, warmup=1)
                cfg = flash1.FA1Tiles(br, bc, d, nt)
                r, _ = regs(flash1.build_kernel(cfg, causal), "fa1", cfg.smem_bytes())
                out.append(record(
                    section="fa1", kernel="flash1", batch=B, heads=HEADS, kv_heads=HEADS, N=n, d=d,
                    causal=causal, dtype="float32", block_r=br, block_c=bc, num_threads=nt, grid=[B * HEADS],
                    time_s=t.median_s, samples=len(t.samples_s), flops=fwd_flops(B * HEADS, n, d, causal),
                    hbm_bytes_min=fwd_bytes(B, HEADS, HEADS, n, d, 4), regs_per_thread=r,
                    smem_bytes_per_block=cfg.smem_bytes(), **chk))
                del q, k, v, o, lse
    return out


def run_standard(ns, ds, dtypes, causals, rng, budget):
    out = []
    for d in ds:
        for n in ns:
            bh = max(1, min(TOKENS_FWD // n, int(STD_BYTES_CAP // (8 * n * n))))
            H = min(HEADS, bh)
            B = max(1, bh // H)
            for dt in dtypes:
                for causal in causals:
                    q, k, v = (rand((B, H, n, d), dt) for _ in range(3))
                    with poisoned_outputs():
                        o = standard.standard_attention(q, k, v, causal=causal)
                    lse = cuda.to_device(np.zeros((B, H, n), np.float32))  # standard returns no lse
                    chk = check_forward(o, lse, q, k, v, causal, None, rng)
                    chk.pop("rel_err_lse")
                    stage_s = {}
                    with reused_buffers():
                        t = time_kernel(lambda: standard.standard_attention(q, k, v, causal=causal),
                                        budget_s=budget)
                        for stage in ("qk", "softmax", "pv"):
                            stage_s[stage] = time_kernel(lambda: standard.standard_attention(
                                q, k, v, causal=causal, stages=(stage,)), budget_s=budget / 3).median_s
                    qk, pv = standard.default_matmul_configs(d)
                    sc = standard.default_softmax_config(n)
                    r1, _ = regs(standard.build_matmul(qk, True, True, causal), "std_qk", qk.smem_bytes())
                    r2, _ = regs(standard.build_softmax(sc, -(-n // sc.threads_per_row)), "std_softmax",
                                 sc.smem_bytes())
                    r3, _ = regs(standard.build_matmul(pv, False, False, False), "std_pv", pv.smem_bytes())
                    item = np.dtype(dt).itemsize
                    out.append(record(
                        section="standard", kernel="standard", batch=B, heads=H, kv_heads=H, N=n, d=d,
                        causal=causal, dtype=np.dtype(dt).name, time_s=t.median_s, samples=len(t.samples_s),
                        flops=fwd_flops(B * H, n, d, causal),
                        hbm_bytes_min=4 * B * H * n * d * item + 16 * B * H * n * n,
                        regs_per_thread=max(r1 or 0, r2 or 0, r3 or 0), stage_time_s=stage_s,
                        regs_qk_softmax_pv=[r1, r2, r3],
                        smem_bytes_per_block=max(qk.smem_bytes(), pv.smem_bytes(), sc.smem_bytes()), **chk))
                    del q, k, v, o
    return out


def run_backward(ns, ds, dtypes, causals, rng, budget):
    out = []
    for d in ds:
        for n in ns:
            B = max(1, TOKENS_BWD // (HEADS * n))
            for dt in dtypes:
                for causal in causals:
                    q, k, v, do = (rand((B, HEADS, n, d), dt) for _ in range(4))
                    o, lse = flash2.flash_attention(q, k, v, causal=causal, **_fa2_kw(d))
                    with poisoned_outputs():
                        dq, dk, dv = flash_backward.flash_attention_backward(q, k, v, o, lse, do, causal=causal)
                    host = [x[0, 0].copy_to_host() for x in (q, k, v, do)]
                    written = all(bool(np.isfinite(x.copy_to_host()).all()) for x in (dq, dk, dv))
                    if n <= 2048:
                        ref = reference.attention_backward(*(x[None, None] for x in host), causal=causal)
                        errs = [reference.rel_error(g[0, 0].copy_to_host(), r[0, 0]) for g, r in zip((dq, dk, dv), ref)]
                        note = "head (0,0), dq dk dv, all rows"
                    else:
                        rows = check_rows(n, rng)
                        ref = ref_dq_rows(*host, rows, causal, 1 / math.sqrt(d))
                        errs = [reference.rel_error(dq[0, 0].copy_to_host()[rows], ref)]
                        note = f"head (0,0), dq on {len(rows)} rows"
                    with reused_buffers():
                        t = time_kernel(lambda: flash_backward.flash_attention_backward(
                            q, k, v, o, lse, do, causal=causal), budget_s=budget, warmup=1)
                    br, bc, nt = flash_backward.default_config(d)
                    cfg = flash_backward.BackwardTiles(br, bc, d, nt)
                    r, _ = regs(flash_backward.build_kernel(cfg, causal), "fa2_bwd", cfg.smem_bytes())
                    item = np.dtype(dt).itemsize
                    out.append(record(
                        section="backward", kernel="flash2_bwd", batch=B, heads=HEADS, kv_heads=HEADS, N=n,
                        d=d, causal=causal, dtype=np.dtype(dt).name, block_r=br, block_c=bc, num_threads=nt,
                        time_s=t.median_s, samples=len(t.samples_s),
                        flops=float(attention_core_flops(B * HEADS, n, d, causal=causal, pass_="bwd")),
                        hbm_bytes_min=B * HEADS * (8 * n * d * item + 4 * n),
                        regs_per_thread=r, smem_bytes_per_block=cfg.smem_bytes(), rel_err=max(errs),
                        rel_err_parts=errs, fully_written=written, check=note))
                    del q, k, v, do, o, lse, dq, dk, dv
    return out


def _fa2_kw(d):
    br, bc, nt = FA2_CFG[d]
    return dict(block_r=br, block_c=bc, num_threads=nt)


def run_decode(Ls, batches, rng, budget, H=32, Hkv=8, d=128, dt=np.float16):
    out = []
    l2 = l2_bytes()
    for B in batches:
        for L in Ls:
            item = np.dtype(dt).itemsize
            set_bytes = 2 * B * Hkv * L * d * item
            sets = [tuple(rand(s, dt) for s in ((B, H, 1, d), (B, Hkv, L, d), (B, Hkv, L, d)))
                    for _ in range(rotation_count(set_bytes, l2, cap=64))]
            q, k, v = sets[0]
            splits_default = decode.default_num_splits(B * H, L, decode.default_threads(d))
            for name, splits in (("decode", 1), ("flash_decoding", splits_default)):
                with poisoned_outputs():
                    o, lse = decode_step.flash_decoding(q, k, v, num_splits=splits)
                ro, rl = reference.decode(q.copy_to_host(), k.copy_to_host(), v.copy_to_host())
                o_h = o.copy_to_host()
                err = reference.rel_error(o_h, ro)
                err_l = reference.rel_error(lse.copy_to_host(), rl)
                with reused_buffers():
                    t = time_kernel(lambda a, b, c: decode_step.flash_decoding(a, b, c, num_splits=splits),
                                    input_sets=sets, budget_s=budget)
                cfg = decode.DecodeTiles(d, decode.default_threads(d), np.dtype(dt).itemsize)
                r, _ = regs(decode.build_kernel(cfg, splits == 1), name, cfg.smem_bytes())
                out.append(record(
                    section="decode", kernel=name, batch=B, heads=H, kv_heads=Hkv, L=L, d=d, causal=False,
                    dtype=np.dtype(dt).name, num_splits=splits, grid=[splits, B * H], time_s=t.median_s,
                    samples=len(t.samples_s), inner=t.inner, input_sets=len(sets),
                    flops=float(attention_core_flops(B * H, 1, d, kv_len=L, causal=False)), hbm_bytes_min=set_bytes + 2 * B * H * d * item + 4 * B * H,
                    regs_per_thread=r, smem_bytes_per_block=cfg.smem_bytes(), rel_err=err, rel_err_lse=err_l,
                    fully_written=bool(np.isfinite(o_h).all()), check="all heads"))
            del sets, q, k, v
    return out


def inspect(out_dir: str) -> dict:
    """PTX and SASS of the FA2 d=64 fp32 kernel, and resource reports of all compiled kernels."""
    os.makedirs(out_dir, exist_ok=True)
    info = {}
    for d, dtname in ((64, "float32"), (128, "float32")):
        br, bc, nt = FA2_CFG[d]
        cfg = flash2.FA2Tiles(br, bc, d, nt)
        disp = flash2.build_kernel(cfg, False)
        for sig, kern in disp.overloads.items():
            if str(sig[0].dtype) != dtname:
                continue
            ptx = kern.inspect_asm(cuda.get_current_device().compute_capability)
            open(os.path.join(out_dir, f"fa2_d{d}.ptx"), "w").write(ptx)
            entry = dict(regs=kern.regs_per_thread, local_bytes=kern.local_mem_per_thread,
                         ptx_ld_shared_v4=ptx.count("ld.shared.v4"), ptx_local=ptx.count(".local"))
            try:
                sass = kern.inspect_sass()
                open(os.path.join(out_dir, f"fa2_d{d}.sass"), "w").write(sass)
                entry.update(sass_LDL=sass.count("LDL"), sass_STL=sass.count("STL"),
                             sass_LDS128=sass.count("LDS.128"), sass_FFMA=sass.count("FFMA"))
            except Exception as err:  # noqa: BLE001
                entry["sass_error"] = repr(err)[:300]
            info[f"fa2_d{d}"] = entry
    return info


def _tiny_run(result, save, rng) -> int:
    """Every section once at N=40, d=32 with 16-thread tiles (simulator only)."""
    standard.default_matmul_configs = lambda d: (standard.MatmulConfig(16, 16, 8, 16),
                                                 standard.MatmulConfig(16, d, 8, 16))
    standard.default_softmax_config = lambda n: standard.SoftmaxConfig(4, 4)
    flash_backward.default_config = lambda d: (16, 16, 16)
    decode.default_threads = lambda d: d
    recs = []
    recs += run_fa2([40], [32], [np.float32], [True], rng, 0.0)
    recs += run_fa2([40], [32], [np.float16], [True], rng, 0.0, window=7)
    recs += run_fa1([40], [32], [True], rng, 0.0)
    recs += run_standard([40], [32], [np.float32], [True], rng, 0.0)
    recs += run_backward([40], [32], [np.float32], [True], rng, 0.0)
    recs += run_decode([77], [1], rng, 0.0, H=4, Hkv=2, d=32)
    result["records"] = recs
    save()
    bad = [r for r in recs if not r.get("fully_written") or not r.get("rel_err", 1) < 3e-3]
    print(f"{len(recs)} records, {len(bad)} failing")
    return 1 if bad else 0


def _make_tiny():
    """Shrink every size and tile so the script runs in numba's simulator."""
    global TOKENS_FWD, TOKENS_BWD, HEADS, FA2_CFG, FA1_CFG, _TINY
    TOKENS_FWD, TOKENS_BWD, HEADS, _TINY = 160, 80, 2, True
    FA2_CFG = {32: (16, 16, 16)}
    FA1_CFG = {32: (16, 16, 16)}


_TINY = False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="a short subset (minutes less)")
    ap.add_argument("--inspect", default=None, help="folder for PTX/SASS of the FA2 kernel")
    ap.add_argument("--sections", default="tuning,fa2,standard,fa1,backward,decode,window")
    ap.add_argument("--tiny", action="store_true", help="simulator smoke test of this script")
    args = ap.parse_args(argv)
    if args.tiny:
        _make_tiny()
    sections = args.sections.split(",")
    rng = np.random.default_rng()
    result = dict(environment=environment(" ".join([os.path.basename(sys.executable), "-m", "costmodel.validation.kernel_sweep"]
                                                   + (argv if argv is not None else sys.argv[1:]))),
                  records=[], section_seconds={})

    def save():
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=str)

    quick = args.quick
    ns = [1024, 4096] if quick else [512, 1024, 2048, 4096, 8192, 16384]
    budget = 0.15 if quick else 0.3
    if _TINY:
        return _tiny_run(result, save, rng)
    plan = {
        "tuning": lambda: run_fa2([4096], [64, 128], [np.float32], [False], rng, budget, tuning=True,
                                  cfgs={64: [(64, 64, 128), (64, 32, 128), (128, 64, 256), (32, 64, 64)],
                                        128: [(64, 32, 128), (64, 64, 128), (32, 32, 64), (32, 64, 128)]}),
        "fa2": lambda: run_fa2(ns, [64, 128], [np.float32, np.float16], [False, True], rng, budget),
        "standard": lambda: run_standard(ns, [64, 128], [np.float32], [False, True], rng, budget),
        "fa1": lambda: run_fa1(ns if not quick else [1024], [64, 128], [False, True], rng, budget),
        "backward": lambda: run_backward(ns, [64, 128], [np.float32], [False, True], rng, budget),
        "decode": lambda: run_decode([512, 2048, 8192, 32768, 65536] if not quick else [2048, 32768],
                                     [1, 8], rng, budget),
        "window": lambda: sum((run_fa2([4096, 16384] if not quick else [4096], [64], [np.float32, np.float16],
                                       [True], rng, budget, window=w) for w in (256, 1024, 4096)), []),
    }
    for name in sections:
        t0 = time.time()
        print(f"--- {name}", flush=True)
        try:
            result["records"] += plan[name]()
        except Exception as err:  # noqa: BLE001 (keep the other sections' results)
            import traceback
            traceback.print_exc()
            result.setdefault("errors", []).append(f"{name}: {err!r}")
        result["section_seconds"][name] = round(time.time() - t0, 1)
        save()
    if args.inspect and not SIMULATOR:
        try:
            result["inspect"] = inspect(args.inspect)
        except Exception as err:  # noqa: BLE001
            result["inspect"] = {"error": repr(err)}
        save()
    bad = [r for r in result["records"] if not r.get("fully_written", True)
           or not (r.get("rel_err", 0) < (3e-3 if r["dtype"] == "float16" else 1e-4))]
    print(f"{len(result['records'])} records, {len(bad)} failing checks; sections {result['section_seconds']}")
    return 1 if bad or result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
