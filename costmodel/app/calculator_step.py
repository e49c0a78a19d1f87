"""A whole-model step from the calculators alone: the app's stand-in while ``costmodel.step`` is absent.

Each op of a layer is placed on the roofline (``hardware_specs.roofline.roofline_time``) with
its matmul FLOPs from ``costmodel.flops`` (Kaplan et al. 2020 Table 1), its weight bytes read
once and its input and output activations moved once; attention is ``simulate_attention``'s
(bytes per level and kernel times of the chosen implementation). Norms, softmax outside
attention, residual adds and the MLP's intermediate tensor are left out, so every time is a
lower bound. Training adds a backward pass of twice the forward FLOPs (Narayanan et al. 2021
§5.1) and an optimizer step that reads and writes the 16 bytes per parameter of mixed-precision
Adam once (ZeRO §3.1). The result has the rows of the shared ``predict_step`` interface
(name, layer, part, count, flops, bytes per level, time_s, bound) so the app draws either.
"""

from __future__ import annotations

from costmodel.flops import decode_flops_per_token, forward_flops_per_token
from costmodel.kvcache import kv_cache_bytes
from costmodel.models import ModelConfig
from costmodel.params import count_params
from costmodel.training_memory import training_memory
from hardware_specs import GPUSpec
from hardware_specs.dtypes import dtype_bytes
from hardware_specs.roofline import Work, matmul_unit, roofline_time

SOURCE = "calculators: roofline lower bound per op (costmodel.step not available)"
_ADAM_STATE_BYTES_PER_PARAM = 16  # ZeRO §3.1: fp16 weights and gradients, fp32 master weights, momentum, variance


def _row(spec: GPUSpec, name: str, part: str, count: int, work: Work, **extra) -> dict:
    t = roofline_time(spec, work)
    return {"name": name, "layer": None, "part": part, "count": count, "flops": float(work.flops),
            "hbm_bytes": float(work.hbm_bytes), "l2_bytes": float(work.l2_bytes), "smem_bytes": float(work.smem_bytes),
            "time_s": float(t.time_s), "bound": str(t.bound), **extra}


def calculator_step(spec: GPUSpec, cfg: ModelConfig, phase: str, batch: int, seq_len: int, dtype: str,
                    tensor_parallel: int, attention) -> dict:
    """Ops, time, tokens/s and memory of one step; ``attention`` is the layer's AttentionResult."""
    t, e = tensor_parallel, dtype_bytes(dtype)
    unit = matmul_unit(dtype)
    decode = phase == "decode"
    tokens = batch if decode else batch * seq_len
    per_token = decode_flops_per_token(cfg, seq_len) if decode else forward_flops_per_token(cfg, seq_len)
    d, hd, h, g = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    mlp_matrices = 3 if cfg.ffn_type == "swiglu" else 2
    # (weights, input width, output width) of each projection, in elements, before the t-way split
    shapes = {"qkv_proj": (d * (h + 2 * g) * hd, d, (h + 2 * g) * hd / t),
              "out_proj": (h * hd * d, h * hd / t, d),
              "mlp": (mlp_matrices * d * cfg.ffn_dim, d, d)}
    layer_ops = []
    for name, (weights, width_in, width_out) in shapes.items():
        work = Work(matmul_flops=tokens * getattr(per_token, name) / t, matmul_unit=unit,
                    hbm_bytes=e * (weights / t + tokens * (width_in + width_out)))
        layer_ops.append(_row(spec, name, "fwd", cfg.n_layers, work))
    layer_ops.insert(1, {"name": "attention", "layer": None, "part": "fwd", "count": cfg.n_layers,
                         "flops": attention.flops, "hbm_bytes": float(attention.hbm_bytes),
                         "l2_bytes": float(attention.l2_bytes), "smem_bytes": float(attention.smem_bytes),
                         "time_s": attention.time_s, "bound": attention.bound,
                         "kernels": [k.name for k in attention.kernels]})
    head_tokens = batch if phase != "train" else tokens  # inference needs the last position's logits only
    lm = Work(matmul_flops=head_tokens * 2 * d * cfg.vocab_size / t, matmul_unit=unit,
              hbm_bytes=e * (d * cfg.vocab_size / t + head_tokens * (d + cfg.vocab_size / t)))
    ops = layer_ops + [_row(spec, "lm_head", "fwd", 1, lm)]
    params = count_params(cfg).total
    if phase == "train":
        for op in list(ops):
            if op["name"] == "attention":
                continue  # the attention result already holds its backward (pass fwd+bwd)
            work = Work(matmul_flops=2 * op["flops"], matmul_unit=unit, hbm_bytes=2 * op["hbm_bytes"])
            ops.append(_row(spec, op["name"], "bwd", op["count"], work))
        ops.append(_row(spec, "adam", "optimizer", 1,
                        Work(hbm_bytes=2 * _ADAM_STATE_BYTES_PER_PARAM * params / t, other_flops=0.0)))
        mem = training_memory(cfg, batch, seq_len, tensor_parallel=t, flash_attention=attention.impl != "standard")
        memory = {"weights": mem.weights_bytes, "gradients": mem.gradients_bytes, "optimizer": mem.optimizer_bytes,
                  "activations": mem.activations_bytes}
    else:
        kv = kv_cache_bytes(cfg, batch, seq_len, dtype).total_bytes / t
        memory = {"weights": params * e / t, "kv_cache": kv}
    time_s = sum(op["time_s"] * op["count"] for op in ops)
    new_tokens = batch if decode else batch * seq_len
    return {"source": SOURCE, "time_s": time_s, "tokens_per_s": new_tokens / time_s, "ops": ops,
            "memory": memory, "memory_bytes": sum(memory.values())}
