"""``regionedit batch --ray`` and ``run_batch_on_ray``: the same plan on a local Ray, with two
workers, gives the local batch's files, bit for bit, though a worker process is killed mid-run;
an item that kills its worker every time fails alone; a driver killed mid-run resumes.

Everything is real: a Ray started once for this module (2 CPUs, no dashboard), Ray Data actors
loading the tiny diffusers and rembg models from disk, the LLM classifier on the fake server.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray  # the dev extra has it (pip install 'regionedit[ray]')
from PIL import Image
from support.fake_llm import CHAT_PATH, descriptions_in
from support.ray_faults import EditorThatDies, deaths

import regionedit
from regionedit import Editor
from regionedit.batch import RUN_LOG, BatchOptions, plan_manifest, run_batch
from regionedit.batch.on_ray import run_batch_on_ray
from regionedit.imageio import is_temp_file

N_ITEMS = 12
BROKEN = "p11.jpg"


@pytest.fixture(scope="module")
def ray_address() -> Any:
    """A Ray on this machine for the module's tests; workers import this checkout's regionedit
    and tests/support (for EditorThatDies)."""
    tests = Path(__file__).parent
    src = Path(regionedit.__file__).parent.parent
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(tests), str(src), *([saved] if saved else [])]
    )
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, small_photo_path: Path) -> Path:
    """12 edits: three pairs for the classifier, one it cannot decide (skipped), one with its own
    region, one with two candidates, one broken image."""
    folder = tmp_path_factory.mktemp("ray-in")
    cat = Image.open(small_photo_path).convert("RGB")
    rows = []
    for i in range(1, N_ITEMS + 1):
        name = f"p{i:02d}.png"
        if name.replace(".png", ".jpg") == BROKEN:
            name = BROKEN
            (folder / name).write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
        else:
            shifted = np.roll(np.asarray(cat), 7 * i, axis=1)  # different pixels, same size
            Image.fromarray(shifted).save(folder / name)
        target = ["a cat on a beach", "a dog", "a cat in the snow"][i % 3]
        row = {"image": name, "source": "a cat indoors", "target": target}
        if i == 4:
            row["target"] = "something ambiguous"
        if i == 6:
            row["region"] = "background"
        if i == 8:
            row["candidates"] = 2
        rows.append(row)
    path = folder / "edits.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def make_editor(tiny_sd_path: Path, rembg_home: Path, tiny_rembg_model: str) -> Any:
    return functools.partial(
        Editor, classifier="llm", inpaint_model=str(tiny_sd_path),
        segment_model_path=tiny_rembg_model, device="cpu",
    )


@pytest.fixture
def llm(llm_env: Any) -> Any:
    """The fake LLM: dogs change the subject, ambiguity is unidentified, the rest background."""

    def rule(source: str, target: str) -> str:
        if "dog" in target:
            return "foreground"
        return "unidentified" if "ambiguous" in target else "background"

    llm_env.answer_by(rule)
    return llm_env


def options(out: Path, **kwargs: Any) -> BatchOptions:
    return BatchOptions(
        out_dir=out, on_unidentified="skip", save_mask=True,
        edit={"steps": 2, "seed": 3, "max_side": 64}, **kwargs,
    )


def log_lines(out: Path) -> list[dict[str, Any]]:
    text = (out / RUN_LOG).read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def items(out: Path) -> list[dict[str, Any]]:
    return [e for e in log_lines(out) if e["type"] == "item"]


def files(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file()}


def comparable_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar without what differs between any two runs: timings, and the output paths."""
    record = json.loads(path.read_text())
    record.pop("timings")
    record.pop("output")
    return record


def outcome(entry: dict[str, Any]) -> tuple:
    keys = ("status", "region", "decided_by", "seeds", "outputs", "stage", "error_type",
            "input_sha256", "settings_sha256")
    return tuple(json.dumps(entry.get(k), sort_keys=True) for k in keys)


def test_two_workers_write_the_local_runs_files_though_one_dies(
    ray_address, manifest, make_editor, llm, tmp_path
):
    local, on_ray, marks = tmp_path / "local", tmp_path / "ray", tmp_path / "marks"
    # two images per model call: Ray's workers get the local run's model batches
    opts = lambda out: options(out, batch_size=2)  # noqa: E731
    local_summary = run_batch(make_editor(), plan_manifest(manifest, opts(local)), opts(local))
    from regionedit.classify import clear_cache

    clear_cache()
    asked_before = len(llm.requests_to(CHAT_PATH))
    marks.mkdir()
    # the worker process editing p05 exits (as if killed) the first time: Ray restarts it, and
    # the model batch of p05 and p06 is edited again
    dies_once = functools.partial(
        EditorThatDies, marks=str(marks), dies_once=("p05.png",), **make_editor.keywords
    )

    summary = run_batch_on_ray(
        dies_once, plan_manifest(manifest, opts(on_ray)), opts(on_ray), workers=2
    )

    assert deaths(marks, "p05.png") == 1
    # once per distinct pair, on the driver; the region-given row asks nothing
    asked = [descriptions_in(r) for r in llm.requests_to(CHAT_PATH)[asked_before:]]
    assert sorted(asked) == sorted(set(asked)) and len(asked) == 4
    counts = lambda s: (s.ok, s.skipped, s.failed, s.already_done, s.stopped)  # noqa: E731
    assert counts(summary) == counts(local_summary) == (10, 1, 1, 0, None)
    assert summary.exit_code == local_summary.exit_code == 1
    assert [f["input"] for f in summary.failures] == [BROKEN]

    # each item exactly once, with the local run's outcome and files, and nothing else
    assert sorted(e["input"] for e in items(on_ray)) == sorted(e["input"] for e in items(local))
    by_input = lambda out: {e["input"]: outcome(e) for e in items(out)}  # noqa: E731
    assert by_input(on_ray) == by_input(local)
    local_files, ray_files = files(local), files(on_ray)
    assert local_files.keys() == ray_files.keys()
    images = [name for name in local_files if name.endswith(".png")]
    assert len(images) == 10 + 1 + 1 + 10  # results, 2nd candidate, contact sheet, masks
    for name in images:
        assert ray_files[name].read_bytes() == local_files[name].read_bytes(), name
    for name in local_files:
        if name.endswith(".json"):
            assert comparable_sidecar(ray_files[name]) == comparable_sidecar(local_files[name])

    # the same resume keys: a local run finds nothing left to do but the broken image
    again = run_batch(make_editor(), plan_manifest(manifest, opts(on_ray)), opts(on_ray))
    assert (again.already_done, again.ok, again.failed) == (10 + 1, 0, 1)


