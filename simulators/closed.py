"""Closed forms of the flash kernels' counts for banded masks (dense, causal, sliding window).

Each function returns the moment vector of counting.py (tile sums, staged bytes, global
and DRAM bytes) for one kernel, from the tile geometry of mask.py: per query tile i
the non-empty key tiles [lo_i, hi_i] (n_i of them) and full ones, per key tile the
non-empty query tiles. Sums run over tile rows (a numpy expression per row, then a
sum); DRAM bytes come from l2.wave_traffic's interval arithmetic over waves, with the
step at which each tile is touched (l2.py rule 3) given per access: the t-th non-empty
tile of a block's loop at step t, loads before the loop at 0, stores after it at the last
iteration's step; FA1's steps are its (j, i) visits, numbered by column offsets. Nothing
here walks a block's loop; walk.py does, and the tests hold the two equal.

Schedules (the HBM traffic each function counts; r_i, c_j are tile rows, e/s/a element
bytes of HBM inputs / shared memory / dQ accumulator, stats are float32):

* ``fa2_fwd`` (kernels/flash2.py, Dao 2023 Alg. 1): grid (T_r, B H); block (i, bh)
  loads Q_i once (if row tile i sees any key), K_j and V_j for j in [lo_i, hi_i],
  writes O_i and lse_i once.
* ``fa1_fwd`` (kernels/flash1.py, Dao et al. 2022 Alg. 1): grid (B H,); one block per
  (batch, head) runs j outer, i inner over non-empty tiles. ``io="kernel"``: every
  visit loads Q_i; visits after the row's first also load the fp32 workspace O_i, l_i,
  m_i; visits before its last store them, the last stores O_i (input dtype) and lse_i.
  ``io="paper"``: Algorithm 1 verbatim: O, l, m initialised in HBM (step 2), every
  visit loads Q_i, O_i, l_i, m_i and stores O_i, l_i, m_i (O in the input dtype).
* ``fa1_bwd`` (Dao et al. 2022 Alg. 4): grid (B H,); dQ initialised in HBM; j outer:
  K_j, V_j once; i inner: Q_i, O_i, dO_i, dQ_i, l_i, m_i loaded, dQ_i stored; dK_j, dV_j
  stored once per j.
* ``fa2_bwd`` (kernels/flash_backward.py, Dao 2023 Alg. 2): grid (T_c, B H); block
  (j, bh) loads K_j, V_j once, for each non-empty i loads Q_i, dO_i, lse_i, D_i and
  atomically adds dQ_i (fp32, a read and a write at L2); stores dK_j, dV_j once (per
  query head: with GQA a reduction kernel sums them per kv head).
* ``decode`` (kernels/decode.py, Flash-Decoding): grid (S, B H); block (s, bh) loads q
  once and the K/V tiles of split s (ceil(T_c / S) tiles a split), reads the block
  table entries of the pages those tiles lie on (int32 each, paged cache only), and
  writes O, lse (S = 1) or an fp32 partial O_s and lse_s.

``tiles_fastest=False`` launches the same blocks with blockIdx.x = batch*head instead
(grid (B H, T_r)): the blocks of a wave then span many heads, few tiles each.
"""

from __future__ import annotations

import numpy as np

from simulators import counting as F
from simulators.l2 import Access, at_step, boxes, dram_totals, max_live, wave_dram, wave_pairs, wave_traffic
from simulators.mask import col_ranges, row_ranges, tile_sizes
from simulators.problem import STAT_BYTES, FlashProblem, prefix, range_sum

def _geometry(p: FlashProblem) -> dict[str, np.ndarray]:
    rr = _rows(p)
    r, c = tile_sizes(p.n_q, p.br), tile_sizes(p.n_k, p.bc)
    cpre = prefix(c)
    n = np.maximum(rr["hi"] - rr["lo"] + 1, 0)
    csum = range_sum(cpre, rr["lo"], rr["hi"])
    fsum = range_sum(cpre, rr["flo"], rr["fhi"])
    cr = col_ranges(p.band, p.br, p.bc)
    if not p.skip:
        cr = {"lo": np.zeros(p.t_c, dtype=np.int64), "hi": np.full(p.t_c, p.t_r - 1, dtype=np.int64)}
    return dict(r=r, c=c, n=n, csum=csum, fsum=fsum, lo=rr["lo"], hi=rr["hi"],
                clo=cr["lo"], chi=cr["hi"], col_active=cr["hi"] >= cr["lo"])


