"""simulators/tabular.py: every result type as a dict, a pandas frame and a short HTML table."""

import sys
from dataclasses import dataclass

import numpy as np
import pytest

from costmodel.kvcache import kv_cache_bytes
from costmodel.models import load_model
from costmodel.training_memory import training_memory
from simulators import simulate_attention
from simulators.tabular import Tabular

pd = pytest.importorskip("pandas")


def test_scalar_result_is_one_row_of_its_fields():
    cfg = load_model("llama2-7b")
    r = kv_cache_bytes(cfg, batch=2, seq_len=1024, dtype="bf16")
    per_token = 2 * 32 * 32 * 128 * 2  # 2 (K, V) · layers · kv heads · head_dim · bytes (kvcache docstring)
    assert r.to_dict() == {"per_token_bytes": per_token, "tokens_held": 1024, "per_sequence_bytes": per_token * 1024,
                           "total_bytes": per_token * 1024 * 2}
    frame = r.to_frame()
    assert frame.shape == (1, 4) and frame.loc[0, "total_bytes"] == per_token * 2048


def test_broadcast_result_is_one_row_per_element():
    cfg = load_model("llama2-7b")
    batch, seq = np.array([1, 2, 4]), np.array([[512], [8192]])  # broadcast to (2, 3)
    frame = kv_cache_bytes(cfg, batch=batch, seq_len=seq).to_frame()
    assert len(frame) == 6
    expected = (2 * 32 * 32 * 128 * 2 * seq * batch).ravel()
    assert frame["total_bytes"].tolist() == expected.tolist()
    assert (frame["per_token_bytes"] == 2 * 32 * 32 * 128 * 2).all()


def test_nested_results_become_dotted_columns_and_rows():
    cfg = load_model("llama2-7b")
    m = training_memory(cfg, 1, 2048)
    frame = m.to_frame()
    assert frame.loc[0, "activations_per_layer.total_bytes"] == m.activations_per_layer.total_bytes
    page = m._repr_html_()
    assert "<b>TrainingMemory</b>" in page and "activations_per_layer.mlp_bytes" in page and " GB" in page


def test_attention_result_kernels_as_rows():
    r = simulate_attention("h100-sxm5-80gb", "standard", batch=1, heads=8, seq_len=2048, head_dim=64)
    kernels = r.to_frame("kernels")
    assert kernels["name"].tolist() == [k.name for k in r.kernels]
    assert kernels["hbm_bytes"].sum() == r.hbm_bytes
    totals = r.to_frame()
    assert len(totals) == 1 and totals.loc[0, "time_s"] == r.time_s and totals.loc[0, "config.seq_len"] == 2048
    page = r._repr_html_()
    assert "<b>AttentionResult</b>" in page and any(u in page for u in ("µs", "ms"))
    assert f"{len(r.kernels)} items: qk_matmul" in page and "entries: batch" in page  # lists and dicts summarised
    with pytest.raises(ValueError, match="field: 'nope'.*kernels"):
        r.to_frame("nope")


def test_dataclass_results_too():
    @dataclass(frozen=True)
    class Step(Tabular):
        time_s: float
        ops: list

    s = Step(time_s=2.5e-3, ops=[{"name": "qkv", "time_s": 1e-3}, {"name": "mlp", "time_s": 1.5e-3}])
    assert s.to_dict() == {"time_s": 2.5e-3, "ops": s.ops}
    assert s.to_frame("ops")["name"].tolist() == ["qkv", "mlp"]
    assert "2.5 ms" in s._repr_html_() and "2 items: qkv, mlp" in s._repr_html_()


def test_to_frame_without_pandas_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"ioaware\[frames\]"):
        kv_cache_bytes(load_model("gpt2"), 1, 128).to_frame()
