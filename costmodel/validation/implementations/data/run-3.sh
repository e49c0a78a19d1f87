#!/bin/bash
# impls11c's one GPU call: masked_fill_ + more softmax rows (CUDA graphs), an NCU probe of those kernels,
# then gpu_run's Nsight Compute on the calibration grid's fused fwd+bwd calls.
cd "$(dirname "$0")"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p $OUT/attn_ops $OUT/impls
nvidia-smi > $OUT/nvidia-smi.txt 2>&1
date -u > $OUT/dates.txt
timeout 100 python3 -m costmodel.validation.attn_ops_run --out $OUT/attn_ops --budget-s 90 \
  --sections masked_fill,softmax_rows --file attn_ops_h200_2.json > $OUT/attn_ops/run.log 2>&1
echo "attn_ops rc $?" >> $OUT/dates.txt; date -u >> $OUT/dates.txt
M=dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic,launch__shared_mem_per_block_static
timeout 45 ncu --clock-control none --target-processes all --csv --page raw --metrics $M \
  --log-file $OUT/attn_ops/ncu_ops.csv python3 -m costmodel.validation.attn_ops_run --out /tmp/probe --probe \
  > $OUT/attn_ops/ncu_ops.log 2>&1
echo "ncu probe rc $?" >> $OUT/dates.txt; date -u >> $OUT/dates.txt
timeout 125 python3 -m costmodel.validation.implementations.gpu_run --out $OUT/impls --phases none \
  --ncu-set calibration-bwd --ncu-budget-s 115 > $OUT/impls/run.log 2>&1
echo "gpu_run rc $?" >> $OUT/dates.txt; date -u >> $OUT/dates.txt
