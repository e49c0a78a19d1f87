"""Training memory: ZeRO's 16Ψ and Korthikanti et al. 2022's activation counts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel.models import load_model
from costmodel.params import count_params
from costmodel.training_memory import activations_per_layer, training_memory

GPT3 = load_model("gpt3-175b")  # Korthikanti et al. 2022 Table 3: a = 96, h = 12288, L = 96, s = 2048


def gpt_shape(h, a):
    """Korthikanti's model: MHA, head size h/a, GPT MLP of width 4h."""
    return dict(d_model=h, n_heads=a, n_kv_heads=a, head_dim=h // a, ffn_dim=4 * h, ffn_type="gelu_mlp")


def table_2(s, b, h, a, t, mode):
    """Korthikanti et al. 2022 Table 2, activation bytes per transformer layer, typed from the paper."""
    sbh = s * b * h
    return {
        "none": sbh * (34 + 5 * a * s / h),  # eq. (1), t = 1
        "tensor": sbh * (10 + 24 / t + 5 * a * s / (h * t)),  # eq. (2)
        "tensor+sequence": sbh * (34 / t + 5 * a * s / (h * t)),  # eq. (3)
        "tensor+selective": sbh * (10 + 24 / t),
        "tensor+sequence+selective": sbh * 34 / t,
        "full": sbh * 2,
    }[mode]


MODES = {
    "none": dict(tensor_parallel=1),
    "tensor": dict(),
    "tensor+sequence": dict(sequence_parallel=True),
    "tensor+selective": dict(recompute="selective"),
    "tensor+sequence+selective": dict(sequence_parallel=True, recompute="selective"),
    "full": dict(recompute="full"),
}


@pytest.mark.parametrize("mode", MODES)
def test_korthikanti_table_2_gpt3(mode):
    s, b, t = 2048, 1, 8
    kwargs = {"tensor_parallel": t, **MODES[mode]}
    got = activations_per_layer(GPT3, b, s, **kwargs).total_bytes
    assert got == pytest.approx(table_2(s, b, 12288, 96, kwargs["tensor_parallel"], mode), rel=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 4096), st.integers(1, 8), st.integers(1, 64), st.integers(1, 256), st.sampled_from([1, 2, 4, 8]),
    st.sampled_from(list(MODES)),
)
def test_korthikanti_table_2_random_shapes(s, b, a, d, t, mode):
    h = a * d
    kwargs = {"tensor_parallel": t, **MODES[mode]}
    got = activations_per_layer(GPT3, b, s, **kwargs, **gpt_shape(h, a)).total_bytes
    assert got == pytest.approx(table_2(s, b, h, a, kwargs["tensor_parallel"], mode), rel=1e-12)


def test_korthikanti_selective_recompute_saves_70_percent_gpt3():
    """Korthikanti et al. 2022 §5: for GPT-3 (a = 96, s = 2048, h = 12288) 5as/h = 80, so dropping the
    s² terms saves 80 / (34 + 80) = 70% of the activation memory; for MT-NLG 530B (a = 128,
    h = 20480) 5as/h = 64 and the saving is 65%."""
    for h, a, percent in ((12288, 96, 70), (20480, 128, 65)):
        shape = gpt_shape(h, a)
        full = activations_per_layer(GPT3, 1, 2048, **shape).total_bytes
        selective = activations_per_layer(GPT3, 1, 2048, recompute="selective", **shape).total_bytes
        assert round(100 * (1 - selective / full)) == percent


def test_korthikanti_gpt3_worked_by_hand():
    """GPT-3 175B, s = 2048, b = 1, t = 8 with sequence parallelism: sbh = 2048·12288 = 25,165,824;
    per layer sbh·(34 + 80)/8 = 358,612,992 B; selective sbh·34/8 = 106,954,752 B; 96 layers
    34,426,847,232 B (≈ 34.4 GB) against 10,267,656,192 B (≈ 10.3 GB)."""
    m = training_memory(GPT3, 1, 2048, tensor_parallel=8, sequence_parallel=True)
    assert m.activations_per_layer.total_bytes == 358_612_992
    assert m.activations_layers_bytes == 34_426_847_232
    sel = training_memory(GPT3, 1, 2048, tensor_parallel=8, sequence_parallel=True, recompute="selective")
    assert sel.activations_per_layer.total_bytes == 106_954_752
    assert sel.activations_layers_bytes == 10_267_656_192


