"""The pipeline: classify -> segment -> inpaint -> composite.

``Editor`` holds the four stages (and so their loaded models) for repeated work; ``edit()`` is
the one-call convenience over a process-wide default ``Editor``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import secrets
import threading
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Iterator, Optional, Union

import numpy as np
from pydantic import ValidationError

from . import masks
from ._log import once
from .composite import Placement, place
from .errors import SettingsError, UnidentifiedRegionError
from .models import DEFAULT_SEGMENT_MODEL, check_downloads
from .segment import MaskResult
from .types import (
    Candidate,
    Classification,
    EditResult,
    EditSettings,
    Extent,
    Region,
    Shape,
    StageTimings,
    UnidentifiedPolicy,
    normalize_description,
    settings_problem,
)

if TYPE_CHECKING:  # pragma: no cover
    import PIL.Image

    from .batch.pipeline import BatchItemLike, ItemResult
    from .classify import Classifier
    from .composite import Compositor
    from .imageio import ImageLike, LoadedImage
    from .inpaint import Inpainter, InpaintRequest
    from .segment import Segmenter

__all__ = ["Editor", "edit", "PreparedEdit", "Decision", "default_editor"]

log = logging.getLogger("regionedit")

#: longer side of the working copy of larger images: above the input size of every rembg model
#: (320-1024 px) and of SD 1.5 and SDXL (512, 1024), so nothing is lost, while a 24 MP photo's
#: masks cost what a 0.7 MP one's do
WORK_SIDE = 1024

#: the region an edit regenerates and the classification it came from
Decision = tuple[Region, Classification]


@dataclasses.dataclass
class PreparedEdit:
    """An edit up to generation (:meth:`Editor.prepare`): what is generated, and where it goes."""

    loaded: "LoadedImage"
    region: Region
    classification: Classification
    mask: MaskResult
    #: as used: the seed drawn when none was given, the extent applied
    settings: EditSettings
    timings: StageTimings
    placement: Placement


class Editor:
    """Holds the classifier, segmenter, inpainter and compositor for repeated edits.

    Stages are built on first use, and each loads its model once, so an ``Editor`` kept alive
    across many calls pays the loading cost once::

        editor = regionedit.Editor(inpaint_model="path/to/local/inpainting-model")
        for path in photos:
            editor.edit(path, "a mug on a desk", "a mug on a beach").save(out / path.name)

    Any stage can be replaced by an object following its Protocol (``Classifier``,
    ``Segmenter``, ``Inpainter``, ``Compositor``); the named keywords configure the default
    implementations. ``extent`` is the mask extent of edits that do not set their own.
    """

    def __init__(
        self,
        *,
        classifier: "Classifier | str" = "auto",
        segmenter: "Segmenter | None" = None,
        inpainter: "Inpainter | str" = "diffusers",
        compositor: "Compositor | None" = None,
        llm_model: Optional[str] = None,
        llm_timeout: Optional[float] = None,
        llm_attempts: Optional[int] = None,
        segment_model: str = DEFAULT_SEGMENT_MODEL,
        segment_model_path: Optional[str] = None,
        inpaint_model: Optional[str] = None,
        device: Optional[str] = None,
        dtype: Optional[str] = None,
        attention_slicing: bool = False,
        cpu_offload: bool = False,
        color_match: bool = True,
        crop_small_subjects: bool = True,
        extent: Extent = "auto",
        max_pixels: Optional[int] = None,
        work_side: int = WORK_SIDE,
    ) -> None:
        if work_side < 64:
            raise SettingsError(f"work_side must be at least 64 px, got {work_side}.")
        if extent not in ("auto", "outline", "box"):
            raise SettingsError(f"extent must be 'auto', 'outline' or 'box', not {extent!r}.")
        self._classifier_spec = classifier
        self._segmenter_spec = segmenter
        self._inpainter_spec = inpainter
        self._classifier = None if isinstance(classifier, str) else classifier
        self._segmenter = segmenter
        self._inpainter = None if isinstance(inpainter, str) else inpainter
        self._compositor_spec = compositor
        self._compositor = compositor
        self.llm_model = llm_model
        #: seconds per LLM request and requests per question (None: the environment's
        #: REGIONEDIT_LLM_TIMEOUT / REGIONEDIT_LLM_ATTEMPTS, else the classifier's defaults)
        self.llm_timeout = llm_timeout
        self.llm_attempts = llm_attempts
        self.segment_model = segment_model
        self.segment_model_path = segment_model_path
        self.inpaint_model = inpaint_model
        self.device = device
        self.dtype = dtype
        self.attention_slicing = attention_slicing
        self.cpu_offload = cpu_offload
        self.color_match = color_match
        self.crop_small_subjects = crop_small_subjects
        self.extent: Extent = extent
        #: decompression-bomb guard for inputs (None: $REGIONEDIT_MAX_PIXELS or Pillow's limit)
        self.max_pixels = max_pixels
        #: longer side of the working copy masks and generation use (see :class:`MaskResult`)
        self.work_side = work_side
        self._build_lock = threading.Lock()
        self._checked_stages: set[str] = set()
        # One generation at a time per Editor: a device runs one pipeline call well, not two.
        self._generate_lock = threading.Lock()

    # -- stages, built on first use ----------------------------------------------------------

    @property
    def classifier(self) -> "Classifier":
        with self._build_lock:
            if self._classifier is None:
                from .classify import get_classifier

                given = {"model": self.llm_model, "timeout": self.llm_timeout,
                         "max_attempts": self.llm_attempts}
                kwargs: dict[str, Any] = {}
                if self._classifier_spec in ("auto", "llm"):
                    kwargs = {key: value for key, value in given.items() if value is not None}
                self._classifier = get_classifier(str(self._classifier_spec), **kwargs)
            return self._classifier

    @property
    def segmenter(self) -> "Segmenter":
        with self._build_lock:
            if self._segmenter is None:
                from .segment import RembgSegmenter

                self._segmenter = RembgSegmenter(
                    self.segment_model, model_path=self.segment_model_path
                )
            return self._segmenter

    @property
    def inpainter(self) -> "Inpainter":
        with self._build_lock:
            if self._inpainter is None:
                from .inpaint import get_inpainter

                kwargs: dict[str, Any] = {}
                if self._inpainter_spec == "diffusers":
                    kwargs = dict(
                        device=self.device,
                        dtype=self.dtype,
                        attention_slicing=self.attention_slicing,
                        cpu_offload=self.cpu_offload,
                    )
                if self.inpaint_model:
                    kwargs["model"] = self.inpaint_model
                self._inpainter = get_inpainter(str(self._inpainter_spec), **kwargs)
            return self._inpainter

    @property
    def compositor(self) -> "Compositor":
        with self._build_lock:
            if self._compositor is None:
                from .composite import SeamCompositor

                self._compositor = SeamCompositor(color_match=self.color_match)
            return self._compositor

    def load_models(self) -> None:
        """Load the segmentation and inpainting models now instead of at their first use,
        e.g. when a server starts. Raises :class:`~regionedit.errors.ModelLoadError`."""
        self.check_downloads(("segmenter", "inpainter"))
        for stage in (self.segmenter, self.inpainter):
            load = getattr(stage, "load", None)  # Segmenter.load is optional
            if callable(load):
                load()

    def check_downloads(self, stages: Iterable[str]) -> None:
        """Before the named stages ("segmenter", "inpainter") first load their models: say
        what will be downloaded, or, when it cannot be (no network, HF_HUB_OFFLINE), raise one
        ModelLoadError naming every missing model and how to get it. Each stage is checked once
        per editor (:func:`regionedit.models.check_downloads`)."""
        with self._build_lock:
            stages = [name for name in stages if name not in self._checked_stages]
            self._checked_stages.update(stages)
        check_downloads([getattr(self, name) for name in stages])

    # -- the stages, usable one by one -------------------------------------------------------

    def load(self, image: "ImageLike") -> "LoadedImage":
        """Read and check an input image (upright RGB plus what is needed to restore its mode)."""
        from .imageio import load_image

        return load_image(image, max_pixels=self.max_pixels)

    def classify(self, source: str, target: str) -> Classification:
        """Ask the classifier which region the edit changes (may answer ``unidentified``)."""
        source, target = _check_descriptions(source, target)
        return self.classifier.classify(source, target)

    def decide(
        self,
        source: str,
        target: str,
        *,
        region: Optional[Region] = None,
        on_unidentified: UnidentifiedPolicy = "error",
    ) -> Decision:
        """The region to regenerate: the caller's override, or the classifier's answer with the
        unidentified policy applied (:class:`~regionedit.errors.UnidentifiedRegionError`)."""
        source, target = _check_descriptions(source, target)
        if region is not None:
            if region not in ("foreground", "background"):
                raise SettingsError(
                    f"region must be 'foreground' or 'background', not {region!r}."
                )
            return region, Classification(
                label=region, reason="region given by the caller", source="override"
            )
        decision = self.classifier.classify(source, target)
        if decision.label != "unidentified":
            return decision.label, decision
        if on_unidentified == "error":
            raise UnidentifiedRegionError(source, target, decision.reason)
        log.warning(
            "could not tell which region %r -> %r changes (%s); editing the %s as asked",
            source, target, decision.reason, on_unidentified,
        )
        return on_unidentified, decision

    def mask(
        self,
        image: "ImageLike | LoadedImage",
        region: Region,
        *,
        grow: int = 6,
        feather: int = 4,
        extent: Optional[Extent] = None,
        shape: Shape = "keep",
    ) -> MaskResult:
        """The mask of the pixels an edit of ``region`` would regenerate (1 = regenerated).

        ``grow`` and ``feather`` are in the image's pixels; on a scaled-down working copy they
        shrink with it (at least 1 px each when not 0). For a foreground edit, ``extent``
        (default: the editor's) says how far the mask reaches: ``"box"`` adds the subject's
        padded bounding box, room for a new outline; ``"auto"`` does so when ``shape`` is
        ``"change"``.
        """
        from .imageio import LoadedImage, fit_within
        from .segment import subject_alpha_from_input

        loaded = image if isinstance(image, LoadedImage) else self.load(image)
        work = fit_within(loaded.rgb, self.work_side)
        scale = work.width / loaded.rgb.width
        input_alpha = subject_alpha_from_input(loaded)
        if input_alpha is not None:
            alpha = masks.resize(input_alpha, work.size) if work is not loaded.rgb else input_alpha
            source = "input-alpha"
        else:
            self.check_downloads(("segmenter",))
            alpha = self.segmenter.subject_alpha(work)
            source = self.segmenter.name
        grow_px, feather_px = _scaled_px(grow, scale), _scaled_px(feather, scale)
        applied: Extent = "outline"
        if region == "background":
            regen = masks.background_mask(alpha, grow_px=grow_px, feather_px=feather_px)
        else:
            extent = extent or self.extent
            regen = masks.foreground_mask(alpha, grow_px=grow_px, feather_px=feather_px)
            if extent == "box" or (extent == "auto" and shape == "change"):
                roomy = masks.foreground_mask(
                    alpha, grow_px=grow_px, feather_px=feather_px, room=True
                )
                # a subject that nearly fills the frame leaves no room to give: regenerating
                # the whole photo would be another edit altogether
                if masks.coverage(roomy) < masks.MAX_COVERAGE:
                    regen, applied = roomy, "box"
                else:
                    once("extent-whole-photo", "The subject's padded box would cover the whole "
                         "photo; regenerating its outline instead.")
        masks.check_coverage(regen, what=f"{region} mask")
        return MaskResult(
            regen, alpha, region, source, work_image=work, size=loaded.size, extent=applied,
            input_alpha=input_alpha if work is not loaded.rgb else None,
        )

    # -- the whole edit ----------------------------------------------------------------------

    def settings(self, source: str, target: str, **settings: Any) -> EditSettings:
        """An :class:`~regionedit.types.EditSettings` from keyword arguments, checked:
        :class:`~regionedit.errors.SettingsError` names the first bad one and its range."""
        try:
            return EditSettings(source=source, target=target, **settings)
        except ValidationError as exc:
            raise SettingsError(settings_problem(exc)) from None

    def edit(self, image: "ImageLike", source: str, target: str, **settings: Any) -> EditResult:
        """Edit ``image`` so that it shows ``target`` instead of ``source``.

        Keyword arguments are the fields of :class:`~regionedit.types.EditSettings`:
        ``region`` (skips the classifier), ``seed`` (drawn and recorded when not given;
        candidate *i* uses ``seed + i``), ``steps``, ``guidance_scale``, ``strength``,
        ``negative_prompt``, ``candidates``, ``grow``, ``feather``, ``extent``,
        ``on_unidentified``, ``max_side``. Pixels outside the returned ``mask`` are exactly
        the input's.
        """
        prepared = self.prepare(image, self.settings(source, target, **settings))
        (generated,) = self.generate([prepared])
        if isinstance(generated, Exception):
            raise generated
        return self.composite(prepared, generated)

    def edit_many(
        self, items: "Iterable[BatchItemLike]", **kwargs: Any
    ) -> "Iterator[ItemResult]":
        """Edit many images, yielding one :class:`~regionedit.batch.ItemResult` per item in
        input order; keyword arguments are those of :func:`regionedit.batch.edit_many`."""
        from .batch.pipeline import edit_many

        return edit_many(self, items, **kwargs)

    # -- the edit in three steps: batch runs and servers call them one by one ---------------

    def prepare(
        self,
        image: "ImageLike | LoadedImage",
        settings: EditSettings,
        *,
        decision: Optional[Decision] = None,
    ) -> PreparedEdit:
        """Everything :meth:`edit` does before generating: load, decide (unless ``decision``,
        what :meth:`decide` returned for these descriptions, is given), mask, and choose what
        the model is given. :meth:`edit` is ``composite(p, generate([p])[0])`` over this."""
        from .imageio import LoadedImage

        # cut once here, so the classifier, the prompt and the sidecar all see the same text
        source, target = _check_descriptions(settings.source, settings.target)
        timings = StageTimings()
        with timings.measure("load"):
            loaded = image if isinstance(image, LoadedImage) else self.load(image)
        # every model this edit needs, named at once if some cannot be downloaded
        needs_segmenter = not masks.has_meaningful_alpha(loaded.alpha)
        self.check_downloads(("segmenter", "inpainter") if needs_segmenter else ("inpainter",))
        with timings.measure("classify"):
            region, classification = decision or self.decide(
                source, target, region=settings.region, on_unidentified=settings.on_unidentified
            )
        with timings.measure("segment"):
            made = self.mask(
                loaded, region, grow=settings.grow, feather=settings.feather,
                extent=settings.extent, shape=classification.shape,
            )
        settings = settings.model_copy(update=dict(
            source=source, target=target, extent=settings.extent or self.extent,
            seed=secrets.randbelow(2**31) if settings.seed is None else settings.seed,
        ))
        if region == "background" and loaded.alpha is not None:
            # A cut-out asked for a new background: the regenerated pixels are content now, so
            # they become opaque; outside the mask the input's alpha stays as it was.
            coverage = np.rint(made.mask * 255).astype(np.uint8)
            loaded = dataclasses.replace(loaded, alpha=np.maximum(loaded.alpha, coverage))
        return PreparedEdit(
            loaded=loaded, region=region, classification=classification, mask=made,
            settings=settings, timings=timings,
            placement=place(
                loaded, made, crop_small_subjects=self.crop_small_subjects,
                generation_side=settings.max_side or self.inpainter.native_size,
            ),
        )

    def generate(
        self, prepared: list[PreparedEdit], *, batch_size: int = 1
    ) -> "list[Union[list[PIL.Image.Image], Exception]]":
        """Generate every candidate of every prepared edit: per edit, its candidates' generated
        RGB images (at ``placement.model_input``'s size, not composited), or the exception that
        stopped it.

        Up to ``batch_size`` images of one :meth:`generation_key` share a model call, and the
        call's time is shared out among them in their timings. A model call of several images
        can differ from one-image calls by float rounding (the device's kernels depend on the
        batch shape), so ``batch_size=1`` is what gives every image exactly the pixels of
        :meth:`edit`. :class:`~regionedit.errors.ModelLoadError` is raised.
        """
        requests, owners = self._requests(prepared)
        timings = StageTimings()
        with self._generate_lock, timings.measure("inpaint"):
            outcomes = self.inpainter.inpaint_many(requests, batch_size=batch_size)
        share = timings.inpaint / max(1, len(requests))
        results: list[Any] = [[] for _ in prepared]
        for owner, outcome in zip(owners, outcomes):
            prepared[owner].timings.inpaint += share
            if isinstance(results[owner], Exception):
                continue
            results[owner] = outcome if isinstance(outcome, Exception) else [
                *results[owner], outcome
            ]
        return results

    def generation_key(self, prepared: PreparedEdit) -> Optional[Hashable]:
        """Prepared edits with equal keys can share a model call in :meth:`generate` (same
        generation size and settings); None when the inpainter takes one image per call.
        Loads the inpainting model, whose native size decides the size."""
        requests, _ = self._requests([prepared])
        return self.inpainter.batch_key(requests[0])  # candidates differ in seed only

    def _requests(self, prepared: list[PreparedEdit]) -> "tuple[list[InpaintRequest], list[int]]":
        """One inpainting request per candidate of every prepared edit, and the position in
        ``prepared`` of the edit each belongs to."""
        from .inpaint import InpaintRequest

        requests: list[InpaintRequest] = []
        owners: list[int] = []
        for number, job in enumerate(prepared):
            settings = job.settings
            assert settings.seed is not None
            for i in range(settings.candidates):
                requests.append(InpaintRequest(
                    job.placement.model_input, job.placement.mask, settings.target,
                    settings.seed + i, settings.negative_prompt, settings.steps,
                    settings.guidance_scale, settings.strength, settings.max_side,
                ))
                owners.append(number)
        return requests, owners

    def composite(
        self, prepared: PreparedEdit, generated: "list[PIL.Image.Image]"
    ) -> EditResult:
        """Composite each generated candidate of ``prepared`` (what :meth:`generate` gave for
        it) into the photo, and return the :class:`~regionedit.types.EditResult`."""
        job = prepared
        assert job.settings.seed is not None
        with job.timings.measure("composite"):
            outputs = [
                Candidate(
                    image=self.compositor.composite(job.loaded, image, job.placement),
                    seed=job.settings.seed + i,
                )
                for i, image in enumerate(generated)
            ]
        return EditResult(
            image=outputs[0].image,
            mask_result=job.mask,
            region=job.region,
            classification=job.classification,
            settings=job.settings,
            timings=job.timings,
            candidates=outputs,
            models=self._describe(job.mask.source),
            input_path=job.loaded.path,
            input_sha256=job.loaded.sha256,
        )

    # -- what the sidecar and a batch's resume key record ------------------------------------

    def config(self) -> dict[str, Any]:
        """The constructor settings that change what an edit produces, JSON-able; stages given
        as objects appear by their ``name``. Batch runs key their resume records on it."""

        def spec(stage: Any) -> Optional[str]:
            return stage if stage is None or isinstance(stage, str) else stage.name

        return {
            "classifier": spec(self._classifier_spec),
            "segmenter": spec(self._segmenter_spec),
            "inpainter": spec(self._inpainter_spec),
            "compositor": spec(self._compositor_spec),
            "llm_model": self.llm_model,
            "segment_model": self.segment_model,
            "segment_model_path": self.segment_model_path,
            "inpaint_model": self.inpaint_model,
            "color_match": self.color_match,
            "crop_small_subjects": self.crop_small_subjects,
            "extent": self.extent,
        }

    def _describe(self, mask_source: str) -> dict[str, Any]:
        classifier = self._classifier
        return {
            "classifier": getattr(classifier, "name", None) if classifier else None,
            "segmenter": (
                {"segmenter": "input-alpha"}
                if mask_source == "input-alpha"
                else self.segmenter.describe()
            ),
            "inpainter": self.inpainter.describe(),
            "compositing": {
                **self.compositor.describe(),
                "crop_small_subjects": self.crop_small_subjects,
            },
            "versions": dict(_library_versions()),
        }


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    """Installed versions of the libraries an edit depends on (read once)."""
    from importlib import metadata

    found = []
    for dist in ("regionedit", "diffusers", "torch", "rembg", "openai", "transformers"):
        try:
            found.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            pass
    return tuple(found)


def _scaled_px(px: int, scale: float) -> int:
    """A distance of ``px`` image pixels on a copy scaled by ``scale``: 0 stays 0, any other
    distance keeps at least one pixel."""
    return 0 if px == 0 else max(1, round(px * scale))


def _check_descriptions(source: str, target: str) -> tuple[str, str]:
    """Both descriptions stripped and cut to the classifier's limit (with a warning);
    DescriptionError when one is empty."""
    return normalize_description(source, "source"), normalize_description(target, "target")


_default_editor: Optional[Editor] = None
_default_lock = threading.Lock()


def default_editor() -> Editor:
    """The process-wide ``Editor`` behind :func:`edit`, created on first use."""
    global _default_editor
    with _default_lock:
        if _default_editor is None:
            _default_editor = Editor()
        return _default_editor


def edit(image: "ImageLike", source: str, target: str, **settings: Any) -> EditResult:
    """Edit ``image`` (a path, ``PIL.Image`` or numpy array) from ``source`` to ``target``.

    A convenience over a process-wide default :class:`Editor` (models load once per process);
    keyword arguments are the edit settings of :meth:`Editor.edit`. Build your own ``Editor``
    to choose models, the device or another stage implementation.
    """
    return default_editor().edit(image, source, target, **settings)
