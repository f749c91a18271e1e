"""Typed values passed between the stages and returned to the user."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import (
    Any,
    Callable,
    Iterator,
    Literal,
    Optional,
    Union,
    get_args,
    get_origin,
)

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._log import log
from .errors import DescriptionError

Region = Literal["foreground", "background"]
Label = Literal["foreground", "background", "unidentified"]
#: who decided the region: a classifier, the caller (override), or the unidentified policy
DecisionSource = Literal["llm", "offline", "override", "policy"]
UnidentifiedPolicy = Literal["error", "foreground", "background"]
#: whether a foreground edit keeps the subject's outline or needs room beyond it
Shape = Literal["keep", "change"]
#: How far a foreground edit's mask reaches: the subject's ``outline`` (grown by a few pixels),
#: its padded bounding ``box`` as well (room for a subject of another shape), or ``auto``: the
#: box when the classifier says the edit changes the subject's shape, else the outline.
Extent = Literal["auto", "outline", "box"]

SIDECAR_SCHEMA = "regionedit.edit/1"
#: longer descriptions are cut here: a caption never needs more, and it bounds the request cost
MAX_DESCRIPTION_CHARS = 1000


def output_paths(path: str | os.PathLike[str], *, candidates: int = 1) -> dict[str, Path]:
    """Where :meth:`EditResult.save` writes each file for an image saved at ``path``: the image,
    its mask, its sidecar and ``candidate1`` ... ``candidate<N-1>`` (the one place that knows
    these names, so callers can check them before an edit runs)."""
    path = Path(path)
    paths = {
        "image": path,
        "mask": path.with_name(f"{path.stem}.mask.png"),
        "sidecar": path.with_suffix(".json"),
    }
    for i in range(1, candidates):
        paths[f"candidate{i}"] = path.with_name(f"{path.stem}.{i}{path.suffix}")
    return paths


class Classification(BaseModel):
    """The region decision, with a short reason and where it came from."""

    model_config = ConfigDict(frozen=True)

    label: Label
    reason: str = ""
    source: DecisionSource = "llm"
    #: e.g. the LLM model and prompt version, or the offline classifier's version
    classifier: str = ""
    #: the main subject as the classifier read it, a short noun phrase ("" when not known)
    subject: str = ""
    #: "change" when a foreground edit needs room beyond the subject's outline (another thing
    #: in its place, a new pose, something worn or held reaching past it, the subject removed);
    #: "keep" for edits inside the outline, and for every background or unidentified edit
    shape: Shape = "keep"


class EditSettings(BaseModel):
    """Every knob of one edit, defined once: its default, its allowed range and what it means.

    ``Editor.edit`` takes these as keyword arguments, a batch manifest as columns, the CLI as
    flags (``--guidance`` for ``guidance_scale``, the others by their names), and the sidecar
    records them so the edit can be reproduced. A value out of range raises pydantic's
    ValidationError, which the editor and the CLI turn into
    :class:`~regionedit.errors.SettingsError`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    source: str = Field(description="what the image shows now")
    target: str = Field(description="what it should show")
    region: Optional[Region] = Field(
        None, description="the region to regenerate, skipping the classifier"
    )
    seed: Optional[int] = Field(
        None, ge=0, le=2**32 - 1, description="random seed (drawn and recorded when not given)"
    )
    steps: Optional[int] = Field(
        None, ge=1, le=1000, description="denoising steps (default: the model's; 30 for SD 1.5)"
    )
    guidance_scale: Optional[float] = Field(
        None, ge=0, le=100,
        description="guidance scale (default: the model's; 7.5 for SD 1.5)",
    )
    strength: float = Field(1.0, gt=0, le=1, description="denoising strength")
    negative_prompt: Optional[str] = Field(
        None, description="what the regenerated region must not show"
    )
    candidates: int = Field(
        1, ge=1, le=64, description="variants to generate, with seeds seed, seed+1, ..."
    )
    grow: int = Field(
        6, ge=0, le=512, description="pixels the regenerated region reaches past the seam"
    )
    feather: int = Field(4, ge=0, le=512, description="width in pixels of the soft seam")
    extent: Optional[Extent] = Field(
        None,
        description="how far a foreground edit's mask reaches: the subject's outline, its "
        "padded box too (room for a new shape), or auto: the box when the edit changes the "
        "subject's shape (default: the editor's, auto)",
    )
    on_unidentified: UnidentifiedPolicy = Field(
        "error",
        description="what to do when the region cannot be decided: fail (error), or edit the "
        "foreground or background anyway",
    )
    max_side: Optional[int] = Field(
        None, ge=64, le=8192,
        description="longest side to generate at (default: the model's native size)",
    )

    @field_validator("seed", mode="before")
    @classmethod
    def _whole_seed(cls, value: Any) -> Any:
        # pydantic accepts 7.0 for an int; a seed of 7.5 must not quietly become 7
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("must be a whole number")
        return value