def test_flash_attention_keeps_what_selective_recompute_keeps():
    """FlashAttention stores no s×s matrix (Dao et al. 2022 Algorithm 2 recomputes it), which is
    exactly the s² terms selective recomputation drops."""
    for cfg in (GPT3, load_model("llama2-70b")):
        for dropout in (True, False):
            flash = activations_per_layer(cfg, 2, 4096, tensor_parallel=4, flash_attention=True, dropout=dropout)
            selective = activations_per_layer(cfg, 2, 4096, tensor_parallel=4, recompute="selective", dropout=dropout)
            assert flash == selective
            assert flash.attention_scores_bytes == 0


def test_embedding_and_output_terms_section_4_3():
    """§4.3 with sequence parallelism: embedding dropout mask sbh/t (1 byte) and output layer
    4·s·b·h/t·(1 + v/h): norm input 2sbh/t, projection input 2sbh/t, fp32 logits 4sbv/t."""
    s, b, h, v, t = 2048, 1, 12288, 50257, 8
    m = training_memory(GPT3, b, s, tensor_parallel=t, sequence_parallel=True)
    assert m.activations_embedding_bytes == pytest.approx(s * b * h / t)
    assert m.activations_output_bytes == pytest.approx(4 * s * b * h / t * (1 + v / h))
    assert m.activations_bytes == pytest.approx(
        m.activations_layers_bytes + m.activations_embedding_bytes + m.activations_output_bytes
    )


# ---------------------------------------------------------------- model states (ZeRO)


def test_zero_mixed_precision_adam_16_bytes_per_param():
    """ZeRO §3.1: 2Ψ (fp16 params) + 2Ψ (fp16 grads) + 12Ψ (fp32 params, momentum, variance)."""
    cfg = load_model("llama2-7b")
    psi = count_params(cfg).total
    m = training_memory(cfg, 1, 4096)
    assert (m.weights_bytes, m.gradients_bytes, m.optimizer_bytes) == (2 * psi, 2 * psi, 12 * psi)
    assert m.model_states_bytes == 16 * psi == 107_814_649_856
    assert m.total_bytes == m.model_states_bytes + m.activations_bytes


def test_zero_stages_figure_1():
    """ZeRO Figure 1 (Ψ = 7.5B, N_d = 64, K = 12): baseline (2+2+K)Ψ = 120 GB, P_os 2Ψ+2Ψ+KΨ/N_d = 31.4 GB,
    P_os+g 2Ψ+(2+K)Ψ/N_d = 16.6 GB, P_os+g+p (2+2+K)Ψ/N_d = 1.88 GB."""
    figure_1 = {
        0: lambda psi, nd: 16 * psi,
        1: lambda psi, nd: 4 * psi + 12 * psi / nd,
        2: lambda psi, nd: 2 * psi + 14 * psi / nd,
        3: lambda psi, nd: 16 * psi / nd,
    }
    for stage, gb in ((0, 120), (1, 31.4), (2, 16.6), (3, 1.88)):
        assert float(f"{figure_1[stage](7.5e9, 64) / 1e9:.3g}") == gb
    cfg = load_model("llama2-13b")
    psi = count_params(cfg).total
    for stage, expr in figure_1.items():
        m = training_memory(cfg, 1, 2048, zero_stage=stage, data_parallel=64)
        assert m.model_states_bytes == pytest.approx(expr(psi, 64), rel=1e-12)


# ---------------------------------------------------------------- brute force: a census of saved tensors


