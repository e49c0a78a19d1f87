"""Graph implementations priced op by op with the GPU's calibrated op models, the ones the whole-model
step predictor uses (costmodel/step): GEMMs by the cuBLAS model (``simulators.matmul.gemm_time``,
the ``gemm:`` section), memory-bound kernels by the bandwidth-vs-bytes curve of their TensorIterator
family (``simulators.memory_ops.memory_op_time``, ``memory_ops:``), and the host issuing them one by
one (``simulators.memory_ops.eager_time``: kernel i starts when the host has issued it and kernel
i - 1 has ended; host CPU time per kernel from ``memory_ops.launch``: per family, a cuBLAS call, and
per kernel under autograd for the backward's).

A catalog entry opts in with ``priced_by: op_models`` (torch-eager); every step then names its
``family`` (memory ops) or its GEMM shape ``mnk`` (gemm steps). The forward softmax, where torch runs
its register block kernel (cunn_SoftMaxForwardReg: 2048 < L, ceil(L / 1024) < 10), is timed by
``memory_ops.softmax_block_time`` (fitted ``memory_ops.softmax_block``); the other row-wise kernels
(the warp softmax, the backward's) stay on the attention timing model (timing.py with the fitted
``rowwise_efficiency`` / ``rowblock_efficiency``), as for the math backend. The call's own host time beyond its kernels' launches (the Python function,
autograd's entry) is the implementation's fitted ``host_fwd_s`` / ``host_fwd_bwd_s``.

Every graph implementation's forward softmax over a causally masked or windowed score matrix (eager's
masked_fill, the math backend's -inf bias) is charged its -inf entries' extra time besides
(``masked_softmax``: ``memory_ops.softmax_masked``, measured against the same rows unmasked).
"""

from __future__ import annotations

from simulators.implementations import GraphStep, Implementation
from simulators.matmul import gemm_time
from simulators.mask import band_of, kept_pairs
from simulators.memory_ops import eager_time, memory_op_time, precision_class, softmax_block_time, softmax_masked_s

BOUND = {"gemm": "gemm model", "elementwise": "memory-op model"}
# (id(spec), impl, step, pass, config) -> (spec, GPU s): the fit re-times the same calls many times; the
# spec is kept in the value so that its id is not reused by another spec while the entry lives
_CACHE: dict = {}


def steps_by_name(impl: Implementation) -> dict[tuple[str, str], GraphStep]:
    return {**{(s.name, "fwd"): s for s in impl.fwd}, **{(s.name, "bwd"): s for s in impl.bwd}}


def gemm_shape(step: GraphStep, cfg) -> tuple[int, int, int]:
    """(M, N, K) of one head's product, from the step's ``mnk`` letters: N queries, L keys, d head_dim."""
    size = {"N": cfg.seq_len, "L": cfg.kv_len, "d": cfg.head_dim}
    m, n, k = (size[x] for x in step.mnk)
    return m, n, k


def family_name(step: GraphStep, cfg) -> str | None:
    """The memory-op family of an elementwise step; ``repeat`` (repeat_interleave's non-vectorized
    direct_copy) and ``masked_fill`` (masked_fill_ with a broadcast bool mask, non-vectorized
    elementwise_kernel<128, 4>), both a per-element rate measured per dtype (attn_ops_grids), resolve to
    ``<family>_fp32`` or ``<family>_bf16`` (any 16-bit dtype) by the element size of what the step reads."""
    if step.family not in ("repeat", "masked_fill"):
        return step.family
    return f"{step.family}_{precision_class(step.read_element_bytes(cfg.element_bytes))}"


def op_gpu_s(spec, step: GraphStep, k, cfg) -> float:
    """GPU seconds of one graph step's kernels (``k``: its KernelCount) on the op models."""
    if step.kind == "gemm":
        m, n, kk = gemm_shape(step, cfg)
        return float(gemm_time(spec, m, n, kk, cfg.dtype, batch=cfg.batch_heads))
    nbytes = k.global_read_bytes + k.global_write_bytes
    return float(memory_op_time(spec, nbytes, kernels=step.launches, family=family_name(step, cfg)))


def family_result(spec, impl: Implementation, cfg, r, backward: bool):
    """An attention-priced graph implementation's kernel result ``r``, re-timed on its memory-op family
    when its step names one (torch-math's repeat_interleave); GPU time only (the call's host cost is the
    implementation's fitted host_fwd_s)."""
    step = steps_by_name(impl)[(r.name, "bwd" if backward else "fwd")]
    if step.kind != "elementwise" or step.family is None:
        return r
    t = op_gpu_s(spec, step, r, cfg)
    return r.model_copy(update={"time_s": t, "bound": BOUND["elementwise"], "times_s": {BOUND["elementwise"]: t},
                                "launch_s": 0.0, "fixed_s": 0.0})


