"""scripts/torch-spec.sh: the torch build scripts/setup.sh installs, chosen from the machine.

Run with stand-ins for ``nvidia-smi`` and ``uname`` on PATH, so each kind of machine can be
tried here; nothing is installed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "torch-spec.sh"


def _stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def torch_args(tmp_path: Path, *, gpu: str | None, system: str = "Linux",
               machine: str = "x86_64", override: str | None = None) -> str:
    """What the script prints on a machine with ``gpu`` ("ok": nvidia-smi lists a GPU,
    "broken": nvidia-smi is there but fails, None: no nvidia-smi)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _stand_in(bin_dir, "uname", f'[ "$1" = -m ] && echo {machine} || echo {system}')
    if gpu == "ok":
        _stand_in(bin_dir, "nvidia-smi", 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"')
    elif gpu == "broken":
        _stand_in(bin_dir, "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if override is not None:
        env["REGIONEDIT_TORCH"] = override
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


CPU_X86 = "torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize("gpu", [None, "broken"])
def test_a_linux_machine_without_a_working_gpu_gets_the_cpu_build(tmp_path, gpu):
    assert torch_args(tmp_path, gpu=gpu) == CPU_X86


def test_an_arm_linux_machine_without_a_gpu_gets_the_cpu_index(tmp_path):
    assert torch_args(tmp_path, gpu=None, machine="aarch64") == (
        "torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu"
    )


def test_a_machine_with_an_nvidia_gpu_gets_the_cuda_build_from_pypi(tmp_path):
    assert torch_args(tmp_path, gpu="ok") == "torch==2.13.0"


def test_macos_gets_pypis_build(tmp_path):
    assert torch_args(tmp_path, gpu=None, system="Darwin", machine="arm64") == "torch==2.13.0"


def test_regionedit_torch_overrides_the_choice(tmp_path):
    chosen = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
    assert torch_args(tmp_path, gpu=None, override=chosen) == chosen


def test_setup_installs_what_the_choice_prints():
    setup = (SCRIPT.parent / "setup.sh").read_text()
    assert "torch_args=$(bash scripts/torch-spec.sh)" in setup
    assert "pip install --quiet $torch_args" in setup
    assert os.access(SCRIPT, os.X_OK)
