"""A plain PyTorch decoder built from any ``ModelConfig``: the thing whole-step predictions are checked against.

Llama-style presets (RMSNorm, RoPE, SwiGLU) follow gpt-fast (pytorch-labs/gpt-fast, model.py):
fused ``wqkv`` and gate/up ``w13`` projections, RMSNorm computed in fp32, SDPA attention and a
static KV cache written in place, so a decode step can be captured as one CUDA graph. GPT-2
presets follow GPT-2 (learned positions, LayerNorm, tanh-GELU MLP, biases, tied LM head).
Weights are random (``init_weights``): timing and memory do not depend on their values.

Each op is written as the op list of ``costmodel/step/ops.py`` counts it; the kernel each line
launches is in the comment beside it, so a profile can be read against the prediction.
"""

from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    """Zhang & Sennrich 2019, in fp32 as gpt-fast computes it."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()  # cast (none for fp32 / fp64)
        r = torch.rsqrt((xf * xf).mean(-1, keepdim=True) + self.eps)  # mul, mean, add, rsqrt
        return (xf * r).type_as(x) * self.weight  # mul, cast (none for fp32), mul


def rope_tables(max_pos: int, head_dim: int, base: float = 10000.0, dtype=torch.bfloat16, device=None):
    """cos, sin of shape (max_pos, head_dim): Su et al. 2021 (RoFormer) eq. (34), half-split layout."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim))
    ang = torch.outer(torch.arange(max_pos, device=device, dtype=torch.float64), inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x, cos, sin):
    """x (B, S, H, d); cos, sin (S, d) or (B, S, d) broadcast over heads. 5 kernels."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # neg, cat
    return x * cos + rotated * sin  # mul, mul, add


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads, self.n_kv, self.d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.rope = cfg.position_embedding == "rope"
        self.wqkv = nn.Linear(cfg.d_model, cfg.q_dim + 2 * cfg.kv_dim, bias=cfg.attn_bias)
        self.wo = nn.Linear(cfg.q_dim, cfg.d_model, bias=cfg.attn_bias)
        self.k_cache = self.v_cache = None

    def forward(self, x, cos, sin, input_pos=None, causal=True):
        B, S, _ = x.shape
        q, k, v = self.wqkv(x).split([self.n_heads * self.d, self.n_kv * self.d, self.n_kv * self.d], dim=-1)
        q = q.view(B, S, self.n_heads, self.d)  # (B, S, H, d)
        k = k.view(B, S, self.n_kv, self.d)
        v = v.view(B, S, self.n_kv, self.d)
        if self.rope:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, S, d)
        if self.k_cache is not None:
            if input_pos is None:  # prefill: the prompt fills the cache's first S slots
                self.k_cache[:, :, :S].copy_(k)
                self.v_cache[:, :, :S].copy_(v)
            else:  # decode: write the new token in place, attend to the whole static cache
                self.k_cache.index_copy_(2, input_pos, k)
                self.v_cache.index_copy_(2, input_pos, v)
                k, v = self.k_cache, self.v_cache
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and input_pos is None,
                                           enable_gqa=self.n_kv != self.n_heads)
        return self.wo(y.transpose(1, 2).reshape(B, S, self.n_heads * self.d))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.swiglu = cfg.ffn_type == "swiglu"
        width = 2 * cfg.ffn_dim if self.swiglu else cfg.ffn_dim
        self.w13 = nn.Linear(cfg.d_model, width, bias=cfg.mlp_bias)  # gate and up fused (SwiGLU)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=cfg.mlp_bias)

    def forward(self, x):
        if self.swiglu:
            gate, up = self.w13(x).chunk(2, dim=-1)
            return self.w2(F.silu(gate) * up)  # Shazeer 2020 eq. (5): silu, mul
        return self.w2(F.gelu(self.w13(x), approximate="tanh"))  # GPT-2's gelu_new


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        norm = (lambda: RMSNorm(cfg.d_model)) if cfg.norm_type == "rmsnorm" else (lambda: nn.LayerNorm(cfg.d_model))
        self.attn_norm, self.mlp_norm = norm(), norm()
        self.attn, self.mlp = Attention(cfg), MLP(cfg)

    def forward(self, x, cos, sin, input_pos=None, causal=True):
        h = x + self.attn(self.attn_norm(x), cos, sin, input_pos, causal)
        return h + self.mlp(self.mlp_norm(h))


class Decoder(nn.Module):
    """Embedding, ``n_layers`` blocks, final norm, LM head; ``forward`` returns logits (B, S, V)."""

    def __init__(self, cfg, max_pos: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.position_embedding == "learned" else None
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model) if cfg.norm_type == "rmsnorm" else nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tied_embeddings:
            self.head.weight = self.tok.weight
        self.max_pos = max_pos or cfg.max_seq_len
        self.cos = self.sin = None

    def setup(self, dtype, device):
        """RoPE tables in the activation dtype, on the device."""
        if self.cfg.position_embedding == "rope":
            self.cos, self.sin = rope_tables(self.max_pos, self.cfg.head_dim, dtype=dtype, device=device)

    def setup_cache(self, batch: int, tokens: int, dtype, device):
        """A static KV cache of ``tokens`` slots per sequence, (B, H_kv, tokens, d) per layer."""
        shape = (batch, self.cfg.n_kv_heads, tokens, self.cfg.head_dim)
        for blk in self.layers:
            blk.attn.k_cache = torch.zeros(shape, dtype=dtype, device=device)
            blk.attn.v_cache = torch.zeros(shape, dtype=dtype, device=device)

    def drop_cache(self):
        for blk in self.layers:
            blk.attn.k_cache = blk.attn.v_cache = None

    def forward(self, idx, input_pos=None, causal=True):
        B, S = idx.shape
        x = self.tok(idx)  # gather
        cos = sin = None
        if input_pos is None:
            if self.pos is not None:
                x = x + self.pos(torch.arange(S, device=idx.device))  # gather, add (and an arange)
            elif self.cos is not None:
                cos, sin = self.cos[:S, None, :], self.sin[:S, None, :]  # views: (S, 1, d)
        else:
            if self.pos is not None:
                x = x + self.pos(input_pos)[None]
            elif self.cos is not None:
                cos, sin = self.cos[input_pos][:, None, :], self.sin[input_pos][:, None, :]  # 2 gathers
        for blk in self.layers:
            x = blk(x, cos, sin, input_pos, causal)
        return self.head(self.norm(x))

    def loss(self, idx, targets):
        """Mean next-token cross-entropy, logits upcast to fp32 (logits.float(), log_softmax, nll)."""
        logits = self(idx)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


@torch.no_grad()
def init_weights(model: nn.Module, seed: int = 0, std: float = 0.02):
    """Seeded random normal weights (GPT-2's std 0.02), norms at one, biases at zero."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.zero_()
        elif p.ndim == 1:
            p.fill_(1.0)
        else:
            p.normal_(0.0, std, generator=gen)
    return model


def build(cfg, dtype=torch.bfloat16, device="cpu", seed: int = 0, max_pos: int | None = None) -> Decoder:
    """The reference model of ``cfg`` with random weights in ``dtype`` on ``device``."""
    with torch.device("meta"):
        model = Decoder(cfg, max_pos)
    model = model.to(dtype).to_empty(device=device)  # cast on meta: no fp32 copy of a 34B model
    if cfg.tied_embeddings:
        model.head.weight = model.tok.weight
    init_weights(model, seed)
    model.setup(dtype if dtype != torch.float32 else torch.bfloat16, device)
    if dtype == torch.float32 and model.cos is not None:  # training under autocast: bf16 tables as in inference
        model.cos, model.sin = model.cos.to(torch.bfloat16), model.sin.to(torch.bfloat16)
    return model


def n_params(model: nn.Module) -> int:
    """Parameters counted once (a tied LM head is the embedding)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


__all__ = ["Decoder", "RMSNorm", "apply_rope", "build", "init_weights", "n_params", "rope_tables"]
