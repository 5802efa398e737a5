#!/usr/bin/env bash
# One prepared script for a lent GPU (H100/H200): GPU tests, then the GPU measurements.
# On the device machine (Python 3.12, torch preinstalled, no network), with the missing
# wheels carried in .whl/ (see README, "Performance"):
#   bash bench/gpu_check.sh base       # tests, Real-ESRGAN, precision, the diffusion pass (< 10 min)
#   bash bench/gpu_check.sh step       # the step profile, the fast mode, scoring's share (< 10 min)
#   bash bench/gpu_check.sh            # both (a device call is limited to 10 min: use two calls)
# Everything is written under ${OUT:-out/gpu}.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 UPSCALE_LAB_CACHE=/tmp/upscale-lab-cache PYTHONPATH=${PYTHONPATH:-}:.
PY=${PY:-python3}
WHAT=${1:-all}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, diffusers, spandrel; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'spandrel', spandrel.__version__)"
} 2>&1 | tee "$OUT/env.txt"
if [[ $WHAT == all || $WHAT == base ]]; then
timeout 100 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_engine.py -x 2>&1 | tail -15 | tee "$OUT/tests.txt"
timeout 90 $PY bench/esrgan_efficiency.py --device cuda --dtypes fp16,bf16 --size 750x562 --tile 128 --rounds 10 2>&1 | grep -v -i warn | tee "$OUT/esrgan.md"
timeout 150 $PY bench/gpu_variants.py --dtype fp16 2>&1 | grep -v -i warn | tee "$OUT/esrgan_variants.md"
timeout 120 $PY bench/precision.py --device cuda --dtypes fp16,bf16 2>&1 | grep -v -i warn | tee "$OUT/precision.md"
# last H100 figure for the full pass below: 7.0 s (docs/performance.md)
timeout 180 $PY bench/diffusion_cost.py --device cuda --dtype fp16 --tiles 512,768 --batches 1,4,8 --repeats 5 \
  --full-pass 3000x2000 --full-batch 8 2>&1 | grep -v -i "float32\|warn" | tee "$OUT/diffusion_fp16.md"
fi
if [[ $WHAT == all || $WHAT == step ]]; then
# one guided step per part and operator family, fp32/fp16/bf16 at 512 and 256 px; attention kernels, channels_last
timeout 200 $PY bench/step_profile.py --device cuda --dtypes fp32,fp16,bf16 --tiles 512,256 --rounds 5 --no-compile \
  2>&1 | grep -v -i warn | tee "$OUT/step_profile.md"
# the fast mode (LCM-LoRA, few steps, no CFG batch) against the normal mode, one level's pass
timeout 150 $PY bench/fast_mode.py --models /tmp/sd15_random --input 256 2>&1 | grep -v -i warn | tee "$OUT/fast_mode.md"
# scoring's share of a nine-level 4 MP run with SD 1.5-sized random parts (written to /tmp once)
timeout 200 $PY bench/scoring_cost.py --run --run-width 2000 --models /tmp/sd15_random --side 2000 --rounds 1 \
  2>&1 | grep -v -i warn | tee "$OUT/scoring_cost.md"
fi
