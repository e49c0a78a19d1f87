"""An eager PyTorch program as a graph of the CUDA kernels it launches, built one kernel at a time.

``KernelGraph`` records tensors with their sizes and kernels with their work (FLOPs by unit,
bytes, grid, the kernel family whose fitted bandwidth times it: hardware_specs/eager_ops.py);
``finish`` connects writers to readers (``standard.connect``). The approximate-attention
methods (``linformer``, ``performer``, ``reformer``) each build one; ``approximate`` counts and
times it.
"""

from __future__ import annotations

import math

import networkx as nx

from simulators import standard

INPUTS = ("Q", "K", "V")
# PyTorch CUDA kernel families, each with its own sustained bandwidth (hardware_specs/eager_ops.py):
KERNEL_CLASSES = (
    "gemm",  # cuBLAS (nvjet) GEMM
    "pointwise",  # vectorized elementwise over contiguous same-shape operands or a scalar
    "broadcast",  # add / sub / mul with a broadcast operand (TensorIterator's non-vectorized path)
    "broadcast_div",  # the same, a division
    "compare",  # broadcast comparison writing a bool mask
    "sum_inner", "max_inner", "norm_inner", "argmax_inner",  # reductions over the last dimension
    "sum_inner_64",  # a sum over a last dimension of <= 64 elements (a third of sum_inner's speed on the H200)
    "reduce_outer",  # reductions over leading dimensions (or the whole tensor)
    "softmax",  # torch.softmax over the last dimension (softmax_warp_forward)
    "softmax_outer",  # torch.softmax over a leading dimension (cunn_SpatialSoftMaxForward)
    "gather", "roll", "slice_copy", "tril", "scan", "sort",
)
INT32, INT64, BOOL = 4, 8, 1
_BLOCK = 1024  # elements per block of an elementwise kernel (grid size, informational)
_GEMM_TILE = 128  # output tile rows/cols of a GEMM block (grid size, informational)
_INT32_MAX = 2**31 - 1

class KernelGraph:
    """Builder of one method's kernel graph: tensors with sizes, kernels with their work."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.e = cfg.element_bytes
        bh, n, d = cfg.batch_heads, cfg.seq_len, cfg.head_dim
        self.g = nx.DiGraph(tensors={})
        for name in INPUTS:
            self.tensor(name, bh * n * d)
        self.params: list[str] = []

    def tensor(self, name: str, elements: float, element_bytes: int | None = None) -> str:
        self.g.graph["tensors"][name] = int(elements * (self.e if element_bytes is None else element_bytes))
        return name

    def param(self, name: str, elements: float) -> str:
        """A tensor that exists before the call (a projection, the random features)."""
        self.params.append(name)
        return self.tensor(name, elements)

    def _add(self, name, kind, reads, writes, grid, matmul=0.0, other=0.0, exp=0.0, reread_bytes=0, gemm=None,
             note="", cls=None, launches=1, out_elements=0.0):
        cls = cls or kind
        if cls not in KERNEL_CLASSES:
            raise ValueError(f"kernel class {cls!r} of {name} is not one of {', '.join(KERNEL_CLASSES)}")
        self.g.add_node(name, kind=kind, cls=cls, launches=launches, pass_="fwd", reads=tuple(reads),
                        writes=tuple(writes), grid=grid, out_elements=float(out_elements),
                        matmul_flops=float(matmul), other_flops=float(other), exp_ops=float(exp),
                        reread_bytes=int(reread_bytes), gemm=gemm, note=note, members=(name,), order=len(self.g))

    def gemm(self, name: str, reads, out: str, m: int, n: int, k: int, batch: int = 1, note: str = ""):
        """``batch`` products C (m x n) = A (m x k) B (k x n): 2 m n k batch FLOPs on tensor cores.

        Launches: cuBLAS adds a small second kernel past 65535 batched products (the grid's z
        limit) or at 2^20 rows and more (seen with Nsight Compute on the H200, 2026-12-02)."""
        self.tensor(out, batch * m * n)
        grid = (math.ceil(n / _GEMM_TILE), math.ceil(m / _GEMM_TILE), batch)
        self._add(name, "gemm", reads, [out], grid, matmul=2.0 * m * n * k * batch, gemm=(m, n, k, batch),
                  note=note or f"{batch} x ({m} x {k}) @ ({k} x {n})",
                  launches=1 + int(batch > 65535 or m >= 2**20), out_elements=batch * m * n)

    def op(self, name: str, kind: str, reads, out: str | list[tuple[str, float, int | None]], elements: float,
           out_elements: float | None = None, out_bytes: int | None = None, other: float = 1.0, exp: float = 0.0,
           reread_bytes: int = 0, note: str = "", cls: str | None = None, launches: int = 1):
        """A memory-bound kernel over ``elements`` elements (its largest operand); ``other`` / ``exp``
        per element. ``out``: the output tensor (``out_elements`` of ``out_bytes``), or a list of
        (name, elements, element bytes) for several."""
        outs = out if isinstance(out, list) else [(out, elements if out_elements is None else out_elements, out_bytes)]
        for t, n_el, nb in outs:
            self.tensor(t, n_el, nb)
        # TensorIterator halves a kernel until 32-bit indexing fits (PyTorch's with_32bit_indexing)
        if elements > _INT32_MAX:
            launches = max(launches, 2 ** math.ceil(math.log2(elements / _INT32_MAX)))
        self._add(name, kind, reads, [t for t, _, _ in outs], (max(1, math.ceil(elements / _BLOCK)),),
                  other=other * elements, exp=exp * elements, reread_bytes=reread_bytes, note=note or kind, cls=cls,
                  launches=launches, out_elements=sum(n_el for _, n_el, _ in outs))

    def finish(self) -> nx.DiGraph:
        standard.connect(self.g, inputs=INPUTS + tuple(self.params), outputs=("O",))
        return self.g
