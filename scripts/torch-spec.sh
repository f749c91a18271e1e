#!/usr/bin/env bash
# Prints the pip arguments that install the torch build this machine can use:
# - REGIONEDIT_TORCH when it is set (e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126");
# - the CUDA build (PyPI's default on Linux and Windows) when an NVIDIA GPU answers nvidia-smi;
# - the CPU build from PyTorch's CPU wheel index otherwise, so that a machine without a GPU does
#   not download several GB of NVIDIA libraries; macOS builds are CPU (and MPS) builds already.
set -euo pipefail
version=2.13.0
cpu_index=https://download.pytorch.org/whl/cpu

if [ -n "${REGIONEDIT_TORCH:-}" ]; then
  echo "$REGIONEDIT_TORCH"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "torch==$version"
elif [ "$(uname -s)" = Darwin ]; then
  echo "torch==$version"
elif [ "$(uname -m)" = x86_64 ]; then
  # "+cpu" pins the CPU build: without it pip may still prefer PyPI's CUDA build
  echo "torch==$version+cpu --extra-index-url $cpu_index"
else
  echo "torch==$version --extra-index-url $cpu_index"
fi
