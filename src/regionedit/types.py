"""Typed values passed between the stages and returned to the user."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Region = Literal["foreground", "background"]
Label = Literal["foreground", "background", "unidentified"]
#: who decided the region: a classifier, the caller (override), or the unidentified policy
DecisionSource = Literal["llm", "offline", "override", "policy"]
UnidentifiedPolicy = Literal["error", "foreground", "background"]
#: whether a foreground edit keeps the subject's outline or needs room beyond it
Shape = Literal["keep", "change"]

SIDECAR_SCHEMA = "regionedit.edit/1"


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
    """Every knob of one edit. Stored in the sidecar so the edit can be reproduced."""

    model_config = ConfigDict(frozen=True)

    source: str
    target: str
    region: Optional[Region] = None
    seed: Optional[int] = None
    steps: int = 30
    guidance_scale: float = 7.5
    strength: float = 1.0
    negative_prompt: Optional[str] = None
    candidates: int = Field(1, ge=1, le=64)
    grow: int = Field(6, ge=0, description="pixels the regenerated region reaches past the seam")
    feather: int = Field(4, ge=0, description="width in pixels of the soft seam")
    on_unidentified: UnidentifiedPolicy = "error"
    max_side: Optional[int] = Field(
        None, description="longest side the model generates at; None = the model's native size"
    )


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
