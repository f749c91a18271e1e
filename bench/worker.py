"""Measurements that need a process of their own (peak memory), run by :mod:`bench.memory`.

    python -m bench.worker large-edit --workspace DIR --image PHOTO [--runs N]

loads the tiny models, makes one warm-up edit on a small photo, then edits PHOTO ``runs``
times, and prints one JSON line: the peak RSS after the warm-up and at the end, and each
edit broken down into model calls and regionedit's own work.
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
    measured = [run_timed_edit(editor, segmenter, pipe, image, **kwargs) for _ in range(runs)]
    return {
        "rss_after_warmup_mb": warm_rss,
        "peak_rss_mb": own_peak_rss_mb(),
        "runs": runs,
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
