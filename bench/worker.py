"""Measurements that need a process of their own (peak memory), run by :mod:`bench.memory`.

    python -m bench.worker large-edit --workspace DIR --image PHOTO [--runs N]

loads the tiny models, makes one warm-up edit on a small photo, then edits PHOTO once more
than ``runs`` times, and prints one JSON line: the peak RSS after the warm-up and at the end,
and the edits broken down into model calls and regionedit's own work. The first edit of PHOTO
is reported on its own (``first_edit``): it is the process's first at that size, and pays for
fresh memory (the kernel zeroes every new page: ~100-150 ms more at 24 MP). The per-image
figures come from the ``runs`` edits after it, as the overhead section's come from the edits
after its warm-up at the same size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .measure import own_peak_rss_mb, time_pipeline_calls
from .overhead import instrumented_editor, photo_path, run_timed_edit, summarize
from .workspace import SOURCE, TARGET, build_workspace


def large_edit(workspace: Path, image: Path, runs: int, max_side: int, steps: int) -> dict:
    ws = build_workspace(workspace)
    editor, segmenter, inpainter = instrumented_editor(ws)
    pipe = time_pipeline_calls(inpainter)
    kwargs = dict(seed=1, steps=steps, max_side=max_side)
    editor.edit(photo_path(ws, 128), SOURCE, TARGET, **kwargs)
    warm_rss = own_peak_rss_mb()
    first = run_timed_edit(editor, segmenter, pipe, image, **kwargs)
    measured = [run_timed_edit(editor, segmenter, pipe, image, **kwargs) for _ in range(runs)]
    return {
        "rss_after_warmup_mb": warm_rss,
        "peak_rss_mb": own_peak_rss_mb(),
        "runs": runs,
        "first_edit": {
            "own_ms": first["own"] * 1000,
            "own_stage_ms": {stage: s * 1000 for stage, s in first["own_stages"].items()},
        },
        **summarize(measured),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    sub = parser.add_subparsers(dest="task", required=True)
    p = sub.add_parser("large-edit", help="peak memory and own time of editing one large photo")
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--max-side", type=int, default=64)
    p.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    report = large_edit(args.workspace, args.image, args.runs, args.max_side, args.steps)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
