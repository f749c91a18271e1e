"""Measuring tools the sections share: spreads of repeated runs, and timers around model calls.

Timings on a busy machine vary from run to run, so a figure is a :class:`Spread` (median, min,
max) of repeated runs, and a comparison is a ratio taken run by run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from regionedit.inpaint_diffusers import DiffusersInpainter


@dataclass(frozen=True)
class Spread:
    """Median, min and max of ``n`` repeated measurements."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        values = list(values)
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self, scale: float = 1.0) -> dict[str, float]:
        """The spread as JSON, its values multiplied by ``scale`` (seconds -> ms: 1000)."""
        return {**{k: v * scale for k, v in asdict(self).items() if k != "n"}, "n": self.n}


def spread(values: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """``Spread.of(values).as_dict(scale)``."""
    return Spread.of(values).as_dict(scale)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class Stopwatch:
    """``with stopwatch:`` adds the block's wall time to ``seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


class TimedSegmenter:
    """A Segmenter that forwards to ``inner`` and adds up the time spent in its model call, to
    tell rembg's model apart from the editor's own mask building."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.clock = Stopwatch()

    def subject_alpha(self, image: Image.Image) -> np.ndarray:
        with self.clock:
            return self.inner.subject_alpha(image)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


class _TimedPipe:
    """The loaded diffusers pipeline behind a stopwatch; every attribute is the pipeline's."""

    def __init__(self, pipe: Any, clock: Stopwatch) -> None:
        self.pipe = pipe
        self.clock = clock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.clock:
            return self.pipe(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)


class TimedDiffusersInpainter(DiffusersInpainter):
    """A DiffusersInpainter whose pipeline calls are timed (``clock``): what it does around the
    call (resizing in and out, checking the output) stays regionedit's own time."""

    def __init__(self, model: str | Path, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.clock = Stopwatch()
        self._timed: _TimedPipe | None = None

    def load(self) -> Any:
        # inpaint_many calls the pipeline that load() returns
        if self._timed is None:
            self._timed = _TimedPipe(super().load(), self.clock)
        return self._timed


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started or since :func:`reset_peak_rss`
    (Linux: ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_mb() -> float:
    """This process's resident memory now (Linux: ``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak_rss() -> None:
    """Start :func:`peak_rss_mb` again from the memory in use now (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")
