"""The extra time of torch's softmax on causally masked (-inf) rows (simulators/memory_ops.softmax_masked_s,
hardware_specs/op_timing.SoftmaxMaskedModel): the masked-pair count against a dense mask, constructed
cases with hand counts, the fit's round trip, and the committed fit against its held-out rows.

[MEASURED 2026-12-03, H200: results/h200/attn_ops/attn_ops_h200_4.json] the same (B*H, N, N) rows took
1.19-1.54x as long with their upper triangle -inf.
"""

import numpy as np
import pytest
from pydantic import ValidationError

from hardware_specs import load_gpu
from hardware_specs.op_timing import SoftmaxMaskedModel
from simulators import simulate_attention
from simulators.mask import INF, Band, kept_pairs, token_mask
from simulators.memory_ops import softmax_masked_s

H200 = "h200-sxm-141gb-measured"


@pytest.fixture(scope="module")
def spec():
    return load_gpu(H200)


@pytest.mark.parametrize("band", [Band(7, 7, INF, 0), Band(5, 9, INF, 0), Band(9, 9, 2, 0), Band(8, 8, 3, 3),
                                  Band(6, 6), Band(4, 11, 1, 0), Band(300, 300, INF, 0)])
def test_kept_pairs_is_the_dense_masks_count(band):
    assert kept_pairs(band) == int(token_mask(band).sum())


def test_extra_time_is_masked_elements_over_the_rate(spec):
    m = SoftmaxMaskedModel(masked_element_rate_per_s={"warp_bf16": 2e11, "block_fp32": 5e11})
    s = spec.model_copy(update={"memory_ops": spec.memory_ops.model_copy(update={"softmax_masked": m})})
    assert float(softmax_masked_s(s, 4e6, "warp", 2)) == pytest.approx(4e6 / 2e11)
    assert float(softmax_masked_s(s, 4e6, "block", 4)) == pytest.approx(4e6 / 5e11)
    assert float(softmax_masked_s(s, 4e6, "block", 2)) == 0.0  # no rate for that kernel and dtype
    with pytest.raises(ValueError, match="kernel 'row'"):
        softmax_masked_s(s, 1.0, "row", 2)


def test_a_rate_key_outside_the_kernels_and_dtypes_is_refused():
    with pytest.raises(ValidationError, match="warp_fp16"):
        SoftmaxMaskedModel(masked_element_rate_per_s={"warp_fp16": 1e12})
    with pytest.raises(ValidationError, match="must be > 0"):
        SoftmaxMaskedModel(masked_element_rate_per_s={"warp_bf16": 0.0})


@pytest.mark.parametrize("n,kernel", [(1024, "warp"), (3000, "block")])
def test_eager_causal_softmax_pays_for_the_upper_triangle(spec, n, kernel):
    """B2 H8 N x N causal: B*H*N(N-1)/2 masked entries; the forward softmax is that over the rate slower
    than the same call unmasked, and no other kernel moves."""
    b, h = 2, 8
    kw = dict(batch=b, heads=h, seq_len=n, head_dim=64, dtype="bf16")
    causal = {k.name: k for k in simulate_attention(spec, "torch-eager", causal=True, **kw).kernels}
    dense = {k.name: k for k in simulate_attention(spec, "torch-eager", **kw).kernels}
    rate = spec.memory_ops.softmax_masked.masked_element_rate_per_s[f"{kernel}_bf16"]
    masked = b * h * n * (n - 1) / 2
    assert causal["softmax"].masked_s == pytest.approx(masked / rate)
    assert causal["softmax"].time_s - dense["softmax"].time_s == pytest.approx(masked / rate)
    assert dense["softmax"].masked_s == 0.0
    assert all(causal[k].masked_s == 0.0 for k in causal if k != "softmax")


def test_math_backend_causal_softmax_is_charged_at_the_fp32_rate(spec):
    kw = dict(batch=1, heads=4, seq_len=1024, head_dim=64, dtype="bf16", causal=True)
    r = simulate_attention(spec, "torch-math", **kw)
    k = next(x for x in r.kernels if x.name == "softmax")
    rate = spec.memory_ops.softmax_masked.masked_element_rate_per_s["warp_fp32"]
    assert k.masked_s == pytest.approx(4 * 1024 * 1023 / 2 / rate)


def test_decode_has_nothing_masked(spec):
    r = simulate_attention(spec, "torch-eager", batch=4, heads=8, seq_len=1, kv_len=4096, head_dim=128,
                           dtype="bf16", causal=True)
    assert all(k.masked_s == 0.0 for k in r.kernels)


def test_fit_recovers_the_rates_it_was_given():
    from costmodel.validation.step_fit_softmax import fit_softmax_masked

    rates = {"warp_bf16": 7e11, "block_bf16": 9e11}
    rng = np.random.default_rng(3)
    rows = []
    for dt_, n in (("bf16", 512), ("bf16", 1024), ("bf16", 4096), ("bf16", 8192)):
        for bh in (24, 96):
            plain = float(rng.uniform(1e-5, 1e-2))
            kern = "warp" if n <= 2048 else "block"
            masked = bh * n * (n - 1) / 2
            rows.append({"split": "fit", "dtype": dt_, "batch": bh, "rows": bh * n, "L": n, "plain_time_s": [plain, plain],
                         "time_s": plain + masked / rates[f"{kern}_{dt_}"]})
    m = fit_softmax_masked(rows)
    for k, v in rates.items():
        assert m.masked_element_rate_per_s[k] == pytest.approx(v, rel=1e-9)


def test_committed_fit_holds_on_its_held_out_rows(spec):
    """B*H 40 at N 1536 / 3000 / 6144 (no fit row has B*H 40 or those N), read from the committed run:
    the unmasked time measured + B*H*N(N-1)/2 / rate within 10 % of the masked time, every row."""
    import json
    from pathlib import Path

    sm = spec.memory_ops.softmax_masked
    assert set(sm.masked_element_rate_per_s) == {"warp_bf16", "warp_fp32", "block_bf16", "block_fp32"}
    raw = Path(__file__).parents[1] / "costmodel/validation/results/h200/attn_ops/attn_ops_h200_4.json"
    rows = [r for r in json.loads(raw.read_text())["softmax_causal"] if r["split"] == "heldout"]
    assert len(rows) == 6 and {r["batch"] for r in rows} == {40}
    for r in rows:
        n, e = r["L"], {"bf16": 2, "fp32": 4}[r["dtype"]]
        kernel = "warp" if n <= 2048 and n * e <= 8192 else "block"  # torch's host_softmax rule, by hand
        pred = float(np.median(r["plain_time_s"])) + 40 * n * (n - 1) / 2 / sm.masked_element_rate_per_s[
            f"{kernel}_{r['dtype']}"]
        assert abs(pred / r["time_s"] - 1) < 0.10, (r["dtype"], n)
