#!/usr/bin/env bash
# Everything a lent GPU is for, in one command of at most 9 minutes (see
# tools/benchmarks/gpu_check.py for the parts): the CUDA tests, measured vs estimated
# peak memory of DAFormer / HRDA / MIC(HRDA) +- DiDA at the paper's crops (AMP), step
# times per speed option (warm-up, 3 interleaved rounds, median; TFLOP/s and fraction
# of the card's peak), the toy main job's seconds per iteration, the memory mode
# 'auto' settles at, and last, on the time left, the step with torch.compile.
# Writes gpu_check.json, gpu_check.md and logs/ into OUT_DIR.
#
#   bash tools/benchmarks/gpu_check.sh [OUT_DIR] [gpu_check.py options]
#
# OUT_DIR defaults to $OUT (the device tool's output folder) or ./gpu_check.
# DRY_RUN=1 runs the same parts on the CPU at tiny sizes (what the tests run).
# PYTHON (default python3, or .venv/bin/python when present) runs everything. Where
# mmengine is missing and the repository holds wheels in .whl/ (docs: the device
# machine has no package registry), they are installed into /tmp/site first.
set -u
cd "$(dirname "$0")/../.."
REPO=$PWD
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
OUT_DIR=${OUT:-gpu_check}
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT_DIR=$1; shift; fi
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

if ! "$PYTHON" -c 'import mmengine, mmseg' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  echo "[gpu_check] installing the wheels of .whl/ into /tmp/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl > "$OUT_DIR/pip.log" 2>&1 || echo "[gpu_check] pip failed: see $OUT_DIR/pip.log"
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi

ARGS=(--out "$OUT_DIR")
if [ "${DRY_RUN:-0}" = 1 ]; then ARGS+=(--dry-run); fi
exec "$PYTHON" tools/benchmarks/gpu_check.py "${ARGS[@]}" "$@"
