"""Occupancy, waves, and the L2 model that turns global-memory requests into DRAM bytes.

The model (one rule, used by both simulator paths):

1. **Slots.** A block needs its shared-memory footprint and ``threads x regs x 4`` bytes
   of registers; blocks/SM = min(smem/SM // footprint, register file // that, an
   optional cap). Slots = SMs x blocks/SM.
2. **Waves.** Blocks start in launch order (blockIdx.x fastest, then y) and run in
   waves of ``slots`` consecutive blocks: wave w = blocks [w S, (w+1) S). The
   hardware's dynamic scheduling is approximated by these lock-step waves. Which
   index is blockIdx.x (the tile, as our kernels launch, or batch*head) is a
   parameter: it decides which blocks share a wave, hence what L2 can reuse.
3. **Tiles and steps.** Every load, store or atomic names a tile (tensor, owner, index):
   the K tile j of a kv head is the same tile for every query head of its group and
   every query tile of the grid. It happens at a *step*: the blocks of a wave start
   together and go through their loops at one pace, so step t is every block's t-th
   loop iteration (the t-th non-empty tile it visits; FA1: its t-th (j, i) visit). A
   load before the loop belongs to step 0, a store after it to the last iteration's step.
4. **Within a wave.** R: bytes the wave's blocks request; D: bytes of the distinct tiles
   they request (per direction: reads, writes). A tile is *live* from the first to the
   last step at which any block of the wave touches it; the wave's footprint F is the
   largest number of bytes live at one step: the tiles touched at that step plus those
   touched before it and again after it. With C the usable L2 (l2_bytes x l2_fraction):

       F <= C:  DRAM = D    every distinct tile crosses DRAM once
       F >  C:  DRAM = R    no re-use survives

   Why F. The four query heads of a GQA group read K_j at the same step, so K_j is live
   one step, however large the whole cache; a Q_i that FA2 holds in shared memory is
   read once and live one step; FA1's Q_i and running O_i, re-read at every j, are live
   across the whole loop. Under LRU a re-touch hits when the bytes touched since the
   tile's last touch fit in C; in the loops modelled every tile touched in between is
   itself live then (same-step sharing in FA2 and decode, a block's whole row set in
   FA1), so F <= C keeps every re-use. Why R. Lock step replays one order of the live
   tiles at every step; LRU over a cycle longer than the cache evicts each tile just
   before its turn (the tile needed next is always the least recently used), so every
   re-use misses. Stores to one tile merge in the write-back L2 under the same rule.
5. **Reuse across consecutive waves.** A tile that wave w - 1 read and wave w reads again hits
   if everything the two waves touch fits C (LRU over the pair: nothing they touch is evicted);
   wave w then reads from DRAM only the distinct tiles the pair adds to wave w - 1's,
   D(w - 1 u w) - D(w - 1). This is the regime of long sequences whose K/V per head fit the L2
   while the query tiles of one head span several waves (FA2-style grids, query tiles fastest:
   cuDNN's persistent forward at N = 32k reads K/V once, as the H200 measured, where a cold L2
   per wave charged them once per wave, 2x too much). Otherwise each wave starts from a cold L2;
   no reuse across kernels. Atomics (FA2 backward's dQ) are a read plus a write of their tile at L2.

Assumed, and where it fails: lock step (blocks that drift apart stretch a tile's live
interval); a wave's footprint is its largest step's, so a loop whose live set shrinks
(causal FA1: rows finish) loses all its re-use, where LRU keeps the late steps' (the H200
measured 10% less than R there); an LRU that holds live tiles (windowed FA2 passes dead
K/V tiles through a live tile's span, and LRU keeps those too); a hard edge at F = C,
where a real L2 degrades over a range (a row-per-thread loop on the H200, F counted in
128-byte lines, read 1.0x its bytes at F = 0.3 C, 2x at 0.8 C, 3.3x at 1.1 C). Left out:
partial-wave overlap (blocks at a wave boundary run together, so a K/V tile shared across
it is fetched twice here), L1, sector granularity, set conflicts, the split L2 of A100/H100.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from simulators.problem import range_sum


def blocks_per_sm(spec, smem_per_block: int, threads: int, regs_per_thread: int,
                  max_blocks: int | None = None, what: str = "the kernel") -> int:
    """Resident blocks per SM, limited by shared memory, registers and ``max_blocks``."""
    if smem_per_block > spec.smem_per_block_max_bytes:
        raise ValueError(
            f"{what} needs {smem_per_block} bytes of shared memory per block; {spec.name} allows "
            f"{spec.smem_per_block_max_bytes}; allowed: tiles whose footprint fits (smaller --block-r/--block-c, "
            f"--sram-bytes or --head-dim)"
        )
    by_smem = spec.smem_per_sm_bytes // smem_per_block if smem_per_block else 1 << 30
    by_regs = spec.register_file_per_sm_bytes // (threads * regs_per_thread * 4)
    if by_regs < 1:
        raise ValueError(f"{what}: {threads} threads x {regs_per_thread} registers do not fit one SM's register file")
    return int(min(by_smem, by_regs, max_blocks or 1 << 30))


@njit(cache=True)
def wave_dram(req_r, dist_r, req_w, dist_w, live, capacity):
    """DRAM (read, write) bytes of one wave whose footprint is ``live``: rule 4 of the module docstring."""
    if live <= capacity:
        return dist_r, dist_w
    return req_r, req_w


def boxes(first: np.ndarray, last: np.ndarray, nbytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(step, value) second differences of ``nbytes`` live at steps [first, last]."""
    return (np.concatenate([first, first + 1, last + 1, last + 2]),
            np.concatenate([nbytes, -nbytes, -nbytes, nbytes]))


