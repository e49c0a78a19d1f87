"""The operations of one step of a decoder-only transformer, as plain PyTorch runs them.

``forward_ops`` lists the forward pass of a ``ModelConfig`` op by op, in launch order, each
with the kernels it launches, its FLOPs (matmul FLOPs from ``costmodel.flops``, per token
times tokens: the one formula, not restated), its DRAM bytes and, for training, the bytes
autograd keeps for the backward pass. ``backward_ops`` derives the backward pass from it.

What "plain PyTorch" launches (the reference, ``costmodel/validation/reference_model.py``,
is written to match, gpt-fast style):

    embedding          1 gather (GPT-2: + position gather + add = 3)
    RMSNorm (fp32)     gpt-fast: x.float(), x*x, mean, +eps, rsqrt, x*r, type_as, *w = 8 kernels
                       (a kernel is skipped where the cast is a no-op: fp32 input); LayerNorm 1
    QKV                1 GEMM (fused wqkv) or 3
    RoPE               rotate_half form per tensor: x*cos, -x2, cat, *sin, + = 5 kernels, q and k
    KV-cache write     2 index copies (inference)
    attention          1 fused SDPA kernel (costmodel/step/attention.py)
    out proj           1 GEMM; residual add 1
    MLP                SwiGLU: 1 GEMM (fused w13) or 2, silu, mul, 1 GEMM; GELU: GEMM, gelu, GEMM
    final norm, LM head (logits of every token, as a plain forward does), sampling (argmax) or loss
                       (logits.float(), log_softmax, nll: 3 kernels)

Training (autocast bf16 over fp32 parameters): every linear layer first casts its fp32
weight to bf16 (one kernel, 6 bytes a parameter) and its input when that is fp32; the
residual stream is fp32 (the embedding's weight is fp32, adds promote), GEMM outputs bf16.

Shapes: ``T`` tokens in the step (B·S for prefill/train, B for decode, Σ new tokens of a ragged
batch), arrays broadcast. Per-layer ops carry ``layer=True`` and run ``n_layers`` times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from costmodel.flops import decode_flops_per_token

_GEMM, _MEM, _ATTN = "gemm", "memory", "attention"


@dataclass
class Op:
    """One operation: what it launches and moves. Amounts are per instance (one layer)."""

    name: str
    kind: str  # gemm | memory | attention
    part: str = "fwd"  # fwd | bwd | optimizer
    layer: bool = False  # runs once per transformer layer
    kernels: int = 1
    matmul_flops: object = 0.0
    hbm_bytes: object = 0.0
    gemm: tuple | None = None  # (m, n, k, in_bytes, weight_bytes, out_bytes)
    attention: dict | None = None  # flops, q_tokens, kv_tokens for the fused attention kernel
    saved_bytes: object = 0.0  # activations autograd keeps for the backward pass
    bwd: str = "generic"  # how backward_ops derives this op's backward
    parts: tuple = ()  # memory ops: ((family, kernels, bytes), ...) by kernel family (simulators/memory_ops.py)

    def __post_init__(self):
        if self.kind == _MEM and not self.parts:
            self.parts = (("vectorized", self.kernels, self.hbm_bytes),)


def _mem(name: str, parts, **kw) -> Op:
    """A memory-bound op from its kernels by family: ((family, kernels, bytes), ...)."""
    parts = tuple((f, k, b) for f, k, b in parts if k)
    return Op(name, _MEM, kernels=sum(k for _, k, _ in parts), hbm_bytes=sum(b for _, _, b in parts), parts=parts, **kw)


@dataclass
class Options:
    """The knobs of a step that change which kernels run and how many bytes they move."""

    train: bool = False
    act_bytes: float = 2.0  # activations (bf16/fp16); fp8 keeps bf16 activations
    gemm_dtype: str = "bf16"  # the tensor unit GEMMs run on
    weight_bytes: float = 2.0  # bytes per weight element as the GEMM reads it
    kv_bytes: float = 2.0
    fused_qkv: bool = True
    fused_gate_up: bool = True
    norm: str = "pytorch"  # pytorch (gpt-fast decomposition) | fused (one kernel)
    rope: str = "pytorch"  # pytorch (rotate_half, 5 kernels a tensor) | fused (one kernel for q and k)
    tensor_parallel: int = 1
    all_logits: bool = True  # a plain forward computes logits for every token
    kv_write: bool = True  # inference writes the new K, V into a cache
    rope_gather: bool = False  # decode: gather cos/sin at the (static-buffer) positions
    recompute: str = "none"


@dataclass
class Tokens:
    """What the step processes: tokens, sequences, and the attention's total keys."""

    T: object  # tokens through the projections and MLP
    sequences: object  # sequences (one sampled token or one loss row block each)
    keys: object  # Σ over the step's queries of the keys each attends to
    kv_tokens: object  # K/V tokens the attention reads (cache + new)
    logits_tokens: object = None  # tokens whose logits are computed (default T)