def saved_tensors(s, b, h, a, g, d, f, swiglu, dropout):
    """(what, elements, bytes per element, split by tensor parallelism?, s² term?) per layer."""
    q, kv, sb = a * d, g * d, s * b
    out = [
        ("norm 1 input", sb * h, 2, False, False),
        ("QKV projection input", sb * h, 2, False, False),
        ("Q", sb * q, 2, True, False),
        ("K", sb * kv, 2, True, False),
        ("softmax output", a * s * s * b, 2, True, True),
        ("V", sb * kv, 2, True, False),
        ("output projection input", sb * q, 2, True, False),
        ("norm 2 input", sb * h, 2, False, False),
        ("MLP input", sb * h, 2, False, False),
    ]
    if dropout:
        out += [
            ("attention-probability dropout mask", a * s * s * b, 1, True, True),
            ("dropped-out probabilities", a * s * s * b, 2, True, True),
            ("attention output dropout mask", sb * h, 1, False, False),
            ("MLP output dropout mask", sb * h, 1, False, False),
        ]
    if swiglu:
        out += [("gate output", sb * f, 2, True, False), ("up output", sb * f, 2, True, False),
                ("down projection input", sb * f, 2, True, False)]
    else:
        out += [("GeLU input", sb * f, 2, True, False), ("second linear input", sb * f, 2, True, False)]
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 1024), st.integers(1, 4), st.integers(1, 8), st.integers(1, 8), st.integers(1, 128),
    st.integers(1, 2048), st.booleans(), st.booleans(), st.sampled_from([1, 2, 4, 8]), st.booleans(), st.booleans(),
)
def test_generalized_count_equals_tensor_census(s, b, g, group, d, f, swiglu, dropout, t, sp, selective):
    a = g * group
    h = a * d
    census = saved_tensors(s, b, h, a, g, d, f, swiglu, dropout)
    expected = sum(
        n * e / (t if split or sp else 1) for _, n, e, split, s2 in census if not (selective and s2)
    )
    got = activations_per_layer(
        None, b, s, tensor_parallel=t, sequence_parallel=sp, recompute="selective" if selective else "none",
        dropout=dropout, vocab_size=1000, d_model=h, n_layers=1, n_heads=a, n_kv_heads=g, head_dim=d, ffn_dim=f,
        max_seq_len=s, ffn_type="swiglu" if swiglu else "gelu_mlp", norm_type="rmsnorm", attn_bias=False,
        mlp_bias=False, tied_embeddings=False, position_embedding="rope",
    ).total_bytes
    assert got == pytest.approx(expected, rel=1e-12)


def test_without_dropout_the_score_term_is_the_softmax_output_only():
    h, a, s = 4096, 32, 4096
    m = activations_per_layer(GPT3, 1, s, dropout=False, **gpt_shape(h, a))
    assert m.attention_scores_bytes == 2 * a * s * s
    assert m.total_bytes == s * h * (32 + 2 * a * s / h)  # 34 minus the two 1-byte masks


def test_arrays_broadcast_like_a_loop():
    cfg = load_model("llama3-8b")
    batch = np.array([1, 2, 8])[:, None]
    seq = np.array([1024, 8192])
    swept = training_memory(cfg, batch, seq, recompute="selective")
    assert swept.total_bytes.shape == (3, 2)
    for i, b in enumerate(batch[:, 0]):
        for j, s in enumerate(seq):
            one = training_memory(cfg, int(b), int(s), recompute="selective")
            assert swept.total_bytes[i, j] == pytest.approx(one.total_bytes, rel=1e-15)


def test_bad_input():
    cfg = load_model("llama2-7b")
    with pytest.raises(ValueError, match="recompute"):
        training_memory(cfg, 1, 4096, recompute="partial")
    with pytest.raises(ValueError, match="zero_stage"):
        training_memory(cfg, 1, 4096, zero_stage=4)
    with pytest.raises(ValueError) as exc:
        training_memory(cfg, 1, 4096, tensor_parallel=0)
    assert "tensor_parallel" in str(exc.value) and "greater than 0" in str(exc.value)
