"""Published multi-GPU training runs, predicted: the error table of costmodel/parallel/published/*.yaml.

Each file holds one paper's rows (configuration, citation, measured value) and says what the paper
does not state and is assumed, the same for every row (nothing is fitted to a row). The measured
value becomes a time per iteration so every row is compared the same way, err = predicted / measured - 1:

    tflops_per_gpu (Narayanan et al. 2021 Table 1)  t = eq. (3) FLOPs / (TFLOP/s x 1e12 x GPUs), eq. (3) as
                                                    printed: 96·B·s·l·h²·(1 + s/6h + V/16lh)
    time_s (Korthikanti et al. 2022 Table 4)        the time itself
    mfu (Llama 3 Table 4)                           t = measured-MFU-equivalent: predicted t x predicted MFU /
                                                    measured MFU (the same FLOP count on both sides)

Framework setting common to all rows: costmodel.parallel.compute's default, the step predictor's fused
norm and RoPE kernels (Megatron-LM fuses them; plain PyTorch would not).
"""

from __future__ import annotations

from importlib import resources
from statistics import median

import yaml

from costmodel.models import ModelConfig
from costmodel.parallel.layout import Layout
from costmodel.parallel.predict import predict_training
from hardware_specs.cluster import load_cluster
from hardware_specs.loader import load_gpu

STEP_KWARGS: dict = {}  # the parallel package's default kernels (compute.FRAMEWORK_KERNELS)
FILES = ("narayanan2021_table1.yaml", "korthikanti2022.yaml", "llama3_table4.yaml")


def eq3_flops(batch, seq_len, layers, hidden, vocab):
    """Narayanan et al. 2021 eq. (3) as printed (GPT layers, with activation recomputation)."""
    return 96 * batch * seq_len * layers * hidden ** 2 * (1 + seq_len / (6 * hidden) + vocab / (16 * layers * hidden))


def load_rows(name: str) -> tuple[dict, list[dict]]:
    data = yaml.safe_load(resources.files("costmodel.parallel").joinpath("published", name).read_text())
    defaults = data.get("defaults", {})
    rows = []
    for raw in data["rows"]:
        row = {**{k: v for k, v in defaults.items() if k != "model"}, **raw}
        row["model"] = {**defaults.get("model", {}), **raw.get("model", {})}
        rows.append(row)
    return data, rows


def _model(row: dict, source: str) -> ModelConfig:
    shape = dict(row["model"])
    if shape.get("ffn_type") == "gelu_mlp" and "ffn_dim" not in shape:
        shape["ffn_dim"] = 4 * shape["d_model"]  # GPT: d_ff = 4h
    return ModelConfig.model_validate({"name": f"published-{row['id'].replace(' ', '-').lower()}",
                                       "source": f"{source}, {row['cite']}", **shape})


def _predict(cfg, cluster, row, micro_batch):
    lay = Layout(gpus=row["gpus"], tp=row["tp"], pp=row["pp"], micro_batch=micro_batch,
                 global_batch=row["global_batch"], schedule=row.get("schedule", "1f1b"),
                 virtual_stages=row.get("virtual_stages", 1), sequence_parallel=row.get("sequence_parallel", False),
                 recompute=row.get("recompute", "none"), zero_stage=row.get("zero_stage", 0),
                 overlap_dp=row.get("overlap_dp", False))
    return predict_training(cfg, cluster, lay, seq_len=row["seq_len"], dtype=row.get("dtype", "bf16"),
                            flash_attention=row.get("flash_attention", True), dropout=row.get("dropout", False),
                            step_kwargs=STEP_KWARGS)


def predict_row(row: dict, source: str, cluster_name: str, measure: str) -> dict:
    cfg = _model(row, source)
    cluster = load_cluster(cluster_name)
    b = row["micro_batch"]
    if b == "fit":  # the largest power-of-two micro-batch that fits (PP = 1 rows)
        dp = row["gpus"] // (row["tp"] * row["pp"])
        hbm = load_gpu(cluster.gpu).hbm_bytes
        b, pred = 1, None
        while row["global_batch"] % (b * dp) == 0:
            p = _predict(cfg, cluster, row, b)
            if p.memory_bytes > hbm and pred is not None:
                break
            pred, best = p, b
            b *= 2
        b = best
    else:
        pred = _predict(cfg, cluster, row, b)
    m = row["measured"]
    if measure == "tflops_per_gpu":
        measured_time = eq3_flops(row["global_batch"], row["seq_len"], cfg.n_layers, cfg.d_model,
                                  cfg.vocab_size) / (m * 1e12 * row["gpus"])
        predicted = eq3_flops(row["global_batch"], row["seq_len"], cfg.n_layers, cfg.d_model,
                              cfg.vocab_size) / (pred.time_s * 1e12 * row["gpus"])
    elif measure == "time_s":
        measured_time, predicted = m, pred.time_s
    elif measure == "mfu":
        measured_time, predicted = pred.time_s * pred.mfu / m, pred.mfu
    else:
        raise ValueError(f"measure: unknown {measure!r}; allowed: tflops_per_gpu, time_s, mfu")
    return {"id": row["id"], "source": source, "cite": row["cite"], "measure": measure, "measured": m,
            "predicted": predicted, "micro_batch": b, "predicted_time_s": pred.time_s, "measured_time_s": measured_time,
            "error": pred.time_s / measured_time - 1, "mfu": pred.mfu, "memory_bytes": pred.memory_bytes,
            "fits": pred.fits, "breakdown": pred.breakdown}


def error_table() -> dict:
    """Every row of every file predicted; the median and worst |error| per source and overall."""
    rows, summary = [], {}
    for name in FILES:
        data, file_rows = load_rows(name)
        got = [predict_row(r, data["source"], data["cluster"], data["measure"]) for r in file_rows]
        rows += got
        errs = [abs(g["error"]) for g in got]
        summary[data["source"]] = {"rows": len(got), "median_abs_error": median(errs), "worst_abs_error": max(errs)}
    errs = [abs(g["error"]) for g in rows]
    summary["all"] = {"rows": len(rows), "median_abs_error": median(errs), "worst_abs_error": max(errs)}
    return {"rows": rows, "summary": summary, "step_kwargs": STEP_KWARGS}


def markdown(table: dict) -> str:
    lines = ["| row | source | measured | predicted | time measured | time predicted | error | memory per GPU |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table["rows"]:
        unit = {"tflops_per_gpu": "TFLOP/s/GPU", "time_s": "s", "mfu": "MFU"}[r["measure"]]
        fmt = (lambda v: f"{v:.1%}") if r["measure"] == "mfu" else (lambda v: f"{v:.2f}")
        lines.append(f"| {r['id']} | {r['cite']} | {fmt(r['measured'])} {unit} | {fmt(r['predicted'])} {unit} | "
                     f"{r['measured_time_s']:.2f} s | {r['predicted_time_s']:.2f} s | {r['error']:+.1%} | "
                     f"{r['memory_bytes'] / 2**30:.1f} GiB{'' if r['fits'] else ' (does not fit)'} |")
    lines.append("")
    lines.append("| source | rows | median abs error | worst abs error |")
    lines.append("| --- | --- | --- | --- |")
    for k, s in table["summary"].items():
        lines.append(f"| {k} | {s['rows']} | {s['median_abs_error']:.1%} | {s['worst_abs_error']:.1%} |")
    return "\n".join(lines)


__all__ = ["FILES", "STEP_KWARGS", "eq3_flops", "error_table", "load_rows", "markdown", "predict_row"]