class StageTimings(BaseModel):
    """Seconds spent in each stage of one edit."""

    load: float = 0.0
    classify: float = 0.0
    segment: float = 0.0
    inpaint: float = 0.0
    composite: float = 0.0

    @property
    def total(self) -> float:
        return self.load + self.classify + self.segment + self.inpaint + self.composite

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Add the seconds spent in the ``with`` block to ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, stage, getattr(self, stage) + time.perf_counter() - start)


class Candidate(BaseModel):
    """One generated variant."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Any  # PIL.Image.Image, at the input's size and mode
    seed: int


class EditResult(BaseModel):
    """What :func:`regionedit.edit` returns."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    #: the edited image, at the input's size and mode (first candidate)
    image: Any
    #: the :class:`~regionedit.editor.MaskResult` the edit used; see :attr:`mask`
    mask_result: Any = Field(repr=False)
    region: Region
    classification: Classification
    #: settings as used, ``seed`` being the seed actually drawn for the first candidate
    settings: EditSettings
    timings: StageTimings
    candidates: list[Candidate] = Field(default_factory=list)
    #: model identifiers and library versions, for the sidecar
    models: dict[str, Any] = Field(default_factory=dict)
    input_path: Optional[str] = None
    input_sha256: Optional[str] = None

    @property
    def seed(self) -> int:
        assert self.settings.seed is not None
        return self.settings.seed

    @property
    def mask(self) -> Any:
        """float32 HxW in [0, 1] at the input's size, 1 (white) = regenerated; pixels where it
        is 0 are exactly the input's. (Scaled up from the working size on first use.)"""
        return self.mask_result.mask

    def mask_image(self):
        """The regenerated mask as an 8-bit grayscale PIL image (white = regenerated)."""
        from .masks import to_image

        return to_image(self.mask)

    def sidecar(self) -> dict[str, Any]:
        """A JSON-serialisable record of the edit: enough to reproduce it."""
        from . import __version__

        return {
            "schema": SIDECAR_SCHEMA,
            "regionedit_version": __version__,
            "input": {"path": self.input_path, "sha256": self.input_sha256},
            "region": self.region,
            "classification": self.classification.model_dump(),
            "mask": {"from": self.mask_result.source, "extent": self.mask_result.extent},
            "settings": self.settings.model_dump(),
            "candidate_seeds": [c.seed for c in self.candidates],
            "models": self.models,
            "timings": {**self.timings.model_dump(), "total": self.timings.total},
        }

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        mask: bool | str | os.PathLike[str] = False,
        sidecar: bool | str | os.PathLike[str] = False,
        sidecar_extra: Optional[dict[str, Any]] = None,
        **save_kwargs: Any,
    ) -> dict[str, Path]:
        """Write the edited image (atomically) and, on request, the mask and the JSON sidecar.

        ``mask=True`` writes ``<stem>.mask.png`` next to the image, ``sidecar=True`` writes
        ``<stem>.json``; a path chooses another name. ``sidecar_extra`` adds top-level keys to
        the sidecar (batch runs add ``batch``). Returns the paths written.
        """
        from .imageio import atomic_write_bytes, save_image

        path = Path(path)
        _notice_if_lossy(path, save_kwargs)
        default = output_paths(path, candidates=len(self.candidates))
        written = {"image": save_image(self.image, path, **save_kwargs)}
        if mask:
            mask_path = default["mask"] if mask is True else Path(mask)
            written["mask"] = save_image(self.mask_image(), mask_path)
        for i, cand in enumerate(self.candidates[1:], start=1):
            key = f"candidate{i}"
            written[key] = save_image(cand.image, default[key], **save_kwargs)
        if sidecar:
            side_path = default["sidecar"] if sidecar is True else Path(sidecar)
            record = self.sidecar()
            record["output"] = {k: str(v) for k, v in written.items()}
            record.update(sidecar_extra or {})
            atomic_write_bytes(side_path, (json.dumps(record, indent=2) + "\n").encode())
            written["sidecar"] = side_path
        return written


