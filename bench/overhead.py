"""Overhead: what ``Editor.edit`` costs beyond the models it calls.

For each input size, ``Editor.edit`` on a real photo (a JPEG file) is timed against a bare call
of the same loaded diffusers pipeline, at the same generation size, steps and seed, on the
decoded photo and the mask the editor used: the call a user of diffusers alone would make. Edit
and bare call alternate, and their ratio is taken pair by pair. Inside the edit the two model
calls are timed on their own (rembg's segmentation, the pipeline call), so what remains is
regionedit's own work, split by stage:

* load: decoding the file, hashing it, EXIF orientation, conversion to RGB;
* classify: the offline classifier;
* mask: the segment stage minus the segmentation model (grow, feather, coverage check);
* inpaint_io: the inpaint stage minus the pipeline call (resizing in and out, output checks);
* composite: colour matching, the blend, pasting the subject back, mode restoring;
* other: the rest of ``edit`` (settings, the record of models and versions).

The tiny model's pipeline call takes well under a second; a real model's takes seconds, so on
real models the ratio moves towards 1 and regionedit's own milliseconds are the figure to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .measure import TimedDiffusersInpainter, TimedSegmenter, spread, timed
from .workspace import SOURCE, TARGET, Workspace, square_photo, write_jpeg

FULL = dict(sizes=(512, 1024), steps=30, pairs=15)
QUICK = dict(sizes=(128,), steps=1, pairs=2)
SEED = 1234
#: the editor's default, so the bare call is the call a user of diffusers makes
GUIDANCE = 7.5


def instrumented_editor(ws: Workspace) -> Any:
    """An ``Editor`` on the tiny models (offline classifier, CPU) whose segmenter and
    inpainter time their model calls (``editor.segmenter.clock``, ``editor.inpainter.clock``)."""
    from regionedit.editor import Editor
    from regionedit.segment import RembgSegmenter

    segmenter = RembgSegmenter(model_path=ws.u2net_model, providers=["CPUExecutionProvider"])
    return Editor(
        classifier="offline",
        segmenter=TimedSegmenter(segmenter),
        inpainter=TimedDiffusersInpainter(ws.sd_model, device="cpu"),
    )


def timed_edit(editor: Any, image: Any, **settings: Any) -> dict[str, Any]:
    """Seconds of one ``editor.edit(image, SOURCE, TARGET, **settings)`` on an
    :func:`instrumented_editor`: the whole edit, the two model calls, regionedit's own work
    and its stages."""
    segment_clock, pipe_clock = editor.segmenter.clock, editor.inpainter.clock
    segment_clock.seconds = pipe_clock.seconds = 0.0
    edit_s, result = timed(lambda: editor.edit(image, SOURCE, TARGET, **settings))
    stages = result.timings
    return {
        "edit": edit_s,
        "segment_model": segment_clock.seconds,
        "pipeline": pipe_clock.seconds,
        "own": edit_s - segment_clock.seconds - pipe_clock.seconds,
        "own_stages": {
            "load": stages.load,
            "classify": stages.classify,
            "mask": stages.segment - segment_clock.seconds,
            "inpaint_io": stages.inpaint - pipe_clock.seconds,
            "composite": stages.composite,
            "other": edit_s - stages.total,
        },
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Millisecond spreads over :func:`timed_edit` runs."""
    return {
        "edit_ms": spread((r["edit"] for r in runs), 1000),
        "segment_model_ms": spread((r["segment_model"] for r in runs), 1000),
        "pipeline_in_edit_ms": spread((r["pipeline"] for r in runs), 1000),
        "own_ms": spread((r["own"] for r in runs), 1000),
        "own_stage_ms": {
            stage: spread((r["own_stages"][stage] for r in runs), 1000)
            for stage in runs[0]["own_stages"]
        },
    }


def run(ws: Workspace, *, quick: bool) -> dict[str, Any]:
    params = QUICK if quick else FULL
    return {
        "parameters": {**params, "seed": SEED, "guidance_scale": GUIDANCE},
        "sizes": {
            str(side): _measure_size(ws, side, params["steps"], params["pairs"])
            for side in params["sizes"]
        },
    }


def _measure_size(ws: Workspace, side: int, steps: int, pairs: int) -> dict[str, Any]:
    import torch
    from PIL import Image

    from regionedit.inpaint import generation_size

    path = photo_path(ws, side)
    editor = instrumented_editor(ws)
    settings = dict(seed=SEED, steps=steps, guidance_scale=GUIDANCE)
    # The first edit pays one-time costs (lazy imports, loading the models): not measured.
    warm = editor.edit(path, SOURCE, TARGET, **settings)
    with Image.open(path) as opened:
        rgb = opened.convert("RGB")
    mask_image = warm.mask_image()
    width, height = generation_size(rgb.size, editor.inpainter.native_size)
    pipe = editor.inpainter.load().pipe

    def bare_call() -> Any:
        return pipe(
            prompt=TARGET, image=rgb, mask_image=mask_image, width=width, height=height,
            num_inference_steps=steps, guidance_scale=GUIDANCE, strength=1.0,
            generator=torch.Generator("cpu").manual_seed(SEED),
        ).images[0]

    bare_call()
    runs = []
    for _ in range(pairs):
        measured = timed_edit(editor, path, **settings)
        measured["bare"], _ = timed(bare_call)
        runs.append(measured)
    return {
        "input": f"{rgb.width}x{rgb.height} JPEG",
        "generation_size": f"{width}x{height}",
        **summarize(runs),
        "bare_pipeline_ms": spread((r["bare"] for r in runs), 1000),
        "ratio": spread(r["edit"] / r["bare"] for r in runs),
        "ratio_without_segmentation": spread(
            (r["edit"] - r["segment_model"]) / r["bare"] for r in runs
        ),
    }


def photo_path(ws: Workspace, side: int) -> Path:
    """The square astronaut JPEG of ``side`` px in the workspace (written on first use)."""
    return write_jpeg(square_photo(side), ws.folder / "photos" / f"astronaut-{side}.jpg")


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    from .report import number, ratio, stages

    found = []
    for side, size in result["sizes"].items():
        found += [
            (f"{side} px: edit ms (generating {size['generation_size']}, "
             f"{result['parameters']['steps']} steps)", number(size["edit_ms"])),
            (f"{side} px: bare pipeline call ms", number(size["bare_pipeline_ms"])),
            (f"{side} px: edit / bare call", ratio(size["ratio"])),
            (f"{side} px: edit / bare call, segmentation model left out",
             ratio(size["ratio_without_segmentation"])),
            (f"{side} px: segmentation model ms", number(size["segment_model_ms"])),
            (f"{side} px: regionedit's own ms", number(size["own_ms"])),
            (f"{side} px: own ms by stage", stages(size["own_stage_ms"])),
        ]
    return found
