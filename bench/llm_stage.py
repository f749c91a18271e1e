"""LLM stage: classifying many (source, target) pairs through an LLM that answers slowly.

The LLM is the test suite's fake OpenAI-compatible server on 127.0.0.1, answering every chat
request after a fixed latency; the client is the real ``openai`` client inside the LLM
classifier. The same pairs, some of them repeated, are classified

* one after another: ``Editor.classify`` in a loop (the answer cache takes the repeats), what a
  script does;
* concurrently: ``regionedit.batch.edit_many(..., dry_run=True)``, the batch's classification
  of every distinct pair once, ``llm_concurrency`` requests at a time. The photo carries its
  subject as an alpha channel, so masking needs no model and nothing is generated.

The ideal concurrent time is ceil(distinct pairs / concurrency) x latency.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .measure import spread, timed
from .workspace import Workspace, photo

FULL = dict(pairs=40, repeats=8, latency_s=0.2, concurrency=8, runs=3)
QUICK = dict(pairs=12, repeats=2, latency_s=0.05, concurrency=4, runs=1)


@contextmanager
def fake_llm(latency: float, label: str = "background") -> Iterator[Any]:
    """A started fake OpenAI-compatible server answering ``label`` after ``latency`` seconds,
    with OPENAI_BASE_URL / OPENAI_API_KEY pointing this process at it meanwhile."""
    from support.fake_llm import CHAT_PATH, FakeOpenAIServer, label_answer

    def slow_answer(request: Any) -> Any:
        answer = label_answer(label, "benchmark answer")
        answer.delay = latency
        return answer

    saved = {name: os.environ.get(name) for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    with FakeOpenAIServer() as server:
        server.add_route("POST", CHAT_PATH, slow_answer)
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ["OPENAI_API_KEY"] = "sk-bench"
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def edit_pairs(count: int, repeats: int) -> list[tuple[str, str]]:
    """``count`` (source, target) pairs, of which the last ``repeats`` repeat earlier ones
    spread through the list."""
    distinct = [(f"photo {n}: a dog on grass", f"photo {n}: a dog on a beach")
                for n in range(count - repeats)]
    pairs = list(distinct)
    for k in range(repeats):
        pairs.insert((k + 1) * count // (repeats + 1), distinct[k])
    return pairs


def subject_png(folder: Path) -> Path:
    """A small RGBA photo whose alpha is an opaque ellipse: the subject comes with the input."""
    path = folder / "subject-rgba.png"
    if not path.exists():
        rgba = photo("chelsea").resize((96, 64), Image.Resampling.LANCZOS).convert("RGBA")
        yy, xx = np.mgrid[:64, :96]
        inside = ((xx - 48) / 30) ** 2 + ((yy - 32) / 22) ** 2 <= 1
        rgba.putalpha(Image.fromarray(np.where(inside, 255, 0).astype(np.uint8)))
        folder.mkdir(parents=True, exist_ok=True)
        rgba.save(path)
    return path


def run(ws: Workspace, *, quick: bool) -> dict[str, Any]:
    from regionedit.batch import edit_many
    from regionedit.classify import clear_cache
    from regionedit.editor import Editor

    params = QUICK if quick else FULL
    pairs = edit_pairs(params["pairs"], params["repeats"])
    distinct = len(set(pairs))
    image = subject_png(ws.folder / "photos")

    def sequential() -> None:
        editor = Editor(classifier="llm")
        for pair in pairs:
            editor.classify(*pair)

    def concurrent() -> None:
        items = [(image, *pair) for pair in pairs]
        failed = [r for r in edit_many(Editor(classifier="llm"), items, dry_run=True,
                                       llm_concurrency=params["concurrency"])
                  if r.status != "ok"]
        if failed:
            raise RuntimeError(f"{len(failed)} item(s) failed, first: {failed[0].error!r}")

    seconds: dict[str, list[float]] = {"sequential": [], "concurrent": []}
    requests: dict[str, int] = {}
    with fake_llm(params["latency_s"]) as server:
        for _ in range(params["runs"]):
            for name, way in (("sequential", sequential), ("concurrent", concurrent)):
                clear_cache()  # every run asks the LLM itself
                before = len(server.requests)
                wall, _ = timed(way)
                seconds[name].append(wall)
                requests[name] = len(server.requests) - before
    return {
        "parameters": params,
        "distinct_pairs": distinct,
        "requests": requests,
        "sequential_s": spread(seconds["sequential"]),
        "concurrent_s": spread(seconds["concurrent"]),
        "ideal_concurrent_s": math.ceil(distinct / params["concurrency"]) * params["latency_s"],
        "speedup": spread(s / c for s, c in zip(seconds["sequential"], seconds["concurrent"])),
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    from .report import number, ratio

    p = result["parameters"]
    asked = f"{result['distinct_pairs']} distinct of {p['pairs']} pairs, {p['latency_s']} s each"
    return [
        (f"one after another s ({asked})", number(result["sequential_s"])),
        (f"concurrent s ({p['concurrency']} at a time; ideal "
         f"{number(result['ideal_concurrent_s'])})", number(result["concurrent_s"])),
        ("speed-up", ratio(result["speedup"])),
    ]
