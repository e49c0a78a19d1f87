"""Plain PyTorch Linformer, Performer (FAVOR+) and Reformer (LSH) attention: the programs the simulator models.

Each function is the method as its paper states it, written as eager PyTorch ops with no
fusion and no custom kernel, so that every op is one (or a known few) CUDA kernels; the
kernel lists in ``simulators/linformer.py``, ``performer.py`` and ``reformer.py`` follow
these functions line by line (the ``# [name]`` comments are the simulator's kernel names).
Backward is autograd's. Shapes: q, k, v (B, H, N, d).

* Linformer (Wang et al. 2020, §4 Eq. 7): softmax(Q (E K)^T / sqrt(d)) (F V) with
  E, F in R^{k x N} shared by all heads ("headwise sharing", §4 "Parameter sharing").
  No causal form: E mixes positions.
* Performer, FAVOR+ (Choromanski et al. 2021): positive random features
  phi(x) = exp(w_i^T x - |x|^2 / 2) / sqrt(m) (§2.3, Lemma 1) of x = q / d^(1/4);
  bidirectional: D^-1 (Q' ((K')^T V)), D = diag(Q' ((K')^T 1)) (§2.2 Eq. 3, Figure 1);
  unidirectional by prefix sums (§2.5 / Figure 2), here over chunks of ``chunk``
  tokens: a C x C masked product inside a chunk and the prefix sum of the chunks'
  (K')^T V states before it (the chunked form of the paper's prefix-sum tensor).
  The 1/sqrt(m) and the stabilisers exp(-max) cancel between numerator and D, so they
  are left out or taken per query row / per head (Appendix "numerical stability").
* Reformer, LSH attention (Kitaev et al. 2020, §2): shared QK (keys k_j = q_j / |q_j|),
  angular LSH h(x) = argmax([xR; -xR]) with R in R^{d x n_b/2} per round (§2 "Hashing
  attention"), sort by (bucket, position), chunks of ``bucket_size`` that see themselves
  and the chunk before (§2 Eq. 4-5 and Figure 2), pairs in other buckets masked (Eq. 3),
  a token's score with itself masked unless nothing else is available (§2 "Causal
  masking for shared-QK attention"), rounds combined by their log-sum-exp weights
  (§2 "Multi-round LSH attention", Eq. 6). The k argument of the attention call is not
  used: the method requires shared QK.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def linformer_attention(q, k, v, E, F_):
    """Linformer forward; E, F_ (k_proj, N)."""
    B, H, N, d = q.shape
    kp = torch.matmul(E.expand(B, H, *E.shape), k)  # (B, H, kp, d)  [proj_k]
    vp = torch.matmul(F_.expand(B, H, *F_.shape), v)  # (B, H, kp, d)  [proj_v]
    s = torch.matmul(q, kp.transpose(-2, -1))  # (B, H, N, kp)  [qk]
    s = s * d ** -0.5  # [scale]
    p = torch.softmax(s, dim=-1)  # [softmax]
    return torch.matmul(p, vp)  # (B, H, N, d)  [pv]


def performer_features(x, W, is_query: bool):
    """phi(x) up to the constant 1/sqrt(m) (it cancels): exp(x W^T / d^(1/4) - |x|^2 / (2 sqrt d) - stabiliser)."""
    d = x.shape[-1]
    Ws = W * d ** -0.25  # (m, d): x / d^(1/4) folded into W  [w_scale]
    proj = torch.matmul(x, Ws.transpose(0, 1))  # (B, H, N, m)  [proj]
    sq = (x * x).sum(-1, keepdim=True)  # (B, H, N, 1)  [sq_mul] [sq_sum]
    # a query row's constant cancels in its own D; a key's must be one per head
    stab = proj.amax(-1, keepdim=True) if is_query else proj.amax(dim=(-2, -1), keepdim=True)  # [stab]
    offset = sq * (0.5 / math.sqrt(d)) + stab  # (B, H, N, 1)  [off_mul] [off_add]
    return torch.exp(proj - offset)  # (B, H, N, m)  [sub] [exp]


def performer_attention(q, k, v, W, causal: bool = False, chunk: int = 128):
    """FAVOR+ forward; W (m, d) rows the random features w_i."""
    B, H, N, d = q.shape
    qf = performer_features(q, W, True)  # (B, H, N, m)  [q_*]
    kf = performer_features(k, W, False)  # [k_*]
    if not causal:
        kv = torch.matmul(kf.transpose(-2, -1), v)  # (B, H, m, d)  [kv]
        ksum = kf.sum(-2)  # (B, H, m)  [ksum]
        num = torch.matmul(qf, kv)  # (B, H, N, d)  [num]
        den = torch.matmul(qf, ksum.unsqueeze(-1))  # (B, H, N, 1)  [den]
        return num / den  # [div]
    if N % chunk:
        raise ValueError(f"seq_len: {N} is not a multiple of the prefix-sum chunk {chunk}")
    m, nc = W.shape[0], N // chunk
    qc, kc = qf.view(B, H, nc, chunk, m), kf.view(B, H, nc, chunk, m)
    vc = v.view(B, H, nc, chunk, d)
    a = torch.tril(torch.matmul(qc, kc.transpose(-2, -1)))  # (B, H, nc, C, C)  [intra_qk] [tril]
    num = torch.matmul(a, vc)  # (B, H, nc, C, d)  [intra_av]
    den = a.sum(-1)  # (B, H, nc, C)  [intra_sum]
    kv = torch.matmul(kc.transpose(-2, -1), vc)  # (B, H, nc, m, d)  [chunk_kv]
    state = torch.cumsum(kv, dim=2) - kv  # sum of the chunks before: (B, H, nc, m, d)  [kv_cumsum] [kv_excl]
    ks = kc.sum(-2)  # (B, H, nc, m)  [chunk_ksum]
    z = torch.cumsum(ks, dim=2) - ks  # [ks_cumsum] [ks_excl]
    num = num + torch.matmul(qc, state)  # [inter_qs] [add_num]
    den = den + torch.matmul(qc, z.unsqueeze(-1)).squeeze(-1)  # [inter_qz] [add_den]
    return (num / den.unsqueeze(-1)).view(B, H, N, d)  # [div]


def reformer_attention(qk, v, R, causal: bool = False, bucket_size: int = 64):
    """LSH attention forward; qk (B, H, N, d) shared queries/keys, R (d, rounds, n_buckets // 2)."""
    B, H, N, d = qk.shape
    n, nb, b = R.shape[1], 2 * R.shape[2], bucket_size
    if N != nb * b:
        raise ValueError(f"seq_len: {N} must equal n_buckets x bucket_size = {nb} x {b}")
    pos = torch.arange(N, device=qk.device)  # [arange]
    rot = torch.matmul(qk, torch.cat([R, -R], dim=-1).reshape(d, n * nb))  # (B, H, N, n*nb)  [rot_neg] [rot_cat] [hash]
    buckets = rot.view(B, H, N, n, nb).argmax(-1)  # (B, H, N, n)  [argmax]
    keys = buckets.transpose(-2, -1).to(torch.int32, memory_format=torch.contiguous_format)  # (B, H, n, N)  [keys_t]
    keys = torch.add(pos.to(torch.int32), keys, alpha=N)  # bucket * N + position  [pos_i32] [keys_pos]
    skeys, idx = torch.sort(keys, dim=-1)  # (B, H, n, N) int32, int64  [sort]
    del rot, buckets, keys  # each intermediate freed at its last use: the footprint the simulator counts
    gidx = idx.unsqueeze(-1).expand(B, H, n, N, d)
    sq = torch.gather(qk.unsqueeze(2).expand(B, H, n, N, d), 3, gidx)  # (B, H, n, N, d)  [gather_q]
    sv = torch.gather(v.unsqueeze(2).expand(B, H, n, N, d), 3, gidx)  # [gather_v]
    sk = F.normalize(sq, dim=-1)  # [norm] [clamp] [div_norm]

    def look_one_back(x):  # chunk c sees chunk c and c - 1 (dim 3 is the chunk axis): a roll, one slice copy per input
        return torch.cat([x, x.roll(1, dims=3)], dim=4)

    shape = (B, H, n, nb, b)
    kc = look_one_back(sk.view(*shape, d))  # (B, H, n, nb, 2b, d)  [roll_k] [cat_k]
    vc = look_one_back(sv.view(*shape, d))  # [roll_v] [cat_v]
    del sk, sv
    dots = torch.matmul(sq.view(*shape, d), kc.transpose(-2, -1))  # (B, H, n, nb, b, 2b)  [qk]
    del sq, kc
    dots = dots * d ** -0.5  # [scale]
    pos_q = idx.view(shape)
    pos_k = look_one_back(pos_q)  # [roll_pos] [cat_pos]
    bkt_q = torch.div(skeys, N, rounding_mode="floor").view(shape)  # [bucket_of]
    bkt_k = look_one_back(bkt_q)  # [roll_bkt] [cat_bkt]
    mask = bkt_q.unsqueeze(-1) != bkt_k.unsqueeze(-2)  # other bucket  [bucket_mask]
    if causal:
        mask = mask | (pos_q.unsqueeze(-1) < pos_k.unsqueeze(-2))  # [causal_cmp] [mask_or]
    dots = dots.masked_fill(mask, float("-inf"))  # [mask_fill]
    del mask
    dots = dots.masked_fill(pos_q.unsqueeze(-1) == pos_k.unsqueeze(-2), -1e5)  # itself, last resort  [self_cmp] [self_fill]
    mx = dots.amax(-1, keepdim=True)  # [row_max]
    e = torch.exp(dots - mx)  # [sub_max] [exp]
    del dots
    s = e.sum(-1, keepdim=True)  # [row_sum]
    bo = torch.matmul(e / s, vc)  # (B, H, n, nb, b, d)  [normalize] [pv]
    del e, vc
    lse = (mx + torch.log(s)).view(B, H, n, N)  # [log] [lse_add]
    undo = torch.empty_like(idx).scatter_(-1, idx, pos.expand_as(idx))  # inverse permutation  [undo]
    o = torch.gather(bo.view(B, H, n, N, d), 3, undo.unsqueeze(-1).expand(B, H, n, N, d))  # [unsort_o]
    del bo
    z = torch.gather(lse, 3, undo)  # (B, H, n, N)  [unsort_lse]
    w = torch.softmax(z, dim=2)  # rounds' weights exp(z_r - logsumexp_r z)  [round_softmax]
    return (o * w.unsqueeze(-1)).sum(2)  # (B, H, N, d)  [round_mul] [round_sum]


# ---------------------------------------------------------------- parameters, drawn as the papers draw them


def linformer_projections(proj_len: int, seq_len: int, generator=None, dtype=torch.float32, device="cpu"):
    """E, F ~ N(0, 1/k) (k x N): the Johnson-Lindenstrauss scaling of Linformer's Theorem 1 proof."""
    shape = (proj_len, seq_len)
    e = torch.randn(shape, generator=generator) / math.sqrt(proj_len)
    f = torch.randn(shape, generator=generator) / math.sqrt(proj_len)
    return e.to(device=device, dtype=dtype), f.to(device=device, dtype=dtype)


def performer_random_features(features: int, head_dim: int, generator=None, dtype=torch.float32, device="cpu"):
    """W (m x d): blocks of d orthogonal rows with chi(d)-distributed norms (Performer §2.4, ORFs)."""
    blocks, done = [], 0
    while done < features:
        g = torch.randn(head_dim, head_dim, generator=generator, dtype=torch.float64)
        qmat, _ = torch.linalg.qr(g)
        blocks.append(qmat.T[: features - done])
        done += blocks[-1].shape[0]
    norms = torch.randn(features, head_dim, generator=generator, dtype=torch.float64).norm(dim=1)
    return (torch.cat(blocks) * norms[:, None]).to(device=device, dtype=dtype)


def reformer_rotations(head_dim: int, rounds: int, n_buckets: int, generator=None, dtype=torch.float32, device="cpu"):
    """R (d x rounds x n_buckets/2), i.i.d. N(0, 1): the random rotations of Reformer §2 (after Andoni et al. 2015)."""
    if n_buckets % 2:
        raise ValueError(f"n_buckets: {n_buckets} is odd; the hash argmax([xR; -xR]) needs an even number")
    return torch.randn(head_dim, rounds, n_buckets // 2, generator=generator).to(device=device, dtype=dtype)


def exact_attention(q, k, v, causal: bool = False):
    """Standard attention, three kernels and a scale (the exact baseline in plain PyTorch)."""
    d = q.shape[-1]
    s = torch.matmul(q, k.transpose(-2, -1)) * d ** -0.5
    if causal:
        n = q.shape[-2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)
