"""The eager-attention op grids (issue 11): GQA K/V expand, score / PV batched GEMMs, softmax rows.

Measured by ``costmodel.validation.attn_ops_run`` on the GPU, fitted by ``step_calibrate`` into the
``memory_ops:`` (families ``repeat_bf16`` / ``repeat_fp32``) and ``gemm:`` (``batched_write_Bps``)
sections. Every shape here is disjoint from the implementations' held-out grid
(``implementations/grids.heldout_shapes``): the batched GEMMs and softmaxes use B*H in {24, 96}, which
no held-out shape has (they have 16, 32, 64, 128, 256, 512), and held-out points of each grid
(``split: heldout``) differ again in N / g / d from its fit points.
"""

from __future__ import annotations

from itertools import product

# repeat_interleave(g, dim=1) of a (B, H_kv, L, d) tensor: expand + clone, [NCU] elementwise_kernel<128, 4>
# direct_copy (non-vectorized). Fit: g = 4, d = 128, K elements 2^14 .. 2^24 (even exponents);
# held out: g = 8, d = 64, odd exponents.
REPEAT_DTYPES = {"bf16": 2, "fp32": 4}


def repeat_grid() -> list[dict]:
    out = []
    for dt, e in REPEAT_DTYPES.items():
        for exp in range(14, 25):
            fit = exp % 2 == 0
            g, d, hkv = (4, 128, 8) if fit else (8, 64, 4)
            L = 2**exp // (hkv * d)
            n = hkv * L * d
            out.append({"split": "fit" if fit else "heldout", "family": f"repeat_{dt}", "dtype": dt, "B": 1,
                        "Hkv": hkv, "L": L, "d": d, "g": g, "bytes": (1 + g) * n * e})
    return out


BMM_BH = (24, 96)
BMM_N = (512, 1024, 2048, 4096, 8192)
BMM_D = (64, 128, 256)
MAX_SCORE_BYTES = 4 * 2**30


def bmm_grid() -> list[dict]:
    """Score GEMM S = Q K^T (per head M = N, N = L, K = d) and PV O = P V (M = N, N = d, K = L), bf16."""
    out = []
    pts = [("fit", bh, n, d) for bh, n, d in product(BMM_BH, BMM_N, BMM_D)]
    pts += [("heldout", 40, n, d) for n, d in product((1536, 3000, 6144), (64, 128))]
    for split, bh, n, d in pts:
        if bh * n * n * 2 > MAX_SCORE_BYTES:
            continue
        out.append({"split": split, "op": "qk", "batch": bh, "m": n, "n": n, "k": d})
        out.append({"split": split, "op": "pv", "batch": bh, "m": n, "n": d, "k": n})
    return out


def bmm_pitch_grid() -> list[dict]:
    """Score GEMMs S = Q K^T off the power-of-two lattice (rows of N x 2 B; added 2026-12-02): N = 1000 and
    7000 give rows 16 B past a 32-byte sector (as the held-out N = 3000, 6000 B rows, which ran 36-42 %
    slower than the aligned lattice predicts), N = 2000 and 4000 rows of whole sectors (simulators/matmul.py
    SECTOR_BYTES), the grid's aligned check. Fit points only: bmm_grid's
    N = 3000 rows (B*H 40) and the implementations' held-out eager calls check them."""
    out = []
    for bh, n, d in product(BMM_BH, (1000, 2000, 4000, 7000), (64, 128)):
        if bh * n * n * 2 <= MAX_SCORE_BYTES:
            out.append({"split": "fit", "op": "qk", "batch": bh, "m": n, "n": n, "k": d})
    return out


def softmax_grid() -> list[dict]:
    """torch.softmax(s, -1) over (B*H, N, L): a warp a row for L <= 1024, a block a row above."""
    out = []
    for dt, bh, n in product(("bf16", "fp32"), BMM_BH, BMM_N):
        if bh * n * n * REPEAT_DTYPES[dt] <= MAX_SCORE_BYTES:
            out.append({"split": "fit", "dtype": dt, "batch": bh, "rows": bh * n, "L": n})
    for dt, n in product(("bf16", "fp32"), (1536, 3000, 6144)):
        out.append({"split": "heldout", "dtype": dt, "batch": 40, "rows": 40 * n, "L": n})
    return out


# s.masked_fill_(mask, -inf) of the (B*H, N, N) scores with a broadcast (N, N) bool causal mask: [NCU]
# elementwise_kernel<128, 4> (non-vectorized: the mask's broadcast strides), the eager path's causal
# mask. Bytes as the catalog counts them (build._graph: s read + written, m one byte an element):
# B*H*N*N*(2e + 1). Fit: B*H = 24, N 128 .. 8192 (powers of two); held out: B*H = 40, N 1536 / 3000 / 6144.
MASKED_FILL_BH = 24


def masked_fill_grid() -> list[dict]:
    out = []
    pts = [("fit", MASKED_FILL_BH, n) for n in (128, 256, 512, 1024, 2048, 4096, 8192)]
    pts += [("heldout", 40, n) for n in (1536, 3000, 6144)]
    for dt, e in REPEAT_DTYPES.items():
        for split, bh, n in pts:
            if bh * n * n * e > MAX_SCORE_BYTES:
                continue
            out.append({"split": split, "family": f"masked_fill_{dt}", "dtype": dt, "batch": bh, "N": n,
                        "bytes": bh * n * n * (2 * e + 1)})
    return out


# more block-softmax rows (issue 11: the kernel torch picks by L): 49152 rows (B*H 24 x N 2048) at row
# lengths between and beyond the first grid's, none a held-out L
SOFTMAX_ROWS = 24 * 2048
SOFTMAX_L = (1024, 1280, 2304, 2560, 3072, 3584, 4608, 5120, 7168, 9216, 9472, 10240, 12800)


def softmax_rows_grid() -> list[dict]:
    return [{"split": "fit", "dtype": dt, "batch": 24, "rows": SOFTMAX_ROWS, "L": L}
            for dt, L in product(("bf16", "fp32"), SOFTMAX_L)]


def softmax_causal_grid() -> list[dict]:
    """The softmax grid's (B*H, N, N) rows again, each row's upper triangle -inf (the causal eager path's
    softmax input: masked_fill(triu(1), -inf)); timed beside the same rows unmasked. Held-out eager causal
    calls ran 7 % over the prediction (2026-12-02), their block softmax 15 % (Nsight Compute, B4 H16 N3000)."""
    return [{**row, "masked": "causal"} for row in softmax_grid()]


def softmax_fill_value_grid() -> list[dict]:
    """Rows of both softmax kernels and dtypes, and the sizes whose out-of-place masked_fill ran slow
    (attn_ops_h200_4.json: B*H 40 N 3000, B*H 24 N 8192) beside ones that did not (B*H 24 N 4096)."""
    pts = [("bf16", 24, 1024), ("bf16", 24, 4096), ("bf16", 24, 8192), ("bf16", 40, 3000), ("fp32", 24, 2048),
           ("fp32", 40, 3000)]
    return [{"split": "probe", "dtype": dt, "batch": bh, "L": n} for dt, bh, n in pts]


__all__ = ["bmm_grid", "bmm_pitch_grid", "masked_fill_grid", "repeat_grid", "softmax_causal_grid",
           "softmax_fill_value_grid", "softmax_grid", "softmax_rows_grid"]