def normalize_description(text: str, which: str) -> str:
    """``text`` stripped and cut to :data:`MAX_DESCRIPTION_CHARS`; DescriptionError if empty.

    ``which`` ("source" or "target") names the description in messages.
    """
    if not isinstance(text, str):
        raise DescriptionError(f"The {which} description must be text, not {type(text).__name__}.")
    if not text.strip():
        raise DescriptionError(
            f"The {which} description is empty. Give a short caption of what the photo shows "
            f"{'now' if which == 'source' else 'after the edit'}, e.g. 'a dog sitting on grass'."
        )
    text = text.strip()
    if len(text) > MAX_DESCRIPTION_CHARS:
        log.warning(
            "The %s description is %d characters long; only the first %d are used.",
            which,
            len(text),
            MAX_DESCRIPTION_CHARS,
        )
        text = text[:MAX_DESCRIPTION_CHARS]
    return text


def _notice_if_lossy(path: Path, save_kwargs: dict[str, Any]) -> None:
    """Say once that a lossy format breaks "every pixel outside the mask is the input's"."""
    suffix = path.suffix.lower()
    lossless_webp = suffix == ".webp" and save_kwargs.get("lossless")
    if suffix in (".jpg", ".jpeg", ".webp") and not lossless_webp:
        from ._log import once

        once(
            f"lossy-{suffix}",
            "%s is a lossy format: pixels outside the mask will not be exactly the input's. "
            "Save as PNG to keep them exact.", suffix.lstrip(".").upper(),
            level=logging.WARNING,
        )


def settings_problem(
    exc: ValidationError, spell: Callable[[str, Any], str] = lambda name, value: f"{name}={value!r}"
) -> str:
    """pydantic's errors about :class:`EditSettings` as one line naming each bad setting, the
    value it got and what it allows. ``spell(name, value)`` writes a setting as the user wrote
    it: ``grow=-3`` in Python (the default), ``--grow -3`` on the command line."""
    problems = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "missing":
            problems.append(f"{name} is required")
        elif name in EditSettings.model_fields:
            problems.append(f"{spell(name, error.get('input'))} must be {allowed_values(name)}")
        elif error["type"] == "extra_forbidden":
            problems.append(f"{name!r} is not an edit setting")
        else:
            problems.append(f"{name or 'settings'}: {error['msg']}")
    return "Bad edit setting: " + "; ".join(problems) + "."


def allowed_values(name: str) -> str:
    """What the edit setting ``name`` accepts, in words: "a whole number from 0 to 512"."""
    field = EditSettings.model_fields[name]
    kind = field.annotation
    if get_origin(kind) is Union:  # Optional[X]: what X allows
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(kind))
    words = {int: "a whole number", float: "a finite number"}.get(kind, "text")
    # pydantic keeps Field(ge=..., gt=..., le=...) as one metadata object per bound
    bounds = {key: getattr(b, key) for b in field.metadata for key in ("ge", "gt", "le")
              if getattr(b, key, None) is not None}
    if "ge" in bounds and "le" in bounds:
        return f"{words} from {bounds['ge']} to {bounds['le']}"
    low = f" from {bounds['ge']}" if "ge" in bounds else ""
    low = f" above {bounds['gt']}" if "gt" in bounds else low
    return words + low + (f", at most {bounds['le']}" if "le" in bounds else "")
