"""The flash kernels' schedules walked block by block, compiled with numba on the CPU.

Each function runs its grid in launch order (blockIdx.x fastest), each block's loops as
the kernel runs them, and every tile load, store and atomic. A tile is skipped when its
class (0 empty, 1 partial, 2 full; mask.py) says so: for band masks from
``band_tile_classes`` (corner tests), for sparse patterns from patterns.py, possibly one
class array per head. Every access goes through ``_touch`` with the block's loop step
(l2.py rule 3: the count of non-empty iterations before this one), which keeps, per tile,
the last wave that read it, wrote it or touched it (a tile counts as distinct in a wave
the first time the wave meets it) and the first and last step the wave touched it at,
and which of a wave's distinct tiles the previous wave read or touched too (l2.py rule 5).
At each wave's end ``_close`` sweeps those intervals for the footprint (only when the
wave's lifetime bytes exceed the L2: the footprint is never larger) and applies
l2.wave_dram.

The schedules are those stated in closed.py; this file must not import it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from simulators.counting import (C, COLS, COLS_C, G_READ, G_WRITE, H_READ, H_WRITE, N_MOMENTS, R, RC, RC_PARTIAL, ROWS,
                              ROWS_R, STAGED, TILES)
from simulators.l2 import wave_dram

READ, WRITE, ATOMIC = 0, 1, 2
_RR, _DR, _RW, _DW, _TOUCH, _SEEN, _STEPS = 0, 1, 2, 3, 4, 5, 6  # wave accumulator slots
_CR, _CT, _PT = 7, 8, 9  # read / touched bytes also read / touched by the previous wave; its touched bytes
_SR, _SW, _ST, _FIRST, _LAST, _BYTES = 0, 1, 2, 3, 4, 5  # per-tile state rows
STAT = 4  # float32 statistics


@njit(cache=True)
def _state(n_tiles, max_steps):
    """Per-tile state (last wave read / written / touched, first and last step, bytes), the wave's
    tiles in the order first touched, the wave accumulator, a step histogram."""
    st = np.full((6, n_tiles), -1, np.int64)
    return st, np.zeros(n_tiles, np.int64), np.zeros(10, np.int64), np.zeros(max_steps + 2, np.int64)


@njit(cache=True, inline="always")
def _touch(st, seen, wacc, wave, tile, nbytes, kind, step):
    if kind != WRITE:
        wacc[_RR] += nbytes
        if st[_SR, tile] != wave:
            if wave > 0 and st[_SR, tile] == wave - 1:
                wacc[_CR] += nbytes
            st[_SR, tile] = wave
            wacc[_DR] += nbytes
    if kind != READ:
        wacc[_RW] += nbytes
        if st[_SW, tile] != wave:
            st[_SW, tile] = wave
            wacc[_DW] += nbytes
    if st[_ST, tile] != wave:
        if wave > 0 and st[_ST, tile] == wave - 1:
            wacc[_CT] += nbytes
        st[_ST, tile] = wave
        wacc[_TOUCH] += nbytes
        st[_FIRST, tile] = step
        st[_LAST, tile] = step
        st[_BYTES, tile] = nbytes
        seen[wacc[_SEEN]] = tile
        wacc[_SEEN] += 1
    else:
        st[_FIRST, tile] = min(st[_FIRST, tile], step)
        st[_LAST, tile] = max(st[_LAST, tile], step)
    wacc[_STEPS] = max(wacc[_STEPS], step + 1)


@njit(cache=True)
def _close(st, seen, wacc, hist, m, capacity):
    live = wacc[_TOUCH]  # lifetime bytes: an upper bound on the footprint
    if live > capacity:
        for k in range(wacc[_SEEN]):
            t = seen[k]
            hist[st[_FIRST, t]] += st[_BYTES, t]
            hist[st[_LAST, t] + 1] -= st[_BYTES, t]
        live = 0
        level = 0
        for s in range(wacc[_STEPS] + 1):
            level += hist[s]
            live = max(live, level)
            hist[s] = 0
    hr, hw = wave_dram(wacc[_RR], wacc[_DR], wacc[_RW], wacc[_DW], live, capacity)
    if live <= capacity and wacc[_PT] + wacc[_TOUCH] - wacc[_CT] <= capacity:  # l2.py rule 5
        hr = wacc[_DR] - wacc[_CR]
    m[G_READ] += wacc[_RR]
    m[G_WRITE] += wacc[_RW]
    m[H_READ] += hr
    m[H_WRITE] += hw
    touched = wacc[_TOUCH]
    wacc[:] = 0
    wacc[_PT] = touched


@njit(cache=True, inline="always")
def _visit(m, cls, r, c):
    m[TILES] += 1
    m[RC] += r * c
    if cls == 1:
        m[RC_PARTIAL] += r * c
    m[R] += r
    m[C] += c


@njit(cache=True, inline="always")
def _wave_of(st, seen, wacc, hist, m, capacity, wave, blk, slots):
    """The wave block ``blk`` runs in (``slots`` resident blocks a wave, launch order);
    the previous wave is closed when ``blk`` starts a new one."""
    if blk // slots != wave:
        _close(st, seen, wacc, hist, m, capacity)
    return blk // slots


@njit(cache=True, inline="always")
def _read_kv(st, seen, wacc, wave, m, k_tile, v_tile, c, d, e, s, step, column):
    """K_j and V_j (c keys of one kv head) read and staged on chip; ``column``: this load
    opens key column j for the block (counted in COLS, COLS_C)."""
    _touch(st, seen, wacc, wave, k_tile, c * d * e, READ, step)
    _touch(st, seen, wacc, wave, v_tile, c * d * e, READ, step)
    m[STAGED] += 2 * c * d * s
    if column:
        m[COLS] += 1
        m[COLS_C] += c


@njit(cache=True)
def fa2_fwd(tc, n_q, n_k, br, bc, d, e, s, batch, heads, group, slots, capacity, tiles_fastest=True):
    """Grid (T_r, B H). Block (i, bh): Q_i once; K_j, V_j per non-empty tile; O_i, lse_i once."""
    t_r, t_c = (n_q + br - 1) // br, (n_k + bc - 1) // bc
    bh = batch * heads
    q0 = 0
    k0 = q0 + bh * t_r
    v0 = k0 + (bh // group) * t_c
    o0 = v0 + (bh // group) * t_c
    l0 = o0 + bh * t_r
    st, seen, wacc, hist = _state(l0 + bh * t_r, t_c)
    m = np.zeros(N_MOMENTS, np.int64)
    per_head = tc.shape[0] > 1
    wave = 0
    for blk in range(t_r * bh):
        wave = _wave_of(st, seen, wacc, hist, m, capacity, wave, blk, slots)
        # blockIdx.x = query tile, blockIdx.y = batch*head (or the other way round)
        i, y = (blk % t_r, blk // t_r) if tiles_fastest else (blk // bh, blk % bh)
        g = y // group
        hm = y % heads if per_head else 0
        r = min(n_q, (i + 1) * br) - i * br
        step = 0
        for j in range(t_c):
            cls = tc[hm, i, j]
            if cls == 0:
                continue
            if step == 0:  # step 4: Q_i once
                _touch(st, seen, wacc, wave, q0 + y * t_r + i, r * d * e, READ, 0)
                m[STAGED] += r * d * s
            c = min(n_k, (j + 1) * bc) - j * bc
            _read_kv(st, seen, wacc, wave, m, k0 + g * t_c + j, v0 + g * t_c + j, c, d, e, s, step, False)  # step 7
            _visit(m, cls, r, c)
            step += 1
        if step > 0:
            m[ROWS] += 1
            m[ROWS_R] += r
        last = max(step - 1, 0)
        _touch(st, seen, wacc, wave, o0 + y * t_r + i, r * d * e, WRITE, last)  # steps 12-15
        _touch(st, seen, wacc, wave, l0 + y * t_r + i, r * STAT, WRITE, last)
    _close(st, seen, wacc, hist, m, capacity)
    return m


@njit(cache=True)
def _row_first_last(tc):
    hm, t_r, t_c = tc.shape
    first = np.full((hm, t_r), -1, np.int64)
    last = np.full((hm, t_r), -1, np.int64)
    for h in range(hm):
        for i in range(t_r):
            for j in range(t_c):
                if tc[h, i, j] != 0:
                    if first[h, i] < 0:
                        first[h, i] = j
                    last[h, i] = j
    return first, last


@njit(cache=True)
def fa1_fwd(tc, n_q, n_k, br, bc, d, e, s, batch, heads, group, slots, capacity, paper):
    """Grid (B H,). One block per (batch, head): j outer (K_j, V_j once), i inner.

    paper=False (kernels/flash1.py): Q_i every visit; fp32 workspace O_i, l_i, m_i read
    after the row's first visit and written before its last; the last writes O_i, lse_i.
    paper=True (Algorithm 1): O, l, m initialised in HBM; every visit reads Q_i, O_i,
    l_i, m_i and writes O_i, l_i, m_i. A step is one (j, i) visit.
    """
    t_r, t_c = (n_q + br - 1) // br, (n_k + bc - 1) // bc
    bh = batch * heads
    first, last = _row_first_last(tc)
    q0 = 0
    k0 = q0 + bh * t_r
    v0 = k0 + (bh // group) * t_c
    o0 = v0 + (bh // group) * t_c  # output O (input dtype)
    l0 = o0 + bh * t_r  # lse (kernel) or l (paper)
    m0 = l0 + bh * t_r  # m_ws (kernel) or m (paper)
    w0 = m0 + bh * t_r  # O_ws (kernel)
    lw0 = w0 + bh * t_r  # l_ws (kernel)
    st, seen, wacc, hist = _state(lw0 + bh * t_r, t_r * t_c)
    m = np.zeros(N_MOMENTS, np.int64)
    per_head = tc.shape[0] > 1
    wave = 0
    for y in range(bh):
        wave = _wave_of(st, seen, wacc, hist, m, capacity, wave, y, slots)
        g = y // group
        hm = y % heads if per_head else 0
        if paper:  # step 2: O = 0, l = 0, m = -inf in HBM
            for i in range(t_r):
                r = min(n_q, (i + 1) * br) - i * br
                _touch(st, seen, wacc, wave, o0 + y * t_r + i, r * d * e, WRITE, 0)
                _touch(st, seen, wacc, wave, l0 + y * t_r + i, r * STAT, WRITE, 0)
                _touch(st, seen, wacc, wave, m0 + y * t_r + i, r * STAT, WRITE, 0)
        step = 0
        for j in range(t_c):  # step 5
            c = min(n_k, (j + 1) * bc) - j * bc
            kv_loaded = False
            for i in range(t_r):  # step 7
                cls = tc[hm, i, j]
                if cls == 0:
                    continue
                if not kv_loaded:  # step 6
                    _read_kv(st, seen, wacc, wave, m, k0 + g * t_c + j, v0 + g * t_c + j, c, d, e, s, step, True)
                    kv_loaded = True
                r = min(n_q, (i + 1) * br) - i * br
                row = y * t_r + i
                _touch(st, seen, wacc, wave, q0 + row, r * d * e, READ, step)  # step 8
                m[STAGED] += r * d * s
                if paper:
                    _touch(st, seen, wacc, wave, o0 + row, r * d * e, READ, step)
                    _touch(st, seen, wacc, wave, l0 + row, r * STAT, READ, step)
                    _touch(st, seen, wacc, wave, m0 + row, r * STAT, READ, step)
                    m[STAGED] += r * d * s
                    _touch(st, seen, wacc, wave, o0 + row, r * d * e, WRITE, step)  # steps 12-13
                    _touch(st, seen, wacc, wave, l0 + row, r * STAT, WRITE, step)
                    _touch(st, seen, wacc, wave, m0 + row, r * STAT, WRITE, step)
                else:
                    if j != first[hm, i]:
                        _touch(st, seen, wacc, wave, w0 + row, r * d * 4, READ, step)
                        _touch(st, seen, wacc, wave, lw0 + row, r * STAT, READ, step)
                        _touch(st, seen, wacc, wave, m0 + row, r * STAT, READ, step)
                    if j == last[hm, i]:
                        _touch(st, seen, wacc, wave, o0 + row, r * d * e, WRITE, step)
                        _touch(st, seen, wacc, wave, l0 + row, r * STAT, WRITE, step)
                    else:
                        _touch(st, seen, wacc, wave, w0 + row, r * d * 4, WRITE, step)
                        _touch(st, seen, wacc, wave, lw0 + row, r * STAT, WRITE, step)
                        _touch(st, seen, wacc, wave, m0 + row, r * STAT, WRITE, step)
                if j == last[hm, i]:
                    m[ROWS] += 1
                    m[ROWS_R] += r
                _visit(m, cls, r, c)
                step += 1
    _close(st, seen, wacc, hist, m, capacity)
    return m


@njit(cache=True)
def decode(tc, n_q, n_k, bc, d, e, s, batch, heads, group, splits, page_size, slots, capacity,
           tiles_fastest=True):
    """Grid (S, B H). Block (s, bh): q once; K_j, V_j of split s (and the block-table
    entries of their pages when page_size > 0); O, lse (S = 1) or partial O_s, lse_s."""
    t_c = (n_k + bc - 1) // bc
    per_split = (t_c + splits - 1) // splits
    bh = batch * heads
    n_pages = (n_k + page_size - 1) // page_size if page_size > 0 else 1
    q0 = 0
    k0 = q0 + bh
    v0 = k0 + (bh // group) * t_c
    p0 = v0 + (bh // group) * t_c
    o0 = p0 + batch * n_pages
    l0 = o0 + bh * splits
    st, seen, wacc, hist = _state(l0 + bh * splits, per_split)
    m = np.zeros(N_MOMENTS, np.int64)
    per_head = tc.shape[0] > 1
    r = n_q
    wave = 0
    for blk in range(splits * bh):
        wave = _wave_of(st, seen, wacc, hist, m, capacity, wave, blk, slots)
        # blockIdx.x = split, blockIdx.y = batch*head (or the other way round)
        sp, y = (blk % splits, blk // splits) if tiles_fastest else (blk // bh, blk % bh)
        g = y // group
        b = y // heads
        hm = y % heads if per_head else 0
        step = 0
        page_read = -1
        for j in range(sp * per_split, min((sp + 1) * per_split, t_c)):
            cls = tc[hm, 0, j]
            if cls == 0:
                continue
            if step == 0:
                _touch(st, seen, wacc, wave, q0 + y, r * d * e, READ, 0)
                m[STAGED] += r * d * s
            c = min(n_k, (j + 1) * bc) - j * bc
            if page_size > 0:
                for pg in range(max(page_read + 1, (j * bc) // page_size), (j * bc + c - 1) // page_size + 1):
                    _touch(st, seen, wacc, wave, p0 + b * n_pages + pg, 4, READ, step)
                    page_read = pg
            _read_kv(st, seen, wacc, wave, m, k0 + g * t_c + j, v0 + g * t_c + j, c, d, e, s, step, False)
            _visit(m, cls, r, c)
            step += 1
        if step > 0:
            m[ROWS] += 1
            m[ROWS_R] += r
        done = max(step - 1, 0)
        if splits == 1:
            _touch(st, seen, wacc, wave, o0 + y, r * d * e, WRITE, done)
            _touch(st, seen, wacc, wave, l0 + y, r * STAT, WRITE, done)
        else:
            _touch(st, seen, wacc, wave, o0 + y * splits + sp, r * d * 4, WRITE, done)
            _touch(st, seen, wacc, wave, l0 + y * splits + sp, r * STAT, WRITE, done)
    _close(st, seen, wacc, hist, m, capacity)
    return m
