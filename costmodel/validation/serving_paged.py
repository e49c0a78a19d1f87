"""A real serving loop in PyTorch: the step branch's reference decoder run over a paged KV cache, its
batches formed by the simulator's own schedulers, its steps timed on the device.

The model's weights and token-wise modules (embedding, norms, q/k/v and output projections, MLP,
LM head, RoPE tables) are the reference model's (``costmodel.validation.reference_model``); only attention
is done here, over KV *pools* of shape (blocks, block_size, H_kv, d) per layer, indexed by the block
tables of ``costmodel.serving.blocks.BlockManager`` (Kwon et al. 2023 §4.1: a token at position p of
a request lives in slot p % block_size of its block table[p // block_size]). Per step:

1. the new tokens of every request of the batch, flattened (T tokens), go through the projections;
2. each new token's K and V are written into its slot (one ``index_copy_`` per layer);
3. decode requests (one new token each) gather their K/V by block table into a padded
   (B, H_kv, L, d) tensor, L the longest context rounded up to a bucket, and run SDPA with a length
   mask; prefill chunks gather their context and run SDPA with a causal mask offset by the tokens
   already cached;
4. logits only at each request's last new token; greedy argmax is the next token.

The gather copies each request's K/V once per layer per step, which a paged-attention kernel
(vLLM's) does not: measured decode steps carry that extra traffic (read + write of the gathered K/V).
Decode-only steps are captured as CUDA graphs per (batch bucket, context bucket) and replayed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256)  # vLLM-style graph sizes


def bucket(x: int, buckets=BATCH_BUCKETS) -> int:
    for b in buckets:
        if x <= b:
            return b
    return x


def ctx_bucket(x: int, block_size: int) -> int:
    """Contexts padded to a power of two of at least 4 blocks: few graphs, < 2x padding."""
    return max(4 * block_size, 1 << max(0, (x - 1).bit_length()))


class PagedModel:
    """The reference decoder's weights with paged K/V pools; ``step`` runs one batch."""

    def __init__(self, model, num_blocks: int, block_size: int, dtype, device, emulate_graphs: bool = False):
        cfg = model.cfg
        self.emulate_graphs = emulate_graphs
        self.model, self.cfg = model, cfg
        self.bs, self.device, self.dtype = block_size, device, dtype
        self.scratch_block = num_blocks  # one extra block: padded requests of a graph write there
        shape = ((num_blocks + 1) * block_size, cfg.n_kv_heads, cfg.head_dim)  # (slots, H_kv, d)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.graphs: dict = {}
        self.graph_pool = None

    # ------------------------------------------------------------ slot arithmetic

    def slots(self, table: list[int], start: int, stop: int) -> torch.Tensor:
        """Pool slots of positions start..stop-1 of a request with block table ``table``."""
        p = np.arange(start, stop)
        return torch.from_numpy(np.asarray(table, dtype=np.int64)[p // self.bs] * self.bs + p % self.bs)

    # ------------------------------------------------------------ the forward pass

    def _attend_decode(self, layer, q, gather, mask):
        """q (B, H, 1, d); gather (B, L) slots; mask (B, 1, 1, L) additive. Grouped-query attention as
        MHA over the K/V heads with the group's G query heads as G query rows (no K/V repeat, any
        SDPA backend): query head h = kv head h // G, row h % G."""
        B, L = gather.shape
        Hkv, d = self.k[layer].shape[1:]
        G = q.shape[1] // Hkv
        k = self.k[layer][gather.reshape(-1)].view(B, L, Hkv, d).transpose(1, 2)  # (B, H_kv, L, d)
        v = self.v[layer][gather.reshape(-1)].view(B, L, Hkv, d).transpose(1, 2)
        y = F.scaled_dot_product_attention(q.reshape(B, Hkv, G, d), k, v, attn_mask=mask)  # (B, H_kv, G, d)
        return y.reshape(B, Hkv * G, 1, d)

    def _attend_chunk(self, layer, q, gather, ctx):
        """q (1, H, n, d) of a chunk after ``ctx`` cached tokens; gather (ctx + n,) slots. After a
        context the G query heads of a group become G x n query rows (row g n + j is query j of
        head g) under an explicit causal mask offset by ``ctx``."""
        n = q.shape[2]
        Hkv, d = self.k[layer].shape[1:]
        G = q.shape[1] // Hkv
        k = self.k[layer][gather].transpose(0, 1)[None]  # (1, H_kv, ctx + n, d)
        v = self.v[layer][gather].transpose(0, 1)[None]
        if ctx == 0:  # a whole prompt: plain causal attention, which the flash backend takes
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=G > 1)
        keys = torch.arange(ctx + n, device=q.device)
        allowed = keys[None, :] <= (ctx + torch.arange(n, device=q.device))[:, None]  # (n, ctx + n)
        y = F.scaled_dot_product_attention(q.reshape(1, Hkv, G * n, d), k, v, attn_mask=allowed.repeat(G, 1))
        return y.reshape(1, Hkv * G, n, d)

    def forward(self, ids, positions, write_slots, decode, chunks, last_index):
        """ids, positions, write_slots (T,); ``decode``: (n_dec, gather (B, L), mask) for the first
        n_dec tokens; ``chunks``: [(start, n, ctx, gather)] for the rest; logits at ``last_index``."""
        m, cfg = self.model, self.cfg
        H, Hkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        x = m.tok(ids)[None]  # (1, T, D)
        if m.pos is not None:
            x = x + m.pos(positions)[None]
        cos = sin = None
        if m.cos is not None:
            cos, sin = m.cos[positions][:, None, :], m.sin[positions][:, None, :]  # (T, 1, d)
        from costmodel.validation.reference_model import apply_rope

        T = ids.shape[0]
        for li, blk in enumerate(m.layers):
            a = blk.attn
            h = blk.attn_norm(x)
            q, k, v = a.wqkv(h).split([H * d, Hkv * d, Hkv * d], dim=-1)
            q, k, v = q.view(1, T, H, d), k.view(1, T, Hkv, d), v.view(1, T, Hkv, d)
            if a.rope:
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            self.k[li].index_copy_(0, write_slots, k[0])
            self.v[li].index_copy_(0, write_slots, v[0])
            outs = []
            n_dec = decode[0] if decode else 0
            if n_dec:
                qd = q[0, :n_dec].reshape(n_dec, H, 1, d)
                outs.append(self._attend_decode(li, qd, decode[1], decode[2]).reshape(n_dec, H * d))
            for start, n, ctx, gather in chunks:
                qc = q[0, start:start + n].transpose(0, 1)[None]  # (1, H, n, d)
                outs.append(self._attend_chunk(li, qc, gather, ctx)[0].transpose(0, 1).reshape(n, H * d))
            y = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
            x = x + a.wo(y[None])
            x = x + blk.mlp(blk.mlp_norm(x))
        return m.head(m.norm(x[0, last_index]))  # (requests, V)

    # ------------------------------------------------------------ one scheduler batch

    def step(self, batch, tables: dict, tokens: dict, use_graphs: bool) -> dict:
        """Run a scheduler ``Batch``; ``tokens[rid]`` holds each request's known token ids (appended
        to here). Returns {rid: next token} for the requests that emitted one."""
        dev, bs = self.device, self.bs
        dec = batch.decode
        ids, pos = [], []
        for r in dec:  # decode: the last known token at position computed
            ids.append(tokens[r.rid][r.computed])
            pos.append(r.computed)
        chunks, last = [], list(range(len(dec)))
        start = len(dec)
        for r, n, ctx in batch.prefill:
            ids.extend(tokens[r.rid][ctx:ctx + n])
            pos.extend(range(ctx, ctx + n))
            chunks.append((start, n, ctx, self.slots(tables[r.rid], 0, ctx + n).to(dev)))
            start += n
            last.append(start - 1)
        write = [tables[r.rid][r.computed // bs] * bs + r.computed % bs for r in dec]  # each decode's new slot
        write_t = torch.tensor(write, dtype=torch.long)
        if batch.prefill:
            write_t = torch.cat([write_t] + [self.slots(tables[r.rid], ctx, ctx + n) for r, n, ctx in batch.prefill])
        write_t = write_t.to(dev)
        if dec and not chunks and use_graphs:
            logits = self._graph_decode(dec, tables, ids, pos, write_t)
        else:
            decode = None
            if dec:
                gather, mask = self._decode_gather(dec, tables, len(dec))
                decode = (len(dec), gather, mask)
            logits = self.forward(torch.tensor(ids, device=dev), torch.tensor(pos, device=dev), write_t, decode,
                                  chunks, torch.tensor(last, device=dev))
        nxt = logits.argmax(-1).tolist()
        out = {}
        for i, r in enumerate(dec):
            out[r.rid] = nxt[i]
        for j, (r, n, ctx) in enumerate(batch.prefill):
            if ctx + n == r.prompt_len + r.generated:  # caught up: the chunk's last token emits
                out[r.rid] = nxt[len(dec) + j]
        return out

    def _decode_gather(self, dec, tables, B: int, L: int | None = None):
        """(B, L) pool slots of every decode request's positions 0..L-1 (the scratch slot past its
        length and for padded rows) and the (B, 1, 1, L) additive mask that hides them."""
        bs = self.bs
        lens = np.zeros(B, dtype=np.int64)
        lens[: len(dec)] = [r.computed + 1 for r in dec]
        L = L or ctx_bucket(int(lens.max()), bs)
        nb = -(-L // bs)
        tab = np.full((B, nb), self.scratch_block, dtype=np.int64)  # block tables, padded with the scratch block
        for i, r in enumerate(dec):
            t = tables[r.rid][:nb]
            tab[i, : len(t)] = t
        p = np.arange(L)
        valid = p[None, :] < lens[:, None]  # (B, L)
        valid[len(dec):, 0] = True  # padded rows attend to the scratch slot: no NaN
        gather = np.where(valid, tab[:, p // bs] * bs + p % bs, self.scratch_block * bs)
        mask = torch.zeros((B, 1, 1, L), dtype=self.dtype)
        mask.masked_fill_(torch.from_numpy(~valid)[:, None, None, :], -math.inf)
        return torch.from_numpy(gather).to(self.device), mask.to(self.device)

    def _graph_decode(self, dec, tables, ids, pos, write_t):
        B = bucket(len(dec))
        L = ctx_bucket(max(r.computed + 1 for r in dec), self.bs)
        gather, mask = self._decode_gather(dec, tables, B, L)
        pad = B - len(dec)
        ids_t = torch.tensor(ids + [0] * pad, device=self.device)
        pos_t = torch.tensor(pos + [0] * pad, device=self.device)
        scratch = torch.full((pad,), self.scratch_block * self.bs, dtype=torch.long, device=self.device)
        write_full = torch.cat([write_t, scratch])
        key = (B, L)
        if key not in self.graphs:
            static = dict(ids=ids_t.clone(), pos=pos_t.clone(), write=write_full.clone(), gather=gather.clone(),
                          mask=mask.clone(), last=torch.arange(B, device=self.device))
            run = lambda s=static: self.forward(s["ids"], s["pos"], s["write"], (B, s["gather"], s["mask"]), [],  # noqa: E731
                                                s["last"])
            self.graphs[key] = (self._capture(run), static)
        replay, static = self.graphs[key]
        for name, t in (("ids", ids_t), ("pos", pos_t), ("write", write_full), ("gather", gather), ("mask", mask)):
            static[name].copy_(t)
        return replay()[: len(dec)]

    def _capture(self, run):
        """A replay function for ``run`` (which reads only the static tensors): a CUDA graph on the
        GPU; on the CPU (``emulate_graphs``) ``run`` itself into a fixed output, so the padded-bucket
        bookkeeping around the graphs is exercised where no CUDA is."""
        if self.emulate_graphs:
            out = run()
            return lambda: out.copy_(run())
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            run()  # warm-up outside the graph (cuBLAS handles, workspaces)
        torch.cuda.current_stream().wait_stream(stream)
        g = torch.cuda.CUDAGraph()
        if self.graph_pool is None:
            self.graph_pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(g, pool=self.graph_pool):
            out = run()

        def replay():
            g.replay()
            return out

        replay.graph = g  # kept alive with its output
        return replay


__all__ = ["BATCH_BUCKETS", "PagedModel", "bucket", "ctx_bucket"]
