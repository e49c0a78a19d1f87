"""The parallelism view: one prefill or decode step split over TP x PP GPUs, with its communication.

``costmodel.parallel.predict_inference`` on the bundled cluster file whose GPU is the chosen one
(a DGX node of it): per-GPU compute from the step predictor at tensor parallel t, the two
all-reduces per layer of Megatron TP and the pipeline's stage-to-stage sends. The app asks for
it where t·p > 1.
"""

from __future__ import annotations


def cluster_for(gpu_name: str) -> str | None:
    """The bundled cluster of this GPU (``hardware_specs.cluster.cluster_of_gpu``)."""
    from hardware_specs.cluster import cluster_of_gpu

    return cluster_of_gpu(gpu_name)


def parallel_view(spec, cfg, inputs) -> dict:
    """Latency, throughput, memory per GPU and the compute / communication split, or a note why not."""
    t, p = inputs.tensor_parallel, inputs.pipeline_parallel
    if inputs.phase not in ("prefill", "decode"):
        return {"note": f"multi-GPU {inputs.phase} is not shown here (prefill and decode are)"}
    cluster = cluster_for(spec.name)
    if cluster is None:
        return {"note": f"no bundled cluster file is built of {spec.name}; TP x PP communication needs one"}
    from costmodel.parallel.inference import predict_inference

    r = predict_inference(cfg, cluster, phase=inputs.phase, batch=inputs.batch, seq_len=inputs.seq_len, tp=t, pp=p,
                          dtype=inputs.dtype)
    return {"cluster": r.cluster, "tp": r.tp, "pp": r.pp, "gpus": r.gpus, "time_s": r.time_s,
            "tokens_per_s": r.tokens_per_s, "memory_bytes": r.memory_bytes, "breakdown_s": dict(r.breakdown)}
