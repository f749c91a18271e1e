"""Section 2: many images, three ways, on the tiny models with an LLM classifier.

The same items (different real photos, a few distinct (source, target) pairs, the fake LLM
answering after a fixed latency) are edited

* naively: a fresh ``Editor`` per image, as a script that builds everything per image does
  (the pipeline and the rembg session are loaded again for every image);
* sequentially with one reused ``Editor`` (models loaded once);
* by the batch: ``Editor.edit_many`` (``regionedit.batch.edit_many``), which classifies the
  distinct pairs concurrently up front, loads and segments the next images while the current
  ones generate, ``batch_size`` images per pipeline call, and composites on a thread of its own.

After one unmeasured edit (imports and other one-time costs), the three run one after the
other in each of several rounds; ratios are taken per round. Every run starts with an empty
classifier cache and pays its own model loading. The batch's "sum of stages" is the sum over
items of their stage timings: the time the same work takes when nothing overlaps; divided by
the batch's wall time it shows how much overlapped.

Then the pipeline calls alone, with nothing else running: ``Editor.generate`` on prepared
items, ``batch_size`` per call and one per call. Generation is the one stage the batch cannot
overlap with another, so naive time over (items x batched generation time per image) is the
ceiling of the batch's speed-up on this machine and model.
"""

from __future__ import annotations

import time
from typing import Any

from regionedit.batch import DEFAULT_BATCH_SIZE

from .llm_stage import edit_pairs, fake_llm
from .measure import Spread
from .workspace import Workspace, photo_set

SEED = 99


def run(
    ws: Workspace,
    *,
    items: int,
    distinct_pairs: int,
    side: int,
    steps: int,
    latency: float,
    concurrency: int,
    rounds: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    other_batch_sizes: tuple[int, ...] = (),
) -> dict:
    """Time the three ways on ``items`` photos of ``side`` px, ``steps`` denoising steps, in
    ``rounds`` rounds (each round runs the three one after the other; ratios are per round)."""
    from regionedit.classify import clear_cache
    from regionedit.editor import Editor

    work = batch_work(ws, items, distinct_pairs, side)
    edit_kwargs = dict(seed=SEED, steps=steps)

    def naive() -> dict:
        return _one_by_one(lambda item: llm_editor(ws).edit(*item, **edit_kwargs), work)

    def reused() -> dict:
        editor = llm_editor(ws)
        return _one_by_one(lambda item: editor.edit(*item, **edit_kwargs), work)

    def batch() -> dict:
        return time_batch(llm_editor(ws), work, edit_kwargs, concurrency, batch_size)

    modes = {"naive": naive, "reused_editor": reused}
    if hasattr(Editor, "edit_many"):
        modes["batch"] = batch
        for size in other_batch_sizes:
            modes[f"batch_size_{size}"] = (
                lambda size=size: time_batch(llm_editor(ws), work, edit_kwargs, concurrency, size)
            )
    measured: dict[str, list[dict]] = {name: [] for name in modes}
    with fake_llm(latency):
        # one-time costs (imports, the classifier's prompt) are nobody's: pay them unmeasured
        llm_editor(ws).edit(*work[0], **edit_kwargs)
        for _ in range(rounds):
            for name, mode in modes.items():
                clear_cache()  # every run asks the LLM itself
                measured[name].append(mode())
        alone = _generation_alone(llm_editor(ws), work[: 2 * batch_size], edit_kwargs, batch_size)

    result: dict[str, Any] = {
        "what": "edit N photos: fresh Editor per image vs one Editor vs Editor.edit_many",
        "items": items,
        "distinct_pairs": distinct_pairs,
        "photo_long_side": side,
        "steps": steps,
        "llm_latency_s": latency,
        "rounds": rounds,
        "batch_size": batch_size,
        "batch": {"pending": "Editor.edit_many does not exist yet"},
    }
    for name, runs in measured.items():
        result[name] = {
            "seconds": Spread.of(r["seconds"] for r in runs).as_dict(),
            "per_item_s": Spread.of(s for r in runs for s in r["per_item"]).as_dict(),
        }

    def per_round(fn: Any) -> dict:
        return Spread.of(fn(*runs) for runs in zip(*measured.values())).as_dict()

    result["reused_speedup_vs_naive"] = per_round(lambda n, r, *_: n["seconds"] / r["seconds"])
    # ``--batch-size`` other than the default: what a user who raises it gets
    result["other_batch_sizes"] = {
        str(size): {
            "seconds": result[f"batch_size_{size}"]["seconds"],
            "speedup_vs_naive": Spread.of(
                n["seconds"] / b["seconds"]
                for n, b in zip(measured["naive"], measured[f"batch_size_{size}"])
            ).as_dict(),
        }
        for size in other_batch_sizes
        if f"batch_size_{size}" in measured
    }
    # what building the Editor and loading its models again costs the naive script per image
    result["reload_per_image_s"] = per_round(
        lambda n, r, *_: (n["seconds"] - r["seconds"]) / items
    )
    if "batch" in measured:
        batches = measured["batch"]
        result["batch"].update(
            sum_of_stages_s=Spread.of(r["sum_of_stages"] for r in batches).as_dict(),
            overlap=Spread.of(r["sum_of_stages"] / r["seconds"] for r in batches).as_dict(),
            # each stage's time per item inside the batch (generation slowed by what runs
            # beside it: compare with generation_alone_per_item_s)
            stage_ms_per_item={
                stage: Spread.of(r["stage_ms_per_item"][stage] for r in batches).as_dict()
                for stage in batches[0]["stage_ms_per_item"]
            },
        )
        result["batch_speedup_vs_naive"] = per_round(lambda n, r, b, *_: n["seconds"] / b["seconds"])
        result["batch_speedup_vs_reused"] = per_round(lambda n, r, b, *_: r["seconds"] / b["seconds"])
        result["generation_alone_per_item_s"] = alone
        naive_s = result["naive"]["seconds"]["median"]
        result["batch_speedup_ceiling"] = naive_s / (items * alone["batched"]["median"])
    return result


