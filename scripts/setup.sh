#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with the pinned requirements.
#   bash scripts/setup.sh          # to run the lab
#   bash scripts/setup.sh --dev    # also test tools, the NIQE calibration images and Debian's
#                                  # chromium (what tests/test_quality.py and test_browser.py need)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  # tests/test_quality.py checks NIQE against MATLAB values published for these images
  .venv/bin/python bench/niqe_reference.py --fetch-only
  if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
  fi
else
  .venv/bin/python -m pip install -q -r requirements.txt
fi
echo "setup done: $(.venv/bin/python -c 'import torch, diffusers, gradio; print("torch", torch.__version__, "diffusers", diffusers.__version__, "gradio", gradio.__version__)')"
