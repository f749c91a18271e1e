"""One exception hierarchy for everything regionedit raises on purpose.

Every message ends with what the user can do next; callers can catch
``RegionEditError`` for "anything regionedit refused", or a subclass for one stage.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = [
    "option",
    "speaking_cli",
    "RegionEditError",
    "ImageInputError",
    "DescriptionError",
    "SettingsError",
    "ClassifierError",
    "UnidentifiedRegionError",
    "SegmentationError",
    "InpaintError",
    "ModelLoadError",
    "OutputError",
    "LabelledDataError",
    "ManifestError",
    "ClusterError",
]


# How messages name an option: by its Python argument, unless the command line is running (a
# global, not a context variable: errors raised on a batch's worker threads must speak the same).
_CLI = False


@contextlib.contextmanager
def speaking_cli() -> Iterator[None]:
    """Within this block, error messages name command-line flags instead of Python arguments
    (the ``regionedit`` command runs inside it)."""
    global _CLI
    before, _CLI = _CLI, True
    try:
        yield
    finally:
        _CLI = before


def option(argument: str, flag: str) -> str:
    """An option as the user spells it where they are: ``argument`` (``max_pixels=...``) in
    Python, ``flag`` (``--max-pixels``) on the command line."""
    return flag if _CLI else argument


class RegionEditError(Exception):
    """Base class of every error regionedit raises deliberately."""

    #: process exit code the CLI uses for this error family
    exit_code: int = 1


class ImageInputError(RegionEditError, ValueError):
    """The input image could not be read or is not usable (corrupt, empty, too large...)."""

    exit_code = 3

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class DescriptionError(RegionEditError, ValueError):
    """A source or target description is unusable (empty, whitespace only)."""

    exit_code = 2


class SettingsError(RegionEditError, ValueError):
    """An edit setting or option is out of its range or of the wrong kind (``steps=0``,
    ``guidance_scale=nan``, ``--grow -3``). Raised before any work is done."""

    exit_code = 2


class ClassifierError(RegionEditError):
    """The classifier could not give an answer (LLM unreachable, invalid answers, no key)."""

    exit_code = 4

    def __init__(self, message: str, *, attempts: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts


class UnidentifiedRegionError(RegionEditError):
    """The classifier could not tell whether the foreground or the background must change."""

    exit_code = 5

    def __init__(self, source: str, target: str, reason: str) -> None:
        self.source = source
        self.target = target
        self.reason = reason
        region = option("region='foreground' or region='background'", "--region")
        policy = option("on_unidentified='foreground'|'background'", "--on-unidentified")
        super().__init__(
            f"Could not tell which region to edit for {source!r} -> {target!r}: {reason}. "
            f"Pass {region}, or choose what to do then with {policy}."
        )


class SegmentationError(RegionEditError):
    """The subject mask is unusable (empty, or covers the whole image)."""

    exit_code = 6


class InpaintError(RegionEditError):
    """Generation failed (out of memory, NaN output, endpoint refused the request)."""

    exit_code = 7


class ModelLoadError(RegionEditError):
    """A model (segmentation, inpainting, embedding) could not be loaded."""

    exit_code = 8


class OutputError(RegionEditError, OSError):
    """A result could not be written (read-only folder, disk full, would overwrite the input)."""

    exit_code = 9


class LabelledDataError(RegionEditError, ValueError):
    """A labelled-pairs file cannot be used (missing, not JSON Lines, a line without a label)."""

    exit_code = 2


class ManifestError(RegionEditError, ValueError):
    """A batch manifest (CSV/JSONL) has rows that cannot be used (bad values, missing columns,
    image paths outside the manifest's folder)."""

    exit_code = 2


class ClusterError(RegionEditError):
    """A batch run on Ray could not reach its cluster, or the cluster lost the run (or lost a
    worker again and again on one item)."""

    exit_code = 10