def _norm(cfg, opts: Options, T, e_in: float, name: str, layer: bool) -> tuple[Op, float]:
    """A norm op and the bytes per element of its output (module docstring's recipes)."""
    h = cfg.d_model
    n = T * h
    e_w = 4.0 if opts.train else opts.act_bytes  # norm weight: fp32 master under autocast
    if opts.norm == "fused" or cfg.norm_type == "layernorm":
        e_out = 4.0 if opts.train else e_in  # autocast runs layer_norm in fp32
        op = _mem(name, [("layernorm", 1, n * (e_in + e_out))], layer=layer,
                  saved_bytes=(n * e_in + 8 * T) if opts.train else 0.0)
        return op, e_out
    cast = e_in != 4.0
    e_out = max(e_in, e_w)
    parts = [("cast_up", 1 if cast else 0, n * (e_in + 4)),  # x.float()
             ("vectorized", 1, 8 * n),  # x * x
             ("reduce", 1, 4 * n + 4 * T),  # mean(-1)
             ("vectorized", 2, 16 * T),  # + eps, rsqrt
             ("broadcast", 1, 8 * n + 4 * T),  # x * r
             ("cast_down", 1 if cast else 0, n * (4 + e_in)),  # type_as(x)
             ("broadcast", 1, n * (e_in + e_out) + h * e_w)]  # * weight
    saved = (8 * n + 4 * T) if opts.train else 0.0  # fp32 x, r and x·r (the *w's input)
    return _mem(name, parts, layer=layer, saved_bytes=saved), e_out


def _linear(opts: Options, name: str, T, n_out: int, k_in: int, flops, e_in: float, layer: bool,
            saves_input: bool = True, bias: bool = False) -> list[Op]:
    """A linear layer: autocast's casts (training) and the GEMM. ``flops`` from costmodel.flops.
    A bias rides in the GEMM's epilogue (cuBLAS's *_bias kernels); in training autocast casts it too
    (one kernel) and the backward reduces the output gradient over the tokens for its gradient."""
    ops = []
    e_a = opts.act_bytes
    if opts.train:
        ops.append(_mem(f"{name}.weight_cast", [("cast_down", 1, 6.0 * n_out * k_in)], layer=layer, bwd="weight_cast"))
        if bias:
            ops.append(_mem(f"{name}.bias_cast", [("cast_down", 1, 6.0 * n_out)], layer=layer, bwd="weight_cast"))
        if e_in == 4.0:
            ops.append(_mem(f"{name}.input_cast", [("cast_down", 1, T * k_in * 6.0)], layer=layer, bwd="input_cast"))
    ops.append(Op(name, _GEMM, layer=layer, matmul_flops=flops, gemm=(T, n_out, k_in, e_a, opts.weight_bytes, e_a),
                  saved_bytes=(T * k_in * e_a if (opts.train and saves_input) else 0.0),
                  bwd="gemm_bias" if bias else "gemm"))
    return ops


