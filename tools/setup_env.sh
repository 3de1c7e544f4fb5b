#!/usr/bin/env bash
# Create (or update) .venv in the repository root with the pinned stack and mmseg_dida
# installed editable. Idempotent: a second run with unchanged requirements takes seconds.
#
#   bash tools/setup_env.sh            # runtime
#   bash tools/setup_env.sh --dev      # + pytest, ruff
#   MMCV=full bash tools/setup_env.sh  # mmcv 2.1.0 with compiled ops instead of mmcv-lite
#   PYTHON=python3.11 bash tools/setup_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MMCV=${MMCV:-lite}
DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    *) echo "error: unknown argument '$arg' (use --dev)" >&2; exit 2 ;;
  esac
done
case "$MMCV" in lite|full) ;; *) echo "error: MMCV must be 'lite' or 'full', got '$MMCV'" >&2; exit 2 ;; esac

reqs=(requirements.txt)
[ "$DEV" = 1 ] && reqs=(requirements-dev.txt)
stamp_file=.venv/.mmseg_dida_setup
stamp="$(cat "${reqs[@]}" requirements.txt setup.py | sha256sum | cut -c1-16)-$MMCV-$DEV"

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
   && .venv/bin/python -c 'import mmseg_dida' 2>/dev/null; then
  echo "setup_env: .venv is up to date"
  exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if [ "$MMCV" = full ]; then
  # Same pins, with mmcv 2.1.0 (compiled ops; a source build where no wheel matches).
  grep -v '^mmcv-lite' requirements.txt > .venv/requirements-full.txt
  echo 'mmcv==2.1.0' >> .venv/requirements-full.txt
  "${pip[@]}" -r .venv/requirements-full.txt
  .venv/bin/python -m pip uninstall -y -q mmcv-lite 2>/dev/null || true
else
  "${pip[@]}" -r requirements.txt
fi
[ "$DEV" = 1 ] && "${pip[@]}" -r requirements-dev.txt
"${pip[@]}" --no-deps -e .
.venv/bin/python -c 'import mmseg_dida, mmseg, mmengine, torch; print("setup_env: torch",
torch.__version__, "mmengine", mmengine.__version__, "mmseg", mmseg.__version__,
"mmcv ops:", "compiled" if not mmseg_dida.compat.install_mmcv_ops_shim() else "shim")'
echo "$stamp" > "$stamp_file"
