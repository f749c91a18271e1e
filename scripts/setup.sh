#!/usr/bin/env bash
# Creates .venv in the repository and installs regionedit with its test tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip

# torch goes in first, in the build this machine can use (scripts/torch-spec.sh: CUDA where an
# NVIDIA GPU is present, CPU otherwise; REGIONEDIT_TORCH overrides): left to the resolver, a
# range pulls the multi-gigabyte CUDA build even where there is no GPU.
torch_args=$(bash scripts/torch-spec.sh)
echo "installing $torch_args"
# shellcheck disable=SC2086
.venv/bin/pip install --quiet $torch_args
.venv/bin/pip install --quiet -e '.[dev]'

# rembg's first import compiles numba code (about a minute); pay it here, not in the first edit.
.venv/bin/python -c "import rembg" >/dev/null
echo "regionedit is installed in .venv (run: .venv/bin/regionedit --help)"
