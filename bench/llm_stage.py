"""Section 3: classifying many (source, target) pairs through an LLM with a fixed latency.

The LLM is the test suite's fake OpenAI-compatible server on 127.0.0.1, answering every chat
request after ``latency`` seconds; the client is the real ``openai`` client inside
``LLMClassifier``. Three ways of classifying the same pairs (some of them repeated):

* sequential requests: one request per pair, one after another (the classifier's answer cache
  is cleared before each call): what a script calling the API in a loop pays;
* sequential library loop: ``Editor.classify`` in a loop; the process-wide cache answers the
  repeats, so it sends one request per distinct pair;
* concurrent: ``regionedit.batch.edit_many(..., dry_run=True)``, the batch's own concurrent
  classification (each distinct pair once, ``llm_concurrency`` requests at a time). The items
  carry their subject as an alpha channel, so masking needs no model and no image is generated.

The ideal concurrent time is ceil(distinct pairs / concurrency) x latency; it is also given
for the round trip the sequential requests measured (latency plus client and server time).
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

from .measure import Spread, timed
from .workspace import Workspace


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
    """``count`` (source, target) pairs of which ``repeats`` repeat an earlier one, spread
    through the list: every k-th pair is a repeat."""
    if not 0 <= repeats <= count // 2:
        raise ValueError("repeats must be between 0 and half of count")
    every = count // repeats if repeats else 0
    distinct: list[tuple[str, str]] = []
    pairs: list[tuple[str, str]] = []
    for index in range(count):
        repeated = len(pairs) - len(distinct)
        if every and index % every == every - 1 and repeated < repeats:
            pairs.append(distinct[repeated])
        else:
            n = len(distinct)
            distinct.append((f"photo {n}: a dog on grass", f"photo {n}: a dog on a beach"))
            pairs.append(distinct[-1])
    return pairs


def subject_png(folder: Path) -> Path:
    """A small RGBA photo whose alpha is an opaque ellipse: the subject comes with the input."""
    path = folder / "subject-rgba.png"
    if not path.exists():
        from .workspace import photo

        rgba = photo("chelsea").resize((96, 64), Image.Resampling.LANCZOS).convert("RGBA")
        yy, xx = np.mgrid[:64, :96]
        inside = ((xx - 48) / 30) ** 2 + ((yy - 32) / 22) ** 2 <= 1
        rgba.putalpha(Image.fromarray(np.where(inside, 255, 0).astype(np.uint8)))
        folder.mkdir(parents=True, exist_ok=True)
        rgba.save(path)
    return path


def run(
    ws: Workspace, *, count: int, repeats: int, latency: float, concurrency: int, runs: int
) -> dict:
    """Time the three ways (see the module docstring); the concurrent one ``runs`` times."""
    from regionedit.classify import clear_cache
    from regionedit.editor import Editor

    pairs = edit_pairs(count, repeats)
    distinct = len(set(pairs))
    image = subject_png(ws.folder / "photos")
    result: dict[str, Any] = {
        "what": "classifying pairs through the real openai client against a fake server",
        "pairs": count,
        "distinct_pairs": distinct,
        "latency_s": latency,
        "concurrency": concurrency,
        "ideal_concurrent_s": math.ceil(distinct / concurrency) * latency,
    }
    with fake_llm(latency) as server:
        editor = Editor(classifier="llm")

        def sequential_requests() -> None:
            for source, target in pairs:
                clear_cache()
                editor.classify(source, target)

        def sequential_loop() -> None:
            clear_cache()
            for source, target in pairs:
                editor.classify(source, target)

        for name, fn in (("sequential_requests", sequential_requests),
                         ("sequential_loop", sequential_loop)):
            before = len(server.requests)
            seconds, _ = timed(fn)
            result[name] = {"seconds": seconds, "requests": len(server.requests) - before}

        try:
            from regionedit.batch import edit_many
        except ImportError as exc:
            result["concurrent"] = {"pending": f"regionedit.batch is not importable: {exc}"}
            return result

        def concurrent() -> list[Any]:
            clear_cache()
            items = [(image, source, target) for source, target in pairs]
            return list(edit_many(Editor(classifier="llm"), items, dry_run=True,
                                  llm_concurrency=concurrency))

        seconds, requests = [], []
        for _ in range(runs):
            before = len(server.requests)
            wall, outcomes = timed(concurrent)
            failed = [o for o in outcomes if o.status != "ok"]
            if failed:
                raise RuntimeError(f"{len(failed)} item(s) failed, first: {failed[0].error!r}")
            seconds.append(wall)
            requests.append(len(server.requests) - before)
    concurrent_s = Spread.of(seconds)
    result["concurrent"] = {"seconds": concurrent_s.as_dict(), "requests": max(requests)}
    # What one request really takes here (the set latency plus the client's and the fake
    # server's own time), and the ideal concurrent time at that latency.
    sequential = result["sequential_requests"]
    round_trip = sequential["seconds"] / sequential["requests"]
    result["measured_round_trip_s"] = round_trip
    result["ideal_concurrent_at_round_trip_s"] = math.ceil(distinct / concurrency) * round_trip
    result["speedup_vs_sequential_requests"] = Spread.of(
        result["sequential_requests"]["seconds"] / s for s in seconds
    ).as_dict()
    result["speedup_vs_sequential_loop"] = Spread.of(
        result["sequential_loop"]["seconds"] / s for s in seconds
    ).as_dict()
    result["concurrent_vs_ideal"] = concurrent_s.median / result["ideal_concurrent_s"]
    return result
