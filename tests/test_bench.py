"""The benchmark runner (``python -m bench``) in quick mode: it runs every section end to end on
the tiny models and writes the table and a JSON report. Figures are not checked (timings on a
shared machine are not test material); their presence and shape are."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPREAD_KEYS = {"median", "min", "max", "n"}


@pytest.fixture(scope="module")
def bench_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose ``workspace`` (models and photos) the bench commands here share."""
    return tmp_path_factory.mktemp("bench")


def _run_bench(module: str, *args: str, folder: Path) -> str:
    """What ``python -m <module> ... --workspace <folder>/workspace`` printed; it must succeed."""
    env = {k: v for k, v in os.environ.items() if k != "U2NET_HOME"}
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--workspace", str(folder / "workspace")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout


@pytest.fixture(scope="module")
def quick_run(bench_folder: Path) -> tuple[str, dict]:
    """(printed output, parsed JSON) of one ``python -m bench --quick`` run."""
    output = bench_folder / "quick.json"
    printed = _run_bench("bench", "--quick", "--output", str(output), folder=bench_folder)
    return printed, json.loads(output.read_text())


def _is_spread(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == SPREAD_KEYS
        and value["min"] <= value["median"] <= value["max"]
        and value["n"] >= 1
    )


def test_prints_the_table_with_every_section_and_target(quick_run: tuple[str, dict]) -> None:
    printed, results = quick_run
    for row_start in ("overhead 128px", "batch 3 images", "llm 12 pairs", "startup",
                      "memory 600x400", "memory batch 2"):
        assert f"\n{row_start}" in printed
    assert "targets:" in printed
    for target in results["targets"]:
        assert target["figure"] in printed
    assert printed.rstrip().endswith("quick.json")


def test_json_has_every_section_with_spreads(quick_run: tuple[str, dict]) -> None:
    _, results = quick_run
    assert results["schema"] == "regionedit.bench/1"
    assert results["mode"] == "quick"
    assert {"date", "cpu", "cores", "torch_threads", "git_commit"} <= set(results["machine"])
    assert results["machine"]["torch_threads"] == 1

    size = results["overhead"]["sizes"]["128"]
    assert size["generation_size"] == "64x64"
    for key in ("edit_ms", "bare_pipeline_ms", "ratio", "ratio_without_segmentation",
                "segment_model_ms", "own_ms"):
        assert _is_spread(size[key]), key
    assert set(size["own_stage_ms"]) == {"load", "classify", "mask", "inpaint_io", "composite",
                                         "other"}
    # the model calls are inside the edit, so the parts add up to at most the whole
    assert size["segment_model_ms"]["min"] + size["own_ms"]["min"] < size["edit_ms"]["max"]

    batch = results["batch"]
    for mode in ("naive", "reused_editor", "batch"):
        assert _is_spread(batch[mode]["seconds"]) and _is_spread(batch[mode]["per_item_s"])
    assert batch["batch"]["per_item_s"]["n"] == 3
    assert _is_spread(batch["other_batch_sizes"]["2"]["speedup_vs_naive"])
    for key in ("sum_of_stages_s", "overlap"):
        assert _is_spread(batch["batch"][key]), key
    stages = batch["batch"]["stage_ms_per_item"]
    assert set(stages) == {"load", "classify", "segment", "inpaint", "composite"}
    assert all(_is_spread(spread) for spread in stages.values())
    for key in ("batch_speedup_vs_naive", "batch_speedup_vs_reused", "reused_speedup_vs_naive",
                "reload_per_image_s"):
        assert _is_spread(batch[key]), key

    llm = results["llm"]
    assert (llm["pairs"], llm["distinct_pairs"]) == (12, 10)
    assert llm["sequential_requests"]["requests"] == 12
    assert llm["sequential_loop"]["requests"] == 10
    assert llm["concurrent"]["requests"] == 10  # every distinct pair asked once
    assert math.isclose(llm["ideal_concurrent_s"], 3 * 0.05)

    startup = results["startup"]
    for key in ("python_pass_s", "import_in_process_s", "import_process_s", "help_process_s"):
        assert _is_spread(startup[key]), key
    assert "skipped" in startup["first_result"]  # quick mode leaves it to the full run

    memory = results["memory"]
    large = memory["large_edit"]
    assert large["input"].startswith("600x400")
    # measured through the launcher: the worker's own peak, not the benchmark's
    assert large["rss_after_warmup_mb"] <= large["peak_rss_mb"] <= large["process_peak_rss_mb"] + 1
    # the first edit at the large size is reported apart from the per-image figures
    assert large["first_edit"]["own_ms"] > 0
    assert set(large["first_edit"]["own_stage_ms"]) == set(large["own_stage_ms"])
    assert set(memory["batch"]["runs"]) == {"1", "2"}
    assert all("ok" in run["summary"] for run in memory["batch"]["runs"].values())
    assert isinstance(memory["batch"]["growth"], float)
    assert set(memory["large_batch"]["runs"]) == {"2"}
    assert "ok" in memory["large_batch"]["runs"]["2"]["summary"]

    keys = [target["key"] for target in results["targets"]]
    assert len(keys) == len(set(keys)) == 9
    # quick mode measures no 512 px or 24 MP figure, so those targets are left unjudged
    judged = {t["key"]: t["met"] for t in results["targets"]}
    assert judged["own_ms_512"] is None and judged["own_ms_24mp"] is None


def test_timeline_prints_the_batch_s_events_in_order(
    quick_run: tuple[str, dict], bench_folder: Path
) -> None:
    # after the quick run, so that its models and photos are there already
    printed = _run_bench(
        "bench.timeline", "--items", "4", "--pairs", "2", "--batch-size", "2", "--rounds", "1",
        folder=bench_folder,
    )
    lines = printed.splitlines()
    assert lines[0].startswith("round 1: ") and lines[0].endswith(" s")
    assert lines[1].startswith("  LLM answers (2): ")  # each distinct pair asked once
    events = [line.split(None, 1) for line in lines[2:-1]]
    times = [float(at) for at, _ in events]
    assert times == sorted(times)
    what = [event for _, event in events]
    assert what[0] == "inpainting model load"
    calls = [event for event in what if event.startswith("model call") and event.endswith("in")]
    # a call may be noted while the model still loads, but it can only end after that
    assert what.index("inpainting model load done") < what.index(f"{calls[0]} done")
    sizes = [int(call.split()[2]) for call in calls]  # "model call: N image(s), ..."
    assert sum(sizes) == 4 and max(sizes) <= 2
    assert what[-1] == "result 4 of 4 out"
    assert lines[-1].startswith("  ms per item by stage: load ")
