"""The training iteration's composition and memory per GPU against costmodel.training_memory.

Compute comes from a test double of the step predictor (fixed seconds per op row), so these tests
check the parallel bookkeeping only: pipeline, TP / DP communication counts, memory, layout rules.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from costmodel.models import load_model
from costmodel.parallel.collectives import collective_time
from costmodel.parallel.layout import Layout
from costmodel.parallel.predict import predict_training
from costmodel.parallel.training import memory_per_gpu, model_flops_per_iteration
from costmodel.training_memory import training_memory
from hardware_specs.cluster import load_cluster, with_nodes

LAYER_S, HEAD_S, EMBED_S, OPT_S = 4e-3, 2e-3, 1e-4, 0.05


def fake_step(model, gpu, phase, batch, seq_len, tensor_parallel=1, **kw):
    """Seconds per row scale with the micro-batch and 1/t; one row per layer and part."""
    k = np.asarray(batch, dtype=float) / tensor_parallel
    ops = [{"name": "block", "layer": i, "part": part, "time_s": LAYER_S * k * frac}
           for i in range(model.n_layers) for part, frac in (("fwd", 1 / 3), ("bwd", 2 / 3))]
    ops += [{"name": "embedding", "layer": None, "part": "fwd", "time_s": EMBED_S * k},
            {"name": "lm_head", "layer": None, "part": "fwd", "time_s": HEAD_S * k},
            {"name": "adam", "layer": None, "part": "optimizer", "time_s": OPT_S / tensor_parallel}]
    return SimpleNamespace(ops=ops, time_s=sum(np.asarray(o["time_s"]) for o in ops))


def test_memory_one_stage_is_training_memory():
    cfg = load_model("llama2-7b")
    for z in (0, 1, 3):
        tm = training_memory(cfg, batch=2, seq_len=4096, tensor_parallel=4, sequence_parallel=True,
                             recompute="selective", flash_attention=True, dropout=False, zero_stage=z, data_parallel=8)
        mem = memory_per_gpu(cfg, seq_len=4096, tp=4, pp=1, dp=8, micro_batch=2, micro_batches=16, virtual_stages=1,
                             schedule="1f1b", sequence_parallel=True, recompute="selective", zero_stage=z)
        assert float(mem["memory_bytes"]) == pytest.approx(tm.total_bytes)


def test_memory_1f1b_first_stage_holds_L_layers():
    # Korthikanti et al. 2022 eq. (4): the first 1F1B stage keeps p micro-batches of L/p layers
    cfg = load_model("gpt3-175b")
    kw = dict(batch=1, seq_len=2048, tensor_parallel=8, sequence_parallel=True, recompute="selective", dropout=True,
              flash_attention=False)
    tm = training_memory(cfg, **kw)
    mem = memory_per_gpu(cfg, seq_len=2048, tp=8, pp=8, dp=1, micro_batch=1, micro_batches=64, virtual_stages=1,
                         schedule="1f1b", sequence_parallel=True, recompute="selective", zero_stage=0, dropout=True,
                         flash_attention=False)
    first = tm.model_states_bytes / 8 + tm.activations_layers_bytes + 8 * tm.activations_embedding_bytes
    assert float(mem["memory_bytes"]) == pytest.approx(first)
    inter = memory_per_gpu(cfg, seq_len=2048, tp=8, pp=8, dp=1, micro_batch=1, micro_batches=64, virtual_stages=3,
                           schedule="interleaved", sequence_parallel=True, recompute="selective", zero_stage=0,
                           dropout=True, flash_attention=False)
    assert float(inter["activations_bytes"]) == pytest.approx(
        tm.activations_layers_bytes * (1 + 7 / 24) + 8 * tm.activations_embedding_bytes)


def test_iteration_composition():
    cfg, cl = load_model("llama2-7b"), load_cluster("dgx-a100")
    r = predict_training(cfg, cl, seq_len=4096, gpus=64, tp=2, pp=4, global_batch=128, micro_batch=2, step_fn=fake_step)
    assert r.dp == 8 and r.micro_batches == 8
    k = 2 / 2
    t_layer = LAYER_S * k
    layers = cfg.n_layers // 4
    cl64 = with_nodes(cl, 64)
    tp_layer = 4 * collective_time(cl64, "all_reduce", 2 * 4096 * cfg.d_model * 2, 2)
    p2p = 2 * collective_time(cl64, "send_recv", 2 * 4096 * cfg.d_model * 2 / 2, 2, 1, 2)  # t*d = 16 >= 8: other node
    t_mb = layers * (t_layer + tp_layer) + HEAD_S * k + p2p
    assert r.breakdown["pipeline_s"] == pytest.approx((8 + 3) * t_mb)
    assert r.bubble_fraction == pytest.approx(3 / 11)
    assert r.breakdown["optimizer_s"] == pytest.approx(OPT_S / 2 / 4)
    assert r.time_s == pytest.approx(r.breakdown["pipeline_s"] + r.breakdown["dp_comm_s"] + r.breakdown["optimizer_s"])
    assert r.tokens_per_s == pytest.approx(128 * 4096 / r.time_s)


def test_zero_stages_and_overlap():
    kw = dict(seq_len=2048, gpus=64, tp=8, pp=1, global_batch=64, micro_batch=1, step_fn=fake_step)
    t = {z: predict_training("llama2-7b", "dgx-a100", zero_stage=z, **kw).breakdown["dp_comm_s"] for z in range(4)}
    assert t[1] > 0.9 * t[0]  # RS + AG moves the all-reduce's bytes
    # bf16 grads and params: a reduce-scatter and an all-gather of the shard take the same time
    assert t[2] == pytest.approx(t[1] * (8 + 1) / 2)  # 8 micro-batches: a reduce-scatter each, one all-gather
    assert t[3] == pytest.approx(t[1] * (8 + 2 * 8) / 2)  # and two all-gathers per micro-batch
    hidden = predict_training("llama2-7b", "dgx-a100", overlap_dp=True, **kw)
    assert hidden.breakdown["dp_comm_exposed_s"] < t[0]


def test_model_flops_eq3_for_gpt():
    # Narayanan et al. 2021 eq. (3): 96 B s l h^2 (1 + s/6h + V/16lh), with recomputation
    cfg = load_model("gpt3-175b")
    B, s, l, h, V = 1536, 2048, cfg.n_layers, cfg.d_model, cfg.vocab_size
    eq3 = 96 * B * s * l * h ** 2 * (1 + s / (6 * h) + V / (16 * l * h))
    assert model_flops_per_iteration(cfg, s, B, "full") == pytest.approx(eq3, rel=2e-3)  # biases aside: GPT-3 has a 4h MLP


def test_layout_errors_name_the_field():
    with pytest.raises(ValueError, match="gpus: 100 is not divisible"):
        Layout(gpus=100, tp=8, global_batch=8)
    with pytest.raises(ValueError, match="global_batch"):
        Layout(gpus=64, tp=8, global_batch=12)
    with pytest.raises(ValueError, match="virtual_stages"):
        Layout(gpus=64, tp=8, pp=2, global_batch=64, virtual_stages=2)
    with pytest.raises(ValueError, match="interleaved needs pp >= 2"):
        Layout(gpus=8, tp=8, global_batch=8, schedule="interleaved", virtual_stages=2)
    with pytest.raises(ValueError, match="tp: 3"):
        Layout(gpus=48, tp=3, global_batch=16).check_model(load_model("llama2-7b"))
