"""Batch throughput: images per second through ``Editor.edit_many``, next to a plain loop.

The same items (different real photos in two shapes, a few distinct (source, target) pairs,
the offline classifier, the tiny models on CPU) are edited

* by a loop of ``Editor.edit`` on one Editor (models loaded once): what a script does;
* by ``Editor.edit_many`` (``regionedit.batch.edit_many``) at each batch size: pairs classified
  up front, the next chunk prepared while the current one generates, up to ``batch_size``
  images per model call.

Every way runs on one Editor, after one unmeasured edit (imports and model loading are nobody's
figure); each round runs every way once, in turn. The LLM stage is measured on its own
(``llm``).

This is a reported figure, not a target: on a CPU and a model this small, generation is a
sliver of an edit and several images per call gain little. On a GPU with a real model, where
a call of several images costs little more than one, batch throughput becomes a target.
"""

from __future__ import annotations

import time
from typing import Any

from .measure import spread
from .workspace import Workspace, photo_set

FULL = dict(items=24, distinct_pairs=4, side=320, steps=4, batch_sizes=(1, 4), rounds=3)
QUICK = dict(items=3, distinct_pairs=2, side=64, steps=1, batch_sizes=(1, 2), rounds=1)
SEED = 99
#: background edits the offline classifier recognises; item i gets pair i % distinct_pairs
PAIRS = [
    ("an astronaut in front of a flag", f"an astronaut in front of {place}")
    for place in ("mountains", "a beach", "a forest", "a city street", "a garden")
]


def run(ws: Workspace, *, quick: bool) -> dict[str, Any]:
    params = QUICK if quick else FULL
    photos = photo_set(ws.folder / "photos" / f"set-{params['side']}", params["items"],
                       params["side"])
    work = [(path, *PAIRS[i % params["distinct_pairs"]]) for i, path in enumerate(photos)]
    settings = dict(seed=SEED, steps=params["steps"])

    def loop(editor: Any) -> None:
        for item in work:
            editor.edit(*item, **settings)

    def batch(editor: Any, batch_size: int) -> None:
        failed = [r for r in editor.edit_many(work, batch_size=batch_size, **settings)
                  if r.status != "ok"]
        if failed:
            raise RuntimeError(f"{len(failed)} batch item(s) failed, first: {failed[0].error!r}")

    ways = {"loop": loop}
    for size in params["batch_sizes"]:
        ways[f"edit_many_batch_{size}"] = lambda editor, size=size: batch(editor, size)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    editor = _editor(ws)
    editor.edit(*work[0], **settings)
    for _ in range(params["rounds"]):
        for name, way in ways.items():
            start = time.perf_counter()
            way(editor)
            seconds[name].append(time.perf_counter() - start)
    items = params["items"]
    return {
        "parameters": params,
        "images_per_s": {name: spread(items / s for s in runs) for name, runs in seconds.items()},
        "speedup_over_loop": {
            name: spread(loop_s / s for loop_s, s in zip(seconds["loop"], runs))
            for name, runs in seconds.items() if name != "loop"
        },
    }


def _editor(ws: Workspace) -> Any:
    from regionedit.editor import Editor

    return Editor(
        classifier="offline",
        segment_model_path=str(ws.u2net_model),
        inpaint_model=str(ws.sd_model),
        device="cpu",
    )


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    from .report import number, ratio

    p = result["parameters"]
    found = [
        (f"{name.replace('_', ' ')}: images/s ({p['items']} photos of {p['side']} px, "
         f"{p['steps']} steps)", number(value))
        for name, value in result["images_per_s"].items()
    ]
    found += [(f"{name.replace('_', ' ')}: speed-up over the loop", ratio(value))
              for name, value in result["speedup_over_loop"].items()]
    return found