def forward_ops(cfg, tokens: Tokens, opts: Options) -> list[Op]:
    """The forward pass, in launch order (module docstring)."""
    t = opts.tensor_parallel
    T, e = tokens.T, opts.act_bytes
    h, d = cfg.d_model, cfg.head_dim
    a, g, f, V = cfg.n_heads // t, max(cfg.n_kv_heads // t, 1), cfg.ffn_dim // t, -(-cfg.vocab_size // t)
    per_tok = decode_flops_per_token(cfg, 0, sliding_window=None)  # one key a query: attn coefficient
    tp = 1.0 / t  # every matmul term is split t ways (Megatron column/row split)
    e_res = 4.0 if opts.train else e  # the residual stream's element bytes
    ab, mb = cfg.attn_bias, cfg.mlp_bias
    ops: list[Op] = []

    # embedding: gather T rows (fp32 master weights in training)
    emb_kernels = 3 if cfg.position_embedding == "learned" else 1
    ops.append(Op("embedding", _MEM, kernels=emb_kernels, hbm_bytes=T * h * e_res * (2 if emb_kernels == 1 else 5),
                  bwd="embedding"))
    if cfg.position_embedding == "rope" and opts.rope_gather:  # cos/sin rows at the decode positions
        ops.append(Op("rope_gather", _MEM, kernels=2, hbm_bytes=4 * T * d * e))
    norm_op, e_norm = _norm(cfg, opts, T, e_res, "attn_norm", True)
    ops.append(norm_op)

    q_dim, kv_dim = a * d, g * d
    if opts.fused_qkv:
        ops += _linear(opts, "qkv", T, q_dim + 2 * kv_dim, h, per_tok.qkv_proj * tp * T, e_norm, True, bias=ab)
    else:
        qf = 2 * h * q_dim * T
        ops += _linear(opts, "q", T, q_dim, h, qf, e_norm, True)
        ops += _linear(opts, "k", T, kv_dim, h, (per_tok.qkv_proj * tp * T - qf) / 2, e_norm, True)[-1:]
        ops += _linear(opts, "v", T, kv_dim, h, (per_tok.qkv_proj * tp * T - qf) / 2, e_norm, True)[-1:]
    if opts.train:  # SDPA saves v, a view of the projection's output, which keeps it whole
        ops[-1] = replace(ops[-1], saved_bytes=ops[-1].saved_bytes + T * (q_dim + 2 * kv_dim) * e)
    if cfg.position_embedding == "rope":
        nq, nk = T * q_dim, T * kv_dim
        if opts.rope == "fused":
            ops.append(_mem("rope", [("vectorized", 1, 2 * e * (nq + nk))], layer=True))
        else:
            # per tensor: -x2, x*cos and r*sin read strided views / broadcast tables; cat; the add
            ops.append(_mem("rope", [("strided", 6, 5 * e * (nq + nk)), ("cat", 2, 2 * e * (nq + nk)),
                                     ("vectorized", 2, 3 * e * (nq + nk))], layer=True))
    if opts.kv_write and not opts.train:
        # decode: index_copy_ at the position; prefill: a strided copy of the transposed K, V
        fam = "index_copy" if opts.rope_gather else "strided"
        ops.append(_mem("kv_write", [(fam, 2, 2 * T * kv_dim * (e + opts.kv_bytes))], layer=True))
    attn_flops = (per_tok.attn_scores + per_tok.attn_values) * tp * tokens.keys
    saved_attn = (T * (2 * q_dim + kv_dim) * e + 4 * a * T) if opts.train else 0.0  # q, k (roped), out, lse
    # cuDNN's SDPA (torch 2.11's choice on sm_90, costmodel/step/sdpa_dispatch.py): one kernel for a
    # prompt; for one query per sequence a split-KV kernel and its lean_reduction (H200 profiles)
    ops.append(Op("attention", _ATTN, layer=True, kernels=2 if opts.rope_gather else 1, matmul_flops=attn_flops,
                  attention=dict(flops=attn_flops, q_tokens=T, kv_tokens=tokens.kv_tokens, q_dim=q_dim, kv_dim=kv_dim),
                  saved_bytes=saved_attn, bwd="attention"))
    ops += _linear(opts, "out_proj", T, h, q_dim, per_tok.out_proj * tp * T, e, True, saves_input=False, bias=ab)
    ops.append(Op("attn_residual", _MEM, layer=True, hbm_bytes=T * h * (2 * e_res + e if opts.train else 3 * e),
                  bwd="residual"))

    norm_op, e_norm = _norm(cfg, opts, T, e_res, "mlp_norm", True)
    ops.append(norm_op)
    if cfg.ffn_type == "swiglu":
        mlp = per_tok.mlp * tp * T  # 2·3·h·f per token: gate, up, down
        if opts.fused_gate_up:
            ops += _linear(opts, "gate_up", T, 2 * f, h, mlp * 2 / 3, e_norm, True)
        else:
            ops += _linear(opts, "gate", T, f, h, mlp / 3, e_norm, True)
            ops += _linear(opts, "up", T, f, h, mlp / 3, e_norm, True)[-1:]
        if opts.train:  # silu and mul save views of the gate/up output: it stays whole
            ops[-1] = replace(ops[-1], saved_bytes=ops[-1].saved_bytes + 2 * T * f * e)
        # silu and mul read the gate / up halves of one tensor: strided views
        fam = "strided" if opts.fused_gate_up else "vectorized"
        ops.append(_mem("silu", [(fam, 1, 2 * T * f * e)], layer=True, saved_bytes=T * f * e if opts.train else 0.0))
        ops.append(_mem("mul", [(fam, 1, 3 * T * f * e)], layer=True))
        ops += _linear(opts, "down", T, h, f, mlp / 3, e, True)
    else:
        mlp = per_tok.mlp * tp * T  # 2·2·h·f per token
        ops += _linear(opts, "fc", T, f, h, mlp / 2, e_norm, True, bias=mb)
        ops.append(Op("gelu", _MEM, layer=True, hbm_bytes=2 * T * f * e, saved_bytes=T * f * e if opts.train else 0.0))
        ops += _linear(opts, "proj", T, h, f, mlp / 2, e, True, bias=mb)
    ops.append(Op("mlp_residual", _MEM, layer=True, hbm_bytes=T * h * (2 * e_res + e if opts.train else 3 * e),
                  bwd="residual"))

    norm_op, e_norm = _norm(cfg, opts, T, e_res, "final_norm", False)
    ops.append(norm_op)
    TL = T if (opts.all_logits or tokens.logits_tokens is None) else tokens.logits_tokens
    ops += _linear(opts, "lm_head", TL, V, h, per_tok.lm_head * tp * TL, e_norm, False)
    if opts.train:
        ops.append(_mem("loss", [("cast_up", 1, 6.0 * TL * V), ("reduce", 2, 8.0 * TL * V)],
                        saved_bytes=4.0 * TL * V, bwd="loss"))
    else:
        ops.append(_mem("sample", [("reduce", 1, tokens.sequences * V * e + 8 * tokens.sequences)], bwd="none"))
    for op in ops:
        if op.name not in ("embedding", "final_norm", "lm_head", "lm_head.weight_cast", "lm_head.input_cast",
                           "loss", "sample", "rope_gather"):
            op.layer = True
    return ops


