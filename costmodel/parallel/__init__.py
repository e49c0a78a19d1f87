"""Many GPUs: collectives, tensor / pipeline / data parallelism, the training iteration and the layout search.

    collectives      alpha-beta times of ring / tree / NVLS / hierarchical collectives over a cluster's fabrics
    tensor_comm      Megatron TP collectives per layer (with and without sequence parallelism)
    pipeline         GPipe / 1F1B / interleaved bubbles and iteration time
    data_comm        data-parallel and ZeRO 1-3 collectives per iteration
    compute          per-micro-batch compute from the step predictor (costmodel.step), sorted for a pipeline
    training         one iteration's time and memory per GPU, broadcast over layouts
    layout           a layout and its validity rules
    predict          predict_training: one layout -> time, tokens/s, model TFLOP/s, MFU, memory
    inference        one prefill / decode step under TP x PP
    search, plot     every valid layout ranked; time-vs-memory figure with the Pareto front
    training_run     a whole run's wall-clock, GPU-hours, energy (Chinchilla split for a compute budget)
    published        published runs (published/*.yaml) predicted: the error table
    collective_sweep, collective_fit, tp_layer
                     issue 19's GPU runners (nccl-tests-style sweep, TP layer) and the fit of their results
"""