def batch_work(ws: Workspace, items: int, distinct_pairs: int, side: int) -> list[tuple]:
    """The section's items, (photo, source, target): ``items`` photos of ``side`` px in two
    shapes, with ``distinct_pairs`` (source, target) pairs in turn."""
    photos = photo_set(ws.folder / "photos" / f"set-{side}", items, side)
    pairs = edit_pairs(distinct_pairs, 0)
    return [(path, *pairs[i % distinct_pairs]) for i, path in enumerate(photos)]


def llm_editor(ws: Workspace) -> Any:
    """A fresh ``Editor`` as the section builds one: the LLM classifier (the fake server's
    address comes from the environment) and the tiny models, on CPU."""
    from regionedit.editor import Editor

    return Editor(
        classifier="llm",
        segment_model_path=str(ws.u2net_model),
        inpaint_model=str(ws.sd_model),
        device="cpu",
    )


def _generation_alone(editor: Any, work: list[tuple], edit_kwargs: dict, batch_size: int) -> dict:
    """Seconds per image of the pipeline calls alone (prepared items, nothing else running),
    ``batch_size`` images per call and one per call; 3 repeats each after a warm-up."""
    prepared = [
        editor.prepare(path, source, target, **edit_kwargs) for path, source, target in work
    ]
    found = {}
    for name, size in (("batched", batch_size), ("one_per_call", 1)):
        editor.generate(prepared[:size], batch_size=size)  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            editor.generate(prepared, batch_size=size)
            times.append((time.perf_counter() - start) / len(prepared))
        found[name] = Spread.of(times).as_dict()
    return found


def _one_by_one(edit_one: Any, work: list[tuple]) -> dict:
    """Wall time of editing every item with ``edit_one``, and each item's time."""
    start = time.perf_counter()
    per_item = []
    for item in work:
        item_start = time.perf_counter()
        edit_one(item)
        per_item.append(time.perf_counter() - item_start)
    return {"seconds": time.perf_counter() - start, "per_item": per_item}


def time_batch(
    editor: Any, work: list[tuple], edit_kwargs: dict, concurrency: int, batch_size: int
) -> dict:
    """Wall time of the batch, the gaps between its results and the sum of its items' stages."""
    start = last = time.perf_counter()
    gaps, stage_sum, failures = [], 0.0, []
    per_stage: dict[str, float] = {}
    outcomes = editor.edit_many(
        work, llm_concurrency=concurrency, batch_size=batch_size, **edit_kwargs
    )
    for outcome in outcomes:
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        if outcome.status != "ok":
            failures.append(f"{outcome.item.image.name}: {outcome.stage}: {outcome.error!r}")
        stage_sum += outcome.timings.total
        for stage, seconds in outcome.timings.model_dump().items():
            per_stage[stage] = per_stage.get(stage, 0.0) + seconds
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} batch item(s) failed, first: {failures[0]}")
    return {"seconds": wall, "per_item": gaps, "sum_of_stages": stage_sum,
            "stage_ms_per_item": {k: v * 1000 / len(work) for k, v in per_stage.items()}}
