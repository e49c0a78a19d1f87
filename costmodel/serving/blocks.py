"""A paged KV-cache block manager: fixed-size blocks handed out on demand, freed on finish, and moved
to host memory (swap) or dropped (recompute) when a request is preempted.

Kwon et al. 2023 (vLLM, PagedAttention) §4.2-4.5: the cache is cut into blocks of ``block_size``
tokens; a request holding n tokens holds ceil(n / block_size) blocks, listed in its block table (any
physical blocks, in order); a new block is taken only when the last one is full (§4.3, "the
KV cache manager ... allocates a new physical block"). When none is free the scheduler preempts
a request (§4.5): *swap* copies its blocks to CPU memory and back later; *recompute* drops them and
re-runs the prompt and the tokens generated so far as one prefill. A ``watermark`` of blocks is kept
free when admitting a new request, so one just admitted is not preempted at its next token (vLLM's
``watermark=0.01`` of the blocks, BlockSpaceManager).

The same object serves the simulator (counts) and the GPU loop (its block tables index a real
paged KV tensor), so both allocate alike.
"""

from __future__ import annotations


def blocks_for(tokens: int, block_size: int) -> int:
    """ceil(tokens / block_size): blocks that hold ``tokens`` KV entries."""
    return -(-tokens // block_size)


class BlockManager:
    """GPU blocks 0..num_blocks-1 and host (swap) blocks, with a block table per request id."""

    def __init__(self, num_blocks: int, block_size: int = 16, watermark_fraction: float = 0.01,
                 num_cpu_blocks: int = 0):
        if not (isinstance(num_blocks, int) and num_blocks >= 1):
            raise ValueError(f"num_blocks: {num_blocks!r}; at least one KV block must fit (a whole number >= 1)")
        if not (isinstance(block_size, int) and block_size >= 1):
            raise ValueError(f"block_size: {block_size!r}; a whole number of tokens >= 1")
        if not 0 <= watermark_fraction < 1:
            raise ValueError(f"watermark_fraction: {watermark_fraction!r}; a fraction in [0, 1)")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.watermark_blocks = int(watermark_fraction * num_blocks)
        self.num_cpu_blocks = num_cpu_blocks
        self._free = list(range(num_blocks - 1, -1, -1))  # a stack: pop() hands out block 0 first
        self.tables: dict[int, list[int]] = {}  # request id -> physical GPU blocks, in token order
        self.swapped: dict[int, int] = {}  # request id -> blocks held in host memory
        self.cpu_used = 0

    # ------------------------------------------------------------ queries

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    @property
    def used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    def held(self, rid: int) -> int:
        table = self.tables.get(rid)
        return len(table) if table is not None else 0

    def can_admit(self, tokens: int) -> bool:
        """Room for a new request's ``tokens`` while keeping the watermark free."""
        return len(self._free) - blocks_for(tokens, self.block_size) >= self.watermark_blocks

    def needed(self, rid: int, tokens: int) -> int:
        """Blocks to add so request ``rid`` can hold ``tokens`` KV entries."""
        return max(0, blocks_for(tokens, self.block_size) - self.held(rid))

    # ------------------------------------------------------------ changes

    def grow(self, rid: int, tokens: int) -> bool:
        """Give ``rid`` blocks for ``tokens`` entries; False (and nothing taken) if too few are free."""
        need = self.needed(rid, tokens)
        if need > len(self._free):
            return False
        table = self.tables.setdefault(rid, [])
        for _ in range(need):
            table.append(self._free.pop())
        return True

    def free(self, rid: int) -> int:
        """Return ``rid``'s GPU blocks (finished, or preempted by recompute); how many."""
        table = self.tables.pop(rid, [])
        self._free.extend(reversed(table))
        return len(table)

    def can_swap_out(self, rid: int) -> bool:
        return self.cpu_used + self.held(rid) <= self.num_cpu_blocks

    def swap_out(self, rid: int) -> int:
        """Move ``rid``'s blocks to host memory; returns the blocks copied (GPU -> CPU)."""
        n = self.free(rid)
        self.swapped[rid] = n
        self.cpu_used += n
        return n

    def swap_in(self, rid: int) -> int:
        """Bring ``rid``'s blocks back from host memory; returns the blocks copied (CPU -> GPU)."""
        n = self.swapped.pop(rid)
        self.cpu_used -= n
        table = self.tables.setdefault(rid, [])
        for _ in range(n):
            table.append(self._free.pop())
        return n


__all__ = ["BlockManager", "blocks_for"]
