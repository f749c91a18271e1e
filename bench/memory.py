"""Memory: what a large photo and a long batch cost, in a process of its own.

One worker process (``python -m bench.memory --worker``) loads the tiny models, then measures

* ``Editor.edit`` of a large photo (24 megapixels in the full run) with a small generation
  size, after one unmeasured edit of it: the peak resident memory the edit adds, in bytes per
  pixel of the photo, and the peak of Python's and numpy's allocations during the edit
  (``tracemalloc``, which sees numpy's buffers, not Pillow's) next to the size of one float32
  copy of the photo. Masks and colour matching work on a copy of at most 1024 px, and only the
  final blend touches the full-size pixels, in 8 bits, so that peak must stay below one such
  copy. The edit's time and regionedit's own share of it (as in ``overhead``) come from the
  measured edits;
* ``regionedit.batch.run_batch`` (what ``regionedit batch`` runs: results written, the run
  journalled) over a short and a long folder of small photos: a batch must not hold on to what
  it has finished, so the long run's peak resident memory stays within a few percent of the
  short run's.

Peaks are Linux's ``VmHWM``, reset before each measurement (``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from PIL import Image

from .measure import peak_rss_mb, reset_peak_rss, rss_mb
from .workspace import (
    REPO_ROOT,
    SOURCE,
    TARGET,
    Workspace,
    build_workspace,
    photo,
    photo_set,
    write_jpeg,
)

FULL = dict(large_size=(6000, 4000), large_runs=3, batch_lengths=(20, 200), batch_side=128)
QUICK = dict(large_size=(600, 400), large_runs=1, batch_lengths=(2, 6), batch_side=128)
#: every edit here generates at this size with this many steps: the models are not the figure
MAX_SIDE, STEPS = 64, 2


def run(ws: Workspace, *, quick: bool) -> dict[str, Any]:
    params = QUICK if quick else FULL
    width, height = params["large_size"]
    large = write_jpeg(  # chelsea is 451x300: a 3:2 frame is the photo itself, upscaled
        photo("chelsea").resize((width, height), Image.Resampling.LANCZOS),
        ws.folder / "photos" / f"chelsea-{width}x{height}.jpg",
    )
    short, long = params["batch_lengths"]
    side = params["batch_side"]
    pool = photo_set(ws.folder / "photos" / f"set-{side}", long, side)
    folders = [_batch_folder(ws, pool[:count]) for count in (short, long)]
    command = [sys.executable, "-m", "bench.memory", "--worker", "--workspace", str(ws.folder),
               "--large", str(large), "--runs", str(params["large_runs"]), *map(str, folders)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=ws.env(), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the memory worker exited with {done.returncode}:\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    batches = found.pop("batches")
    found["batch"] = {
        "photo_long_side": side,
        "peak_rss_mb": {str(count): batch["peak_rss_mb"] for count, batch in
                        zip((short, long), batches)},
        "growth": batches[1]["peak_rss_mb"] / batches[0]["peak_rss_mb"] - 1,
    }
    return {"parameters": {**params, "max_side": MAX_SIDE, "steps": STEPS}, **found}


def _batch_folder(ws: Workspace, photos: list[Path]) -> Path:
    """A fresh folder whose ``in`` holds ``photos`` (an earlier run's output would be resumed)."""
    folder = ws.folder / "memory" / f"batch-{len(photos)}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "in").mkdir(parents=True)
    for path in photos:
        shutil.copyfile(path, folder / "in" / path.name)
    return folder


# -- in the worker process ---------------------------------------------------------------------


def _worker(workspace: Path, large: Path, runs: int, batch_folders: list[Path]) -> dict[str, Any]:
    from regionedit.batch import BatchOptions, plan_folder, run_batch

    from .overhead import instrumented_editor, summarize, timed_edit

    ws = build_workspace(workspace)
    editor = instrumented_editor(ws)
    settings = dict(seed=1, steps=STEPS, max_side=MAX_SIDE)
    # one-time costs (imports, loading the models, the first call at this generation size)
    editor.edit(large, SOURCE, TARGET, **settings)
    with Image.open(large) as opened:
        width, height = opened.size
    _settle()
    before = rss_mb()
    measured = [timed_edit(editor, large, **settings) for _ in range(runs)]
    peak = peak_rss_mb()
    tracemalloc.start()
    editor.edit(large, SOURCE, TARGET, **settings)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    found: dict[str, Any] = {}
    found["large_edit"] = {
        "input": f"{width}x{height} JPEG ({width * height / 1e6:.1f} MP)",
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "added_rss_mb": peak - before,
        "added_bytes_per_pixel": (peak - before) * 2**20 / (width * height),
        "traced_peak_mb": traced_peak / 2**20,
        "float32_photo_copy_mb": width * height * 3 * 4 / 2**20,
        **summarize(measured),
    }

    found["batches"] = []
    for folder in batch_folders:
        options = BatchOptions(out_dir=folder / "out", edit=settings)
        _settle()
        summary = run_batch(editor, plan_folder(folder / "in", SOURCE, TARGET, options), options)
        if summary.failed or not summary.ok:
            raise RuntimeError(f"the batch over {folder} failed: {summary.failures[:1]}")
        found["batches"].append({"peak_rss_mb": peak_rss_mb()})
    return found


def _settle() -> None:
    """Free what is garbage, hand freed heap back to the system, and start the peak afresh, so
    that the next peak is the next measurement's own."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    reset_peak_rss()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--large", type=Path, required=True, help="the large photo")
    parser.add_argument("--runs", type=int, default=1, help="measured edits of it")
    parser.add_argument("batch_folders", type=Path, nargs=2, help="short and long batch")
    args = parser.parse_args(argv)
    print(json.dumps(_worker(args.workspace, args.large, args.runs, args.batch_folders)))
    return 0


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    from .report import number, stages

    large, batch = result["large_edit"], result["batch"]
    where = large["input"]
    found = [
        (f"{where}: peak RSS MB (models loaded: {number(large['rss_before_mb'])})",
         number(large["peak_rss_mb"])),
        (f"{where}: RSS the edit adds, bytes per pixel", number(large["added_bytes_per_pixel"])),
        (f"{where}: traced Python and numpy peak MB (one float32 copy of the photo: "
         f"{number(large['float32_photo_copy_mb'])})", number(large["traced_peak_mb"])),
        (f"{where}: edit ms (generating at {MAX_SIDE} px, {STEPS} steps)",
         number(large["edit_ms"])),
        (f"{where}: regionedit's own ms", number(large["own_ms"])),
        (f"{where}: own ms by stage", stages(large["own_stage_ms"])),
    ]
    for count, peak in batch["peak_rss_mb"].items():
        found.append((f"batch of {count} photos ({batch['photo_long_side']} px): peak RSS MB",
                      number(peak)))
    found.append(("batch: peak RSS growth, long over short", f"{batch['growth']:+.1%}"))
    return found


if __name__ == "__main__":
    sys.exit(main())