def max_live(wave: np.ndarray, pos: np.ndarray, val: np.ndarray, n_waves: int) -> np.ndarray:
    """Per wave, the most bytes live at one step, from second differences over (wave, step) summed twice."""
    out = np.zeros(n_waves, dtype=np.int64)
    if len(wave) == 0:
        return out
    row_of = np.cumsum(np.bincount(wave, minlength=n_waves) > 0) - 1
    rows = np.flatnonzero(np.bincount(wave, minlength=n_waves))
    width = int(pos.max()) + 1
    d2 = np.zeros(len(rows) * width, dtype=np.int64)
    np.add.at(d2, row_of[wave] * width + pos, val)
    live = np.cumsum(np.cumsum(d2.reshape(len(rows), width), axis=1), axis=1)
    out[rows] = live.max(axis=1)
    return out


# ---------------------------------------------------------------- closed form over waves


def stream_step(acc: "Access", x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Block x touches its tiles lo[x], lo[x] + 1, ... at steps 0, 1, ...: one tile an iteration."""
    return m - acc.lo[x]


@dataclass(frozen=True)
class Access:
    """A tensor a kernel touches, as the closed form needs it.

    Block (x, y) of a (T_x, Y) grid touches tiles [lo[x], hi[x]] (none if hi < lo) of the
    tensor copy owned by y // owner (owner = 1: one copy per query head; the GQA group
    size: per kv head; heads: per batch), each once, tile m at step ``step(acc, x, m)``
    (rule 3 of the module docstring; default: a stream, tile lo[x] + t at step t).
    ``prefix`` holds cumulative tile bytes. Over x, lo and hi must not decrease and
    consecutive non-empty ranges must touch or overlap: then the tiles of any run of x
    form one interval and the blocks that touch tile m one run of x; over that run the
    step must not increase (or the run is one block). The band masks guarantee this (see
    mask.py); general block masks go through the enumeration.
    """

    kind: str  # "read" | "write" | "atomic"
    owner: int
    lo: np.ndarray
    hi: np.ndarray
    prefix: np.ndarray
    step: Callable[["Access", np.ndarray, np.ndarray], np.ndarray] = stream_step


def at_step(steps: np.ndarray) -> Callable:
    """A step rule for tiles block x touches all at one step, ``steps[x]`` (stores after the loop)."""
    steps = np.asarray(steps, dtype=np.int64)
    return lambda acc, x, m: steps[x]


def _tiles_of(acc: Access, nxt, prv, p, q):
    """Tile interval touched by the blocks x in [p, q] (empty: a > b)."""
    ok = (p <= q) & (nxt[np.clip(p, 0, len(nxt) - 1)] <= q)
    f = np.where(ok, nxt[np.clip(p, 0, len(nxt) - 1)], 0)
    l_ = np.where(ok, prv[np.clip(q, 0, len(prv) - 1)], 0)
    return np.where(ok, acc.lo[f], 1), np.where(ok, acc.hi[l_], 0)


def _users(acc: Access, nxt, prv, m, runs):
    """Per run (p, q) of x, the first and last active x in it touching tile m, and whether any does."""
    act = np.flatnonzero(acc.hi >= acc.lo)
    xa = act[np.clip(np.searchsorted(acc.hi[act], m, "left"), 0, len(act) - 1)]  # first x with hi >= m
    xb = act[np.clip(np.searchsorted(acc.lo[act], m, "right") - 1, 0, len(act) - 1)]  # last x with lo <= m
    n = len(nxt)
    out = []
    for p, q in runs:
        u0, v0 = np.maximum(xa, p), np.minimum(xb, q)
        u, v = nxt[np.clip(u0, 0, n - 1)], prv[np.clip(v0, 0, n - 1)]
        ok = (u0 <= v0) & (u <= v)
        out.append((np.where(ok, u, act[0]), np.where(ok, v, act[0]), ok))
    return out


def _live_entries(acc: Access, nxt, prv, wave, xs, tiles):
    """(wave, step, value) second differences of the bytes live in each piece's tiles.

    A piece is one owner's blocks in one wave: x in two runs ``xs`` = (p1, q1, p2, q2) (p > q:
    none), tiles ``tiles`` = (a, b). Tile m is touched by the active x with lo[x] <= m <= hi[x]
    of the runs; its first and last steps are the step rule's values at the runs' ends. For a
    stream (step m - lo[x]) tile m is live over [m - B, m - A], A and B the lo of the first and
    last block touching it: constant between the points lo[x], hi[x] + 1 of the runs' blocks, so
    each such stretch of tiles adds one trapezoid over steps (four second differences).
    """
    a, b = tiles
    keep = b >= a
    wave, a, b = wave[keep], a[keep], b[keep]
    xs = tuple(v[keep] for v in xs)
    if len(a) == 0:
        return (np.zeros(0, np.int64),) * 3
    tb = np.diff(acc.prefix)
    if acc.step is not stream_step:  # one entry a tile
        count = b - a + 1
        piece = np.repeat(np.arange(len(a)), count)
        m = a[piece] + np.arange(len(piece)) - np.repeat(np.cumsum(count) - count, count)
        big = np.iinfo(np.int64).max
        first, last = np.full(len(m), big), np.full(len(m), -1)
        for u, v, ok in _users(acc, nxt, prv, m, ((xs[0][piece], xs[1][piece]), (xs[2][piece], xs[3][piece]))):
            su, sv = acc.step(acc, u, m), acc.step(acc, v, m)
            first = np.where(ok, np.minimum(first, np.minimum(su, sv)), first)
            last = np.where(ok, np.maximum(last, np.maximum(su, sv)), last)
        pos, val = boxes(first, last, tb[m])
        return np.tile(wave[piece], 4), pos, val
    # stretches: cut [a, b] at lo[x], hi[x] + 1 of the active x from the runs' outer neighbours
    # in, and where the tile size changes
    t_x = len(nxt)
    r1 = xs[0] <= xs[1]
    p_min, q_max = np.where(r1, xs[0], xs[2]), np.where(xs[2] <= xs[3], xs[3], xs[1])
    below = prv[np.clip(p_min - 1, 0, t_x - 1)]
    above = nxt[np.clip(q_max + 1, 0, t_x - 1)]
    x_lo = np.where((p_min > 0) & (below >= 0), below, p_min)
    x_hi = np.where((q_max + 1 < t_x) & (above < t_x), above, q_max)
    count = x_hi - x_lo + 1
    piece = np.repeat(np.arange(len(a)), count)
    x = x_lo[piece] + np.arange(len(piece)) - np.repeat(np.cumsum(count) - count, count)
    on = acc.hi[x] >= acc.lo[x]
    piece, x = piece[on], x[on]
    sizes = np.flatnonzero(np.diff(tb)) + 1
    cand_p = np.concatenate([piece, piece, np.arange(len(a)), np.arange(len(a)),
                             np.repeat(np.arange(len(a)), len(sizes))])
    cand = np.concatenate([acc.lo[x], acc.hi[x] + 1, a, b + 1, np.tile(sizes, len(a))])
    inside = (cand >= a[cand_p]) & (cand <= b[cand_p] + 1)
    span = len(tb) + 2
    key = np.sort(cand_p[inside] * span + cand[inside])
    key = key[np.r_[True, key[1:] != key[:-1]]]
    k_p, k_m = key // span, key % span
    seg = np.flatnonzero(k_p[:-1] == k_p[1:])  # stretch [k_m[s], k_m[s + 1] - 1] of piece k_p[s]
    p_s, m0, m1 = k_p[seg], k_m[seg], k_m[seg + 1] - 1
    lo_first, lo_last = np.full(len(seg), np.iinfo(np.int64).max), np.full(len(seg), -1)
    for u, v, ok in _users(acc, nxt, prv, m0, ((xs[0][p_s], xs[1][p_s]), (xs[2][p_s], xs[3][p_s]))):
        lo_first = np.where(ok, np.minimum(lo_first, acc.lo[u]), lo_first)
        lo_last = np.where(ok, np.maximum(lo_last, acc.lo[v]), lo_last)
    # tiles m0..m1, tile m live over [m - B, m - A]: second differences of the count of them live
    A, B, nb = lo_first, lo_last, tb[m0]
    pos = np.concatenate([m0 - B, m1 - B + 1, m0 - A + 1, m1 - A + 2])
    val = np.concatenate([nb, -nb, -nb, nb])
    return np.tile(wave[p_s], 4), pos, val


def wave_traffic(accesses: list[Access], t_x: int, n_y: int, slots: int, x_fastest: bool = True,
                 capacity: int | None = None, starts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-wave requested (R), distinct (D) bytes and footprint F (``live``) of a (t_x, n_y) grid.

    Launch order: block (x, y) is number y t_x + x (``x_fastest``, blockIdx.x = x) or x n_y + y.
    ``touched`` is the distinct bytes a wave touches over its lifetime, an upper bound on F;
    F itself is computed only for waves where that bound exceeds ``capacity`` (elsewhere
    live = touched: rule 4 gives D either way).
    """
    n_blocks = t_x * n_y
    if starts is None:  # lock-step waves of ``slots`` blocks; else windows [starts[i], starts[i + 1])
        starts = np.arange(0, n_blocks, slots, dtype=np.int64)
        ends = np.minimum(starts + slots, n_blocks)
    else:
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.append(starts[1:], n_blocks)
    n_w = len(starts)
    out = {k: np.zeros(n_w, dtype=np.int64) for k in ("req_r", "dist_r", "req_w", "dist_w", "touched")}
    idx = np.arange(t_x)
    pieces = []
    for acc in accesses:
        lo, hi = acc.lo.astype(np.int64), acc.hi.astype(np.int64)
        acc = Access(acc.kind, acc.owner, lo, hi, acc.prefix, acc.step)
        per_block = range_sum(acc.prefix, lo, hi)
        cum = np.concatenate([[0], np.cumsum(per_block)])
        active = hi >= lo
        nxt = np.minimum.accumulate(np.where(active, idx, t_x)[::-1])[::-1]
        prv = np.maximum.accumulate(np.where(active, idx, -1))

        if x_fastest:
            def upto(n):  # requested bytes of blocks [0, n) in launch order
                return (n // t_x) * cum[-1] + cum[n % t_x]

            # Cut launch order at wave and owner boundaries; each piece is one owner's run of
            # blocks within one wave, covering x in one interval, two, or all of them.
            span = acc.owner * t_x
            cuts = np.unique(np.concatenate([starts, np.arange(0, n_blocks, span, dtype=np.int64), [n_blocks]]))
            s, e = cuts[:-1], cuts[1:]
            base = (s // span) * span
            u0, u1 = s - base, e - 1 - base
            full = (e - s) >= t_x
            same = (u0 // t_x) == (u1 // t_x)
            x0, x1 = u0 % t_x, u1 % t_x
            two = ~full & ~same
            xs = (np.where(full | two, 0, x0), np.where(full, t_x - 1, x1),  # the run x in [0 or x0, x1]
                  np.where(two, x0, 1), np.where(two, t_x - 1, 0))  # and, wrapping, [x0, T_x - 1]
            a1, b1 = _tiles_of(acc, nxt, prv, xs[0], xs[1])
            a2, b2 = _tiles_of(acc, nxt, prv, xs[2], xs[3])
            distinct = (range_sum(acc.prefix, a1, b1) + range_sum(acc.prefix, a2, b2)
                        - range_sum(acc.prefix, np.maximum(a1, a2), np.minimum(b1, b2)))
            wave_of = np.searchsorted(starts, s, "right") - 1
            # the second run's tiles lie above the first's: count only those past it
            a2 = np.where(b1 >= a1, np.maximum(a2, b1 + 1), a2)
            pieces.append((acc, nxt, prv, wave_of, xs, [(a1, b1), (a2, b2)]))
        else:
            req = np.concatenate([per_block, [0]])

            def upto(n):  # rows x < n // n_y whole, then n % n_y blocks of row n // n_y
                return n_y * cum[n // n_y] + (n % n_y) * req[n // n_y]

            # An owner's y values in wave [s, e): every row between the first and the last,
            # the first row only if some y >= y_s, the last only if some y <= y_e.
            owners = np.arange(n_y // acc.owner, dtype=np.int64)
            y_lo, y_hi = owners * acc.owner, owners * acc.owner + acc.owner - 1
            xs_, ys = (starts // n_y)[:, None], (starts % n_y)[:, None]
            xe, ye = ((ends - 1) // n_y)[:, None], ((ends - 1) % n_y)[:, None]
            one_row = xs_ == xe
            p = np.where(one_row, xs_, xs_ + (y_hi < ys))
            q = np.where(one_row, xe, xe - (y_lo > ye))
            inside = ~one_row | ((y_hi >= ys) & (y_lo <= ye))
            p, q = np.where(inside, p, 1).ravel(), np.where(inside, q, 0).ravel()
            a, b = _tiles_of(acc, nxt, prv, p, q)
            distinct = range_sum(acc.prefix, a, b)
            wave_of = np.repeat(np.arange(n_w), len(owners))
            none = np.ones_like(p), np.zeros_like(p)
            pieces.append((acc, nxt, prv, wave_of, (p, q, *none), [(a, b)]))
        requested = upto(ends) - upto(starts)
        per_wave = np.zeros(n_w, dtype=np.int64)
        np.add.at(per_wave, wave_of, distinct)
        out["touched"] += per_wave
        if acc.kind in ("read", "atomic"):
            out["req_r"] += requested
            out["dist_r"] += per_wave
        if acc.kind in ("write", "atomic"):
            out["req_w"] += requested
            out["dist_w"] += per_wave
    out["live"] = out["touched"].copy()
    over = out["touched"] > (capacity if capacity is not None else -1)
    if over.any():
        parts = []
        for acc, nxt, prv, wave_of, xs, tile_runs in pieces:
            keep = np.flatnonzero(over[wave_of] & np.any([b >= a for a, b in tile_runs], axis=0))
            xs_k = tuple(v[keep] for v in xs)
            for a, b in tile_runs:
                parts.append(_live_entries(acc, nxt, prv, wave_of[keep], xs_k, (a[keep], b[keep])))
        w, pos, val = (np.concatenate([pt[k] for pt in parts]) for k in range(3))
        out["live"] = np.where(over, max_live(w, pos, val, n_w), out["touched"])
    return out


def wave_pairs(accesses: list[Access], t_x: int, n_y: int, slots: int, x_fastest: bool = True
               ) -> tuple[dict, dict] | None:
    """Distinct bytes of every pair of consecutive waves (w - 1, w), for rule 5: two tilings of the
    grid into windows of two waves, (0, 1), (2, 3), ... and (0), (1, 2), (3, 4), ..."""
    n_blocks = t_x * n_y
    if n_blocks <= slots:
        return None
    big = np.iinfo(np.int64).max
    odd = wave_traffic(accesses, t_x, n_y, slots, x_fastest, big, np.arange(0, n_blocks, 2 * slots))
    even = wave_traffic(accesses, t_x, n_y, slots, x_fastest, big,
                        np.concatenate([[0], np.arange(slots, n_blocks, 2 * slots)]))
    return odd, even


def dram_totals(waves: dict[str, np.ndarray], capacity: int, pairs: tuple[dict, dict] | None = None
                ) -> tuple[int, int, int, int]:
    """(global read, global write, DRAM read, DRAM write) bytes summed over the waves (rules 4 and 5)."""
    h_r = h_w = 0
    for w in range(len(waves["req_r"])):
        r, wr = wave_dram(waves["req_r"][w], waves["dist_r"][w], waves["req_w"][w], waves["dist_w"][w],
                          waves["live"][w], capacity)
        if pairs is not None and w >= 1 and waves["live"][w] <= capacity:
            table, i = (pairs[0], (w - 1) // 2) if w % 2 else (pairs[1], w // 2)
            if table["touched"][i] <= capacity:  # the pair fits: wave w - 1's tiles are still there
                r = max(0, int(table["dist_r"][i]) - int(waves["dist_r"][w - 1]))
        h_r += int(r)
        h_w += int(wr)
    return int(waves["req_r"].sum()), int(waves["req_w"].sum()), h_r, h_w
