"""The real serving loop on the CPU (torch 2.13 CPU build): the paged forward against the reference
decoder's own full-sequence forward, and the loop serving a small trace to completion."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
reference = pytest.importorskip("costmodel.validation.reference_model")

from costmodel.models import ModelConfig  # noqa: E402
from costmodel.serving.blocks import BlockManager  # noqa: E402
from costmodel.serving.request import Request  # noqa: E402
from costmodel.serving.schedulers import make_scheduler  # noqa: E402
from costmodel.validation.serving_paged import PagedModel  # noqa: E402
from costmodel.validation.serving_loop import serve  # noqa: E402
from costmodel.serving.workload import Workload  # noqa: E402

SEED = 3
TINY = ModelConfig(name="tiny", source="test", vocab_size=97, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                   ffn_dim=96, ffn_type="swiglu", norm_type="rmsnorm", attn_bias=False, mlp_bias=False,
                   tied_embeddings=False, position_embedding="rope", max_seq_len=128)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(SEED)
    return reference.build(TINY, dtype=torch.float32, device="cpu", seed=SEED, max_pos=128).eval()


@pytest.mark.parametrize("graphs", [False, True])
@torch.no_grad()
def test_paged_steps_match_the_full_forward(model, graphs):
    # three requests, chunked prefill with a 9-token budget over 4-token blocks, blocks handed out
    # interleaved; at every step each emitted token must be the argmax of the reference model's
    # forward over that request's whole sequence (no cache). ``graphs``: decode-only steps go through
    # the padded batch buckets of the CUDA-graph path, emulated on the CPU.
    paged = PagedModel(model, num_blocks=40, block_size=4, dtype=torch.float32, device="cpu", emulate_graphs=graphs)
    bm = BlockManager(40, 4, watermark_fraction=0)
    sched = make_scheduler("chunked", bm, max_batch_tokens=9)
    rng = np.random.default_rng(SEED)
    reqs = [Request(i, 0.0, p, o) for i, (p, o) in enumerate([(11, 5), (3, 6), (7, 4)])]
    tokens = {r.rid: rng.integers(0, TINY.vocab_size, r.prompt_len).tolist() for r in reqs}
    for r in reqs:
        sched.add(r)
    checked, t = 0, 0.0
    while not sched.idle:
        batch = sched.schedule(t)
        emitted = paged.step(batch, bm.tables, tokens, use_graphs=graphs)
        for rid, tok in emitted.items():
            seq = torch.tensor(tokens[rid])[None]
            ref = model(seq)[0, -1]
            assert tok == int(ref.argmax())
            checked += 1
            tokens[rid].append(tok)
        t += 1.0
        sched.complete(batch, t)
    assert checked == sum(r.output_len for r in reqs)
    if graphs:  # the three decoding together ran padded to the batch bucket 4 (one scratch row)
        assert 4 in paged.graphs
    assert all(len(tokens[r.rid]) == r.prompt_len + r.output_len for r in reqs)


@pytest.mark.parametrize("heads, kv_heads, d, block_size, block_n", [
    (4, 4, 16, 4, 16),     # MHA, a tile of four blocks
    (8, 2, 32, 16, 16),    # GQA 4, a tile of one block
    (16, 2, 64, 16, 64),   # GQA 8
    (2, 1, 16, 32, 16),    # a tile inside a block
])
def test_paged_decode_kernel_against_float64(heads, kv_heads, d, block_size, block_n):
    # the Triton kernel (interpreted) against request-by-request gather and softmax in float64, on
    # fresh seeded inputs: blocks scattered over the pool, lengths of 1 key, a partial tile, many tiles
    from costmodel.validation.paged_attention import paged_decode, paged_decode_reference

    g = torch.Generator().manual_seed(SEED + heads + d)
    lens = torch.tensor([1, block_size + 3, 5 * block_n + 1], dtype=torch.int32)
    width = int(-(-lens.max() // block_size))
    n_blocks = 3 * width + 2
    k_pool = torch.randn(n_blocks * block_size, kv_heads, d, generator=g)
    v_pool = torch.randn(n_blocks * block_size, kv_heads, d, generator=g)
    tables = torch.randperm(n_blocks, generator=g)[: 3 * width].view(3, width).to(torch.int32)
    q = torch.randn(3, heads, d, generator=g)
    got = paged_decode(q, k_pool, v_pool, tables, lens, block_size, block_n=block_n)
    want = paged_decode_reference(q, k_pool, v_pool, tables, lens, block_size)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_paged_decode_refuses_what_it_cannot_run():
    from costmodel.validation.paged_attention import paged_decode

    q, pool = torch.zeros(1, 6, 16), torch.zeros(8, 4, 16)
    tab, lens = torch.zeros(1, 2, dtype=torch.int32), torch.ones(1, dtype=torch.int32)
    with pytest.raises(ValueError, match="heads: 6 query heads"):
        paged_decode(q, pool, pool, tab, lens, 4)
    with pytest.raises(ValueError, match="head_dim: 24"):
        paged_decode(torch.zeros(1, 4, 24), torch.zeros(8, 4, 24), torch.zeros(8, 4, 24), tab, lens, 4)


@torch.no_grad()
def test_decode_attention_over_pages_equals_contiguous(model):
    # the model's decode path: K/V written into scattered blocks, attention through the paged kernel,
    # against SDPA over the same K/V laid out contiguously
    from costmodel.validation.paged_attention import paged_decode

    paged = PagedModel(model, num_blocks=16, block_size=4, dtype=torch.float32, device="cpu")
    rng = np.random.default_rng(SEED)
    H, d = TINY.n_kv_heads, TINY.head_dim
    kv = torch.tensor(rng.standard_normal((2, 10, H, d)), dtype=torch.float32)  # K, V of 10 tokens
    table = [7, 2, 12]  # any physical blocks
    slots = paged.slots(table, 0, 10)
    paged.k[0][slots], paged.v[0][slots] = kv[0], kv[1]
    q = torch.tensor(rng.standard_normal((1, TINY.n_heads, d)), dtype=torch.float32)
    tab = torch.full((1, paged.max_blocks), paged.scratch_block, dtype=torch.int32)
    tab[0, :3] = torch.tensor(table)
    got = paged_decode(q, paged.k[0], paged.v[0], tab, torch.tensor([10], dtype=torch.int32), 4)
    want = torch.nn.functional.scaled_dot_product_attention(q[:, :, None], kv[0].transpose(0, 1)[None],
                                                            kv[1].transpose(0, 1)[None], enable_gqa=True)
    torch.testing.assert_close(got, want[:, :, 0], rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_real_loop_serves_a_trace(model):
    arrivals = np.array([0.0, 0.001, 0.002, 0.05, 0.06])
    w = Workload(arrivals, np.array([12, 5, 20, 3, 9]), np.array([6, 3, 4, 8, 2]), "test")
    paged = PagedModel(model, num_blocks=64, block_size=4, dtype=torch.float32, device="cpu")
    out = serve(paged, w, scheduler="chunked", num_blocks=64, max_batch_tokens=16, use_graphs=False)
    assert out["served"] == 5 and not out["stopped_by_budget"]
    m, req = out["metrics"], out["requests"]
    assert all(0 < a <= b for a, b in zip(req["ttft_s"], req["e2e_s"]))
    assert sum(s["decodes"] + len(s["chunks"]) for s in out["steps"]) > 0
    assert m["mean_in_system"] == pytest.approx(m["requests_per_s"] * m["e2e_s"]["mean"], rel=1e-6)


def test_gpu_runner_smoke_and_compare(tmp_path):
    # the GPU runner's --smoke path (CPU, toy model) writes the file compare reads; compare re-serves
    # each trace in the simulator (here as TinyLlama on the H200 spec: the numbers mean nothing, the
    # plumbing is what is checked)
    import json

    from costmodel.validation import serving_compare as compare, serving_run as gpu_run

    assert gpu_run.main(["--out", str(tmp_path), "--smoke", "--budget-s", "120"]) == 0
    data = json.loads((tmp_path / "serving_h200.json").read_text())
    assert [(r["scheduler"], r["rate_per_s"]) for r in data["runs"]] == [
        ("continuous", None), ("continuous", 20.0), ("continuous", 40.0), ("chunked", 40.0)]
    assert all(r["served"] == r["offered"] == 12 for r in data["runs"])
    for r in data["runs"]:
        r["model"] = "tinyllama-1.1b"
    out = compare.compare(data)
    assert "saturation_per_s" in out["rows"][0] and "requests_per_s" in out["rows"][1]
    assert set(out["rows"][1]["steps"]) <= {"decode", "prefill", "mixed"}
    assert all("below_measured_saturation" in r for r in out["rows"][1:])


@pytest.mark.parametrize("heads, kv_heads, d, block_size, block_n, rows", [
    (4, 4, 16, 4, 16, 16),    # MHA: tiles of 16 tokens
    (8, 2, 32, 4, 4, 16),     # GQA 4: tiles of 4 tokens x 4 heads, a key tile of one block
    (6, 2, 16, 8, 16, 32),    # GQA 3, padded to 4 heads a token
])
def test_paged_varlen_kernel_against_float64(heads, kv_heads, d, block_size, block_n, rows):
    # a prompt, a chunk after a context, decodes (one new token after a context) and padding rows,
    # each request's blocks scattered over the pool; the kernel (Triton's interpreter) against the
    # float64 gather-and-masked-softmax reference on fresh seeded inputs
    from costmodel.validation.paged_attention import (paged_varlen, paged_varlen_reference, varlen_block_q,
                                                       varlen_tiles)

    g = torch.Generator().manual_seed(heads * 100 + d)
    qlen, ctx = [9, 5, 1, 1, 3], [0, 7, 12, 1, 30]
    qstart = np.cumsum([0] + qlen[:-1]).tolist()
    width = [-(-(c + n) // block_size) for c, n in zip(ctx, qlen)]
    pool = sum(width) + 3
    perm = torch.randperm(pool, generator=g)
    tab = torch.zeros(len(qlen), max(width), dtype=torch.int64)
    o = 0
    for i, w in enumerate(width):
        tab[i, :w] = perm[o:o + w]
        o += w
    k = torch.randn(pool * block_size, kv_heads, d, generator=g)
    v = torch.randn(pool * block_size, kv_heads, d, generator=g)
    q = torch.randn(sum(qlen) + 4, heads, d, generator=g)
    bq = varlen_block_q(heads, kv_heads, rows)
    seq, q0 = varlen_tiles(qlen, bq, -(-q.shape[0] // bq) + len(qlen))  # padded as a graph's grid
    t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
    got = paged_varlen(q, k, v, tab, t(seq), t(q0), t(qstart), t(qlen), t(ctx), block_size, bq, block_n=block_n)
    want = paged_varlen_reference(q, k, v, tab, qstart, qlen, ctx, block_size)
    assert torch.allclose(got.double(), want, atol=2e-5)
    assert not got[sum(qlen):].any()  # padding rows: in no tile, left as given (zeros)


def test_varlen_tiles_cover_every_token_once():
    from costmodel.validation.paged_attention import varlen_tiles

    seq, q0 = varlen_tiles([5, 1, 8], 4, 7)
    assert list(zip(seq, q0)) == [(0, 0), (0, 4), (1, 0), (2, 0), (2, 4), (-1, 0), (-1, 0)]
    with pytest.raises(ValueError, match="tiles: 5 query tiles exceed the grid's 4"):
        varlen_tiles([5, 1, 8], 4, 4)
