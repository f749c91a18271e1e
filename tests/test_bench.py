"""The benchmark (``python -m bench``): each section runs end to end in quick mode and reports
every figure, as finite numbers, with the machine it ran on. Timings are not checked (they
depend on the machine and its load); the output's structure and the bench's own colour
transfers are. The sections that load models take a minute or more together, so their run is
marked ``bench`` and left out of the default selection (``pytest -m bench`` runs it)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SPREAD = {"median", "min", "max", "n"}


def _quick_run(folder: Path, *sections: str) -> tuple[str, dict[str, dict]]:
    """(printed table, {section: its result file}) of ``python -m bench --quick SECTION...``."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *sections, "--output-dir",
         str(folder / "results"), "--workspace", str(folder / "workspace"),
         "--torch-threads", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    records = {path.stem: json.loads(path.read_text())
               for path in (folder / "results").glob("*.json")}
    assert set(records) == set(sections)
    for name, record in records.items():
        assert record["schema"] == "regionedit.bench/2"
        assert (record["section"], record["mode"]) == (name, "quick")
        assert {"cpu", "cores", "python", "torch", "torch_threads", "gpu"} <= set(record["machine"])
        assert record["machine"]["torch_threads"] == 1
        numbers = _numbers(record["result"])
        assert numbers and all(math.isfinite(n) for n in numbers), name
        assert f"\n| {name} | " in done.stdout  # the table has the section's rows
        FIGURES[name](record["result"])
    return done.stdout, records


def _numbers(value: object) -> list[float]:
    """Every number in a JSON value."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def _is_spread(value: object) -> bool:
    return (isinstance(value, dict) and set(value) == SPREAD
            and value["min"] <= value["median"] <= value["max"] and value["n"] >= 1)


def _overhead(result: dict) -> None:
    size = result["sizes"]["128"]
    for key in ("edit_ms", "bare_pipeline_ms", "ratio", "ratio_without_segmentation",
                "segment_model_ms", "pipeline_in_edit_ms", "own_ms"):
        assert _is_spread(size[key]), key
    assert set(size["own_stage_ms"]) == {"load", "classify", "mask", "inpaint_io", "composite",
                                         "other"}


def _batch(result: dict) -> None:
    ways = {"loop", "edit_many_batch_1", "edit_many_batch_2"}
    assert set(result["images_per_s"]) == ways
    assert set(result["speedup_over_loop"]) == ways - {"loop"}
    assert all(_is_spread(value) for value in [*result["images_per_s"].values(),
                                               *result["speedup_over_loop"].values()])


def _llm(result: dict) -> None:
    # one after another, the cache takes the repeats; concurrently, each distinct pair once
    assert result["distinct_pairs"] == 10
    assert result["requests"] == {"sequential": 10, "concurrent": 10}
    assert all(_is_spread(result[key]) for key in ("sequential_s", "concurrent_s", "speedup"))


def _startup(result: dict) -> None:
    for key in ("python_pass_s", "import_in_process_s", "import_process_s", "help_process_s"):
        assert _is_spread(result[key]), key
    assert result["heavy_modules_imported"] == []


def _memory(result: dict) -> None:
    large = result["large_edit"]
    assert large["input"].startswith("600x400")
    assert large["rss_before_mb"] <= large["peak_rss_mb"]
    for key in ("added_bytes_per_pixel", "traced_peak_mb", "float32_photo_copy_mb"):
        assert isinstance(large[key], float), key
    assert _is_spread(large["own_ms"])
    assert set(result["batch"]["peak_rss_mb"]) == {"2", "6"}
    assert isinstance(result["batch"]["growth"], float)


def _colormatch(result: dict) -> None:
    scenarios = result["runs"]["default"]
    assert set(scenarios) == {"same content, cast", "new content, cast", "new content, no cast"}
    for scored in scenarios.values():
        assert set(scored["methods"]) == {"none", "cast", "cast, strength 0.5", "band",
                                          "band, strength 0.5", "histogram"}


#: what each section must report
FIGURES = {"overhead": _overhead, "batch": _batch, "llm": _llm, "startup": _startup,
           "memory": _memory, "colormatch": _colormatch}


def test_sections_without_models_report_every_figure(tmp_path: Path) -> None:
    _quick_run(tmp_path, "llm", "startup", "colormatch")


@pytest.mark.bench
def test_every_section_reports_every_figure(tmp_path: Path) -> None:
    _quick_run(tmp_path, *FIGURES)


@pytest.mark.parametrize("method", ["band", "histogram"])
def test_bench_colour_transfers_change_only_the_region(method: str) -> None:
    sys.path.insert(0, str(REPO))
    from bench.colormatch_methods import band_transfer, histogram_match

    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    generated = np.clip(original.astype(int) + 40, 0, 255).astype(np.uint8)  # a bright cast
    mask = np.zeros((48, 64), np.float32)
    mask[12:36, 16:48] = 1.0
    transfer = band_transfer if method == "band" else histogram_match
    result = transfer(generated, original, mask)
    outside = mask == 0
    assert np.array_equal(result[outside], original[outside])
    # same content under a cast: pulling it towards the kept colours undoes most of the cast
    inside = ~outside
    before = np.abs(generated[inside].astype(int) - original[inside]).mean()
    after = np.abs(result[inside].astype(int) - original[inside]).mean()
    assert after < before / 2
