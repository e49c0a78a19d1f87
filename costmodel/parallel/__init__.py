"""Many GPUs: collectives, tensor / pipeline / data parallelism, the training iteration and the layout search."""