def test_an_item_that_kills_its_worker_every_time_fails_alone(
    ray_address, manifest, make_editor, llm, tmp_path
):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    two = manifest.with_name("two.jsonl")
    two.write_text("".join(
        json.dumps(row) + "\n" for row in rows if row["image"] in ("p01.png", "p09.png")
    ))
    marks, out = tmp_path / "marks", tmp_path / "out"
    marks.mkdir()
    dies_always = functools.partial(
        EditorThatDies, marks=str(marks), dies_always=("p09.png",), **make_editor.keywords
    )

    summary = run_batch_on_ray(
        dies_always, plan_manifest(two, options(out)), options(out), max_attempts=1
    )

    assert deaths(marks, "p09.png") == 1  # started once, and not again
    lines = {e["input"]: e for e in items(out)}
    assert lines["p01.png"]["status"] == "ok"
    lost = lines["p09.png"]
    assert (lost["status"], lost["error_type"]) == ("failed", "ClusterError")
    assert "died 1 time(s)" in lost["error"]
    assert (summary.ok, summary.failed, summary.exit_code) == (1, 1, 1)
    assert not any(is_temp_file(name) for name in files(out))


def test_a_driver_killed_mid_run_resumes(
    ray_address, manifest, tiny_sd_path, tiny_rembg_model, rembg_home, llm, tmp_path, capsys
):
    out = tmp_path / "out"
    flags = [
        "--manifest", str(manifest), "-o", str(out), "--on-unidentified", "skip",
        "--save-mask", "--classifier", "llm", "--model", str(tiny_sd_path),
        "--segment-model-path", tiny_rembg_model, "--steps", "2", "--seed", "3",
        "--max-side", "64", "--device", "cpu",
    ]
    driver = subprocess.Popen(
        [sys.executable, "-m", "regionedit", "batch", *flags, "--ray", ray_address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_whole_items(out)) < 4 and driver.poll() is None:
            assert time.monotonic() < deadline, "no item finished in time"
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=30)
    finally:
        driver.kill()
        driver.wait()
    first = _whole_items(out)
    assert 4 <= len(first) < N_ITEMS, driver.returncode

    assert cli_main(["batch", *flags, "--ray"]) == 1  # the broken image fails again
    capsys.readouterr()

    lines = items(out)
    ok = sorted(e["input"] for e in lines if e["status"] == "ok")
    assert ok == sorted(set(ok)) and len(ok) == 10  # each edited item exactly once
    summary = log_lines(out)[-1]
    assert summary["type"] == "summary" and summary["stopped"] is None
    assert summary["already_done"] == sum(e["status"] != "failed" for e in first)
    listed = {p for e in lines for p in e.get("outputs", {}).values()}
    assert set(files(out)) == listed | {RUN_LOG}


def cli_main(argv: list[str]) -> int:
    """``regionedit`` in this process, without keeping the log handler it adds."""
    from regionedit.cli import main

    logger = logging.getLogger("regionedit")
    handlers = list(logger.handlers)
    try:
        return main(argv)
    finally:
        for handler in logger.handlers[:]:
            if handler not in handlers:
                logger.removeHandler(handler)


def _whole_items(out: Path) -> list[dict[str, Any]]:
    if not (out / RUN_LOG).exists():
        return []
    lines = (out / RUN_LOG).read_text().splitlines(keepends=True)
    return [json.loads(t) for t in lines if t.endswith("\n") and '"type": "item"' in t]


def test_without_ray_installed_the_flag_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code = cli_main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--source", "a",
                 "--target", "b", "--ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "pip install 'regionedit[ray]'" in err and "--ray" in err


def test_an_address_nothing_answers_at_fails_in_seconds(manifest, tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "regionedit", "batch", "--manifest", str(manifest), "-o",
         str(tmp_path / "out"), "--region", "background", "--ray", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 10, done.stderr
    assert done.stderr.startswith("error: No Ray cluster answers at 127.0.0.1:")
    assert done.stderr.count("\n") == 1 and time.monotonic() - started < 30


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--workers", "2"], "--workers and --gpus-per-worker need --ray"),
        (["--ray", "--workers", "3,1"], "--workers: must be a number of workers"),
        (["--ray", "--gpus-per-worker", "-1"], "--gpus-per-worker: must be a number of GPUs"),
    ],
)
def test_ray_flags_are_checked_before_any_work(extra, message, tmp_path, capsys):
    try:
        code = cli_main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--source", "a",
                     "--target", "b", *extra])
    except SystemExit as exc:  # argparse refusals
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err
