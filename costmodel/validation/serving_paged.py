"""A real serving loop in PyTorch: the step branch's reference decoder run over a paged KV cache, its
batches formed by the simulator's own schedulers, its steps timed on the device.

The model's weights and token-wise modules (embedding, norms, q/k/v and output projections, MLP,
LM head, RoPE tables) are the reference model's (``costmodel.validation.reference_model``); only attention
is done here, over KV *pools* of shape (blocks, block_size, H_kv, d) per layer, indexed by the block
tables of ``costmodel.serving.blocks.BlockManager`` (Kwon et al. 2023 §4.1: a token at position p of
a request lives in slot p % block_size of its block table[p // block_size]). Per step:

1. the new tokens of every request of the batch, flattened (T tokens), go through the projections;
2. each new token's K and V are written into its slot (one ``index_copy_`` per layer);
3. attention reads straight from the pools by block table, one Triton kernel per layer
   (``costmodel.validation.paged_attention``): a decode-only step with the paged decode kernel (as
   vLLM's paged attention), a step holding prefill chunks with the varlen kernel, every request's new
   tokens at once, causal from the bottom right after its context (as vLLM's unified attention);
4. logits only at each request's last new token; greedy argmax is the next token.

Every step is a CUDA graph replay: decode-only steps by batch bucket (vLLM's graph sizes), steps
holding prefill by token bucket (``PREFILL_BUCKETS``: the step's tokens padded to a multiple of 16,
the padding rows in no attention tile, their K/V written to a scratch slot). Block tables, lengths
and the tile map are static device buffers the kernels read, so one graph serves every context
length. The logits of a prefill graph's step are taken outside it (the rows vary), as vLLM's V1
computes them after its piecewise graphs. ``prefill_graphs=False`` launches prefill steps eagerly.
On the CPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` set before the first
import of triton) and the graphs are emulated (``emulate_graphs``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from costmodel.validation.paged_attention import paged_decode, paged_varlen, varlen_block_q, varlen_tiles
from costmodel.validation.reference_model import apply_rope

# CUDA-graph batch sizes: a subset of vLLM V0's _BATCH_SIZES_TO_CAPTURE (1, 2, 4, then every multiple of 8
# to 256; vllm/worker/model_runner.py), fewer graphs to capture inside the call's budget
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256)
# token buckets of the graphs of steps holding prefill: padding of at most 15 tokens a step (vLLM's
# capture sizes stop at 512 tokens, beyond which it runs eager; here every step up to 2048 is a graph)
PREFILL_TOKEN_MULTIPLE = 16
PREFILL_BUCKETS = (1, 2, 4, 8) + tuple(range(PREFILL_TOKEN_MULTIPLE, 2049, PREFILL_TOKEN_MULTIPLE))
MAX_REQUESTS = 256  # rows of a prefill graph's request tables (the largest batch bucket)


def bucket(x: int, buckets=BATCH_BUCKETS) -> int:
    for b in buckets:
        if x <= b:
            return b
    return x


class PagedModel:
    """The reference decoder's weights with paged K/V pools; ``step`` runs one batch."""

    def __init__(self, model, num_blocks: int, block_size: int, dtype, device, emulate_graphs: bool = False,
                 prefill_graphs: bool = True):
        cfg = model.cfg
        self.emulate_graphs, self.prefill_graphs = emulate_graphs, prefill_graphs
        self.block_q = varlen_block_q(cfg.n_heads, cfg.n_kv_heads)
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
        self.last_timing: dict = {}  # the host / device split of the last step (``step``)
        self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) if self.cuda else None

    # ------------------------------------------------------------ slot arithmetic

    def slots(self, table: list[int], start: int, stop: int) -> torch.Tensor:
        """Pool slots of positions start..stop-1 of a request with block table ``table``."""
        p = np.arange(start, stop)
        return torch.from_numpy(np.asarray(table, dtype=np.int64)[p // self.bs] * self.bs + p % self.bs)

    # ------------------------------------------------------------ the forward pass

    def hidden(self, ids, positions, write_slots, attend):
        """ids, positions, write_slots (T,) -> the last layer's output (T, D); ``attend(layer, q)`` gives
        the attention output (T, H, d) of q (T, H, d) once the step's K/V are in the pools."""
        m, cfg = self.model, self.cfg
        H, Hkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        x = m.tok(ids)[None]  # (1, T, D)
        if m.pos is not None:
            x = x + m.pos(positions)[None]
        cos = sin = None
        if m.cos is not None:
            cos, sin = m.cos[positions][:, None, :], m.sin[positions][:, None, :]  # (T, 1, d)
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
            y = attend(li, q[0].contiguous()).view(T, H * d)
            x = x + a.wo(y[None])
            x = x + blk.mlp(blk.mlp_norm(x))
        return x[0]

    def logits(self, hidden, last_index):
        m = self.model
        return m.head(m.norm(hidden[last_index]))  # (requests, V)

    def forward_decode(self, ids, positions, write_slots, tables, lens):
        """A decode-only step: every token is a request's one new token (the paged decode kernel)."""
        def attend(li, q):
            return paged_decode(q, self.k[li], self.v[li], tables, lens, self.bs)

        return self.logits(self.hidden(ids, positions, write_slots, attend), slice(None))

    def forward_varlen(self, ids, positions, write_slots, meta):
        """A step holding prefill: ``meta`` the varlen kernel's tables (``_varlen_meta``); returns the
        hidden states of every token (the logits are taken outside, at each request's last token)."""
        def attend(li, q):
            return paged_varlen(q, self.k[li], self.v[li], meta["tables"], meta["tile_seq"], meta["tile_q0"],
                                meta["qstart"], meta["qlen"], meta["ctx"], self.bs, self.block_q)

        return self.hidden(ids, positions, write_slots, attend)

    # ------------------------------------------------------------ one scheduler batch

    def step(self, batch, tables: dict, tokens: dict, use_graphs: bool) -> dict:
        """Run a scheduler ``Batch``; ``tokens[rid]`` holds each request's known token ids (appended
        to here). Returns {rid: next token} for the requests that emitted one. ``last_timing``
        splits its wall time: ``prep_s`` building the inputs on the host, ``issue_s`` issuing the
        forward (graph: tables, input copies, the replay and a prefill step's logits; eager: every
        launch), of which ``inputs_s`` before its first launch (tables and copies), ``wait_s``
        until the sampled tokens are on the host, and ``gpu_s`` (CUDA events) from the forward's
        first launch (a graph's replay) to its last command on the device (the sampling argmax after it)."""
        t_start = time.perf_counter()
        dev, bs = self.device, self.bs
        dec = batch.decode
        ids = [tokens[r.rid][r.computed] for r in dec]  # decode: the last known token at position computed
        pos = [r.computed for r in dec]
        qlen, ctx = [1] * len(dec), [r.computed for r in dec]
        for r, n, c in batch.prefill:
            ids.extend(tokens[r.rid][c:c + n])
            pos.extend(range(c, c + n))
            qlen.append(n)
            ctx.append(c)
        reqs = list(dec) + [r for r, _, _ in batch.prefill]
        write = np.array([tables[r.rid][r.computed // bs] * bs + r.computed % bs for r in dec], dtype=np.int64)
        if batch.prefill:  # each decode's new slot, then every chunk's
            write = np.concatenate([write] + [self.slots(tables[r.rid], c, c + n).numpy() for r, n, c in batch.prefill])
        t_issue = self._t_launch = time.perf_counter()
        if not batch.prefill:
            if use_graphs:
                logits = self._graph_decode(dec, tables, ids, pos, write)
            else:
                tab, lens = self._decode_tables(dec, tables, len(dec))
                self._launch()
                logits = self.forward_decode(torch.tensor(ids, device=dev), torch.tensor(pos, device=dev),
                                             torch.from_numpy(write).to(dev), tab, lens)
        else:
            if use_graphs and self.prefill_graphs:
                hidden, last = self._graph_varlen(reqs, tables, ids, pos, write, qlen, ctx)
            else:
                meta = {k: torch.from_numpy(v).to(dev) for k, v in
                        self._varlen_meta(reqs, tables, qlen, ctx, len(reqs), None).items()}
                self._launch()
                hidden = self.forward_varlen(torch.tensor(ids, device=dev), torch.tensor(pos, device=dev),
                                             torch.from_numpy(write).to(dev), meta)
                last = meta["qstart"] + meta["qlen"] - 1
            logits = self.logits(hidden, last)  # each request's last new token
        if self._events:
            self._events[1].record()
        t_issued = time.perf_counter()
        nxt = logits.argmax(-1).tolist()
        t_end = time.perf_counter()
        self.last_timing = {"prep_s": t_issue - t_start, "issue_s": t_issued - t_issue, "wait_s": t_end - t_issued,
                            "inputs_s": self._t_launch - t_issue}
        if self._events:
            self.last_timing["gpu_s"] = self._events[0].elapsed_time(self._events[1]) * 1e-3
        out = {}
        for i, r in enumerate(dec):
            out[r.rid] = nxt[i]
        for j, (r, n, c) in enumerate(batch.prefill):
            if c + n == r.prompt_len + r.generated:  # caught up: the chunk's last token emits
                out[r.rid] = nxt[len(dec) + j]
        return out

    def _tables(self, reqs, tables, R: int, out: np.ndarray | None = None) -> np.ndarray:
        """(R, max_blocks) block tables of ``reqs`` (into ``out`` if given), padded rows and columns with
        the scratch block."""
        tab = np.empty((R, self.max_blocks), dtype=np.int64) if out is None else out
        tab.fill(self.scratch_block)
        for i, r in enumerate(reqs):
            t = tables[r.rid]
            tab[i, : len(t)] = t
        return tab

    def _decode_tables(self, dec, tables, B: int):
        """(B, max_blocks) block tables of the decode requests on the device and their (B,) key
        counts (padded rows: 1 key, the scratch slot)."""
        lens = np.ones(B, dtype=np.int64)
        lens[: len(dec)] = [r.computed + 1 for r in dec]
        return torch.from_numpy(self._tables(dec, tables, B)).to(self.device), torch.from_numpy(lens).to(self.device)

    def _varlen_meta(self, reqs, tables, qlen, ctx, R: int, max_tiles: int | None, out: dict | None = None) -> dict:
        """The varlen kernel's host-built tables (into the arrays of ``out`` if given): per request (R
        rows) its first token row, new tokens, context, last token row and block table; per tile
        (``max_tiles``, padded with -1) its request and first query."""
        n = len(reqs)
        seq, q0 = varlen_tiles(qlen, self.block_q, max_tiles)
        if out is None:
            out = {k: np.zeros(R, dtype=np.int64) for k in ("qstart", "qlen", "ctx", "last")}
            out.update(tile_seq=np.zeros(len(seq), dtype=np.int64), tile_q0=np.zeros(len(seq), dtype=np.int64),
                       tables=np.empty((R, self.max_blocks), dtype=np.int64))
        for k in ("qstart", "qlen", "ctx", "last"):
            out[k].fill(0)
        out["qlen"][:n], out["ctx"][:n] = qlen, ctx
        out["qstart"][1:n] = np.cumsum(qlen[:-1])
        out["last"][:n] = out["qstart"][:n] + out["qlen"][:n] - 1
        out["tile_seq"][:], out["tile_q0"][:] = seq, q0
        self._tables(reqs, tables, R, out["tables"])
        return out

    def _graph_decode(self, dec, tables, ids, pos, write):
        B = bucket(len(dec))
        if B not in self.graphs:
            shapes = {"ids": (B,), "pos": (B,), "write": (B,), "lens": (B,), "tables": (B, self.max_blocks)}
            packed = PackedInputs(shapes, self.device)
            d = packed.device_views
            run = lambda d=d: self.forward_decode(d["ids"], d["pos"], d["write"], d["tables"], d["lens"])  # noqa: E731
            self._fill_decode(packed.host_views, dec, tables, ids, pos, write)
            packed.upload()
            self.graphs[B] = (self._capture(run), packed)
        replay, packed = self.graphs[B]
        self._fill_decode(packed.host_views, dec, tables, ids, pos, write)
        packed.upload()
        self._launch()
        return replay()[: len(dec)]

    def _fill_decode(self, h, dec, tables, ids, pos, write):
        n = len(dec)
        for name, v, fill in (("ids", ids, 0), ("pos", pos, 0), ("write", write, self.scratch_block * self.bs),
                              ("lens", [r.computed + 1 for r in dec], 1)):
            h[name][:n] = v
            h[name][n:] = fill  # padded rows: the scratch slot, one key
        self._tables(dec, tables, h["tables"].shape[0], h["tables"])

    def varlen_grid(self, T: int) -> tuple[int, int]:
        """(request rows, tiles) of the prefill graph of token bucket ``T``: at most one request a token
        (and ``MAX_REQUESTS``), at most T / block_q full tiles plus one partial tile a request."""
        R = min(T, MAX_REQUESTS)
        return R, -(-T // self.block_q) + R

    def _graph_varlen(self, reqs, tables, ids, pos, write, qlen, ctx):
        T = bucket(len(ids), PREFILL_BUCKETS)
        R, tiles = self.varlen_grid(T)
        if len(reqs) > R:
            raise ValueError(f"requests: {len(reqs)} in a step; a prefill graph holds at most {R}")
        key = ("varlen", T)
        if key not in self.graphs:
            shapes = {"ids": (T,), "pos": (T,), "write": (T,), "qstart": (R,), "qlen": (R,), "ctx": (R,),
                      "last": (R,), "tile_seq": (tiles,), "tile_q0": (tiles,), "tables": (R, self.max_blocks)}
            packed = PackedInputs(shapes, self.device)
            d = packed.device_views
            run = lambda d=d: self.forward_varlen(d["ids"], d["pos"], d["write"], d)  # noqa: E731
            self._fill_varlen(packed.host_views, reqs, tables, ids, pos, write, qlen, ctx, R, tiles)
            packed.upload()
            self.graphs[key] = (self._capture(run), packed)
        replay, packed = self.graphs[key]
        self._fill_varlen(packed.host_views, reqs, tables, ids, pos, write, qlen, ctx, R, tiles)
        packed.upload()  # every input on the device before the replay: nothing after it waits for the graph
        self._launch()
        return replay(), packed.device_views["last"][: len(reqs)]

    def _fill_varlen(self, h, reqs, tables, ids, pos, write, qlen, ctx, R, tiles):
        n = len(ids)
        for name, v, fill in (("ids", ids, 0), ("pos", pos, 0), ("write", write, self.scratch_block * self.bs)):
            h[name][:n] = v
            h[name][n:] = fill  # padding tokens: token 0 at position 0, K/V to the scratch slot
        self._varlen_meta(reqs, tables, qlen, ctx, R, tiles, out=h)

    def _launch(self):
        """Mark the forward's first launch (a graph's replay): the inputs are built and copied, and
        ``gpu_s`` counts from here on the device."""
        self._t_launch = time.perf_counter()
        if self._events:
            self._events[0].record()

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


class PackedInputs:
    """A graph's integer inputs (int64) as views of one host buffer (pinned on a GPU) and one device
    buffer: a step fills the host views and ``upload`` copies them in one transfer, as vLLM keeps
    persistent pinned input buffers, so the host work before a replay is one copy, not one a tensor."""

    def __init__(self, shapes: dict, device):
        sizes = {k: int(np.prod(v)) for k, v in shapes.items()}
        total = sum(sizes.values())
        cuda = torch.device(device).type == "cuda"
        self.host = torch.zeros(total, dtype=torch.int64, pin_memory=cuda)
        self.device = torch.zeros(total, dtype=torch.int64, device=device)
        host_np = self.host.numpy()
        self.host_views, self.device_views, off = {}, {}, 0
        for k, shape in shapes.items():
            self.host_views[k] = host_np[off:off + sizes[k]].reshape(shape)
            self.device_views[k] = self.device[off:off + sizes[k]].view(shape)
            off += sizes[k]

    def upload(self):
        self.device.copy_(self.host, non_blocking=True)


__all__ = ["BATCH_BUCKETS", "PackedInputs", "MAX_REQUESTS", "PREFILL_BUCKETS", "PREFILL_TOKEN_MULTIPLE", "PagedModel", "bucket"]
