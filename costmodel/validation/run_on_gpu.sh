#!/usr/bin/env bash
# The whole GPU session in one call (device time is scarce): calibrate the ceilings,
# then time and predict the validation sweep, with Nsight Compute DRAM counts.
# Run from the repository root on the GPU machine, with the carried wheels in .whl/
# (numpy 2.4.6 for numba-cuda 0.30.4; pydantic and plotly, which the image lacks):
#   bash costmodel/validation/run_on_gpu.sh OUT_DIR [MAX_SECONDS]
# Environment: FAMILIES (comma-separated, default all), NCU_FAMILIES (default below),
# SKIP_CALIBRATE=1 to predict with the calibrated spec already committed.
# Writes OUT_DIR/{calibrate.log, *-measured.yaml, *-measured.raw.json, validation.json, validate.log}.
set -uo pipefail
out=${1:?usage: run_on_gpu.sh OUT_DIR [MAX_SECONDS]}
budget=${2:-450}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NUMBA_ENABLE_CUDASIM=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee "$out/nvidia-smi.txt"
if [ -z "${SKIP_CALIBRATE:-}" ]; then
    python3 -m costmodel.cli calibrate 2>&1 | tee "$out/calibrate.log"
    cp hardware_specs/calibrated/*-measured.* "$out/" 2>/dev/null
fi
python3 -m costmodel.cli validate --ncu --max-seconds "$budget" ${FAMILIES:+--families "$FAMILIES"} \
    --ncu-families "${NCU_FAMILIES:-standard_fwd,flash2_fwd,flash1_fwd,flash_bwd,window_fwd,decode,flash_decoding,torch_sdpa_flash,torch_sdpa_cudnn}" \
    --out "$out/validation.json" 2>&1 | tee "$out/validate.log"
