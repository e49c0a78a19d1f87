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
3. **Tiles.** Every load, store or atomic names a tile (tensor, owner, index): the K
   tile j of a kv head is the same tile for every query head of its group and every
   query tile of the grid.
4. **Within a wave.** Let R be the bytes the wave's blocks request, D the bytes of the
   distinct tiles they request (per direction: reads, writes), and F the bytes of the
   distinct tiles they touch at all. If F <= C (usable L2 = l2_bytes x l2_fraction),
   every distinct tile crosses DRAM once: DRAM = D (a tile read by several blocks of
   the wave is fetched once; stores to one tile merge in the write-back L2). If F > C,
   the reuse that fits survives in proportion: DRAM = D + floor((R - D)(1 - C/F)),
   so a wave whose tiles do not fit moves close to R.
5. **No reuse across waves** (nor across kernels): each wave starts from a cold L2.
   Atomics (FA2 backward's dQ) are a read plus a write of their tile at L2.

What the rule leaves out, on purpose: temporal order within a wave (blocks in lock
step stream the same K/V tile at the same time, so LRU would do better than rule 4
when F > C), partial-wave overlap, L2 set conflicts and the split L2 of A100/H100.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


def blocks_per_sm(spec, smem_per_block: int, threads: int, regs_per_thread: int,
                  max_blocks: int | None = None, what: str = "the kernel") -> int:
    """Resident blocks per SM, limited by shared memory, registers and ``max_blocks``."""
    if smem_per_block > spec.smem_per_block_max_bytes:
        raise ValueError(
            f"{what} needs {smem_per_block} bytes of shared memory per block; {spec.name} allows "
            f"{spec.smem_per_block_max_bytes}; allowed: tiles whose footprint fits (smaller --block-r/--block-c "
            f"or head_dim)"
        )
    by_smem = spec.smem_per_sm_bytes // smem_per_block if smem_per_block else 1 << 30
    by_regs = spec.register_file_per_sm_bytes // (threads * regs_per_thread * 4)
    if by_regs < 1:
        raise ValueError(f"{what}: {threads} threads x {regs_per_thread} registers do not fit one SM's register file")
    return int(min(by_smem, by_regs, max_blocks or 1 << 30))


@njit(cache=True)
def wave_dram(req_r, dist_r, req_w, dist_w, touched, capacity):
    """DRAM (read, write) bytes of one wave: rule 4 of the module docstring."""
    if touched <= capacity:
        return dist_r, dist_w
    miss = 1.0 - capacity / touched
    return (dist_r + np.int64(np.floor((req_r - dist_r) * miss)),
            dist_w + np.int64(np.floor((req_w - dist_w) * miss)))


# ---------------------------------------------------------------- closed form over waves


@dataclass(frozen=True)
class Access:
    """A tensor a kernel touches, as the closed form needs it.

    Block (x, y) of a (T_x, Y) grid touches tiles [lo[x], hi[x]] (none if hi < lo) of the
    tensor copy owned by y // owner (owner = 1: one copy per query head; the GQA group
    size: per kv head; heads: per batch), each once. ``prefix`` holds cumulative tile
    bytes. Over x, lo and hi must not decrease and consecutive non-empty ranges must
    touch or overlap: then the tiles of any run of x form one interval. The band masks
    guarantee this (see mask.py); general block masks go through the enumeration.
    """

    kind: str  # "read" | "write" | "atomic"
    owner: int
    lo: np.ndarray
    hi: np.ndarray
    prefix: np.ndarray


def _range_bytes(prefix, a, b):
    ok = b >= a
    a_ = np.where(ok, a, 0)
    b_ = np.where(ok, b + 1, 0)
    return np.where(ok, prefix[b_] - prefix[a_], 0)


def _tiles_of(acc: Access, nxt, prv, p, q):
    """Tile interval touched by the blocks x in [p, q] (empty: a > b)."""
    ok = (p <= q) & (nxt[np.clip(p, 0, len(nxt) - 1)] <= q)
    f = np.where(ok, nxt[np.clip(p, 0, len(nxt) - 1)], 0)
    l_ = np.where(ok, prv[np.clip(q, 0, len(prv) - 1)], 0)
    return np.where(ok, acc.lo[f], 1), np.where(ok, acc.hi[l_], 0)


def wave_traffic(accesses: list[Access], t_x: int, n_y: int, slots: int,
                 x_fastest: bool = True) -> dict[str, np.ndarray]:
    """Per-wave requested (R), distinct (D) and touched (F) bytes of a (t_x, n_y) grid.

    Launch order: block (x, y) is number y t_x + x (``x_fastest``, blockIdx.x = x) or x n_y + y.
    """
    n_blocks = t_x * n_y
    starts = np.arange(0, n_blocks, slots, dtype=np.int64)
    ends = np.minimum(starts + slots, n_blocks)
    n_w = len(starts)
    out = {k: np.zeros(n_w, dtype=np.int64) for k in ("req_r", "dist_r", "req_w", "dist_w", "touched")}
    idx = np.arange(t_x)
    for acc in accesses:
        lo, hi = acc.lo.astype(np.int64), acc.hi.astype(np.int64)
        acc = Access(acc.kind, acc.owner, lo, hi, acc.prefix)
        per_block = _range_bytes(acc.prefix, lo, hi)
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
            a1, b1 = _tiles_of(acc, nxt, prv, np.where(full | two, 0, x0), np.where(full, t_x - 1, x1))
            a2, b2 = _tiles_of(acc, nxt, prv, np.where(two, x0, 1), np.where(two, t_x - 1, 0))
            distinct = (_range_bytes(acc.prefix, a1, b1) + _range_bytes(acc.prefix, a2, b2)
                        - _range_bytes(acc.prefix, np.maximum(a1, a2), np.minimum(b1, b2)))
            wave_of = s // slots
        else:
            req = np.concatenate([per_block, [0]])

            def upto(n):  # rows x < n // n_y whole, then n % n_y blocks of row n // n_y
                return n_y * cum[n // n_y] + (n % n_y) * req[n // n_y]

            # An owner's y values in wave [s, e): every row between the first and the last,
            # the first row only if some y >= y_s, the last only if some y <= y_e.
            owners = np.arange(n_y // acc.owner, dtype=np.int64)
            y_lo, y_hi = owners * acc.owner, owners * acc.owner + acc.owner - 1
            xs, ys = (starts // n_y)[:, None], (starts % n_y)[:, None]
            xe, ye = ((ends - 1) // n_y)[:, None], ((ends - 1) % n_y)[:, None]
            one_row = xs == xe
            p = np.where(one_row, xs, xs + (y_hi < ys))
            q = np.where(one_row, xe, xe - (y_lo > ye))
            inside = ~one_row | ((y_hi >= ys) & (y_lo <= ye))
            p, q = np.where(inside, p, 1), np.where(inside, q, 0)
            a, b = _tiles_of(acc, nxt, prv, p, q)
            distinct = _range_bytes(acc.prefix, a, b).ravel()
            wave_of = np.repeat(np.arange(n_w), len(owners))
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
    return out


def dram_totals(waves: dict[str, np.ndarray], capacity: int) -> tuple[int, int, int, int]:
    """(global read, global write, DRAM read, DRAM write) bytes summed over the waves."""
    h_r = h_w = 0
    for w in range(len(waves["req_r"])):
        r, wr = wave_dram(waves["req_r"][w], waves["dist_r"][w], waves["req_w"][w], waves["dist_w"][w],
                          waves["touched"][w], capacity)
        h_r += int(r)
        h_w += int(wr)
    return int(waves["req_r"].sum()), int(waves["req_w"].sum()), h_r, h_w
