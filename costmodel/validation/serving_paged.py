"""A real serving loop in PyTorch: the step branch's reference decoder run over a paged KV cache, its
batches formed by the simulator's own schedulers, its steps timed on the device.

The model's weights and token-wise modules (embedding, norms, q/k/v and output projections, MLP,
LM head, RoPE tables) are the reference model's (``costmodel.validation.reference_model``); only attention
is done here, over KV *pools* of shape (blocks, block_size, H_kv, d) per layer, indexed by the block
tables of ``costmodel.serving.blocks.BlockManager`` (Kwon et al. 2023 §4.1: a token at position p of
a request lives in slot p % block_size of its block table[p // block_size]). Per step:

1. the new tokens of every request of the batch, flattened (T tokens), go through the projections;
2. each new token's K and V are written into its slot (one ``index_copy_`` per layer);
3. decode requests (one new token each) attend straight from the pools by block table with the
   paged decode kernel (``paged_attention.paged_decode``, Triton, as vLLM's paged attention): each
   cached K/V byte read once, nothing gathered; prefill chunks (one request each) gather their
   context and run SDPA on FlashAttention-2 (what vLLM's prefill runs), causal, aligned to the
   chunk's end when a context precedes it;
4. logits only at each request's last new token; greedy argmax is the next token.

Decode-only steps are captured as CUDA graphs per batch bucket (vLLM's graph sizes) and replayed:
block tables and lengths are static device buffers the kernel reads, so one graph serves every
context length. On the CPU the decode kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``
set before the first import of triton) and SDPA on its CPU backend.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

from costmodel.validation.paged_attention import paged_decode
from costmodel.validation.reference_model import apply_rope

# CUDA-graph batch sizes: a subset of vLLM V0's _BATCH_SIZES_TO_CAPTURE (1, 2, 4, then every multiple of 8
# to 256; vllm/worker/model_runner.py), fewer graphs to capture inside the call's budget
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256)


def bucket(x: int, buckets=BATCH_BUCKETS) -> int:
    for b in buckets:
        if x <= b:
            return b
    return x


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
        self.max_blocks = -(-cfg.max_seq_len // block_size)  # columns of a padded block table
        self.graphs: dict = {}
        self.graph_pool = None
        self.cuda = torch.device(device).type == "cuda"
        self.flash_gqa = self.cuda and cfg.n_heads != cfg.n_kv_heads and _flash_takes_gqa(dtype, device)
        self.last_timing: dict = {}  # the host / device split of the last step (``step``)
        self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) if self.cuda else None

    # ------------------------------------------------------------ slot arithmetic

    def slots(self, table: list[int], start: int, stop: int) -> torch.Tensor:
        """Pool slots of positions start..stop-1 of a request with block table ``table``."""
        p = np.arange(start, stop)
        return torch.from_numpy(np.asarray(table, dtype=np.int64)[p // self.bs] * self.bs + p % self.bs)

    # ------------------------------------------------------------ the forward pass

    def _attend_chunk(self, layer, q, gather, ctx):
        """q (1, H, n, d) of a chunk after ``ctx`` cached tokens; gather (ctx + n,) slots. FlashAttention
        on the GPU; causal from the top left for a whole prompt, from the bottom right after a context
        (query j sees keys <= ctx + j)."""
        n = q.shape[2]
        G = q.shape[1] // self.k[layer].shape[1]
        k = self.k[layer][gather].transpose(0, 1)[None]  # (1, H_kv, ctx + n, d)
        v = self.v[layer][gather].transpose(0, 1)[None]
        gqa = G > 1 and (self.flash_gqa or not self.cuda) and ctx == 0
        if G > 1 and not gqa:  # the causal bias path (and a flash build without GQA) wants H K/V heads
            k, v = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)
        mask = None if ctx == 0 else causal_lower_right(n, ctx + n)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION] if self.cuda else [SDPBackend.MATH]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=ctx == 0, enable_gqa=gqa)

    def forward(self, ids, positions, write_slots, decode, chunks, last_index):
        """ids, positions, write_slots (T,); ``decode``: (n_dec, tables (n_dec, blocks), lens (n_dec,))
        for the first n_dec tokens; ``chunks``: [(start, n, ctx, gather)] for the rest; logits at
        ``last_index``."""
        m, cfg = self.model, self.cfg
        H, Hkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        x = m.tok(ids)[None]  # (1, T, D)
        if m.pos is not None:
            x = x + m.pos(positions)[None]
        cos = sin = None
        if m.cos is not None:
            cos, sin = m.cos[positions][:, None, :], m.sin[positions][:, None, :]  # (T, 1, d)
        T = ids.shape[0]
        n_dec = decode[0] if decode else 0
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
            if n_dec:
                qd = q[0, :n_dec].contiguous()  # (n_dec, H, d)
                outs.append(paged_decode(qd, self.k[li], self.v[li], decode[1], decode[2], self.bs).view(n_dec, H * d))
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
        to here). Returns {rid: next token} for the requests that emitted one. ``last_timing``
        splits its wall time: ``prep_s`` building the inputs on the host, ``issue_s`` issuing the
        forward (graph: tables, input copies and the replay; eager: every launch), ``wait_s`` until
        the sampled tokens are on the host, and ``gpu_s`` (CUDA events) from the forward's first
        command to its last on the device."""
        t_start = time.perf_counter()
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
        t_issue = time.perf_counter()
        if self._events:
            self._events[0].record()
        if dec and not chunks and use_graphs:
            logits = self._graph_decode(dec, tables, ids, pos, write_t)
        else:
            decode = (len(dec), *self._decode_tables(dec, tables, len(dec))) if dec else None
            logits = self.forward(torch.tensor(ids, device=dev), torch.tensor(pos, device=dev), write_t, decode,
                                  chunks, torch.tensor(last, device=dev))
        if self._events:
            self._events[1].record()
        t_issued = time.perf_counter()
        nxt = logits.argmax(-1).tolist()
        t_end = time.perf_counter()
        self.last_timing = {"prep_s": t_issue - t_start, "issue_s": t_issued - t_issue, "wait_s": t_end - t_issued}
        if self._events:
            self.last_timing["gpu_s"] = self._events[0].elapsed_time(self._events[1]) * 1e-3
        out = {}
        for i, r in enumerate(dec):
            out[r.rid] = nxt[i]
        for j, (r, n, ctx) in enumerate(batch.prefill):
            if ctx + n == r.prompt_len + r.generated:  # caught up: the chunk's last token emits
                out[r.rid] = nxt[len(dec) + j]
        return out

    def _decode_tables(self, dec, tables, B: int):
        """(B, max_blocks) int32 block tables of the decode requests (padded rows and columns: the
        scratch block) and their (B,) key counts (padded rows: 1 key, the scratch slot)."""
        tab = np.full((B, self.max_blocks), self.scratch_block, dtype=np.int32)
        lens = np.ones(B, dtype=np.int32)
        for i, r in enumerate(dec):
            t = tables[r.rid]
            tab[i, : len(t)] = t
            lens[i] = r.computed + 1
        return torch.from_numpy(tab).to(self.device), torch.from_numpy(lens).to(self.device)

    def _graph_decode(self, dec, tables, ids, pos, write_t):
        B = bucket(len(dec))
        tab, lens = self._decode_tables(dec, tables, B)
        pad = B - len(dec)
        ids_t = torch.tensor(ids + [0] * pad, device=self.device)
        pos_t = torch.tensor(pos + [0] * pad, device=self.device)
        scratch = torch.full((pad,), self.scratch_block * self.bs, dtype=torch.long, device=self.device)
        write_full = torch.cat([write_t, scratch])
        if B not in self.graphs:
            static = dict(ids=ids_t.clone(), pos=pos_t.clone(), write=write_full.clone(), tables=tab.clone(),
                          lens=lens.clone(), last=torch.arange(B, device=self.device))
            run = lambda s=static: self.forward(s["ids"], s["pos"], s["write"], (B, s["tables"], s["lens"]), [],  # noqa: E731
                                                s["last"])
            self.graphs[B] = (self._capture(run), static)
        replay, static = self.graphs[B]
        for name, t in (("ids", ids_t), ("pos", pos_t), ("write", write_full), ("tables", tab), ("lens", lens)):
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
            run()  # warm-up outside the graph (cuBLAS handles, workspaces, Triton's compile)
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


def _flash_takes_gqa(dtype, device) -> bool:
    """Whether this torch build's FlashAttention backend runs grouped-query SDPA (``enable_gqa``)."""
    q = torch.zeros((1, 4, 8, 64), dtype=dtype, device=device)
    kv = torch.zeros((1, 2, 8, 64), dtype=dtype, device=device)
    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
    except RuntimeError:
        return False
    return True


__all__ = ["BATCH_BUCKETS", "PagedModel", "bucket"]
