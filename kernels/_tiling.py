"""How the threads of one block share a register tile, and the one product they run.

Every matrix product in these kernels is register-tiled the same way. A block's
threads form a ``ty x tx`` grid (thread ``t`` is ``(t // tx, t % tx)``, so the ``tx``
threads of one row group are neighbours in a warp). A ``rows x cols`` tile is cut
into micro-tiles of ``tm x tn`` values held in registers, one per thread, where
``tm = rows / ty`` and ``tn = cols / tx``.

Indices are dealt out in chunks of up to 4 consecutive ones, round-robin: with
chunk ``ch``, thread column ``x`` owns columns ``(b // ch) * (ch * tx) + ch * x + b % ch``
for ``b < tn`` (rows alike). Four consecutive float32 words are one 16-byte
shared-memory load, and the threads of a warp read consecutive chunks, so the
loads are free of bank conflicts.

Both operands of every product sit in shared memory "k-major": A as ``[k][rows]``
and B as ``[k][cols]``, so one step of the reduction is an outer product of a
row-chunk of A and a column-chunk of B (``outer_product_mac``).
"""
from __future__ import annotations

from dataclasses import dataclass

from numba import cuda, float32

from ._cuda import FASTMATH, SIMULATOR, U

CHUNK = 4  # words per 16-byte vector


@dataclass(frozen=True)
class Split:
    """One dimension of a tile dealt out to ``threads`` threads."""

    extent: int
    threads: int

    @property
    def per_thread(self) -> int:
        return self.extent // self.threads

    @property
    def chunk(self) -> int:
        return min(CHUNK, self.per_thread)

    def offset(self, i: int) -> int:
        """Index of a thread's ``i``-th owned element, less ``chunk * thread``."""
        ch = self.chunk
        return (i // ch) * (ch * self.threads) + i % ch


def split(extent: int, threads: int, what: str) -> Split:
    """Deal ``extent`` indices to ``threads`` threads; ValueError if it cannot be even."""
    per = extent // threads if threads else 0
    if threads < 1 or extent % threads or per < 1 or (per % CHUNK and CHUNK % per):
        raise ValueError(
            f"{what}: {extent} cannot be dealt to {threads} threads in equal chunks "
            f"(each thread needs a power of two up to {CHUNK}, or a multiple of {CHUNK}, of them)"
        )
    return Split(extent, threads)


def pick_tx(cols: tuple[int, ...], num_threads: int, max_tx: int = 8) -> int:
    """Largest power-of-two ``tx <= max_tx`` that gives every column extent whole chunks."""
    tx = max_tx
    while tx > 1 and (num_threads % tx or any(c % (CHUNK * tx) for c in cols)):
        tx //= 2
    return tx


def device_fn(fn):
    """A device function inlined into its caller (so its arrays stay in registers)."""
    if SIMULATOR:
        return cuda.jit(device=True)(fn)
    return cuda.jit(device=True, forceinline=True, fastmath=FASTMATH)(fn)


def outer_product_mac(rows: Split, cols: Split, steps: int):
    """Device function ``mac(sm, a_base, a_pitch, b_base, b_pitch, acc, af, bf)``.

    acc[a * tn + b] += sum over k < steps of A[k][row(a)] * B[k][col(b)], where
    A[k][r] = sm[a_base + k * a_pitch + r] and B likewise; ``a_base`` and ``b_base``
    already include the thread's ``chunk * thread`` offsets. ``af`` and ``bf`` are
    scratch register arrays of tm and tn words.
    """
    TM, TN = rows.per_thread, cols.per_thread
    R_CH, R_ST = rows.chunk, rows.chunk * rows.threads
    C_CH, C_ST = cols.chunk, cols.chunk * cols.threads

    @device_fn
    def mac(sm, a_base, a_pitch, b_base, b_pitch, acc, af, bf):
        for kk in range(steps):
            ak = a_base + U(kk) * a_pitch
            bk = b_base + U(kk) * b_pitch
            for a in range(TM):
                af[a] = sm[ak + U((a // R_CH) * R_ST + a % R_CH)]
            for b in range(TN):
                bf[b] = sm[bk + U((b // C_CH) * C_ST + b % C_CH)]
            for a in range(TM):
                for b in range(TN):
                    acc[a * TN + b] += af[a] * bf[b]

    return mac


def _segment_max(red, base, t, width, val):
    """Max of one value per thread over ``width`` threads (a power of two), by a tree
    in ``red[base : base + width]`` (shared memory); every thread gets the result.
    ``t`` is the thread's index within its segment; all threads must call it."""
    red[base + t] = val
    cuda.syncthreads()
    half = width // U(2)
    while half > U(0):
        if t < half:
            other = red[base + t + half]
            if other > red[base + t]:
                red[base + t] = other
        cuda.syncthreads()
        half //= U(2)
    out = red[base]
    cuda.syncthreads()
    return out


def _segment_sum(red, base, t, width, val):
    red[base + t] = val
    cuda.syncthreads()
    half = width // U(2)
    while half > U(0):
        if t < half:
            red[base + t] += red[base + t + half]
        cuda.syncthreads()
        half //= U(2)
    out = red[base]
    cuda.syncthreads()
    return out


segment_max = device_fn(_segment_max)
segment_sum = device_fn(_segment_sum)


FULL_WARP = U(0xFFFFFFFF)


def lane_sum(lanes: int):
    """Device function ``lane_sum(sm, t, val)``: ``val`` summed over the ``lanes``
    neighbouring lanes of thread ``t`` (a power of two up to 32), returned to each of them.

    On the device: butterfly shuffles (xor 1, 2, 4, ...), no shared memory. numba's
    simulator has no warp shuffles: there the sum goes through ``sm[0 : blockDim]`` with
    two barriers, so all threads of the block must call it.
    """
    if lanes < 1 or lanes > 32 or lanes & (lanes - 1):
        raise ValueError(f"lanes={lanes} must be a power of two from 1 to 32")
    steps = lanes.bit_length() - 1
    if not SIMULATOR:
        @device_fn
        def shuffle_sum(sm, t, val):
            for i in range(steps):
                val += cuda.shfl_xor_sync(FULL_WARP, val, U(1) << U(i))
            return val

        return shuffle_sum

    UL = U(lanes)

    @device_fn
    def smem_sum(sm, t, val):
        sm[t] = val
        cuda.syncthreads()
        first = t - t % UL
        tot = float32(0)
        for i in range(lanes):
            tot += sm[first + U(i)]
        cuda.syncthreads()
        return tot

    return smem_sum