def _rows(p: FlashProblem) -> dict[str, np.ndarray]:
    """row_ranges of the band; without skipping, every tile of every row is visited."""
    rr = row_ranges(p.band, p.br, p.bc)
    if not p.skip:
        rr["lo"], rr["hi"] = np.zeros(p.t_r, dtype=np.int64), np.full(p.t_r, p.t_c - 1, dtype=np.int64)
    return rr


def _tile_moments(p: FlashProblem, g: dict[str, np.ndarray], rows: bool, cols: bool) -> np.ndarray:
    """Moments of the non-empty tiles of every head (every schedule visits each once); ``rows``:
    the kernel finishes row tiles (writes O_i, lse_i), ``cols``: it loads K_j, V_j once per block."""
    m = F.moments()
    bh, r, n = p.bh, g["r"], g["n"]
    active = n > 0
    m[F.TILES] = bh * n.sum()
    m[F.RC] = bh * (r * g["csum"]).sum()
    m[F.RC_PARTIAL] = bh * (r * (g["csum"] - g["fsum"])).sum()
    m[F.R] = bh * (r * n).sum()
    m[F.C] = bh * g["csum"].sum()
    if rows:
        m[F.ROWS] = bh * active.sum()
        m[F.ROWS_R] = bh * r[active].sum()
    if cols:
        m[F.COLS] = bh * g["col_active"].sum()
        m[F.COLS_C] = bh * g["c"][g["col_active"]].sum()
    return m


