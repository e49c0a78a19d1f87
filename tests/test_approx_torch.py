"""The plain PyTorch Linformer / Performer / Reformer against float64 numpy references of each method.

The references (here, once) restate each paper's formula directly, with no chunking, no
stabiliser and no sort: Linformer Eq. 7 as written; FAVOR+ as D^-1 Q'((K')^T V) with the
unnormalised features exp(w^T x - |x|^2/2) (causal: the explicit lower-triangular sum);
Reformer's LSH attention as a set per query (same round hash, same or previous chunk of the
sorted order) over which the softmax runs. The approximation error against exact attention
is printed as data (``-s`` shows it), never asserted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from costmodel.validation import approx_torch as at  # noqa: E402

SEED = 20260216


def _inputs(rng, B=2, H=2, N=64, d=16):
    return [rng.standard_normal((B, H, N, d)) * 0.7 for _ in range(3)]


def ref_exact(q, k, v, causal=False):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def ref_linformer(q, k, v, E, F):
    """Wang et al. 2020, Eq. 7: softmax(Q (E K)^T / sqrt d) (F V)."""
    return ref_exact(q, E @ k, F @ v)


def ref_performer(q, k, v, W, causal=False):
    """Choromanski et al. 2021: phi(x) = exp(W x' - |x'|^2 / 2), x' = x / d^(1/4); D^-1 A' V with A' = phi(Q) phi(K)^T."""
    d = q.shape[-1]

    def phi(x):
        x = x / d ** 0.25
        return np.exp(x @ W.T - (x * x).sum(-1, keepdims=True) / 2)

    a = phi(q) @ np.swapaxes(phi(k), -1, -2)
    if causal:
        a = np.tril(a)
    return (a @ v) / a.sum(-1, keepdims=True)


def ref_reformer(qk, v, R, bucket_size, causal=False):
    """Kitaev et al. 2020, §2: per round, sort by (bucket, position); query i attends to the keys of its
    own bucket in its own or the previous chunk of that order; itself only with weight exp(-1e5 - ...);
    rounds combined by softmax over their log-sum-exps."""
    B, H, N, d = qk.shape
    n, nb = R.shape[1], 2 * R.shape[2]
    out = np.zeros_like(qk)
    for b in range(B):
        for h in range(H):
            x, val = qk[b, h], v[b, h]
            kn = x / np.linalg.norm(x, axis=-1, keepdims=True)
            os, zs = [], []
            for r in range(n):
                rot = x @ R[:, r, :]
                bucket = np.argmax(np.concatenate([rot, -rot], axis=-1), axis=-1)
                order = np.lexsort((np.arange(N), bucket))  # by bucket, then position
                chunk = np.empty(N, dtype=int)
                chunk[order] = np.arange(N) // bucket_size
                o, z = np.zeros((N, d)), np.zeros(N)
                for i in range(N):
                    ci = chunk[i]
                    seen = (chunk == ci) | (chunk == (ci - 1) % nb)
                    ok = seen & (bucket == bucket[i])
                    if causal:
                        ok &= np.arange(N) <= i
                    s = kn @ x[i] / math.sqrt(d)
                    s = np.where(ok, s, -np.inf)
                    s[i] = -1e5
                    mx = s.max()
                    p = np.exp(s - mx)
                    o[i] = p @ val / p.sum()
                    z[i] = mx + math.log(p.sum())
                os.append(o)
                zs.append(z)
            zs = np.array(zs)
            w = np.exp(zs - zs.max(0))
            w /= w.sum(0)
            out[b, h] = sum(w[r][:, None] * os[r] for r in range(n))
    return out


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_linformer_matches_eq7_reference():
    rng = np.random.default_rng(SEED)
    q, k, v = _inputs(rng)
    E = rng.standard_normal((8, 64)) / math.sqrt(8)
    F = rng.standard_normal((8, 64)) / math.sqrt(8)
    got = at.linformer_attention(*map(_t, (q, k, v, E, F))).numpy()
    want = ref_linformer(q, k, v, E, F)
    assert _rel(got, want) < 1e-12
    print(f"linformer k=8 N=64: rel. error vs exact attention {_rel(got, ref_exact(q, k, v)):.3f}")


@pytest.mark.parametrize("causal", [False, True])
def test_performer_matches_favor_reference(causal):
    rng = np.random.default_rng(SEED + causal)
    q, k, v = _inputs(rng)
    W = rng.standard_normal((32, 16))
    got = at.performer_attention(*map(_t, (q, k, v, W)), causal=causal, chunk=16).numpy()
    want = ref_performer(q, k, v, W, causal)
    assert _rel(got, want) < 1e-10
    print(f"performer m=32 causal={causal}: rel. error vs exact {_rel(got, ref_exact(q, k, v, causal)):.3f}")


@pytest.mark.parametrize("causal", [False, True])
def test_reformer_matches_lsh_reference(causal):
    rng = np.random.default_rng(SEED + 10 + causal)
    q, _, v = _inputs(rng, B=1, H=2, N=64, d=8)
    R = rng.standard_normal((8, 3, 4))  # 3 rounds, 8 buckets of 8
    got = at.reformer_attention(_t(q), _t(v), _t(R), causal=causal, bucket_size=8).numpy()
    want = ref_reformer(q, v, R, 8, causal)
    assert _rel(got, want) < 1e-10
    print(f"reformer 3 rounds, buckets of 8, causal={causal}: rel. error vs exact "
          f"{_rel(got, ref_exact(q, q / np.linalg.norm(q, axis=-1, keepdims=True), v, causal)):.3f}")


