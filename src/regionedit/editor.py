"""The pipeline: classify -> segment -> inpaint -> composite.

``Editor`` holds the three stages (and so their loaded models) for repeated work; ``edit()`` is
the one-call convenience over a process-wide default ``Editor``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import secrets
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Iterator, Optional

import numpy as np

from . import masks
from .errors import UnidentifiedRegionError
from .types import (
    Candidate,
    Classification,
    EditResult,
    EditSettings,
    Region,
    StageTimings,
    UnidentifiedPolicy,
)

if TYPE_CHECKING:  # pragma: no cover
    import PIL.Image

    from .batch import BatchItemLike, ItemResult
    from .classify import Classifier
    from .imageio import ImageLike, LoadedImage
    from .inpaint import Inpainter, InpaintRequest
    from .segment import Segmenter

__all__ = ["Editor", "edit", "MaskResult", "PreparedEdit", "default_editor", "timed_stage"]

log = logging.getLogger("regionedit")

#: a foreground subject whose padded box covers less than this share of the image is generated
#: on a crop, so it gets the model's full resolution instead of a few latent pixels
CROP_BELOW_FRACTION = 0.35
_CROP_PADDING_FRACTION = 0.25
#: longer side of the working copy of larger images: above the input size of every rembg model
#: (320-1024 px) and of SD 1.5 and SDXL (512, 1024), so nothing is lost, while a 24 MP photo's
#: masks cost what a 0.7 MP one's do
WORK_SIDE = 1024


class MaskResult:
    """What :meth:`Editor.mask` returns: the regenerated-region mask and what it was built from.

    Masks are built on a working copy of the image no larger than ``Editor.work_side`` (every
    segmentation and inpainting model works below that size); :attr:`mask` and
    :attr:`subject_alpha` give them at the image's own size, scaled up on first use.
    """

    def __init__(
        self,
        work_mask: np.ndarray,
        work_alpha: np.ndarray,
        region: Region,
        source: str,
        *,
        work_image: "PIL.Image.Image",
        size: tuple[int, int],
        input_alpha: Optional[np.ndarray] = None,
    ):
        self.work_mask = work_mask  #: float32, working size, 1 = would be regenerated
        self.work_alpha = work_alpha  #: float32, working size, soft alpha of the subject
        self.work_image = work_image  #: the RGB working copy the masks were built on
        self.region = region
        self.source = source  #: "input-alpha" or the segmenter's name
        self.size = size  #: (width, height) of the image
        # the input's own alpha at full size: an exact cut-out edge worth keeping as it is
        self._input_alpha = input_alpha

    @property
    def scaled(self) -> bool:
        """Whether the working copy is smaller than the image."""
        return self.work_image.size != self.size

    @functools.cached_property
    def mask(self) -> np.ndarray:
        """float32 HxW at the image's size, 1 = would be regenerated."""
        return masks.resize(self.work_mask, self.size) if self.scaled else self.work_mask

    @functools.cached_property
    def subject_alpha(self) -> np.ndarray:
        """float32 HxW at the image's size: the subject's soft alpha."""
        if self._input_alpha is not None:
            return self._input_alpha
        return masks.resize(self.work_alpha, self.size) if self.scaled else self.work_alpha

    def image(self) -> "PIL.Image.Image":
        return masks.to_image(self.mask)


@dataclasses.dataclass
class PreparedEdit:
    """An edit up to generation (:meth:`Editor.prepare`): what is generated, from what."""

    loaded: "LoadedImage"
    region: Region
    classification: Classification
    mask: MaskResult
    settings: EditSettings
    timings: StageTimings
    #: what the model is given: the working copy, or the full image when it generates larger
    model_input: "PIL.Image.Image"
    model_mask: np.ndarray
    model_alpha: np.ndarray
    #: (left, top, right, bottom) of ``model_input`` in the image when it is a full-size crop
    model_box: Optional[tuple[int, int, int, int]] = None
    #: set by ``finish(..., in_place=True)``: ``loaded``'s pixels are now the edited image
    consumed: bool = False


