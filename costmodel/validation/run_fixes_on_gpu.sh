#!/usr/bin/env bash
# Issue 17's GPU call, in one command: the decode bench (API against prepared step, the
# grouped schedule, launch costs), then the validation of the families whose kernels or
# timed path changed (flash_bwd: the preprocess; decode and flash_decoding: timed through
# prepare_decode), with Nsight Compute DRAM counts for flash_bwd. Predictions on the
# committed calibrated spec (no calibration here).
# Run from the repository root on the GPU machine, with the carried wheels in .whl/:
#   bash costmodel/validation/run_fixes_on_gpu.sh OUT_DIR [BENCH_SECONDS] [VALIDATE_SECONDS]
set -uo pipefail
out=${1:?usage: run_fixes_on_gpu.sh OUT_DIR [BENCH_SECONDS] [VALIDATE_SECONDS]}
bench_s=${2:-40}
validate_s=${3:-150}
export NUMBA_ENABLE_CUDASIM=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.sm,temperature.gpu,power.draw --format=csv \
    | tee "$out/nvidia-smi.txt"
python3 -m costmodel.validation.bench_decode --max-seconds "$bench_s" --out "$out/bench_decode.json" 2>&1 | tee "$out/bench_decode.log"
python3 -m costmodel.cli validate --ncu --max-seconds "$validate_s" --families flash_bwd,decode,flash_decoding \
    --seq-lens 512,1024,2048 --ncu-families flash_bwd --out "$out/validation-fixes.json" 2>&1 | tee "$out/validate.log"
