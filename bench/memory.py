"""Section 5: peak memory, each figure from a process of its own.

* a large photo (24 megapixels in the full run) through ``Editor.edit`` with the tiny models and
  a small ``max_side`` (:mod:`bench.worker`): peak RSS after the models are loaded and at the
  end, and regionedit's own time on the photo with the model calls taken out;
* ``regionedit batch`` over a folder of N photos, for a short and a long N: a batch must not
  hold on to what it has finished, so the long run's peak RSS stays within a few percent of the
  short one's;
* ``regionedit batch`` over a folder of large photos (a third of them turned upright, as in a
  folder of portrait and landscape shots) at several ``--batch-size``: what holding a batch's
  images at full size costs.

Peaks are the kernel's accounting of each reaped process, started through ``bench/launch.py``
so that the benchmark's own memory is not counted in (see there).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from .measure import run_process
from .startup import console_script
from .workspace import REPO_ROOT, SOURCE, TARGET, Workspace, photo, photo_set, write_jpeg


def run(
    ws: Workspace,
    *,
    large_size: tuple[int, int],
    large_runs: int,
    batch_sizes: tuple[int, int],
    batch_side: int,
    large_batch_items: int = 0,
    large_batch_sizes: tuple[int, ...] = (),
    parallel: bool = False,
) -> dict:
    """Measure the large edit and a ``regionedit batch`` run of each length in ``batch_sizes``.

    ``parallel`` runs the processes at the same time: the peaks stay each process's own, but
    the times are then not worth reading (the quick mode uses it to finish sooner).
    """
    jobs: dict[str, Callable[[], dict]] = {
        "large": lambda: _large_edit(ws, _large_photo(ws, large_size), large_size, large_runs)
    }
    pool = photo_set(ws.folder / "photos" / f"set-{batch_side}", max(batch_sizes), batch_side)
    for count in batch_sizes:
        folder = _batch_folder(ws, pool[:count])
        jobs[str(count)] = lambda folder=folder, count=count: _batch_run(ws, folder, count)
    if large_batch_items:
        large_set = _large_photo_set(ws, large_size, large_batch_items)
        for size in large_batch_sizes:
            folder = _batch_folder(ws, large_set, name=f"large-batch-{size}")
            jobs[f"large-batch-{size}"] = lambda folder=folder, size=size: _batch_run(
                # JPEG output: a 24 MP PNG takes seconds to compress, which measures zlib
                ws, folder, large_batch_items, "--batch-size", str(size), "--format", "jpg"
            )
    if parallel:
        with ThreadPoolExecutor(max_workers=len(jobs)) as threads:
            futures = {name: threads.submit(job) for name, job in jobs.items()}
            done = {name: future.result() for name, future in futures.items()}
    else:
        done = {name: job() for name, job in jobs.items()}

    short, long = (done[str(n)]["peak_rss_mb"] for n in sorted(batch_sizes))
    return {
        "what": "peak RSS of separate processes (kernel accounting of the reaped child)",
        "parallel": parallel,
        "large_edit": done["large"],
        "batch": {
            "photo_long_side": batch_side,
            "steps": 2,
            "runs": {str(n): done[str(n)] for n in batch_sizes},
            "growth": long / short - 1,
        },
        "large_batch": {
            "items": large_batch_items,
            "input": f"{large_size[0]}x{large_size[1]} JPEG, every third turned upright",
            "runs": {str(size): done[f"large-batch-{size}"] for size in large_batch_sizes},
        },
    }


def _large_photo(ws: Workspace, size: tuple[int, int]) -> Path:
    width, height = size
    # Chelsea is 451x300, so a 3:2 frame is the photo itself, upscaled.
    return write_jpeg(
        photo("chelsea").resize(size, Image.Resampling.LANCZOS),
        ws.folder / "photos" / f"chelsea-{width}x{height}.jpg",
    )


def _large_edit(ws: Workspace, image: Path, size: tuple[int, int], runs: int) -> dict:
    width, height = size
    command = [
        sys.executable, "-m", "bench.worker", "large-edit",
        "--workspace", str(ws.folder), "--image", str(image), "--runs", str(runs),
        "--max-side", "64", "--steps", "2",
    ]
    finished = run_process(
        command, env=ws.env(), cwd=REPO_ROOT, scratch=ws.folder / "memory" / "large"
    ).check("bench.worker large-edit")
    report: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return {
        "input": f"{width}x{height} JPEG ({width * height / 1e6:.0f} MP)",
        "max_side": 64,
        "steps": 2,
        "process_peak_rss_mb": finished.peak_rss_mb,
        **report,
    }


def _large_photo_set(ws: Workspace, size: tuple[int, int], count: int) -> list[Path]:
    """``count`` copies of the large photo, every third one turned upright."""
    wide = _large_photo(ws, size)
    tall = ws.folder / "photos" / f"{wide.stem}-upright.jpg"
    if not tall.exists():
        with Image.open(wide) as image:
            write_jpeg(image.transpose(Image.Transpose.ROTATE_90), tall)
    folder = ws.folder / "photos" / f"large-set-{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"large-{index:03d}.jpg"
        if not path.exists():
            shutil.copyfile(tall if index % 3 == 0 else wide, path)
        paths.append(path)
    return paths


def _batch_folder(ws: Workspace, photos: list[Path], name: str | None = None) -> Path:
    """A fresh folder whose ``in`` holds ``photos`` (an earlier run's output would be resumed)."""
    folder = ws.folder / "memory" / (name or f"batch-{len(photos)}")
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "in").mkdir(parents=True)
    for path in photos:
        shutil.copyfile(path, folder / "in" / path.name)
    return folder


def _batch_run(ws: Workspace, folder: Path, count: int, *extra: str) -> dict:
    command = [
        console_script(), "batch", str(folder / "in"), "-o", str(folder / "out"),
        "--source", SOURCE, "--target", TARGET, "--classifier", "offline",
        "--model", str(ws.sd_model), "--segment-model-path", str(ws.u2net_model),
        "--steps", "2", "--seed", "1", "--device", "cpu", *extra,
    ]
    finished = run_process(command, env=ws.env(), scratch=folder / "log")
    finished.check(f"regionedit batch ({count} images)")
    return {
        "peak_rss_mb": finished.peak_rss_mb,
        "seconds": finished.wall_s,
        "summary": finished.stdout.strip().splitlines()[0],
    }
