"""The tile configuration of the flash kernels: sizes, threads, and how threads split the tiles.

A block of ``num_threads`` threads works on a ``block_r`` x ``block_c`` tile of S (query rows
by keys, Dao 2023 Alg. 1 and 2: B_r, B_c) at head dimension ``head_dim``. FA1 and FA2 forward
split S and O (B_r x d) the same way, over ty x tx threads (``ForwardTiles``); the backward
splits dK_j, dV_j (B_c x d) and dQ_i (B_r x d) its own way (kernels/flash_backward.py). Each
kernel adds its shared-memory layout. A configuration is a frozen dataclass: one compiled
variant per value (``build_kernel`` caches on it).
"""
from __future__ import annotations

from dataclasses import dataclass

from ._tiling import Split, pick_tx, split

PAD = 4  # words added to each shared-memory row: keeps 16-byte alignment, spreads banks


@dataclass(frozen=True)
class FlashTiles:
    """Tile sizes and threads of one compiled flash kernel."""

    block_r: int
    block_c: int
    head_dim: int
    num_threads: int

    def check_loads(self) -> None:
        """Every thread loads an equal share of a B_r x d and a B_c x d tile."""
        for name, val in (("block_r", self.block_r), ("block_c", self.block_c)):
            if (val * self.head_dim) % self.num_threads:
                raise ValueError(f"{name}={val} times head_dim={self.head_dim} must be a multiple of "
                                 f"num_threads={self.num_threads} (each thread loads an equal share)")

    def smem_bytes(self) -> int:
        return 4 * self.smem()["words"]

    def smem(self) -> dict:  # each kernel's layout: word offsets and pitches
        raise NotImplementedError


@dataclass(frozen=True)
class ForwardTiles(FlashTiles):
    """FA1 / FA2 forward: S (B_r x B_c) and O (B_r x d) over ty x tx threads, a register micro-tile each."""

    @property
    def tx(self) -> int:
        return pick_tx((self.block_c, self.head_dim), self.num_threads)

    @property
    def rows(self) -> Split:  # query rows of S and O over the ty thread rows
        return split(self.block_r, self.num_threads // self.tx, "block_r over thread rows")

    @property
    def s_cols(self) -> Split:  # key columns of S over the tx thread columns
        return split(self.block_c, self.tx, "block_c over thread columns")

    @property
    def o_cols(self) -> Split:  # head_dim columns of O over the tx thread columns
        return split(self.head_dim, self.tx, "head_dim over thread columns")

    def check(self) -> None:
        self.rows, self.s_cols, self.o_cols  # noqa: B018 (each raises if it cannot split)
        self.check_loads()
