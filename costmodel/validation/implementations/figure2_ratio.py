"""The FlashAttention paper's Fig. 2 ratio on the A100 40 GB spec: standard / FlashAttention time.

    python3 -m costmodel.validation.implementations.figure2_ratio

GPT-2 medium attention (B 64, H 16, N 1024, d 64, fp16, causal, dropout 0.1), forward + backward.
The paper's runtimes are 41.7 ms (standard) and 7.3 ms (FlashAttention): 5.7x (Dao et al. 2022,
Fig. 2 left). Printed twice: at the spec's peaks (the simulator's roofline), and with attained
shares of the peaks that come from sources, not from this ratio: FlashAttention-1's forward reaches
30-50 % and its backward 25-35 % of the A100's peak (Dao 2023, FlashAttention-2, §1; midpoints 0.40
and 0.30), and torch-style elementwise kernels the Ampere default of timing_defaults.yaml.
"""

from __future__ import annotations

from hardware_specs import load_gpu
from hardware_specs.implementations import defaults
from simulators import simulate_attention
from simulators.config import AttentionConfig, ScheduleConfig, make_config
from simulators.flash import flash_kernels
from simulators.simulate import _standard_kernels
from simulators.timing import TimingParams, time_kernel

GPT2_MEDIUM = dict(batch=64, heads=16, seq_len=1024, head_dim=64, dtype="fp16", causal=True, dropout=0.1)
PAPER_RATIO = 41.7 / 7.3
FA1_SHARE = {"flash1_fwd": 0.40, "flash1_bwd": 0.30}


def ratios(gpu: str = "a100-sxm4-40gb") -> dict:
    spec = load_gpu(gpu)
    std = simulate_attention(spec, "standard", pass_="fwd+bwd", **GPT2_MEDIUM)
    fa = simulate_attention(spec, "flash1", pass_="fwd+bwd", fa1_io="paper", **GPT2_MEDIUM)
    elementwise = defaults()["ampere"]["gpu"]["elementwise_efficiency"]
    cfg = make_config(AttentionConfig, **GPT2_MEDIUM)
    counts, _ = flash_kernels(spec, cfg, make_config(ScheduleConfig, fa1_io="paper"), "flash1", "fwd+bwd", "closed")
    t_fa = sum(time_kernel(spec, k, "fp16", True, TimingParams(
        tensor_efficiency=FA1_SHARE[k.name], serial_compute=True) if k.name in FA1_SHARE
        else TimingParams(memory_efficiency=elementwise)).time_s for k in counts)
    s_counts, _ = _standard_kernels(spec, cfg, make_config(ScheduleConfig), "standard", "fwd+bwd")
    t_std = sum(time_kernel(spec, k, "fp16", True, TimingParams(memory_efficiency=elementwise)).time_s
                for k in s_counts)
    return {"roofline": {"standard_s": std.time_s, "flash_s": fa.time_s, "ratio": std.time_s / fa.time_s},
            "with_shares": {"standard_s": t_std, "flash_s": t_fa, "ratio": t_std / t_fa}, "paper_ratio": PAPER_RATIO}


def main() -> int:
    r = ratios()
    for name in ("roofline", "with_shares"):
        v = r[name]
        print(f"{name:11s}: standard {v['standard_s'] * 1e3:5.1f} ms, FlashAttention {v['flash_s'] * 1e3:5.2f} ms, "
              f"ratio {v['ratio']:.2f} ({100 * (v['ratio'] / PAPER_RATIO - 1):+.0f} % from the paper's {PAPER_RATIO:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
