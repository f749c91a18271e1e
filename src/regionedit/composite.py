"""Stage 4: put the generated pixels into the photo so that nothing else changes.

This is where regionedit keeps its promise: every pixel outside the mask is the input's, exactly.
A :class:`Compositor` gets the decoded input, what the model generated and a :class:`Placement`
saying where the generation lies in the photo, and returns the finished image in the input's own
mode. :class:`SeamCompositor`, the default:

1. removes the generator's colour cast near the seam (:func:`~regionedit.colormatch.match_colors`),
2. blends the generated pixels in by the feathered mask, once, at full size (a generation made on
   a scaled working copy is scaled up first; one made on a full-size crop is pasted where the crop
   came from),
3. for a background edit, puts the subject back with its soft alpha (in the same blend: the
   generated pixels are weighted by ``mask * (1 - alpha)``),
4. gives the image back in the input's mode, with its alpha and colour profile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from . import masks
from .imageio import LoadedImage, restore_mode

if TYPE_CHECKING:  # pragma: no cover
    from .segment import MaskResult

__all__ = ["Compositor", "Placement", "SeamCompositor", "place", "weight_image"]

log = logging.getLogger("regionedit")


@dataclass(frozen=True)
class Placement:
    """What the model was given, and where it lies in the photo."""

    #: the RGB image the model regenerated: the whole photo (possibly a scaled working copy of
    #: it) or a full-size crop of it
    model_input: Image.Image
    #: float32 HxW at ``model_input``'s size, 1 = regenerated
    mask: np.ndarray
    #: (left, top, right, bottom) of ``model_input`` in the photo when it is a full-size crop;
    #: None when it covers the whole photo
    box: Optional[tuple[int, int, int, int]] = None
    #: background edits: the subject's soft alpha at ``model_input``'s size, to put the subject
    #: back over the new background
    subject_alpha: Optional[np.ndarray] = None
    #: background edits of a cut-out: its own alpha at the photo's size, sharper than a scaled
    #: copy; the subject is put back with it instead of ``subject_alpha``
    exact_subject_alpha: Optional[np.ndarray] = None


def place(
    loaded: LoadedImage,
    made: "MaskResult",
    *,
    generation_side: Optional[int],
    crop_small_subjects: bool = True,
) -> Placement:
    """What the model is given for the mask ``made``: the working copy, unless the model
    generates larger than that (``generation_side``, None: the backend decides), or the edit
    is a small subject: that is generated on a crop around it, cut from the full-size image so
    that it gets all the detail the model can give it."""
    subject = made.work_alpha if made.region == "background" else None
    box = None
    if crop_small_subjects and made.region == "foreground":
        box = masks.small_subject_box(made.work_mask)
    if box is not None:
        box = masks.scale_box(box, made.work_image.size, made.size)
        left, top, right, bottom = box
        return Placement(loaded.rgb.crop(box), made.mask[top:bottom, left:right], box=box)
    if made.scaled:
        if generation_side is None or generation_side > max(made.work_image.size):
            subject = made.subject_alpha if subject is not None else None
            return Placement(loaded.rgb, made.mask, subject_alpha=subject)
        if subject is not None and made.source == "input-alpha":
            # a cut-out's own alpha is sharper than its scaled copy: paste the subject with it
            return Placement(made.work_image, made.work_mask,
                             exact_subject_alpha=made.subject_alpha)
    return Placement(made.work_image, made.work_mask, subject_alpha=subject)


@runtime_checkable
class Compositor(Protocol):
    """Puts generated pixels into the photo."""

    name: str

    def composite(
        self, loaded: LoadedImage, generated: Image.Image, placement: Placement
    ) -> Image.Image:
        """The finished image at the photo's size and in its mode: ``generated`` (RGB, at
        ``placement.model_input``'s size) where ``placement.mask`` is 1, the photo's own pixels
        where it is 0."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able settings, for the sidecar."""
        ...


class SeamCompositor:
    """The default compositing: colour match, one full-size blend, subject paste-back, mode
    restore (see the module docstring). ``color_match=False`` keeps the generator's colours."""

    name = "seam"

    def __init__(self, *, color_match: bool = True) -> None:
        self.color_match = color_match

    def composite(
        self, loaded: LoadedImage, generated: Image.Image, placement: Placement
    ) -> Image.Image:
        model_input = placement.model_input
        if generated.size != model_input.size:
            raise ValueError(
                f"generated image is {generated.size}, the model input was {model_input.size}"
            )
        pixels = np.asarray(generated.convert("RGB"))
        if self.color_match:
            from .colormatch import match_colors

            pixels = match_colors(pixels, np.asarray(model_input), placement.mask)
        edited = loaded.rgb.copy()
        if placement.box is not None:
            # a full-size crop goes back where it came from, unscaled
            weight = weight_image(placement.mask, placement.subject_alpha)
            edited.paste(Image.fromarray(pixels), placement.box[:2], weight)
            return restore_mode(edited, loaded)

        exact = placement.exact_subject_alpha
        subject = None if exact is not None else placement.subject_alpha
        weight = weight_image(placement.mask, subject)
        if pixels.shape[:2] != (edited.height, edited.width):
            import cv2  # Pillow's resampling takes several times as long on a large photo

            # Bilinear keeps a weight of 0 wherever every pixel it is interpolated from is 0, so
            # the pixels outside the mask stay untouched at full size too.
            pixels = cv2.resize(pixels, edited.size, interpolation=cv2.INTER_CUBIC)
            weight = Image.fromarray(
                cv2.resize(np.asarray(weight), edited.size, interpolation=cv2.INTER_LINEAR)
            )
        edited.paste(Image.fromarray(pixels), (0, 0), weight)
        if exact is not None:
            edited.paste(loaded.rgb, (0, 0), masks.to_image(exact))
        return restore_mode(edited, loaded)

    def describe(self) -> dict[str, Any]:
        return {"compositor": self.name, "color_match": self.color_match}


def weight_image(mask: np.ndarray, subject_alpha: Optional[np.ndarray] = None) -> Image.Image:
    """8-bit "L" image of the weight the generated pixels get: ``mask``, or, with
    ``subject_alpha``, ``mask * (1 - subject_alpha)``.

    The second form composites and puts the original subject back in one blend: blending
    ``original + mask * (generated - original)`` and then the subject over it with its alpha
    is exactly ``original + mask * (1 - alpha) * (generated - original)``.
    """
    weight = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    if subject_alpha is not None:
        weight = weight * (1.0 - np.clip(np.asarray(subject_alpha, dtype=np.float32), 0.0, 1.0))
    return masks.to_image(weight)
