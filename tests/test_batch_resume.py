"""kill -9 in the middle of ``regionedit batch``, then the same command again: no finished item
lost, none done twice, no partial or temporary file left, run.jsonl valid line by line.

The command runs as a user runs it, in a subprocess, against the fake OpenAI server and the
tiny models of tests/support.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

N_IMAGES = 6


def ok_inputs(log: Path) -> list[str]:
    """Inputs of the finished items in run.jsonl (whole lines only: the run may be writing)."""
    if not log.exists():
        return []
    lines = log.read_text().splitlines(keepends=True)
    entries = [json.loads(line) for line in lines if line.endswith("\n")]
    return [e["input"] for e in entries if e.get("status") == "ok"]


def test_killed_run_resumes_without_losing_or_repeating_work(
    tmp_path: Path,
    small_photo_path: Path,
    tiny_sd_path: Path,
    rembg_home: Path,
    tiny_rembg_model: str,
    llm_env: Any,
) -> None:
    llm_env.answer("background", "the setting changes")
    folder = tmp_path / "in"
    folder.mkdir()
    cat = Image.open(small_photo_path).convert("RGB")
    for i in range(N_IMAGES):  # different content, so different input hashes
        cat.rotate(60 * i).save(folder / f"cat{i}.png")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "regionedit", "batch", str(folder), "-o", str(out),
        "--source", "a cat indoors", "--target", "a cat on a beach", "--classifier", "llm",
        "--model", str(tiny_sd_path), "--segment-model-path", tiny_rembg_model,
        "--steps", "2", "--candidates", "2", "--seed", "1", "--save-mask",
    ]
    log = out / "run.jsonl"
    stderr = tmp_path / "first.err"
    # The fixtures put the fake server's URL and key and U2NET_HOME in the environment. One
    # torch thread: on a few shared cores, two spinning threads make the tiny model ~10x slower.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    with open(stderr, "w") as err:
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 240
        while not ok_inputs(log):
            assert first.poll() is None, "run ended before any item: " + stderr.read_text()
            assert time.monotonic() < deadline, "no item finished in time"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    done_before = ok_inputs(log)
    assert len(done_before) < N_IMAGES, "the kill must land mid-run for this test to mean much"

    second = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)

    assert second.returncode == 0, second.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]  # every line whole
    ok = [e for e in entries if e.get("status") == "ok"]
    assert sorted(e["input"] for e in ok) == [f"cat{i}.png" for i in range(N_IMAGES)]
    summary = entries[-1]
    assert summary["type"] == "summary"
    assert summary["already_done"] == len(done_before)
    assert summary["ok"] == N_IMAGES - len(done_before)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for entry in ok:
        for path in entry["outputs"].values():
            assert (out / path).is_file()
    for path in out.rglob("*.png"):
        with Image.open(path) as image:
            image.load()  # a partial file would fail to decode
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    expected = {f"cat{i}.edited{suffix}" for i in range(N_IMAGES)
                for suffix in (".png", ".1.png", ".mask.png", ".sheet.png", ".json")}
    assert {p.name for p in out.iterdir()} == expected | {"run.jsonl"}
