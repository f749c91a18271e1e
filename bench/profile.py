"""Where regionedit's own time goes in one edit: ``cProfile`` over repeated edits.

    .venv/bin/python -m bench.profile                    # 512 px photo
    .venv/bin/python -m bench.profile --size 6000x4000   # a 24-megapixel photo
    .venv/bin/python -m bench.profile --no-color-match   # what colour matching costs

Same set-up as the overhead section (tiny models, offline classifier, CPU, one torch thread).
After a warm-up edit, ``--runs`` edits are timed (printed: the per-edit split into model
calls and regionedit's own work), then ``--runs`` more run under the profiler (printed:
regionedit's functions by cumulative time, and the functions of any library with the most
time of their own, model internals left out; the profiler slows Python code down, so read
these as shares, and the first table as the times).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

from PIL import Image

from .measure import time_pipeline_calls
from .overhead import instrumented_editor, run_timed_edit, summarize
from .report import spread_text
from .workspace import build_workspace, photo, write_jpeg

# Model internals: their time is the models', reported as "segmentation model" and "pipeline".
_MODEL_CODE = ("torch", "diffusers", "transformers", "onnxruntime", "rembg", "tokenizers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--size", default="512x512", help="WIDTHxHEIGHT (default 512x512)")
    parser.add_argument("--runs", type=int, default=5, help="profiled edits (default 5)")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (default 2)")
    parser.add_argument("--top", type=int, default=25, help="rows per listing (default 25)")
    parser.add_argument("--no-color-match", action="store_true", help="Editor(color_match=False)")
    parser.add_argument("--workspace", type=Path, help="folder for models and photos")
    args = parser.parse_args(argv)
    width, height = (int(side) for side in args.size.lower().split("x"))

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="regionedit-profile-") as scratch:
        ws = build_workspace(args.workspace or Path(scratch))
        image = write_jpeg(
            photo("astronaut").resize((width, height), Image.Resampling.LANCZOS),
            ws.folder / "photos" / f"profile-{width}x{height}.jpg",
        )
        extra = {"color_match": False} if args.no_color_match else {}
        editor, segmenter, inpainter = instrumented_editor(ws, **extra)
        pipe = time_pipeline_calls(inpainter)
        kwargs = dict(seed=1, steps=args.steps)
        run_timed_edit(editor, segmenter, pipe, image, **kwargs)  # warm-up
        # timed without the profiler (it slows Python code down), then profiled
        runs = [run_timed_edit(editor, segmenter, pipe, image, **kwargs) for _ in range(args.runs)]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.runs):
            run_timed_edit(editor, segmenter, pipe, image, **kwargs)
        profiler.disable()

    summary = summarize(runs)
    print(f"{width}x{height}, {args.runs} edits, ms per edit, median [min-max]:")
    for key in ("edit_ms", "segment_model_ms", "pipeline_in_edit_ms", "own_ms"):
        print(f"  {key:<22}{spread_text(summary[key])}")
    for stage, spread in summary["own_stage_ms"].items():
        print(f"    own {stage:<17}{spread_text(spread)}")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    print("\nregionedit functions by cumulative time (all edits together):")
    stats.sort_stats("cumulative").print_stats(r"regionedit[/\\]", args.top)
    print("functions with the most own time, model internals left out:")
    stats.sort_stats("tottime")
    own_rows = [
        key for key in stats.fcn_list  # type: ignore[attr-defined]
        if not any(f"/{name}/" in key[0] or f"{name}." in key[2] for name in _MODEL_CODE)
    ][: args.top]
    for key in own_rows:
        calls, _, tottime, cumtime, _ = stats.stats[key]  # type: ignore[attr-defined]
        where = f"{Path(key[0]).name}:{key[1]}({key[2]})"
        print(f"  {tottime * 1000 / args.runs:9.2f} ms/edit own  {cumtime * 1000 / args.runs:9.2f} "
              f"ms/edit cum  {calls:>6} calls  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