def _own(t: int, active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Block x touches tile x (where active)."""
    x = np.arange(t, dtype=np.int64)
    if active is None:
        return x, x
    return np.where(active, x, 0), np.where(active, x, -1)


def _finish(m: np.ndarray, accesses: list[Access], t_x: int, n_y: int, slots: int, capacity: int,
            x_fastest: bool) -> np.ndarray:
    waves = wave_traffic(accesses, t_x, n_y, slots, x_fastest, capacity)
    pairs = wave_pairs(accesses, t_x, n_y, slots, x_fastest)
    m[F.G_READ], m[F.G_WRITE], m[F.H_READ], m[F.H_WRITE] = dram_totals(waves, capacity, pairs)
    return m


def fa2_fwd(p: FlashProblem, slots: int, capacity: int, tiles_fastest: bool = True) -> np.ndarray:
    g = _geometry(p)
    m = _tile_moments(p, g, True, False)
    m[F.STAGED] = p.s * p.d * (m[F.ROWS_R] + 2 * m[F.C])
    r, c = g["r"], g["c"]
    q_lo, q_hi = _own(p.t_r, g["n"] > 0)
    all_lo, all_hi = _own(p.t_r)
    done = at_step(np.maximum(g["n"] - 1, 0))  # after the loop: the last iteration's step
    accesses = [
        Access("read", 1, q_lo, q_hi, prefix(r * p.d * p.e)),  # Q_i, step 0
        Access("read", p.group, g["lo"], g["hi"], prefix(c * p.d * p.e)),  # K_j at step j - lo_i
        Access("read", p.group, g["lo"], g["hi"], prefix(c * p.d * p.e)),  # V_j
        Access("write", 1, all_lo, all_hi, prefix(r * p.d * p.e), done),  # O_i
        Access("write", 1, all_lo, all_hi, prefix(r * STAT_BYTES), done),  # lse_i
    ]
    return _finish(m, accesses, p.t_r, p.bh, slots, capacity, tiles_fastest)


def fa2_bwd(p: FlashProblem, slots: int, capacity: int, tiles_fastest: bool = True) -> np.ndarray:
    g = _geometry(p)
    m = _tile_moments(p, g, False, True)
    m[F.STAGED] = p.s * (2 * p.d * m[F.COLS_C] + (2 * p.d + 2) * m[F.R])
    r, c = g["r"], g["c"]
    kv_lo, kv_hi = _own(p.t_c, g["col_active"])
    all_lo, all_hi = _own(p.t_c)
    q_rows = prefix(r * p.d * p.e)
    done = at_step(np.maximum(g["chi"] - g["clo"], 0))  # dK_j, dV_j after the loop over i
    accesses = [
        Access("read", p.group, kv_lo, kv_hi, prefix(c * p.d * p.e)),  # K_j, step 0
        Access("read", p.group, kv_lo, kv_hi, prefix(c * p.d * p.e)),  # V_j
        Access("read", 1, g["clo"], g["chi"], q_rows),  # Q_i at step i - clo_j
        Access("read", 1, g["clo"], g["chi"], q_rows),  # dO_i
        Access("read", 1, g["clo"], g["chi"], prefix(r * STAT_BYTES)),  # lse_i
        Access("read", 1, g["clo"], g["chi"], prefix(r * STAT_BYTES)),  # D_i
        Access("atomic", 1, g["clo"], g["chi"], prefix(r * p.d * p.a)),  # dQ_i += dS K_j
        Access("write", 1, all_lo, all_hi, prefix(c * p.d * p.e), done),  # dK_j
        Access("write", 1, all_lo, all_hi, prefix(c * p.d * p.e), done),  # dV_j
    ]
    return _finish(m, accesses, p.t_c, p.bh, slots, capacity, tiles_fastest)


def _visit_steps(p: FlashProblem, g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Steps of FA1's loop (j outer, i inner over non-empty tiles; l2.py rule 3): visit (j, i)
    is step start[j] + i - clo_j; row i's first and last visits; column j's first and last."""
    ncol = np.where(g["col_active"], g["chi"] - g["clo"] + 1, 0)
    start = np.concatenate([[0], np.cumsum(ncol)])  # visits before column j
    rows = np.arange(p.t_r, dtype=np.int64)
    active = g["n"] > 0
    lo, hi = np.where(active, g["lo"], 0), np.where(active, g["hi"], 0)
    return {"first": np.where(active, start[lo] + rows - g["clo"][lo], 0),
            "last": np.where(active, start[hi] + rows - g["clo"][hi], 0),
            "col_first": start[:-1], "col_last": np.maximum(start[1:] - 1, 0)}


def _per_head_waves(p: FlashProblem, slots: int, capacity: int, req_r: int, dist_r: int, req_w: int,
                    dist_w: int, touched: int, kv_bytes: int, own: tuple, kv: tuple, m: np.ndarray) -> np.ndarray:
    """Waves of a (B H,) grid whose blocks share only K/V (per kv head): FA1 forward and backward.

    Per block: ``req_*`` / ``dist_*`` / ``touched`` bytes of its own (query-head) tensors, and
    ``kv_bytes`` of K and V, each non-empty tile read once (shared by the blocks of a group).
    ``own`` and ``kv`` are (first step, last step, bytes) of a block's own tiles and of its K/V
    tiles: every block of a band mask runs the same steps, so a wave of n blocks over ``groups``
    kv heads has n x own + groups x kv bytes live at each step.
    """
    g_r = g_w = h_r = h_w = 0
    prev_touched = 0
    for start in range(0, p.bh, slots):
        end = min(start + slots, p.bh)
        n = end - start
        groups = (end - 1) // p.group - start // p.group + 1
        # l2.py rule 5: the group straddling the wave boundary shares its K/V with the previous wave
        shared = kv_bytes if start > 0 and start // p.group == (start - 1) // p.group else 0
        wave_touched = n * touched + groups * kv_bytes
        rr, rw = n * (req_r + kv_bytes), n * req_w
        dr, dw = n * dist_r + groups * kv_bytes, n * dist_w
        live = n * touched + groups * kv_bytes
        if live > capacity:
            pos, val = boxes(np.concatenate([own[0], kv[0]]), np.concatenate([own[1], kv[1]]),
                             np.concatenate([n * own[2], groups * kv[2]]))
            live = int(max_live(np.zeros(len(pos), np.int64), pos, val, 1)[0])
        hr, hw = wave_dram(np.int64(rr), np.int64(dr), np.int64(rw), np.int64(dw), np.int64(live),
                           np.int64(capacity))
        if start > 0 and live <= capacity and prev_touched + wave_touched - shared <= capacity:
            hr = dr - shared
        prev_touched = wave_touched
        g_r, g_w, h_r, h_w = g_r + rr, g_w + rw, h_r + int(hr), h_w + int(hw)
    m[F.G_READ], m[F.G_WRITE], m[F.H_READ], m[F.H_WRITE] = g_r, g_w, h_r, h_w
    return m


def _tiles(*groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first step, last step, bytes) of a block's tiles, from ``groups`` of (which, first, last,
    bytes) over the tiles of one tensor (scalars broadcast; ``which`` selects those touched)."""
    cols = ([], [], [])
    for which, first, last, nbytes in groups:
        which, first, last, nbytes = np.broadcast_arrays(which, first, last, nbytes)
        for col, v in zip(cols, (first, last, nbytes)):
            col.append(v[which].astype(np.int64))
    return tuple(np.concatenate(col) for col in cols)


def fa1_fwd(p: FlashProblem, slots: int, capacity: int, io: str = "kernel") -> np.ndarray:
    g = _geometry(p)
    m = _tile_moments(p, g, True, True)
    r, n, d = g["r"], g["n"], p.d
    active = n > 0
    again = np.maximum(n - 1, 0)  # visits after a row's first (kernel: workspace reads)
    kv_req = 2 * p.d * p.e * g["c"][g["col_active"]].sum()
    v = _visit_steps(p, g)
    kv = _tiles((g["col_active"], v["col_first"], v["col_first"], 2 * g["c"] * d * p.e))  # K_j, V_j
    if io == "kernel":
        m[F.STAGED] = p.s * d * (m[F.R] + 2 * m[F.COLS_C])
        ws_row = r * (d * 4 + 2 * STAT_BYTES)  # O (fp32), l, m workspace of a row tile
        req_r = (n * r).sum() * d * p.e + (again * ws_row).sum()
        req_w = (r[active] * (d * p.e + STAT_BYTES)).sum() + (again * ws_row).sum()
        dist_r = r[active].sum() * d * p.e + ws_row[n > 1].sum()
        dist_w = (r[active] * (d * p.e + STAT_BYTES)).sum() + ws_row[n > 1].sum()
        touched = dist_w + r[active].sum() * d * p.e
        own = _tiles((active, v["first"], v["last"], r * d * p.e),  # Q_i, every visit
                     (n > 1, v["first"], v["last"], ws_row),  # workspace, written first, read last
                     (active, v["last"], v["last"], r * (d * p.e + STAT_BYTES)))  # O_i, lse_i
    elif io == "paper":
        m[F.STAGED] = p.s * d * (2 * m[F.R] + 2 * m[F.COLS_C])
        row = r * (d * p.e + 2 * STAT_BYTES)  # O, l, m of a row tile
        req_r = (n * r).sum() * d * p.e + (n * row).sum()
        req_w = row.sum() + (n * row).sum()
        dist_r = r[active].sum() * d * p.e + row[active].sum()
        dist_w = row.sum()
        touched = r[active].sum() * d * p.e + row.sum()
        own = _tiles((active, v["first"], v["last"], r * d * p.e),  # Q_i
                     (True, 0, v["last"], row))  # O, l, m: initialised at step 0 (step 2 of Alg. 1)
    else:
        raise ValueError(f"fa1_io: {io!r} is not allowed; 'kernel' or 'paper' is")
    return _per_head_waves(p, slots, capacity, int(req_r), int(dist_r), int(req_w), int(dist_w), int(touched),
                           int(kv_req), own, kv, m)


def fa1_bwd(p: FlashProblem, slots: int, capacity: int) -> np.ndarray:
    g = _geometry(p)
    m = _tile_moments(p, g, False, True)
    m[F.STAGED] = p.s * (2 * p.d * m[F.COLS_C] + (4 * p.d + 2) * m[F.R])
    r, n, d = g["r"], g["n"], p.d
    active = n > 0
    in_row = r * (3 * d * p.e + d * p.a + 2 * STAT_BYTES)  # Q, O, dO, dQ, l, m of a row tile
    dq_row = r * d * p.a
    dkv = 2 * d * p.e * g["c"].sum()  # dK, dV of every key tile
    kv_req = 2 * d * p.e * g["c"][g["col_active"]].sum()
    req_r = (n * in_row).sum()
    req_w = dq_row.sum() + (n * dq_row).sum() + dkv
    dist_r = in_row[active].sum()
    dist_w = dq_row.sum() + dkv
    touched = (in_row - dq_row)[active].sum() + dq_row.sum() + dkv
    v = _visit_steps(p, g)
    kv = _tiles((g["col_active"], v["col_first"], v["col_first"], 2 * g["c"] * d * p.e))  # K_j, V_j
    own = _tiles((active, v["first"], v["last"], in_row - dq_row),  # Q_i, O_i, dO_i, l_i, m_i
                 (True, 0, v["last"], dq_row),  # dQ_i: zeroed at step 0 (step 5 of Alg. 4)
                 (True, v["col_last"], v["col_last"], 2 * g["c"] * d * p.e))  # dK_j, dV_j after column j
    return _per_head_waves(p, slots, capacity, int(req_r), int(dist_r), int(req_w), int(dist_w), int(touched),
                           int(kv_req), own, kv, m)


def decode(p: FlashProblem, splits: int, page_size: int | None, slots: int, capacity: int,
           tiles_fastest: bool = True) -> np.ndarray:
    """Flash-Decoding's split kernel (splits = 1: one block per (batch, head) over the whole cache)."""
    if p.t_r != 1:
        raise ValueError(f"seq_len: decode handles one tile of query rows (B_r = N); got N={p.n_q} with B_r={p.br}")
    rr = _rows(p)
    c = tile_sizes(p.n_k, p.bc)
    cpre = prefix(c)
    r = p.n_q
    per_split = -(-p.t_c // splits)
    s = np.arange(splits, dtype=np.int64)
    a = np.maximum(s * per_split, rr["lo"][0])
    b = np.minimum(np.minimum((s + 1) * per_split, p.t_c) - 1, rr["hi"][0])
    fa = np.maximum(s * per_split, rr["flo"][0])
    fb = np.minimum(np.minimum((s + 1) * per_split, p.t_c) - 1, rr["fhi"][0])
    n = np.maximum(b - a + 1, 0)
    csum, fsum = range_sum(cpre, a, b), range_sum(cpre, fa, fb)
    busy = n > 0
    m = F.moments()
    m[F.TILES] = p.bh * n.sum()
    m[F.RC] = p.bh * r * csum.sum()
    m[F.RC_PARTIAL] = p.bh * r * (csum - fsum).sum()
    m[F.R] = p.bh * r * n.sum()
    m[F.C] = p.bh * csum.sum()
    m[F.ROWS] = p.bh * busy.sum()
    m[F.ROWS_R] = r * m[F.ROWS]
    m[F.STAGED] = p.s * p.d * (m[F.ROWS_R] + 2 * m[F.C])
    zero = np.zeros(splits, dtype=np.int64)
    done = at_step(np.maximum(n - 1, 0))
    accesses = [
        Access("read", 1, zero, np.where(busy, 0, -1), prefix([r * p.d * p.e])),  # q, step 0
        Access("read", p.group, a, b, prefix(c * p.d * p.e)),  # K_j at step j - a_s
        Access("read", p.group, a, b, prefix(c * p.d * p.e)),  # V_j
    ]
    if page_size is not None:  # block-table entries of the pages under the split's tiles
        n_pages = -(-p.n_k // page_size)
        first = (np.where(busy, a, 0) * p.bc) // page_size
        last = (np.where(busy, b * p.bc + c[np.where(busy, b, 0)] - 1, 0)) // page_size
        def page_step(acc, x, pg):  # read with the split's first tile that holds one of its tokens
            return np.maximum((pg * page_size) // p.bc - a[x], 0)

        accesses.append(Access("read", p.heads, np.where(busy, first, 0), np.where(busy, last, -1),
                               prefix(np.full(n_pages, 4)), page_step))
    if splits == 1:
        accesses += [Access("write", 1, zero, zero, prefix([r * p.d * p.e]), done),  # O
                     Access("write", 1, zero, zero, prefix([r * STAT_BYTES]), done)]  # lse
    else:
        own = np.arange(splits, dtype=np.int64)
        accesses += [Access("write", 1, own, own, prefix(np.full(splits, r * p.d * 4)), done),  # partial O_s
                     Access("write", 1, own, own, prefix(np.full(splits, r * STAT_BYTES)), done)]  # lse_s
    return _finish(m, accesses, splits, p.bh, slots, capacity, tiles_fastest)
