#!/usr/bin/env bash
# Run the one-call GPU check on a GPU node: make sure this Python has a CUDA build of torch and the
# project's dependencies, then run benchmarks/gpu_check.py (< 8 minutes on one GPU).
#
#   bash benchmarks/gpu_check.sh [--wheelhouse DIR] [gpu_check.py arguments, e.g. --out results/gpu_check]
#
# PYTHON picks the interpreter (default python3). --wheelhouse installs from a folder of wheels
# only (nodes without network; fill it on a login node with `pip download`). TORCH_INDEX_URL picks
# the index for torch (default: the package index's own Linux build, which is the CUDA one).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELHOUSE=""
if [ "${1:-}" = "--wheelhouse" ]; then
  WHEELHOUSE=$2
  shift 2
fi

pip_install() {
  if [ -n "$WHEELHOUSE" ]; then
    "$PYTHON" -m pip install -q --no-index --find-links "$WHEELHOUSE" "$@"
  else
    "$PYTHON" -m pip install -q ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "$@"
  fi
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check.sh: no NVIDIA GPU visible on $(hostname); run on a GPU node (or gpu_check.py --cpu-smoke)" >&2
  exit 2
fi

started=$(date +%s)
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
  version=$("$PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
  echo "gpu_check.sh: $PYTHON has no CUDA build of torch (${version:-none}); installing one" >&2
  if [ -n "$version" ]; then
    "$PYTHON" -m pip uninstall -q -y torch
    pip_install "torch==$version"
  else
    pip_install "torch>=2.5"
  fi
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
missing=$("$PYTHON" benchmarks/gpu_check.py --missing-requirements)
for requirement in $missing; do
  # One at a time: a package that cannot be installed here is reported, and only the checks
  # that import it fail.
  echo "gpu_check.sh: installing missing requirement $requirement" >&2
  pip_install "$requirement" || echo "gpu_check.sh: could not install $requirement; continuing" >&2
done
echo "gpu_check.sh: environment ready in $(( $(date +%s) - started ))s" >&2
exec "$PYTHON" benchmarks/gpu_check.py "$@"
