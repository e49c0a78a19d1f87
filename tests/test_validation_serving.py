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
    # the padded (batch, context) buckets of the CUDA-graph path, emulated on the CPU.
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
        assert (4, 16) in paged.graphs
    assert all(len(tokens[r.rid]) == r.prompt_len + r.output_len for r in reqs)


@torch.no_grad()
def test_decode_attention_over_pages_equals_contiguous(model):
    paged = PagedModel(model, num_blocks=16, block_size=4, dtype=torch.float32, device="cpu")
    rng = np.random.default_rng(SEED)
    H, d = TINY.n_kv_heads, TINY.head_dim
    kv = torch.tensor(rng.standard_normal((2, 10, H, d)), dtype=torch.float32)  # K, V of 10 tokens
    table = [7, 2, 12]  # any physical blocks
    slots = paged.slots(table, 0, 10)
    paged.k[0][slots], paged.v[0][slots] = kv[0], kv[1]
    q = torch.tensor(rng.standard_normal((1, TINY.n_heads, 1, d)), dtype=torch.float32)
    gather = torch.full((1, 16), paged.scratch_block * 4, dtype=torch.long)
    gather[0, :10] = slots
    mask = torch.full((1, 1, 1, 16), -float("inf"))
    mask[..., :10] = 0
    got = paged._attend_decode(0, q, gather, mask)
    want = torch.nn.functional.scaled_dot_product_attention(q, kv[0].transpose(0, 1)[None], kv[1].transpose(0, 1)[None],
                                                            enable_gqa=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


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
