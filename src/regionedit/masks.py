"""Pure mask arithmetic on numpy arrays: threshold, grow/erode, feather, room for a new shape.

Conventions: a *mask* is bool HxW or float32 HxW in [0, 1], 1 meaning "regenerate this pixel";
an *alpha* is the subject's soft matte, float32 HxW in [0, 1], 1 meaning "subject". The image
border never counts as a mask edge: a subject cut by the frame is not eroded or feathered along
the frame.

The functions work at whatever size they are given; the editor builds masks on a working copy
of about a megapixel (every segmentation and inpainting model works below it), so a 24-megapixel
photo costs no more here than a small one.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .errors import SegmentationError, option

__all__ = [
    "BOX_PADDING_SHARE",
    "binarize",
    "grow",
    "erode",
    "invert",
    "feather",
    "padded_box",
    "foreground_mask",
    "background_mask",
    "coverage",
    "check_coverage",
    "has_meaningful_alpha",
    "to_image",
    "from_image",
    "crop_box",
    "small_subject_box",
    "scale_box",
    "resize",
]

#: a padded box reaches this share of the subject's longer side past the subject on every side:
#: room for a new pose, a hat or a longer tail, and for the shadow and halo of a removed subject
BOX_PADDING_SHARE = 0.15

#: a mask covering less of the image than this changes nothing worth an edit, and one covering
#: more changes the whole photo (:func:`check_coverage`)
MIN_COVERAGE = 0.001
MAX_COVERAGE = 0.999
#: a foreground subject whose padded box covers less than this share of the image is generated
#: on a crop (:func:`small_subject_box`)
CROP_BELOW_FRACTION = 0.35
#: the crop reaches this share of half the image's longer side past the subject
CROP_PADDING_FRACTION = 0.25
#: share of pixels that must be transparent, and opaque, for an input alpha to count as a matte
MEANINGFUL_ALPHA_SHARE = 0.01

def _retry_advice() -> str:
    model = option("segment_model='birefnet-general'", "--segment-model birefnet-general")
    region = option("region='foreground' or region='background'", "--region")
    return (
        f"Try another segmentation model ({model}), supply the subject yourself as the alpha "
        f"channel of an RGBA (PNG) input, or, if the wrong region was chosen, pass {region}."
    )


def binarize(alpha: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """bool HxW: pixels whose alpha is at least ``threshold`` (integer alphas are scaled first)."""
    alpha = np.asarray(alpha)
    if np.issubdtype(alpha.dtype, np.integer):
        return alpha >= threshold * np.iinfo(alpha.dtype).max
    return alpha >= threshold


def invert(mask: np.ndarray) -> np.ndarray:
    """bool HxW: the pixels outside ``mask``."""
    return ~np.asarray(mask, dtype=bool)


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """Dilate ``mask`` by a disk of radius ``px``: every pixel within ``px`` of the mask."""
    mask = _check_bool(mask)
    _check_px(px)
    if px == 0:
        return mask.copy()
    return _distance_inside(~mask, reach=px) <= px


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    """Erode ``mask`` by a disk of radius ``px`` (the image border does not erode it)."""
    mask = _check_bool(mask)
    _check_px(px)
    if px == 0:
        return mask.copy()
    return _distance_inside(mask, reach=px) > px


def feather(mask: np.ndarray, px: int) -> np.ndarray:
    """float32 HxW: 0 outside ``mask``, rising linearly to 1 at ``px`` pixels inside its edge.

    The ramp lies entirely inside ``mask``, so pixels outside it stay exactly 0: the ``px``
    pixels nearest the edge get 0.5/px, 1.5/px, ... (the edge runs half a pixel outside the
    first pixel centre).
    """
    mask = _check_bool(mask)
    _check_px(px)
    if px == 0:
        return mask.astype(np.float32)
    ramp = _distance_inside(mask, reach=px + 1)
    ramp -= np.float32(0.5)
    ramp /= np.float32(px)
    np.clip(ramp, np.float32(0.0), np.float32(1.0), out=ramp)
    return ramp


def padded_box(mask: np.ndarray, *, share: float = BOX_PADDING_SHARE) -> np.ndarray:
    """bool HxW: the bounding box of ``mask > 0`` grown by ``share`` of its longer side on every
    side, clipped to the image; all False for an empty mask."""
    box = np.zeros(np.shape(mask), dtype=bool)
    bounds = _bbox(np.asarray(mask) > 0)
    if bounds is None:
        return box
    top, bottom, left, right = bounds
    padding = round(share * max(bottom - top, right - left))
    left, top, right, bottom = crop_box(mask, padding=padding)  # type: ignore[misc]
    box[top:bottom, left:right] = True
    return box


def foreground_mask(
    alpha: np.ndarray, *, grow_px: int, feather_px: int, room: bool = False
) -> np.ndarray:
    """Regeneration mask for a subject edit: the subject grown by ``grow_px``, then feathered.

    With ``grow_px >= feather_px`` the soft seam lies in the background just outside the
    subject, so the whole subject is regenerated. ``room`` adds the subject's
    :func:`padded_box`, for an edit that gives the subject another outline.
    """
    subject = binarize(alpha)
    region = grow(subject, grow_px)
    if room:
        region |= padded_box(subject)
    return feather(region, feather_px)


def background_mask(alpha: np.ndarray, *, grow_px: int, feather_px: int) -> np.ndarray:
    """Regeneration mask for a background edit: everything but the subject, reaching
    ``grow_px`` pixels into the subject's edge (where halo pixels hide), then feathered."""
    return feather(grow(invert(binarize(alpha)), grow_px), feather_px)


