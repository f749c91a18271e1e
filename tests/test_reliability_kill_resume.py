"""Reliability, interruptions: ``regionedit batch`` killed (SIGKILL) or interrupted (SIGINT, as
Ctrl-C) at random points, then run again, again and again. In the end every item is done exactly
once, no partial or temporary file exists anywhere, and run.jsonl is valid line by line.

The command runs as a user runs it, in a subprocess, on the tiny models. test_batch_resume.py
kills once after the first item; here the kill points are random (seeded: a failure prints the
seed to rerun it with), during any stage or file write, and runs are killed repeatedly. The CI
version kills 3 times; ``REGIONEDIT_SLOW_TESTS=1`` runs a longer loop.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from regionedit.imageio import is_temp_file

N_IMAGES = 5


def whole_lines(log: Path) -> list[dict[str, Any]]:
    """The complete lines of run.jsonl so far (a running batch may be writing the last one)."""
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n")]


def ok_count(log: Path) -> int:
    return sum(1 for e in whole_lines(log) if e.get("status") == "ok")


@pytest.fixture
def batch_command(
    tmp_path: Path,
    small_photo_path: Path,
    tiny_sd_path: Path,
    rembg_home: Path,
    tiny_rembg_model: str,
) -> list[str]:
    """``regionedit batch`` over a folder of N_IMAGES different photos (one with a non-ASCII name,
    one in a sub-folder), writing images, masks and sidecars; U2NET_HOME is inherited."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    cat = Image.open(small_photo_path).convert("RGB")
    names = ["a.png", "b.jpg", "c d.png", "chat 猫.png", "sub/e.png"][:N_IMAGES]
    for i, name in enumerate(names):  # different pixels, so different resume keys
        cat.rotate(45 * i).save(folder / name)
    return [
        sys.executable, "-m", "regionedit", "batch", str(folder), "-o", str(tmp_path / "out"),
        "--recursive", "--source", "a cat indoors", "--target", "a cat on a beach",
        "--region", "background", "--model", str(tiny_sd_path),
        "--segment-model-path", tiny_rembg_model, "--steps", "2", "--max-side", "64",
        "--seed", "5", "--save-mask",
    ]


def interrupted_runs(command: list[str], out: Path, rounds: int, rng: random.Random) -> list[str]:
    """Start the batch ``rounds`` times, each time sending SIGKILL or SIGINT at a random moment
    after it has finished at least one more item; returns what happened to each run."""
    log = out / "run.jsonl"
    happened = []
    for _ in range(rounds):
        done_before = ok_count(log)
        if done_before == N_IMAGES:
            break
        kind = rng.choice([signal.SIGKILL, signal.SIGINT])
        delay = rng.uniform(0.0, 0.6)  # lands in segmenting, generating or writing files
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            while ok_count(log) <= done_before and proc.poll() is None:
                assert time.monotonic() < deadline, "no item finished in time"
                time.sleep(0.01)
            time.sleep(delay)
            proc.send_signal(kind)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.wait()
        happened.append(f"{kind.name} after {delay:.2f}s: exit {proc.returncode}")
        last = whole_lines(log)[-1]
        # A signal that arrives after the run has finished (its summary written) only stops the
        # interpreter's shutdown; one that arrives before must stop the run cleanly.
        finished = last["type"] == "summary" and last["stopped"] is None
        if kind == signal.SIGINT and not finished:
            assert proc.returncode == 130, (stdout, stderr)
            assert "interrupted" in stderr and "Traceback" not in stderr
            assert last["stopped"] == "interrupted"  # its summary line
    return happened


def check_finished_exactly_once(command: list[str], out: Path, runs: list[str]) -> None:
    """Run to completion, then check the whole output folder."""
    final = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert final.returncode == 0, (runs, final.stderr)

    text = (out / "run.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    entries = [json.loads(line) for line in text.splitlines()]  # every line whole JSON
    ok = [e for e in entries if e.get("type") == "item" and e["status"] == "ok"]
    inputs = sorted(e["input"] for e in ok)
    assert inputs == sorted(set(inputs)) and len(inputs) == N_IMAGES, runs  # each exactly once
    summary = entries[-1]
    assert summary["type"] == "summary" and summary["stopped"] is None
    assert summary["already_done"] + summary["ok"] == N_IMAGES

    listed = {path for e in ok for path in e["outputs"].values()}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == listed | {"run.jsonl"}, runs  # no temporary, stray or partial file
    assert not [name for name in on_disk if is_temp_file(Path(name).name)]
    for name in listed:
        path = out / name
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        else:
            with Image.open(path) as image:
                image.load()  # a partial image would fail to decode


def test_killed_and_interrupted_three_times_then_resumed(
    batch_command: list[str], tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    out = tmp_path / "out"
    runs = interrupted_runs(batch_command, out, rounds=3, rng=rng)
    check_finished_exactly_once(batch_command, out, [f"seed {seed}", *runs])


@pytest.mark.skipif(
    os.environ.get("REGIONEDIT_SLOW_TESTS") != "1",
    reason="long kill/resume loop; run with REGIONEDIT_SLOW_TESTS=1",
)
@pytest.mark.parametrize("repeat", range(5))
def test_killed_and_interrupted_many_times_then_resumed(
    batch_command: list[str], tmp_path: Path, repeat: int
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    out = tmp_path / "out"
    runs = interrupted_runs(batch_command, out, rounds=N_IMAGES, rng=rng)
    check_finished_exactly_once(batch_command, out, [f"seed {seed}", *runs])