class Editor:
    """Holds the classifier, segmenter and inpainter for repeated edits.

    Stages are built on first use, and each loads its model once, so an ``Editor`` kept alive
    across many calls pays the loading cost once::

        editor = regionedit.Editor(inpaint_model="path/to/local/inpainting-model")
        for path in photos:
            editor.edit(path, "a mug on a desk", "a mug on a beach").save(out / path.name)

    Any stage can be replaced by an object following its Protocol (``Classifier``,
    ``Segmenter``, ``Inpainter``); the named keywords configure the default implementations.
    """

    def __init__(
        self,
        *,
        classifier: "Classifier | str" = "auto",
        segmenter: "Segmenter | None" = None,
        inpainter: "Inpainter | str" = "diffusers",
        llm_model: Optional[str] = None,
        segment_model: str = "u2net",
        segment_model_path: Optional[str] = None,
        inpaint_model: Optional[str] = None,
        device: Optional[str] = None,
        dtype: Optional[str] = None,
        attention_slicing: bool = False,
        cpu_offload: bool = False,
        color_match: bool = True,
        crop_small_subjects: bool = True,
        max_pixels: Optional[int] = None,
        work_side: int = WORK_SIDE,
    ) -> None:
        self._classifier_spec = classifier
        self._segmenter = segmenter
        self._segmenter_spec = segmenter
        self._inpainter_spec = inpainter
        self._classifier: Optional[Classifier] = None if isinstance(classifier, str) else classifier
        self._inpainter: Optional[Inpainter] = None if isinstance(inpainter, str) else inpainter
        self.llm_model = llm_model
        self.segment_model = segment_model
        self.segment_model_path = segment_model_path
        self.inpaint_model = inpaint_model
        self.device = device
        self.dtype = dtype
        self.attention_slicing = attention_slicing
        self.cpu_offload = cpu_offload
        self.color_match = color_match
        self.crop_small_subjects = crop_small_subjects
        #: decompression-bomb guard for inputs (None: $REGIONEDIT_MAX_PIXELS or Pillow's limit)
        self.max_pixels = max_pixels
        if work_side < 64:
            raise ValueError(f"work_side must be at least 64 px, got {work_side}")
        #: longer side of the working copy masks and generation use (see :class:`MaskResult`)
        self.work_side = work_side
        self._build_lock = threading.Lock()
        # One generation at a time per Editor: a device runs one pipeline call well, not two.
        self._generate_lock = threading.Lock()

    # -- components, built on first use -----------------------------------------------------

    @property
    def classifier(self) -> "Classifier":
        with self._build_lock:
            if self._classifier is None:
                from .classify import get_classifier

                kwargs: dict[str, Any] = {}
                if self.llm_model and self._classifier_spec in ("auto", "llm"):
                    kwargs["model"] = self.llm_model
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
    ) -> tuple[Region, Classification]:
        """The region to regenerate: the caller's override, or the classifier's answer with the
        unidentified policy applied."""
        source, target = _check_descriptions(source, target)
        if region is not None:
            if region not in ("foreground", "background"):
                raise ValueError(f"region must be 'foreground' or 'background', not {region!r}")
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
    ) -> MaskResult:
        """The mask of the pixels an edit of ``region`` would regenerate (1 = regenerated).

        ``grow`` and ``feather`` are in the image's pixels; on a scaled-down working copy they
        shrink with it (at least 1 px each when not 0).
        """
        from .imageio import LoadedImage, shrink
        from .segment import subject_alpha_from_input

        loaded = image if isinstance(image, LoadedImage) else self.load(image)
        work = shrink(loaded.rgb, self.work_side)
        scale = work.width / loaded.rgb.width
        input_alpha = subject_alpha_from_input(loaded)
        if input_alpha is not None:
            alpha = masks.resize(input_alpha, work.size) if work is not loaded.rgb else input_alpha
            source = "input-alpha"
        else:
            alpha = self.segmenter.subject_alpha(work)
            source = self.segmenter.name
        build = masks.foreground_mask if region == "foreground" else masks.background_mask
        regen = build(alpha, grow_px=_scaled_px(grow, scale), feather_px=_scaled_px(feather, scale))
        masks.check_coverage(regen, what=f"{region} mask")
        return MaskResult(
            regen, alpha, region, source, work_image=work, size=loaded.size,
            input_alpha=input_alpha if work is not loaded.rgb else None,
        )

    # -- the whole edit ----------------------------------------------------------------------

    def edit(
        self,
        image: "ImageLike",
        source: str,
        target: str,
        *,
        region: Optional[Region] = None,
        seed: Optional[int] = None,
        steps: int = 30,
        guidance_scale: float = 7.5,
        strength: float = 1.0,
        negative_prompt: Optional[str] = None,
        candidates: int = 1,
        grow: int = 6,
        feather: int = 4,
        on_unidentified: UnidentifiedPolicy = "error",
        max_side: Optional[int] = None,
        decided: Optional[tuple[Region, Classification]] = None,
        prepared_mask: Optional[MaskResult] = None,
    ) -> EditResult:
        """Edit ``image`` so that it shows ``target`` instead of ``source``.

        ``region`` skips the classifier. ``seed`` makes the result reproducible (one is drawn
        and recorded when not given; candidate *i* uses ``seed + i``). Pixels outside the
        returned ``mask`` are exactly the input's.

        ``decided`` (what :meth:`decide` returned) skips the classifier and ``prepared_mask``
        (what :meth:`mask` returned for this image and region) skips segmentation: batch work
        does both ahead of generation.
        """
        prepared = self.prepare(
            image, source, target, region=region, seed=seed, steps=steps,
            guidance_scale=guidance_scale, strength=strength, negative_prompt=negative_prompt,
            candidates=candidates, grow=grow, feather=feather, on_unidentified=on_unidentified,
            max_side=max_side, decided=decided, prepared_mask=prepared_mask,
        )
        (generated,) = self.generate([prepared])
        if isinstance(generated, Exception):
            raise generated
        return self.finish(prepared, generated, in_place=True)

    # -- the edit in three steps, for batch work ----------------------------------------------

    def prepare(
        self,
        image: "ImageLike",
        source: str,
        target: str,
        *,
        region: Optional[Region] = None,
        seed: Optional[int] = None,
        steps: int = 30,
        guidance_scale: float = 7.5,
        strength: float = 1.0,
        negative_prompt: Optional[str] = None,
        candidates: int = 1,
        grow: int = 6,
        feather: int = 4,
        on_unidentified: UnidentifiedPolicy = "error",
        max_side: Optional[int] = None,
        decided: Optional[tuple[Region, Classification]] = None,
        prepared_mask: Optional[MaskResult] = None,
    ) -> "PreparedEdit":
        """Everything :meth:`edit` does before generating (load, classify, mask), with the
        same arguments. :meth:`edit` is ``finish(p, generate([p])[0])`` over this; batch work
        calls the three itself, to generate several images per model call."""
        from .imageio import LoadedImage

        # cut once here, so the classifier, the prompt and the sidecar all see the same text
        source, target = _check_descriptions(source, target)
        timings = StageTimings()
        with timed_stage(timings, "load"):
            loaded = image if isinstance(image, LoadedImage) else self.load(image)
        with timed_stage(timings, "classify"):
            chosen, decision = decided or self.decide(
                source, target, region=region, on_unidentified=on_unidentified
            )
        with timed_stage(timings, "segment"):
            made = prepared_mask or self.mask(loaded, chosen, grow=grow, feather=feather)
        if seed is None:
            seed = secrets.randbelow(2**31)
        settings = EditSettings(
            source=source,
            target=target,
            region=region,
            seed=seed,
            steps=steps,
            guidance_scale=guidance_scale,
            strength=strength,
            negative_prompt=negative_prompt,
            candidates=candidates,
            grow=grow,
            feather=feather,
            on_unidentified=on_unidentified,
            max_side=max_side,
        )
        if chosen == "background" and loaded.alpha is not None:
            # A cut-out asked for a new background: the regenerated pixels are content now, so
            # they become opaque; outside the mask the input's alpha stays as it was.
            coverage = np.rint(made.mask * 255).astype(np.uint8)
            loaded = dataclasses.replace(loaded, alpha=np.maximum(loaded.alpha, coverage))
        # The model works on the small working copy, unless it generates larger than that, or
        # the edit is a small subject: that is generated on a crop around it, cut from the
        # full-size image so that it gets all the detail the model can give it.
        model_input, model_mask, model_alpha = made.work_image, made.work_mask, made.work_alpha
        box = None
        if self.crop_small_subjects and chosen == "foreground":
            box = _small_subject_box(made.work_mask)
        if box is not None:
            box = _scale_box(box, made.work_image.size, made.size)
            left, top, right, bottom = box
            model_input = loaded.rgb.crop(box)
            model_mask = made.mask[top:bottom, left:right]
        elif made.scaled:
            generation_side = max_side or getattr(self.inpainter, "native_size", None)
            if generation_side is None or generation_side > self.work_side:
                model_input, model_mask, model_alpha = loaded.rgb, made.mask, made.subject_alpha
        return PreparedEdit(
            loaded=loaded, region=chosen, classification=decision, mask=made,
            settings=settings, timings=timings, model_input=model_input,
            model_mask=model_mask, model_alpha=model_alpha, model_box=box,
        )

    def generate(
        self, prepared: "list[PreparedEdit]", *, batch_size: int = 1
    ) -> "list[list[np.ndarray] | Exception]":
        """Generate every candidate of every prepared edit: per edit, its candidates'
        generated pixels (HxWx3 uint8 at ``model_input``'s size, not composited), or the
        exception that stopped it.

        With ``batch_size > 1`` and an inpainter that has ``inpaint_many`` (the diffusers
        one), up to that many images share one model call; the call's time is shared out
        among them in their timings. :class:`~regionedit.errors.ModelLoadError` is raised.
        """
        requests, owners = self._requests(prepared)
        start = time.perf_counter()
        with self._generate_lock:
            outcomes = self._inpaint_requests(requests, batch_size)
        share = (time.perf_counter() - start) / max(1, len(requests))

        results: list[Any] = [[] for _ in prepared]
        for owner, outcome in zip(owners, outcomes):
            prepared[owner].timings.inpaint += share
            if isinstance(results[owner], Exception):
                continue
            if isinstance(outcome, Exception):
                results[owner] = outcome
                continue
            results[owner].append(np.asarray(outcome.convert("RGB")))
        return results

    def generation_group(self, prepared: "PreparedEdit") -> Hashable:
        """Prepared edits with equal groups can share a model call in :meth:`generate` (same
        generation size and settings); None for every edit when the inpainter generates one
        image per call. Loads the inpainting model, whose native size decides the size."""
        inpainter = self.inpainter
        key = getattr(inpainter, "batch_key", None)
        if key is None or getattr(inpainter, "inpaint_many", None) is None:
            return None
        requests, _ = self._requests([prepared])
        return key(requests[0])  # candidates differ in seed only

    def load_models(self) -> None:
        """Load the segmentation and inpainting models now instead of at their first use,
        e.g. when a server starts. A stage without a ``load()`` method is left to load itself.
        Raises :class:`~regionedit.errors.ModelLoadError`."""
        for stage in (self.segmenter, self.inpainter):
            load = getattr(stage, "load", None)
            if callable(load):
                load()

    def _requests(self, prepared: "list[PreparedEdit]") -> "tuple[list[InpaintRequest], list[int]]":
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
                    job.model_input, job.model_mask, settings.target, settings.seed + i,
                    settings.negative_prompt, settings.steps, settings.guidance_scale,
                    settings.strength, settings.max_side,
                ))
                owners.append(number)
        return requests, owners

    def _inpaint_requests(self, requests: list[Any], batch_size: int) -> list[Any]:
        """Each request's image or exception, in model calls of up to ``batch_size`` when the
        inpainter can, one call each otherwise."""
        from .errors import ModelLoadError

        inpainter = self.inpainter
        many = getattr(inpainter, "inpaint_many", None)
        if many is not None and batch_size > 1 and len(requests) > 1:
            return list(many(requests, batch_size=batch_size))
        outcomes: list[Any] = []
        for request in requests:
            try:
                outcomes.append(inpainter.inpaint(
                    request.image, request.mask, request.prompt, seed=request.seed,
                    negative_prompt=request.negative_prompt, steps=request.steps,
                    guidance_scale=request.guidance_scale, strength=request.strength,
                    max_side=request.max_side,
                ))
            except ModelLoadError:
                raise
            except Exception as exc:  # the others in the batch still get their turn
                outcomes.append(exc)
        return outcomes

    def finish(
        self, prepared: "PreparedEdit", generated: list[np.ndarray], *, in_place: bool = False
    ) -> EditResult:
        """Composite each generated candidate of ``prepared`` (what :meth:`generate` gave for
        it) into the full-size image, and return the :class:`EditResult`.

        ``in_place`` lets the last candidate be composited into ``prepared.loaded``'s own
        pixels where nothing else still reads them, instead of into a copy (a 24-megapixel copy
        costs tens of milliseconds); ``prepared`` cannot be finished again after that.
        :meth:`edit`, which owns its prepared edit, does this.
        """
        from .imageio import restore_mode

        job = prepared
        if job.consumed:
            raise ValueError(
                "This prepared edit was already finished with in_place=True, which used its "
                "loaded image; prepare the image again to finish it another way."
            )
        outputs: list[Candidate] = []
        assert job.settings.seed is not None
        with timed_stage(job.timings, "composite"):
            for i, pixels in enumerate(generated):
                last = i == len(generated) - 1
                edited = self._composite(job, pixels, in_place=in_place and last)
                outputs.append(Candidate(
                    image=restore_mode(edited, job.loaded, copy=False), seed=job.settings.seed + i
                ))
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

    def _composite(
        self, job: "PreparedEdit", generated: np.ndarray, *, in_place: bool = False
    ) -> "PIL.Image.Image":
        """The full-size edited RGB image: ``generated`` (at ``job.model_input``'s size) colour
        matched, blended in by the mask and, for a background edit, the subject pasted back.
        ``in_place``: into ``job.loaded.rgb`` itself where nothing else reads it afterwards."""
        from PIL import Image

        if self.color_match:
            from .colormatch import match_colors

            generated = match_colors(generated, np.asarray(job.model_input), job.model_mask)
        made, loaded = job.mask, job.loaded
        subject_alpha = job.model_alpha if job.region == "background" else None
        exact_subject = None
        if subject_alpha is not None and made.scaled and job.model_input is made.work_image:
            # a cut-out's own alpha is sharper than its scaled copy: paste the subject with it
            exact_subject = made.subject_alpha if made.source == "input-alpha" else None
        # The mask result keeps its working copy (the loaded image itself when it was small
        # enough), the subject paste below reads the original: those must stay untouched.
        in_place = in_place and exact_subject is None and all(
            loaded.rgb is not kept for kept in (made.work_image, job.model_input)
        )
        if in_place:
            job.consumed = True
        if job.model_box is not None:
            # a full-size crop: pasted where it came from, no scaling
            edited = loaded.rgb if in_place else loaded.rgb.copy()
            weight = masks.to_weight_image(job.model_mask)
            edited.paste(Image.fromarray(generated), job.model_box[:2], weight)
            return edited
        weight = masks.to_weight_image(
            job.model_mask, None if exact_subject is not None else subject_alpha
        )
        edited = masks.blend(loaded.rgb, Image.fromarray(generated), weight, in_place=in_place)
        if exact_subject is not None:
            edited = masks.blend(edited, loaded.rgb, masks.to_image(exact_subject))
        return edited

    def edit_many(self, items: "Iterable[BatchItemLike]", **kwargs: Any) -> "Iterator[ItemResult]":
        """Edit many images, yielding one :class:`~regionedit.batch.ItemResult` per item as it
        finishes; keyword arguments are those of :func:`regionedit.batch.edit_many`."""
        from .batch import edit_many

        return edit_many(self, items, **kwargs)

    def config(self) -> dict[str, Any]:
        """The constructor settings that change what an edit produces, JSON-able; stages given
        as objects appear by their ``name``. Batch runs key their resume records on it."""

        def spec(stage: Any) -> Optional[str]:
            return stage if stage is None or isinstance(stage, str) else stage.name

        return {
            "classifier": spec(self._classifier_spec),
            "segmenter": spec(self._segmenter_spec),
            "inpainter": spec(self._inpainter_spec),
            "llm_model": self.llm_model,
            "segment_model": self.segment_model,
            "segment_model_path": self.segment_model_path,
            "inpaint_model": self.inpaint_model,
            "color_match": self.color_match,
            "crop_small_subjects": self.crop_small_subjects,
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
                "color_match": self.color_match,
                "crop_small_subjects": self.crop_small_subjects,
            },
            "versions": dict(_library_versions()),
        }


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    """Installed versions of the libraries an edit depends on (read once: ~3 ms a lookup)."""
    from importlib import metadata

    found = []
    for dist in ("regionedit", "diffusers", "torch", "rembg", "openai", "transformers"):
        try:
            found.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            pass
    return tuple(found)