def masked_softmax(spec, impl: Implementation, cfg, results: list, roles: list[str]) -> list:
    """``results`` with each forward softmax over a masked score matrix (causal or windowed: its input
    holds -inf where the band drops the pair) charged the masked elements' extra time
    (``memory_ops.softmax_masked_s``, the warp or block kernel as build._graph chose it, at the dtype the
    step reads); the backward's softmax reads probabilities, 0 there, and is left as it is."""
    if not (cfg.causal or cfg.window is not None):
        return results
    steps = steps_by_name(impl)
    masked = cfg.batch_heads * (cfg.seq_len * cfg.kv_len - kept_pairs(band_of(cfg)))
    out = []
    for r, role in zip(results, roles):
        step = steps.get((r.name, "fwd"))
        if role in ("rowwise_fwd", "rowblock_fwd") and step is not None and step.exp and masked > 0:
            extra = float(softmax_masked_s(spec, masked, "warp" if role == "rowwise_fwd" else "block",
                                           step.read_element_bytes(cfg.element_bytes)))
            r = r.model_copy(update={"time_s": r.time_s + extra, "masked_s": extra})
        out.append(r)
    return out


def host_per_launch_s(spec, step: GraphStep, backward: bool) -> float:
    """Host CPU time to issue one of the step's kernels (``memory_ops.launch``)."""
    from hardware_specs.op_timing import memory_ops_model

    launch = memory_ops_model(spec).launch
    if backward and launch.host_per_kernel_autograd_s is not None:
        return launch.host_per_kernel_autograd_s
    if step.kind == "gemm":
        return launch.host_per_library_call_s or launch.host_per_kernel_s
    # masked_fill_ is measured on the host as the broadcast family (TensorIterator, one launch)
    family = {"masked_fill": "broadcast"}.get(step.family or "", step.family or "")
    return launch.host_by_family.get(family, launch.host_per_kernel_s)


def issue_overhead_s(spec, impl: Implementation, results: list, roles: list[str]) -> float:
    """Host time of a graph implementation's call not hidden behind its kernels: the host issues them
    one by one (``memory_ops.eager_time``, ``host_per_launch_s`` each), so short kernels wait on it and
    long ones hide the issue of those after them. ``results``: the timed kernels, ``roles``: build's."""
    steps = steps_by_name(impl)
    gpu, host = [], []
    for r, role in zip(results, roles):
        backward = role.endswith("_bwd")
        step = steps[(r.name, "bwd" if backward else "fwd")]
        gpu += [r.time_s / step.launches] * step.launches
        host += [host_per_launch_s(spec, step, backward)] * step.launches
    wall = float(eager_time(gpu, host)) if gpu else 0.0
    return max(0.0, wall - sum(gpu))


def price(spec, impl: Implementation, cfg, results: list, roles: list[str]) -> list:
    """The kernel results with the op-model steps re-timed; ``results``: the kernels as timing.py timed
    them (row-wise steps keep that time), ``roles``: build.kernels's."""
    steps = steps_by_name(impl)
    out = []
    for r, role in zip(results, roles):
        backward = role.endswith("_bwd")
        step = steps[(r.name, "bwd" if backward else "fwd")]
        if step.kind == "rowwise" and not backward:
            t = softmax_block_time(spec, cfg.batch_heads * cfg.seq_len, cfg.kv_len, cfg.element_bytes)
            if t is not None:
                r = r.model_copy(update={"time_s": float(t), "bound": "softmax block model",
                                         "times_s": {"softmax block model": float(t)}, "launch_s": 0.0, "fixed_s": 0.0})
        elif step.kind in BOUND:
            key = (id(spec), spec.name, impl.name, step.name, backward, cfg)
            if key not in _CACHE:
                if len(_CACHE) > 50_000:
                    _CACHE.clear()
                _CACHE[key] = (spec, op_gpu_s(spec, step, r, cfg))
            t = _CACHE[key][1]
            r = r.model_copy(update={"time_s": t, "bound": BOUND[step.kind], "times_s": {BOUND[step.kind]: t},
                                     "launch_s": 0.0, "fixed_s": 0.0})
        out.append(r)
    return out