def _gemm_bwd(op: Op) -> list[Op]:
    m, n, k, e_in, e_w, e_out = op.gemm
    return [Op(f"{op.name}.dgrad", _GEMM, "bwd", op.layer, matmul_flops=op.matmul_flops, gemm=(m, k, n, e_out, e_w, e_in)),
            Op(f"{op.name}.wgrad", _GEMM, "bwd", op.layer, matmul_flops=op.matmul_flops, gemm=(n, k, m, e_out, e_in, e_in))]


def backward_ops(fwd: list[Op], cfg, tokens: Tokens, opts: Options) -> list[Op]:
    """The backward pass, in reverse order of the forward.

    Rules: a GEMM's backward is two GEMMs of the same FLOPs (dgrad, wgrad), and with a bias a
    reduction of the output gradient over the tokens (reduce_kernel in the H200 profiles); autocast's casts
    cast the gradient back to fp32 (one kernel, 6 bytes an element); a residual add sums the
    two gradient branches (one fp32 add); the fused attention kernel runs its backward
    (cuDNN: dot(dO, O), main loop, dQ conversion; with GQA two more reductions of dK, dV over the
    query heads of a group: 3 or 5 kernels, as the H200 profiles show); the loss backward
    fills, scatters, runs log_softmax's backward and casts (4 kernels, 22 bytes a logit);
    the embedding backward zero-fills an fp32 table and scatters (5 kernels assumed).
    Any other memory-bound op ("generic"): twice its forward kernels and bytes (reads the
    gradient and the saved input, writes the input's gradient). The first GEMM's dgrad
    (the embedding output's gradient) is needed: the embedding weight trains.
    """
    out: list[Op] = []
    V, h = cfg.vocab_size // opts.tensor_parallel, cfg.d_model
    for op in reversed(fwd):
        if op.bwd in ("gemm", "gemm_bias"):
            out += _gemm_bwd(op)
            if op.bwd == "gemm_bias":  # the bias gradient: the output gradient summed over the tokens
                m, n = op.gemm[0], op.gemm[1]
                out.append(_mem(f"{op.name}.bias_grad", [("reduce", 1, m * n * op.gemm[5] + 4.0 * n)], part="bwd",
                                layer=op.layer))
        elif op.bwd == "weight_cast":
            out.append(_mem(f"{op.name}.grad_cast", [("cast_up", 1, op.hbm_bytes)], part="bwd", layer=op.layer))
        elif op.bwd == "input_cast":
            out.append(_mem(f"{op.name}.grad_cast", [("cast_up", 1, op.hbm_bytes)], part="bwd", layer=op.layer))
        elif op.bwd == "residual":
            out.append(Op(f"{op.name}.grad_add", _MEM, "bwd", op.layer, hbm_bytes=12.0 * tokens.T * h))
        elif op.bwd == "attention":
            gqa = cfg.n_kv_heads != cfg.n_heads  # cuDNN: dot(dO, O), main loop, dQ convert; + dK, dV head reductions
            out.append(Op(f"{op.name}.bwd", _ATTN, "bwd", op.layer, kernels=5 if gqa else 3, matmul_flops=2 * op.matmul_flops,
                          attention={**op.attention, "flops": 2 * op.attention["flops"]}))
        elif op.bwd == "loss":
            TL = op.saved_bytes / (4.0 * V)
            out.append(_mem("loss.bwd", [("vectorized", 2, 8.0 * TL * V), ("reduce", 1, 8.0 * TL * V),
                                         ("cast_down", 1, 6.0 * TL * V)], part="bwd"))
        elif op.bwd == "embedding":
            out.append(Op("embedding.bwd", _MEM, "bwd", False, kernels=5,
                          hbm_bytes=4.0 * cfg.vocab_size * h + 8.0 * tokens.T * h))
        elif op.bwd == "none":
            continue
        else:
            out.append(_mem(f"{op.name}.bwd", [(f, 2 * k, 2 * np.asarray(b, dtype=np.float64)) for f, k, b in op.parts],
                            part="bwd", layer=op.layer))
    return out


