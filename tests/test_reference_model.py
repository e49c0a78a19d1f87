"""costmodel/validation/reference_model.py on the CPU: parameter counts, shapes, the KV cache, one layer in float64."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from costmodel.models import ModelConfig, load_model  # noqa: E402
from costmodel.params import count_params  # noqa: E402
from costmodel.validation.reference_model import build, n_params  # noqa: E402

SEED = 1202


def tiny(name: str, **over) -> ModelConfig:
    cfg = load_model(name)
    shape = dict(n_layers=2, d_model=64, n_heads=4, head_dim=16, ffn_dim=96, vocab_size=101, max_seq_len=64,
                 n_kv_heads=2 if cfg.n_kv_heads < cfg.n_heads else 4)
    return ModelConfig.model_validate({**cfg.model_dump(), **shape, **over})


@pytest.mark.parametrize("name", ["gpt2-medium", "tinyllama-1.1b", "llama3-8b", "mistral-7b"])
def test_param_count_matches_costmodel_params(name):
    cfg = tiny(name)
    assert n_params(build(cfg, torch.float32)) == count_params(cfg).total


@pytest.mark.parametrize("name", ["gpt2-medium", "llama3-8b"])
def test_decode_with_the_cache_equals_the_full_forward(name):
    cfg = tiny(name)
    torch.manual_seed(SEED)
    m = build(cfg, torch.float64, seed=SEED)
    idx = torch.randint(0, cfg.vocab_size, (3, 12))
    with torch.no_grad():
        full = m(idx)
        assert full.shape == (3, 12, cfg.vocab_size)
        m.setup_cache(3, 12, torch.float64, "cpu")
        m(idx[:, :11])  # prefill fills slots 0..10
        step = m(idx[:, 11:], input_pos=torch.tensor([11]))
    assert step.shape == (3, 1, cfg.vocab_size)
    assert torch.allclose(step[:, 0], full[:, 11], rtol=1e-10, atol=1e-10)


def _numpy_llama_layer(x, p, n_heads, n_kv, eps=1e-5, base=10000.0):
    """One Llama layer in float64 numpy, from the papers: RMSNorm (Zhang & Sennrich 2019), RoPE (Su et al.
    2021, half-split), causal softmax attention with grouped K/V (Ainslie et al. 2023), SwiGLU (Shazeer 2020)."""
    S, h = x.shape
    d = h // n_heads

    def rms(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w

    def rope(t):  # t (S, H, d)
        inv = base ** (-np.arange(0, d, 2) / d)
        ang = np.arange(S)[:, None] * inv[None]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = t[..., : d // 2], t[..., d // 2:]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)

    hN = rms(x, p["attn_norm"])
    q = rope((hN @ p["wq"].T).reshape(S, n_heads, d))
    k = rope((hN @ p["wk"].T).reshape(S, n_kv, d))
    v = (hN @ p["wv"].T).reshape(S, n_kv, d)
    out = np.zeros((S, n_heads, d))
    for head in range(n_heads):
        g = head // (n_heads // n_kv)
        scores = q[:, head] @ k[:, g].T / np.sqrt(d)
        scores[np.triu_indices(S, 1)] = -np.inf
        w = np.exp(scores - scores.max(-1, keepdims=True))
        out[:, head] = (w / w.sum(-1, keepdims=True)) @ v[:, g]
    x = x + out.reshape(S, h) @ p["wo"].T
    hN = rms(x, p["mlp_norm"])
    gate, up = hN @ p["w1"].T, hN @ p["w3"].T
    return x + (gate / (1 + np.exp(-gate)) * up) @ p["w2"].T


def test_one_llama_layer_against_float64_numpy():
    cfg = tiny("llama3-8b")
    m = build(cfg, torch.float64, seed=SEED)
    blk = m.layers[0]
    rng = np.random.default_rng(SEED)
    with torch.no_grad():  # fresh random norm weights, so the test does not see only ones
        for norm in (blk.attn_norm, blk.mlp_norm):
            norm.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, cfg.d_model)))
    q_dim, kv_dim, f = cfg.q_dim, cfg.kv_dim, cfg.ffn_dim
    W = blk.attn.wqkv.weight.detach().numpy()
    W13 = blk.mlp.w13.weight.detach().numpy()
    p = {"attn_norm": blk.attn_norm.weight.detach().numpy(), "mlp_norm": blk.mlp_norm.weight.detach().numpy(),
         "wq": W[:q_dim], "wk": W[q_dim:q_dim + kv_dim], "wv": W[q_dim + kv_dim:],
         "wo": blk.attn.wo.weight.detach().numpy(), "w1": W13[:f], "w3": W13[f:],
         "w2": blk.mlp.w2.weight.detach().numpy()}
    S = 10
    x = rng.standard_normal((S, cfg.d_model))
    with torch.no_grad():
        got = blk(torch.from_numpy(x)[None], m.cos[:S, None, :], m.sin[:S, None, :])[0].numpy()
    want = _numpy_llama_layer(x, p, cfg.n_heads, cfg.n_kv_heads)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-12


def test_training_step_runs_on_cpu_under_autocast():
    cfg = tiny("tinyllama-1.1b")
    m = build(cfg, torch.float32, seed=SEED)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    idx = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(SEED))
    losses = []
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = m.loss(idx, idx)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