def _small_subject_box(mask: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    height, width = mask.shape
    padding = int(_CROP_PADDING_FRACTION * max(height, width) * 0.5)
    box = masks.crop_box(mask, padding=padding, min_side=min(height, width) // 4)
    if box is None:
        return None
    left, top, right, bottom = box
    if (right - left) * (bottom - top) >= CROP_BELOW_FRACTION * height * width:
        return None
    return box


def _scale_box(
    box: tuple[int, int, int, int], size: tuple[int, int], to: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``box`` on an image of ``size`` as the box covering the same area on one of size ``to``
    (rounded outwards, clipped)."""
    sx, sy = to[0] / size[0], to[1] / size[1]
    left, top, right, bottom = box
    return (
        max(0, math.floor(left * sx)), max(0, math.floor(top * sy)),
        min(to[0], math.ceil(right * sx)), min(to[1], math.ceil(bottom * sy)),
    )


def _scaled_px(px: int, scale: float) -> int:
    """A distance of ``px`` image pixels on a copy scaled by ``scale``: 0 stays 0, any other
    distance keeps at least one pixel."""
    return 0 if px == 0 else max(1, round(px * scale))


def _check_descriptions(source: str, target: str) -> tuple[str, str]:
    """Both descriptions stripped and cut to the classifier's limit (with a warning);
    DescriptionError when one is empty."""
    from .classify import normalize_description

    return normalize_description(source, "source"), normalize_description(target, "target")


@contextmanager
def timed_stage(timings: StageTimings, stage: str) -> Iterator[None]:
    """Add the seconds spent in the ``with`` block to ``timings.<stage>`` (batch uses it too)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        setattr(timings, stage, getattr(timings, stage) + time.perf_counter() - start)


_default_editor: Optional[Editor] = None
_default_lock = threading.Lock()


def default_editor() -> Editor:
    """The process-wide ``Editor`` behind :func:`edit`, created on first use."""
    global _default_editor
    with _default_lock:
        if _default_editor is None:
            _default_editor = Editor()
        return _default_editor


def edit(
    image: "ImageLike",
    source: str,
    target: str,
    *,
    region: Optional[Region] = None,
    seed: Optional[int] = None,
    **kwargs: Any,
) -> EditResult:
    """Edit ``image`` (a path, ``PIL.Image`` or numpy array) from ``source`` to ``target``.

    A convenience over a process-wide default :class:`Editor` (models load once per process);
    keyword arguments are those of :meth:`Editor.edit`. Build your own ``Editor`` to choose
    models, the device or another stage implementation.
    """
    return default_editor().edit(image, source, target, region=region, seed=seed, **kwargs)