def coverage(mask: np.ndarray) -> float:
    """Fraction of pixels where ``mask`` is above 0."""
    mask = np.asarray(mask)
    if mask.size == 0:
        return 0.0
    return float(np.count_nonzero(mask > 0)) / mask.size


def check_coverage(
    mask: np.ndarray,
    *,
    min_fraction: float = MIN_COVERAGE,
    max_fraction: float = MAX_COVERAGE,
    what: str = "mask",
) -> None:
    """Raise :class:`~regionedit.errors.SegmentationError` when ``mask`` is (nearly) empty or
    (nearly) the whole image: editing would then change nothing, or everything."""
    share = coverage(mask)
    if share < min_fraction:
        raise SegmentationError(
            f"The {what} is empty ({share:.2%} of the image): the segmenter found no subject. "
            + _retry_advice()
        )
    if share > max_fraction:
        raise SegmentationError(
            f"The {what} covers the whole image ({share:.2%}): the segmenter found no "
            "separate subject and background. " + _retry_advice()
        )


def has_meaningful_alpha(alpha: np.ndarray | None) -> bool:
    """Whether an input's alpha channel separates a subject from its surroundings: at least
    :data:`MEANINGFUL_ALPHA_SHARE` of the pixels transparent and as many opaque."""
    if alpha is None or np.asarray(alpha).size == 0:
        return False
    opaque = coverage(binarize(alpha))
    return MEANINGFUL_ALPHA_SHARE <= opaque <= 1.0 - MEANINGFUL_ALPHA_SHARE


def to_image(mask: np.ndarray) -> Image.Image:
    """8-bit grayscale PIL image of ``mask`` (white = 1)."""
    values = np.asarray(mask, dtype=np.float32)
    return Image.fromarray(np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8), mode="L")


def from_image(img: Image.Image) -> np.ndarray:
    """float32 HxW in [0, 1] from a grayscale (or any) PIL image."""
    values = np.asarray(img.convert("L"), dtype=np.float32)
    values /= 255.0
    return values


def resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 HxW: ``mask`` (or an alpha) resized to ``size`` = (width, height), bilinear.

    Values stay within the input's range, and a pixel whose neighbourhood is all 0 stays
    exactly 0, so "outside the mask" means the same at both sizes.
    """
    values = np.asarray(mask, dtype=np.float32)
    if (values.shape[1], values.shape[0]) == tuple(size):
        return values.copy()
    # Shrinking with plain bilinear would skip pixels; Pillow widens the filter to the scale.
    return np.asarray(Image.fromarray(values, "F").resize(size, Image.Resampling.BILINEAR))


def crop_box(
    mask: np.ndarray, *, padding: int, min_side: int = 0
) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom), right/bottom exclusive as in PIL: the bounding box of
    ``mask > 0`` grown by ``padding`` and to at least ``min_side`` per side where the image is
    large enough, clipped to the image. None for an empty mask."""
    box = _bbox(np.asarray(mask) > 0)
    if box is None:
        return None
    height, width = np.asarray(mask).shape
    top, bottom, left, right = box
    left, right = _widen(left - padding, right + padding, min_side, width)
    top, bottom = _widen(top - padding, bottom + padding, min_side, height)
    return left, top, right, bottom


def small_subject_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The padded box a foreground edit is generated on, when its mask covers a small part of
    the image (so that the subject gets the model's full resolution instead of a few latent
    pixels); None when the mask is empty or not small."""
    height, width = mask.shape
    padding = int(CROP_PADDING_FRACTION * max(height, width) * 0.5)
    box = crop_box(mask, padding=padding, min_side=min(height, width) // 4)
    if box is None:
        return None
    left, top, right, bottom = box
    if (right - left) * (bottom - top) >= CROP_BELOW_FRACTION * height * width:
        return None
    return box


def scale_box(
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


def _widen(start: int, stop: int, min_len: int, limit: int) -> tuple[int, int]:
    """Clip [start, stop) to [0, limit), widened around its centre to ``min_len`` if possible."""
    start, stop = max(start, 0), min(stop, limit)
    missing = min(min_len, limit) - (stop - start)
    if missing > 0:
        start -= missing // 2
        stop += missing - missing // 2
        # Shift back inside the image rather than lose length at an edge.
        if start < 0:
            stop, start = stop - start, 0
        if stop > limit:
            start, stop = start - (stop - limit), limit
    return start, stop


def _check_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a HxW mask, got shape {mask.shape}")
    return mask if mask.dtype == bool else mask > 0


def _check_px(px: int) -> None:
    if px < 0:
        raise ValueError(f"pixel distances must be >= 0, got {px}")


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), bottom/right exclusive, of the True pixels; None if none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _distance_inside(inside: np.ndarray, *, reach: int) -> np.ndarray:
    """float32 HxW: Euclidean distance of each True pixel to the nearest False one, 0 on False.

    Exact up to ``reach``; farther pixels read ``reach + 1``, which is all the callers need to
    know about them. Only False pixels count as outside (not the image border).

    OpenCV's exact transform (Felzenszwalb's): linear in the pixels, and it releases the GIL.
    """
    import cv2

    distances = cv2.distanceTransform(
        np.asarray(inside, dtype=np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )
    np.minimum(distances, np.float32(reach + 1), out=distances)
    # A distance between pixel centres is the root of a whole number; OpenCV's is within
    # ~1e-7 of it, which would move a pixel at exactly ``px`` across ``<= px``: snap it back.
    np.square(distances, out=distances)
    np.rint(distances, out=distances)
    return np.sqrt(distances, out=distances)
