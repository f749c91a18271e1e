"""When each thing happens inside one batch: where the batch section's time goes.

    .venv/bin/python -m bench.timeline                  # the batch section's 50 photos
    .venv/bin/python -m bench.timeline --llm-concurrency 16 --rounds 3

Runs ``Editor.edit_many`` as the batch section does (50 photos of 320 px in two shapes, 10
distinct pairs, the fake LLM at 300 ms, 4 steps, tiny models, one torch thread, a fresh
``Editor`` and an empty classifier cache per round, after one unmeasured edit), and prints,
in seconds from the call, when the inpainting model finished loading, when each LLM answer
came, when each model call started and ended (with its images and their input size), and when
the first and the last result came out. Then the wall time, and each stage's ms per item.

The times come from wrappers put on the editor's own objects (its inpainter's ``load`` and
``inpaint_many``, its classifier's ``classify``): public methods, replaced on the instances.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .llm_stage import fake_llm
from .throughput import SEED, batch_work, llm_editor, time_batch
from .workspace import build_workspace


class Recorder:
    """Events, as (seconds since ``start()``, what), from any thread."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._origin = time.perf_counter()

    def start(self) -> None:
        self._origin = time.perf_counter()
        self.events.clear()

    def note(self, what: str) -> None:
        with self._lock:
            self.events.append((time.perf_counter() - self._origin, what))

    def around(self, method: Callable[..., Any], describe: Callable[..., str | None]) -> Callable:
        """``method``, noting ``describe(*args)`` before the call (when not None) and
        "... done" after it."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            what = describe(*args)
            if what:
                self.note(what)
            result = method(*args, **kwargs)
            if what:
                self.note(f"{what} done")
            return result

        return timed


def instrument(editor: Any, recorder: Recorder) -> None:
    """Put the recorder's wrappers on ``editor``'s inpainter and classifier."""
    inpainter, classifier = editor.inpainter, editor.classifier
    loaded = threading.Event()

    def load_once() -> str | None:
        # ``load`` is called before every generation; only the first one loads
        if loaded.is_set():
            return None
        loaded.set()
        return "inpainting model load"

    def model_call(requests: list, *_: Any) -> str:
        width, height = requests[0].image.size
        return f"model call: {len(requests)} image(s), {width}x{height} in"

    inpainter.load = recorder.around(inpainter.load, load_once)
    inpainter.inpaint_many = recorder.around(inpainter.inpaint_many, model_call)
    classifier.classify = recorder.around(classifier.classify, lambda *_: "LLM request")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=10, help="distinct (source, target) pairs")
    parser.add_argument("--llm-concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workspace", type=Path, help="folder for models and photos")
    args = parser.parse_args(argv)
    import torch

    from regionedit.classify import clear_cache

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="regionedit-timeline-") as scratch:
        ws = build_workspace(args.workspace or Path(scratch))
        work = batch_work(ws, args.items, args.pairs, 320)
        edit_kwargs = dict(seed=SEED, steps=4)
        with fake_llm(0.3):
            llm_editor(ws).edit(*work[0], **edit_kwargs)  # one-time costs, unmeasured
            for round_number in range(1, args.rounds + 1):
                clear_cache()
                editor, recorder = llm_editor(ws), Recorder()
                instrument(editor, recorder)
                recorder.start()
                run = time_batch(editor, work, edit_kwargs, args.llm_concurrency, args.batch_size)
                # the gaps between results, from the call: the first and the last result
                first, last = run["per_item"][0], sum(run["per_item"])
                events = sorted([*recorder.events, (first, f"result 1 of {len(work)} out"),
                                 (last, f"result {len(work)} of {len(work)} out")])
                _print_round(round_number, run["seconds"], events, run["stage_ms_per_item"])
    return 0


def _print_round(
    number: int, wall: float, events: list[tuple[float, str]], stage_ms: dict[str, float]
) -> None:
    answers = [at for at, what in events if what == "LLM request done"]
    print(f"round {number}: {wall:.2f} s")
    print(f"  LLM answers ({len(answers)}): " + ", ".join(f"{at:.2f}" for at in answers))
    for at, what in events:
        if not what.startswith("LLM request"):
            print(f"  {at:6.2f}  {what}")
    per_item = ", ".join(f"{stage} {ms:.0f}" for stage, ms in stage_ms.items())
    print(f"  ms per item by stage: {per_item}")


if __name__ == "__main__":
    sys.exit(main())
