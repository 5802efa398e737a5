#!/usr/bin/env bash
# One prepared script for a lent GPU (H100/H200): GPU tests, then the GPU measurements.
# On the device machine (Python 3.12, torch preinstalled, no network), with the missing
# wheels carried in .whl/ (see README, "Performance"):
#   bash bench/gpu_check.sh            # writes everything under ${OUT:-out/gpu}
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 UPSCALE_LAB_CACHE=/tmp/upscale-lab-cache PYTHONPATH=${PYTHONPATH:-}:.
PY=${PY:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, diffusers, spandrel; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'spandrel', spandrel.__version__)"
} 2>&1 | tee "$OUT/env.txt"
timeout 100 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_engine.py -x 2>&1 | tail -15 | tee "$OUT/tests.txt"
timeout 90 $PY bench/esrgan_efficiency.py --device cuda --dtypes fp16,bf16 --size 750x562 --tile 128 --rounds 10 2>&1 | grep -v -i warn | tee "$OUT/esrgan.md"
timeout 150 $PY bench/gpu_variants.py --dtype fp16 2>&1 | grep -v -i warn | tee "$OUT/esrgan_variants.md"
timeout 120 $PY bench/precision.py --device cuda --dtypes fp16,bf16 2>&1 | grep -v -i warn | tee "$OUT/precision.md"
# last H100 figure for the full pass below: 7.0 s (docs/performance.md)
timeout 180 $PY bench/diffusion_cost.py --device cuda --dtype fp16 --tiles 512,768 --batches 1,4,8 --repeats 5 \
  --full-pass 3000x2000 --full-batch 8 2>&1 | grep -v -i "float32\|warn" | tee "$OUT/diffusion_fp16.md"
