#!/usr/bin/env bash
# Creates .venv in the repository and installs regionedit with its test tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip

# torch goes in first, at a version that exists for every platform: left to the resolver, a
# range can pull a multi-gigabyte build that does not fit the machine. Override for your CUDA:
#   REGIONEDIT_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
# shellcheck disable=SC2086
.venv/bin/pip install --quiet ${REGIONEDIT_TORCH:-torch==2.13.0}
.venv/bin/pip install --quiet -e '.[dev]'

# rembg's first import compiles numba code (about a minute); pay it here, not in the first edit.
.venv/bin/python -c "import rembg" >/dev/null
echo "regionedit is installed in .venv (run: .venv/bin/regionedit --help)"
