"""The backward schedules (FA1 and FA2, Dao et al. 2022 Alg. 4 and Dao 2023 Alg. 2) walked block by
block: the other half of ``walk.py``, on its per-tile state and wave sweep (see its docstring).

The schedules are those stated in closed.py; this file must not import it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from simulators.counting import N_MOMENTS, STAGED
from simulators.walk import ATOMIC, READ, STAT, WRITE, _close, _read_kv, _state, _touch, _visit, _wave_of


@njit(cache=True)
def fa1_bwd(tc, n_q, n_k, br, bc, d, e, s, a, batch, heads, group, slots, capacity):
    """Grid (B H,). Algorithm 4: dQ = 0 in HBM; j outer: K_j, V_j; i inner: Q_i, O_i, dO_i,
    dQ_i, l_i, m_i in, dQ_i out; dK_j, dV_j out once per j (per query head). A step is one
    (j, i) visit; dK_j, dV_j belong to column j's last visit."""
    t_r, t_c = (n_q + br - 1) // br, (n_k + bc - 1) // bc
    bh = batch * heads
    q0 = 0
    o0 = q0 + bh * t_r
    do0 = o0 + bh * t_r
    dq0 = do0 + bh * t_r
    l0 = dq0 + bh * t_r
    m0 = l0 + bh * t_r
    k0 = m0 + bh * t_r
    v0 = k0 + (bh // group) * t_c
    dk0 = v0 + (bh // group) * t_c
    dv0 = dk0 + bh * t_c
    st, seen, wacc, hist = _state(dv0 + bh * t_c, t_r * t_c)
    m = np.zeros(N_MOMENTS, np.int64)
    per_head = tc.shape[0] > 1
    wave = 0
    for y in range(bh):
        wave = _wave_of(st, seen, wacc, hist, m, capacity, wave, y, slots)
        g = y // group
        hm = y % heads if per_head else 0
        for i in range(t_r):  # step 5: dQ = 0 in HBM
            r = min(n_q, (i + 1) * br) - i * br
            _touch(st, seen, wacc, wave, dq0 + y * t_r + i, r * d * a, WRITE, 0)
        step = 0
        for j in range(t_c):  # step 6
            c = min(n_k, (j + 1) * bc) - j * bc
            kv_loaded = False
            for i in range(t_r):  # step 10
                cls = tc[hm, i, j]
                if cls == 0:
                    continue
                if not kv_loaded:  # step 7
                    _read_kv(st, seen, wacc, wave, m, k0 + g * t_c + j, v0 + g * t_c + j, c, d, e, s, step, True)
                    kv_loaded = True
                r = min(n_q, (i + 1) * br) - i * br
                row = y * t_r + i
                _touch(st, seen, wacc, wave, q0 + row, r * d * e, READ, step)  # step 11
                _touch(st, seen, wacc, wave, o0 + row, r * d * e, READ, step)
                _touch(st, seen, wacc, wave, do0 + row, r * d * e, READ, step)
                _touch(st, seen, wacc, wave, dq0 + row, r * d * a, READ, step)
                _touch(st, seen, wacc, wave, l0 + row, r * STAT, READ, step)
                _touch(st, seen, wacc, wave, m0 + row, r * STAT, READ, step)
                m[STAGED] += s * (4 * r * d + 2 * r)
                _touch(st, seen, wacc, wave, dq0 + row, r * d * a, WRITE, step)  # step 21
                _visit(m, cls, r, c)
                step += 1
            done = max(step - 1, 0)
            _touch(st, seen, wacc, wave, dk0 + y * t_c + j, c * d * e, WRITE, done)  # step 24
            _touch(st, seen, wacc, wave, dv0 + y * t_c + j, c * d * e, WRITE, done)
    _close(st, seen, wacc, hist, m, capacity)
    return m


@njit(cache=True)
def fa2_bwd(tc, n_q, n_k, br, bc, d, e, s, a, batch, heads, group, slots, capacity, tiles_fastest=True):
    """Grid (T_c, B H). Block (j, bh): K_j, V_j once; per non-empty i: Q_i, dO_i, lse_i, D_i
    in, dQ_i atomically added; dK_j, dV_j out once."""
    t_r, t_c = (n_q + br - 1) // br, (n_k + bc - 1) // bc
    bh = batch * heads
    k0 = 0
    v0 = k0 + (bh // group) * t_c
    q0 = v0 + (bh // group) * t_c
    do0 = q0 + bh * t_r
    l0 = do0 + bh * t_r
    dd0 = l0 + bh * t_r
    dq0 = dd0 + bh * t_r
    dk0 = dq0 + bh * t_r
    dv0 = dk0 + bh * t_c
    st, seen, wacc, hist = _state(dv0 + bh * t_c, t_r)
    m = np.zeros(N_MOMENTS, np.int64)
    per_head = tc.shape[0] > 1
    wave = 0
    for blk in range(t_c * bh):
        wave = _wave_of(st, seen, wacc, hist, m, capacity, wave, blk, slots)
        # blockIdx.x = key tile, blockIdx.y = batch*head (or the other way round)
        j, y = (blk % t_c, blk // t_c) if tiles_fastest else (blk // bh, blk % bh)
        g = y // group
        hm = y % heads if per_head else 0
        c = min(n_k, (j + 1) * bc) - j * bc
        step = 0
        for i in range(t_r):  # step 8
            cls = tc[hm, i, j]
            if cls == 0:
                continue
            if step == 0:  # step 6
                _read_kv(st, seen, wacc, wave, m, k0 + g * t_c + j, v0 + g * t_c + j, c, d, e, s, 0, True)
            r = min(n_q, (i + 1) * br) - i * br
            row = y * t_r + i
            _touch(st, seen, wacc, wave, q0 + row, r * d * e, READ, step)  # step 9
            _touch(st, seen, wacc, wave, do0 + row, r * d * e, READ, step)
            _touch(st, seen, wacc, wave, l0 + row, r * STAT, READ, step)
            _touch(st, seen, wacc, wave, dd0 + row, r * STAT, READ, step)
            m[STAGED] += s * (2 * r * d + 2 * r)
            _touch(st, seen, wacc, wave, dq0 + row, r * d * a, ATOMIC, step)  # step 15
            _visit(m, cls, r, c)
            step += 1
        done = max(step - 1, 0)
        _touch(st, seen, wacc, wave, dk0 + y * t_c + j, c * d * e, WRITE, done)  # step 18
        _touch(st, seen, wacc, wave, dv0 + y * t_c + j, c * d * e, WRITE, done)
    _close(st, seen, wacc, hist, m, capacity)
    return m
