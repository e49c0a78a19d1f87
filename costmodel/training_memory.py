"""Memory to train a transformer: model states (ZeRO) plus activations (Korthikanti et al.).

Model states, mixed-precision Adam (Rajbhandari et al. 2020, "ZeRO", §3.1): fp16/bf16
parameters 2Ψ, their gradients 2Ψ, and the optimizer's fp32 parameter copy, momentum and
variance 12Ψ bytes: 16Ψ for Ψ parameters. Tensor parallelism splits them t ways; ZeRO
stage 1/2/3 further splits optimizer states / + gradients / + parameters across the
data-parallel group (ZeRO §5.1-5.3, Figure 1).

Activations per transformer layer, Korthikanti et al. 2022, "Reducing Activation
Recomputation in Large Transformer Models", §4.1 (s = sequence length, b = micro-batch,
h = hidden size, a = heads, t = tensor-parallel size; 16-bit activations, 1-byte dropout
masks, a GPT MLP of width 4h). Their Table 2:

    no parallelism                          s·b·h·(34 + 5·a·s/h)            eq. (1)
    tensor parallel                         s·b·h·(10 + 24/t + 5·a·s/(h·t)) eq. (2)
    tensor + sequence parallel              s·b·h·(34/t + 5·a·s/(h·t))      eq. (3)
    tensor parallel + selective recompute   s·b·h·(10 + 24/t)
    tensor + sequence + selective recompute s·b·h·34/t
    full recomputation                      s·b·h·2  (only the layer input is kept)

The 34 is attention 11 (QKV input 2, Q and K 4, V 2, output-projection input 2, dropout
mask 1) + MLP 19 (input 2, GeLU input 8, second-linear input 8, dropout mask 1) + the two
layer norms' inputs 4; the 5·a·s/h is the a·s×s softmax output (2), its dropout mask (1)
and the dropped-out probabilities fed to P·V (2). Tensor parallelism splits everything
inside the attention and MLP blocks (24 of the 34) and the s² terms; sequence parallelism
also splits the rest (norms, dropouts, block inputs: the 10). Selective recomputation
(their §5) drops exactly the s² terms and recomputes them in the backward pass.

Generalization used here (our derivation, same accounting, exact for the paper's case):
with q_dim = a·d and kv_dim = g·d (GQA) and MLP width f,
attention = 2h (input) + 2(q_dim + kv_dim) (Q, K) + 2·kv_dim (V) + 2·q_dim (o-proj input)
+ 1·h (dropout); MLP = 2h (input) + 1·h (dropout) + 4f for GeLU (its input, the second
linear's input) or 6f for SwiGLU (gate and up outputs, the down projection's input);
norms 4h whether LayerNorm or RMSNorm (each keeps its input). ``dropout=False`` (Llama-style
training) drops the masks (h, h, and a·s² of the s² terms) and the dropped-out copy of the
probabilities (2·a·s²: P·V then reads the softmax output already kept), so the s² term
becomes 2·a·s·b·s. With a = g, d = h/a, f = 4h, dropout on, this is s·b·h·(34 + 5as/h).

FlashAttention (Dao et al. 2022) never writes the s×s score or probability matrix: the
backward pass recomputes them tile by tile from Q, K, V, the output and the per-row
softmax statistics (their Algorithm 2), and regenerates dropout masks from the RNG state.
So what it keeps is exactly what selective recomputation keeps, and its activation count
equals the selective-recompute count. (The per-row statistics, a·s·b fp32 numbers per
layer, are 4/(34·d) of the rest, under 0.1% for d = 128, and are left out as the paper's
model has no such term.)

Outside the layers (Korthikanti §4.3): the embedding dropout mask s·b·h (1 byte); before
the output, the final norm's input 2sbh and the output projection's input 2sbh, and the
logits kept in fp32 for the cross-entropy, 4·s·b·v/t (vocabulary-parallel); with sequence
parallelism the sbh terms are split t ways too, giving §4.3's 4·s·b·h/t·(1 + v/h).
Pipeline parallelism is not modelled (with 1F1B the first stage keeps L layers' worth,
Korthikanti eq. (4), the same total as here).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from costmodel.calculator_io import Number, Result, check, element_bytes, require, resolve, to_value
from costmodel.models import ModelConfig
from costmodel.params import count_params_arrays

_SHAPE = (
    "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "max_seq_len",
    "ffn_type", "norm_type", "attn_bias", "mlp_bias", "tied_embeddings", "position_embedding",
)

Recompute = Literal["none", "selective", "full"]

# ZeRO §3.1, mixed-precision Adam: bytes per parameter.
WEIGHT_BYTES_PER_PARAM = 2  # fp16/bf16 parameters
GRADIENT_BYTES_PER_PARAM = 2  # fp16/bf16 gradients
OPTIMIZER_BYTES_PER_PARAM = 12  # fp32 parameter copy 4 + momentum 4 + variance 4 (K = 12)


class ActivationsPerLayer(Result):
    """Activation bytes one transformer layer keeps for the backward pass, per GPU."""

    attention_bytes: Number  # linear terms of the attention block
    attention_scores_bytes: Number  # the s² terms (softmax output, dropout mask, dropped-out copy)
    mlp_bytes: Number
    norms_bytes: Number
    total_bytes: Number


class TrainingMemory(Result):
    """Training memory per GPU: model states plus activations of one micro-batch."""

    params: Number  # Ψ, the whole model
    weights_bytes: Number
    gradients_bytes: Number
    optimizer_bytes: Number
    model_states_bytes: Number
    activations_per_layer: ActivationsPerLayer
    activations_layers_bytes: Number  # per layer · n_layers
    activations_embedding_bytes: Number
    activations_output_bytes: Number
    activations_bytes: Number
    total_bytes: Number


def activations_per_layer(
    cfg: ModelConfig | None = None,
    batch=1,
    seq_len=None,
    *,
    tensor_parallel=1,
    sequence_parallel: bool = False,
    recompute: Recompute = "none",
    flash_attention: bool = False,
    dropout: bool = True,
    activation_dtype: Any = "bf16",
    **shape,
) -> ActivationsPerLayer:
    """Korthikanti et al. 2022 §4.1 / Table 2, generalized as in the module docstring."""
    func = "activations_per_layer"
    if recompute not in ("none", "selective", "full"):
        raise ValueError(f"recompute: unknown {recompute!r}; allowed: 'none', 'selective', 'full'")
    s_ = resolve(func, cfg, _SHAPE, shape)
    b = check(func, "batch", batch, gt=0, integer=True)
    s = check(func, "seq_len", s_["max_seq_len"] if seq_len is None else seq_len, gt=0, integer=True)
    t = check(func, "tensor_parallel", tensor_parallel, gt=0, integer=True)
    for name, flag in (("sequence_parallel", sequence_parallel), ("flash_attention", flash_attention),
                       ("dropout", dropout)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{func}: {name}: {flag!r} is not allowed; True or False is")
    e = element_bytes(func, "activation_dtype", activation_dtype)  # 2 in the paper
    h, a, g, d, f = s_["d_model"], s_["n_heads"], s_["n_kv_heads"], s_["head_dim"], s_["ffn_dim"]
    q_dim, kv_dim = a * d, g * d
    mask = 1 if dropout else 0  # dropout masks are 1 byte per element
    sp = t if sequence_parallel else 1  # what tensor parallelism leaves whole, sequence parallelism splits
    sb = s * b

    if recompute == "full":
        # Only the layer's input is kept (Table 2, "full activation recompute": 2sbh);
        # under sequence parallelism that input is itself split along the sequence.
        zero = 0 * sb
        total = e * sb * h / sp
        return ActivationsPerLayer(**{k: to_value(v) for k, v in dict(
            attention_bytes=zero, attention_scores_bytes=zero, mlp_bytes=zero, norms_bytes=zero, total_bytes=total,
        ).items()})

    attention = sb * ((e * h + mask * h) / sp + (e * (q_dim + kv_dim) + e * kv_dim + e * q_dim) / t)
    if recompute == "selective" or flash_attention:
        scores = 0 * sb
    else:
        # softmax output e, dropout mask 1, dropped-out probabilities e (without dropout: the output only)
        scores = a * s * sb * ((e + mask + e) if dropout else e) / t
    mlp_inner = 2 if s_["ffn_type"] == "gelu_mlp" else 3
    mlp = sb * ((e * h + mask * h) / sp + e * mlp_inner * f / t)
    norms = sb * 2 * e * h / sp
    total = attention + scores + mlp + norms
    return ActivationsPerLayer(**{k: to_value(v) for k, v in dict(
        attention_bytes=attention, attention_scores_bytes=scores, mlp_bytes=mlp, norms_bytes=norms, total_bytes=total,
    ).items()})


def training_memory(
    cfg: ModelConfig | None = None,
    batch=1,
    seq_len=None,
    *,
    tensor_parallel=1,
    sequence_parallel: bool = False,
    recompute: Recompute = "none",
    flash_attention: bool = False,
    dropout: bool = True,
    activation_dtype: Any = "bf16",
    zero_stage: int = 0,
    data_parallel=1,
    include_embedding_and_output: bool = True,
    **shape,
) -> TrainingMemory:
    """Per-GPU bytes to train ``cfg`` on micro-batches of ``batch`` sequences of ``seq_len``.

    Model states: 16Ψ/t bytes (ZeRO §3.1), with ZeRO stage 1 dividing the 12Ψ optimizer
    states by ``data_parallel``, stage 2 also the 2Ψ gradients, stage 3 also the 2Ψ weights
    (ZeRO §5, Figure 1). Activations: ``activations_per_layer`` × n_layers plus the
    embedding and output terms of Korthikanti et al. 2022 §4.3 (module docstring).
    Keyword overrides (d_model=..., arrays allowed) replace cfg's numbers.
    """
    func = "training_memory"
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage: {zero_stage!r}; allowed: 0, 1, 2, 3")
    s_ = resolve(func, cfg, _SHAPE, shape)
    t = check(func, "tensor_parallel", tensor_parallel, gt=0, integer=True)
    dp = check(func, "data_parallel", data_parallel, gt=0, integer=True)
    # Megatron's column split gives each rank whole heads (Shoeybi et al. 2019 §3): a model is
    # trained with t dividing its query and K/V heads (the command line's rule too). The per-layer
    # formula alone (activations_per_layer) is Korthikanti's arithmetic and takes any t.
    require(func, "tensor_parallel", t, (np.asarray(s_["n_heads"]) % t == 0) & (np.asarray(s_["n_kv_heads"]) % t == 0),
            "{} does not split the query and K/V heads evenly; a divisor of n_kv_heads is accepted")
    per_layer = activations_per_layer(
        cfg, batch, seq_len, tensor_parallel=t, sequence_parallel=sequence_parallel, recompute=recompute,
        flash_attention=flash_attention, dropout=dropout, activation_dtype=activation_dtype, **shape,
    )
    psi = count_params_arrays(**s_).total
    weights = WEIGHT_BYTES_PER_PARAM * psi / t / (dp if zero_stage >= 3 else 1)
    grads = GRADIENT_BYTES_PER_PARAM * psi / t / (dp if zero_stage >= 2 else 1)
    optim = OPTIMIZER_BYTES_PER_PARAM * psi / t / (dp if zero_stage >= 1 else 1)

    layers = per_layer.total_bytes * s_["n_layers"]
    b = check(func, "batch", batch, gt=0, integer=True)
    s = s_["max_seq_len"] if seq_len is None else check(func, "seq_len", seq_len, gt=0, integer=True)
    if include_embedding_and_output:
        e = element_bytes(func, "activation_dtype", activation_dtype)
        sp = t if sequence_parallel else 1
        sbh = s * b * s_["d_model"]
        embedding = (1 if dropout else 0) * sbh / sp  # §4.3: dropout mask after the embeddings
        # §4.3: final norm input + output projection input, and the fp32 logits for the loss.
        output = 2 * e * sbh / sp + 4 * s * b * s_["vocab_size"] / t
    else:
        embedding = output = 0
    activations = layers + embedding + output
    states = weights + grads + optim
    values = dict(
        params=psi, weights_bytes=weights, gradients_bytes=grads, optimizer_bytes=optim, model_states_bytes=states,
        activations_layers_bytes=layers, activations_embedding_bytes=embedding, activations_output_bytes=output,
        activations_bytes=activations, total_bytes=states + activations,
    )
    return TrainingMemory(activations_per_layer=per_layer, **{k: to_value(v) for k, v in values.items()})


__all__ = [
    "ActivationsPerLayer", "GRADIENT_BYTES_PER_PARAM", "OPTIMIZER_BYTES_PER_PARAM", "TrainingMemory",
    "WEIGHT_BYTES_PER_PARAM", "activations_per_layer", "training_memory",
]
