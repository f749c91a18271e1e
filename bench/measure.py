"""Measuring tools shared by the sections: spreads, model-call timers, measured subprocesses.

The machine these run on is shared and noisy, so every figure is a :class:`Spread` (median,
min, max of repeated runs) and comparisons are ratios taken run by run within one process.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

_LAUNCHER = Path(__file__).resolve().with_name("launch.py")


@dataclass(frozen=True)
class Spread:
    """Median, min and max of repeated measurements (``n`` of them)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Spread":
        values = list(values)
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def scaled(self, factor: float) -> "Spread":
        """The same spread in other units (seconds -> ms: ``scaled(1000)``)."""
        return Spread(self.median * factor, self.min * factor, self.max * factor, self.n)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Stopwatch:
    """``with stopwatch:`` adds the block's wall time to ``seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> "Stopwatch":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class TimedSegmenter:
    """A Segmenter that forwards to ``inner`` and adds up the seconds spent in it.

    Passed to ``Editor(segmenter=...)`` it separates the segmentation model call (rembg's
    resize, ONNX run and resize back) from the editor's own mask building.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.clock = Stopwatch()

    def subject_alpha(self, image: Image.Image) -> np.ndarray:
        with self.clock:
            return self.inner.subject_alpha(image)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


class TimedPipe:
    """Stands in for a loaded diffusers pipeline: calls go to it and their seconds are added
    up; every attribute (``unet``, ``vae_scale_factor``...) is the pipeline's own."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.clock = Stopwatch()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.clock:
            return self.pipe(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)


def time_pipeline_calls(inpainter: Any) -> TimedPipe:
    """Load ``inpainter`` (a ``DiffusersInpainter``) and route its pipeline calls through a
    :class:`TimedPipe`, which is returned.

    The inpainter keeps the loaded pipeline in ``_pipe`` and reuses it on every call; putting
    the timer there is the one place the bench reaches into the library. What the inpainter
    does around the call (resizing in and out, checking the output) stays regionedit's time.
    """
    timer = TimedPipe(inpainter.load())
    inpainter._pipe = timer
    return timer


@dataclass
class Finished:
    """A subprocess that ran to its end: what it printed, and what it cost."""

    returncode: int
    wall_s: float
    #: peak resident memory of the process (the kernel's accounting of the reaped child)
    peak_rss_mb: float
    stdout: str
    stderr: str

    def check(self, what: str) -> "Finished":
        """Raise with the process's output when it failed."""
        if self.returncode != 0:
            raise RuntimeError(
                f"{what} exited with {self.returncode}:\n"
                f"{self.stdout[-2000:]}\n{self.stderr[-4000:]}"
            )
        return self


def run_process(
    command: Sequence[str],
    *,
    env: Optional[dict[str, str]] = None,
    cwd: Optional[Path] = None,
    timeout: float = 900.0,
    scratch: Path,
) -> Finished:
    """Run ``command`` to its end through ``bench/launch.py``: its wall time and peak RSS.

    The launcher (see its docstring) keeps the benchmark's own memory out of the peak. Output
    goes to files under ``scratch`` rather than pipes, so nothing has to read it while the
    process runs.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    out_path, err_path, report = (scratch / name for name in ("stdout.txt", "stderr.txt",
                                                               "launch.json"))
    report.unlink(missing_ok=True)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        subprocess.run(
            [sys.executable, str(_LAUNCHER), str(report), *command],
            stdout=out, stderr=err, env=env, cwd=cwd, timeout=timeout, check=True,
        )
    measured = json.loads(report.read_text())
    return Finished(
        returncode=measured["returncode"],
        wall_s=measured["wall_s"],
        peak_rss_mb=measured["peak_rss_kb"] / 1024,  # kilobytes on Linux
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def own_peak_rss_mb() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> Optional[float]:
    """The 1-minute load average (how busy the shared machine was), None where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None