def recompute_ops(fwd: list[Op], recompute: str) -> list[Op]:
    """Forward work redone in the backward pass: the whole layer (full) or the attention core
    (selective, Korthikanti et al. 2022 §5), as costmodel.flops.training_flops books them."""
    if recompute == "none":
        return []
    keep = (lambda op: op.layer) if recompute == "full" else (lambda op: op.kind == _ATTN)
    return [replace(op, name=f"recompute:{op.name}", part="bwd", saved_bytes=0.0) for op in fwd if keep(op)]


def optimizer_ops(n_params: int, n_tensors: int) -> list[Op]:
    """Fused AdamW (torch.optim.AdamW(fused=True)) over fp32 params: reads p, g, m, v, writes
    p, m, v: 28 bytes a parameter. It launches one multi-tensor kernel per 320 blocks of 65536
    elements (ATen MultiTensorApply.cuh: kChunkSize 65536, depth_to_max_blocks 320) and at
    least one per 110 tensors (depth_to_max_tensors for 4 lists)."""
    kernels = max(int(np.ceil(n_params / (320 * 65536))), int(np.ceil(n_tensors / 110)), 1)
    return [Op("adamw", _MEM, "optimizer", False, kernels=kernels, hbm_bytes=28.0 * n_params, bwd="none")]


__all__ = ["Op", "Options", "Tokens", "backward_ops", "forward_ops", "optimizer_ops", "recompute_ops"]
