"""Section 1: what ``Editor.edit`` costs beyond the models it calls.

For each input size, ``Editor.edit`` on a real photo (a JPEG file) is timed against a bare
call of the same loaded diffusers pipeline, at the same generation size, steps and seed, on
the decoded photo and the mask the editor used. Edit and bare call alternate, and the ratio is
taken pair by pair. Inside the edit the two model calls are timed on their own (the rembg
segmentation through a forwarding Segmenter, the pipeline call through a forwarding pipeline),
so what remains is regionedit's own work, split by stage:

* load: decoding the file, hashing it, EXIF orientation, conversion to RGB;
* classify: the offline classifier (no region override, so the stage runs);
* mask: the segment stage minus the segmentation model call (grow, feather, coverage check);
* inpaint_io: the inpaint stage minus the pipeline call (resizing in and out, output checks);
* composite: colour matching, compositing, pasting the subject back, mode restoring;
* other: the rest of ``edit`` (the models/versions record, settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .measure import Spread, TimedPipe, TimedSegmenter, time_pipeline_calls, timed
from .workspace import SOURCE, TARGET, Workspace, square_photo, write_jpeg

SEED = 1234
#: the editor's default, so the bare call is what a user of diffusers would run
GUIDANCE = 7.5


def instrumented_editor(ws: Workspace, **editor_kwargs: Any) -> tuple[Any, TimedSegmenter, Any]:
    """An ``Editor`` on the tiny models (offline classifier, CPU) whose segmentation model
    calls are timed; returns (editor, timed segmenter, inpainter). Call
    :func:`~bench.measure.time_pipeline_calls` on the inpainter to time pipeline calls."""
    from regionedit.editor import Editor
    from regionedit.inpaint_diffusers import DiffusersInpainter
    from regionedit.segment import RembgSegmenter

    segmenter = TimedSegmenter(
        RembgSegmenter(model_path=ws.u2net_model, providers=["CPUExecutionProvider"])
    )
    inpainter = DiffusersInpainter(ws.sd_model, device="cpu")
    editor = Editor(classifier="offline", segmenter=segmenter, inpainter=inpainter, **editor_kwargs)
    return editor, segmenter, inpainter


def edit_breakdown(result: Any, edit_s: float, segment_model_s: float, pipe_s: float) -> dict:
    """Seconds of one timed edit: the two model calls, regionedit's own work and its stages."""
    stages = result.timings
    own = {
        "load": stages.load,
        "classify": stages.classify,
        "mask": stages.segment - segment_model_s,
        "inpaint_io": stages.inpaint - pipe_s,
        "composite": stages.composite,
        "other": edit_s - stages.total,
    }
    return {
        "edit": edit_s,
        "segment_model": segment_model_s,
        "pipeline": pipe_s,
        "own": edit_s - segment_model_s - pipe_s,
        "own_stages": own,
    }


def run_timed_edit(
    editor: Any, segmenter: TimedSegmenter, pipe: TimedPipe, image: Any, **kwargs: Any
) -> dict:
    """One ``editor.edit(image, SOURCE, TARGET, **kwargs)``, as :func:`edit_breakdown` splits it."""
    segmenter.clock.seconds = pipe.clock.seconds = 0.0
    edit_s, result = timed(lambda: editor.edit(image, SOURCE, TARGET, **kwargs))
    return edit_breakdown(result, edit_s, segmenter.clock.seconds, pipe.clock.seconds)


def run(ws: Workspace, *, sizes: tuple[int, ...], steps: int, pairs: int) -> dict:
    """Measure every size in ``sizes``: ``pairs`` (edit, bare call) pairs after a warm-up."""
    return {
        "what": "Editor.edit on a real JPEG photo vs the same loaded pipeline called directly",
        "steps": steps,
        "seed": SEED,
        "pairs": pairs,
        "sizes": {str(side): _measure_size(ws, side, steps, pairs) for side in sizes},
    }


def _measure_size(ws: Workspace, side: int, steps: int, pairs: int) -> dict:
    import torch
    from PIL import Image

    from regionedit.inpaint import generation_size

    path = photo_path(ws, side)
    editor, segmenter, inpainter = instrumented_editor(ws)
    pipe = time_pipeline_calls(inpainter)
    kwargs = dict(seed=SEED, steps=steps, guidance_scale=GUIDANCE)
    # The first edit pays one-time costs (lazy imports, rembg session); it is not measured.
    warm = editor.edit(path, SOURCE, TARGET, **kwargs)

    with Image.open(path) as opened:
        rgb = opened.convert("RGB")
    mask_image = warm.mask_image()
    width, height = generation_size(rgb.size, inpainter.native_size)

    def bare_call() -> Any:
        generator = torch.Generator("cpu").manual_seed(SEED)
        return pipe.pipe(
            prompt=TARGET,
            image=rgb,
            mask_image=mask_image,
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            strength=1.0,
            generator=generator,
        ).images[0]

    bare_call()
    runs = []
    for _ in range(pairs):
        measured = run_timed_edit(editor, segmenter, pipe, path, **kwargs)
        measured["bare_pipeline"], _ = timed(bare_call)
        runs.append(measured)
    return {
        "input": f"{rgb.width}x{rgb.height} JPEG",
        "generation_size": f"{width}x{height}",
        "mask_share": float((warm.mask > 0).mean()),
        **summarize(runs),
    }


def summarize(runs: list[dict]) -> dict:
    """Spreads over ``runs`` (ratios taken run by run): ratios, model and own milliseconds."""

    def spread_ms(key: str) -> dict:
        return Spread.of(r[key] for r in runs).scaled(1000).as_dict()

    summary: dict[str, Any] = {
        "edit_ms": spread_ms("edit"),
        "segment_model_ms": spread_ms("segment_model"),
        "pipeline_in_edit_ms": spread_ms("pipeline"),
        "own_ms": spread_ms("own"),
        "own_stage_ms": {
            stage: Spread.of(r["own_stages"][stage] for r in runs).scaled(1000).as_dict()
            for stage in runs[0]["own_stages"]
        },
    }
    if "bare_pipeline" in runs[0]:
        summary["bare_pipeline_ms"] = spread_ms("bare_pipeline")
        summary["ratio"] = Spread.of(r["edit"] / r["bare_pipeline"] for r in runs).as_dict()
        summary["ratio_without_segmentation"] = Spread.of(
            (r["edit"] - r["segment_model"]) / r["bare_pipeline"] for r in runs
        ).as_dict()
        # The edit's pipeline call and the bare one are the same call run twice; on a shared
        # machine they differ by +-10 % from run to run, which the ratios above carry. Putting
        # the bare call in place of the edit's own leaves only what regionedit adds.
        summary["ratio_from_own_time"] = Spread.of(
            1 + (r["own"] + r["segment_model"]) / r["bare_pipeline"] for r in runs
        ).as_dict()
        summary["ratio_from_own_time_without_segmentation"] = Spread.of(
            1 + r["own"] / r["bare_pipeline"] for r in runs
        ).as_dict()
    return summary


def photo_path(ws: Workspace, side: int) -> Path:
    """The square astronaut JPEG of ``side`` px in the workspace (written on first use)."""
    return write_jpeg(square_photo(side), ws.folder / "photos" / f"astronaut-{side}.jpg")