def _directional(f_torch, f_ref, xs, rng, eps=1e-6):
    """(autograd's dL/dx . u, the reference's central difference along u) for L = sum(out * g)."""
    ts = [torch.from_numpy(x.copy()).requires_grad_() for x in xs]
    out = f_torch(*ts)
    g = rng.standard_normal(out.shape)
    (out * torch.from_numpy(g)).sum().backward()
    us = [rng.standard_normal(x.shape) for x in xs]
    auto = sum(float((t.grad.numpy() * u).sum()) for t, u in zip(ts, us))
    plus = f_ref(*[x + eps * u for x, u in zip(xs, us)])
    minus = f_ref(*[x - eps * u for x, u in zip(xs, us)])
    return auto, float(((plus - minus) * g).sum() / (2 * eps))


def test_backward_through_autograd_matches_reference_differences():
    rng = np.random.default_rng(SEED + 20)
    q, k, v = _inputs(rng, B=1, H=2, N=32, d=8)
    E, F = (rng.standard_normal((4, 32)) for _ in range(2))
    W = rng.standard_normal((16, 8))
    R = rng.standard_normal((8, 2, 2))  # 2 rounds, 4 buckets of 8: the hash is locally constant
    cases = {
        "linformer": (lambda a, b, c: at.linformer_attention(a, b, c, _t(E), _t(F)),
                      lambda a, b, c: ref_linformer(a, b, c, E, F), (q, k, v)),
        "performer": (lambda a, b, c: at.performer_attention(a, b, c, _t(W)),
                      lambda a, b, c: ref_performer(a, b, c, W), (q, k, v)),
        "performer causal": (lambda a, b, c: at.performer_attention(a, b, c, _t(W), causal=True, chunk=8),
                             lambda a, b, c: ref_performer(a, b, c, W, True), (q, k, v)),
        "reformer": (lambda a, c: at.reformer_attention(a, c, _t(R), bucket_size=8),
                     lambda a, c: ref_reformer(a, c, R, 8), (q, v)),
    }
    for name, (f, ref, xs) in cases.items():
        auto, numeric = _directional(f, ref, xs, rng)
        assert auto == pytest.approx(numeric, rel=1e-6), name


def test_orthogonal_features_are_orthogonal_in_blocks():
    W = at.performer_random_features(8, 4, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)
    block = W[:4] / W[:4].norm(dim=1, keepdim=True)
    assert torch.allclose(block @ block.T, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_bad_shapes_name_the_field():
    x = torch.zeros(1, 1, 60, 4)
    with pytest.raises(ValueError, match="seq_len"):
        at.performer_attention(x, x, x, torch.zeros(8, 4), causal=True, chunk=16)
    with pytest.raises(ValueError, match="seq_len"):
        at.reformer_attention(x, x, torch.zeros(4, 1, 2), bucket_size=8)


class _LiveBytes:
    """Bytes of the tensors an op sequence allocates, alive until Python drops them (a dispatch-mode tracker)."""

    def __init__(self, base: int):
        import weakref

        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.now = self.peak = base
        self.live: dict[int, int] = {}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in out if isinstance(out, (tuple, list)) else [out]:
                    if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes():
                        key = t.untyped_storage().data_ptr()
                        if key not in tracker.live:
                            tracker.live[key] = t.untyped_storage().nbytes()
                            tracker.now += tracker.live[key]
                            tracker.peak = max(tracker.peak, tracker.now)
                            weakref.finalize(t, tracker._free, key)
                return out

        self.mode = Mode()

    def _free(self, key):
        self.now -= self.live.pop(key, 0)


@pytest.mark.parametrize("impl,kw", [("linformer", {}), ("performer", {}), ("performer", {"causal": True}),
                                     ("reformer", {}), ("reformer", {"causal": True})])
def test_footprint_is_the_programs_on_cpu(impl, kw):
    """The simulator frees a tensor after its last reader; Python at the end of that statement (or at del):
    the program's peak lies between the simulated one and one tensor more."""
    from simulators import simulate_attention

    g = torch.Generator().manual_seed(SEED)
    B, H, N, d = 1, 2, 1024, 64
    q, k, v = (torch.randn(B, H, N, d, generator=g, dtype=torch.bfloat16) for _ in range(3))
    if impl == "linformer":
        params = at.linformer_projections(256, N, g, torch.bfloat16)
        fn = lambda: at.linformer_attention(q, k, v, *params)  # noqa: E731
    elif impl == "performer":
        params = [at.performer_random_features(256, d, g, torch.bfloat16)]
        fn = lambda: at.performer_attention(q, k, v, params[0], **kw)  # noqa: E731
    else:
        params = [at.reformer_rotations(d, 4, N // 64, g, torch.bfloat16)]
        fn = lambda: at.reformer_attention(q, v, params[0], bucket_size=64, **kw)  # noqa: E731
    live = _LiveBytes(sum(t.nbytes for t in [q, k, v, *params]))
    with torch.no_grad(), live.mode:
        fn()
    mem = simulate_attention("h200-sxm-141gb", impl, batch=B, heads=H, seq_len=N, head_dim=d, dtype="bf16",
                             **kw).extra["memory"]
    print(f"{impl} {kw}: program peak {live.peak / 1e6:.2f} MB, simulated {mem['peak_bytes'] / 1e6:.2f} MB")
    assert 0.97 * mem["peak_bytes"] <= live.peak <= mem["peak_bytes"] + mem["largest_tensor_bytes"]
