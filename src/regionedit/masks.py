"""Pure mask arithmetic on numpy arrays: threshold, grow/shrink, feather, composite.

Conventions: a *mask* is bool HxW or float32 HxW in [0, 1], 1 meaning "regenerate this pixel";
an *alpha* is the subject's soft matte, float32 HxW in [0, 1], 1 meaning "subject". The image
border never counts as a mask edge: a subject cut by the frame is not shrunk or feathered along
the frame.

The array functions work at whatever size they are given, within a few buffers of that size.
The editor builds masks at a working size of about a megapixel (every segmentation and
inpainting model works below it) and only :func:`blend` touches full-resolution pixels, with
OpenCV's and Pillow's C code, so a 24-megapixel photo costs a few passes over its pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .errors import SegmentationError

__all__ = [
    "binarize",
    "grow",
    "shrink",
    "invert",
    "feather",
    "foreground_mask",
    "background_mask",
    "coverage",
    "check_coverage",
    "composite",
    "paste_subject",
    "has_meaningful_alpha",
    "to_image",
    "from_image",
    "crop_box",
    "resize",
    "to_weight_image",
    "blend",
]

#: share of pixels that must be transparent, and opaque, for an input alpha to count as a matte
MEANINGFUL_ALPHA_SHARE = 0.01
# Pixels per strip in composite: ~3 MB float32 temporaries, small enough to stay in cache.
_BLEND_PIXELS = 1 << 18
# Rows of the full-width bands blend pastes: small enough that a band all outside the mask is
# common and skipped, large enough that the Python per band is negligible (63 bands at 24 MP).
_BLEND_BAND = 64

_RETRY_ADVICE = (
    "Try another segmentation model (e.g. 'isnet-general-use' or 'birefnet-general'), supply "
    "the subject yourself as the alpha channel of an RGBA (PNG) input, or, if the wrong region "
    "was chosen, pass region='foreground' or region='background' (CLI: --region)."
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


def shrink(mask: np.ndarray, px: int) -> np.ndarray:
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


def foreground_mask(alpha: np.ndarray, *, grow_px: int, feather_px: int) -> np.ndarray:
    """Regeneration mask for a subject edit: the subject grown by ``grow_px``, then feathered.

    With ``grow_px >= feather_px`` the soft seam lies in the background just outside the
    subject, so the whole subject is regenerated.
    """
    return feather(grow(binarize(alpha), grow_px), feather_px)


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
    min_fraction: float = 0.001,
    max_fraction: float = 0.999,
    what: str = "mask",
) -> None:
    """Raise :class:`~regionedit.errors.SegmentationError` when ``mask`` is (nearly) empty or
    (nearly) the whole image: editing would then change nothing, or everything."""
    share = coverage(mask)
    if share < min_fraction:
        raise SegmentationError(
            f"The {what} is empty ({share:.2%} of the image): the segmenter found no subject. "
            + _RETRY_ADVICE
        )
    if share > max_fraction:
        raise SegmentationError(
            f"The {what} covers the whole image ({share:.2%}): the segmenter found no "
            "separate subject and background. " + _RETRY_ADVICE
        )


def composite(original: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 HxWx3: ``original`` exactly where ``mask == 0``, ``generated`` exactly where
    ``mask == 1``, and the rounded linear blend in between."""
    original = np.asarray(original)
    generated = np.asarray(generated)
    mask = np.asarray(mask)
    if original.shape != generated.shape or original.shape[:2] != mask.shape:
        raise ValueError(
            f"composite needs equal sizes: original {original.shape}, generated "
            f"{generated.shape}, mask {mask.shape}"
        )
    out = np.empty(original.shape, dtype=np.uint8)
    # Blend whole strips in float32 rather than picking out the soft pixels: a segmenter's matte
    # is soft nearly everywhere, and fancy indexing over most of a 24 MP frame is ~10x slower.
    # Strips keep the float temporaries small (a few MB) whatever the photo's size. With a
    # weight of exactly 0 or 1 the float result is exactly original or generated, and it never
    # leaves the [original, generated] range, so the uint8 cast needs no clipping.
    rows = max(1, _BLEND_PIXELS // max(1, original.shape[1]))
    for top in range(0, original.shape[0], rows):
        strip = np.s_[top : top + rows]
        weight = np.clip(mask[strip], 0.0, 1.0).astype(np.float32, copy=False)[..., None]
        base = original[strip].astype(np.float32)
        blend = generated[strip].astype(np.float32)
        blend -= base
        blend *= weight
        blend += base
        np.rint(blend, out=blend)
        out[strip] = blend
    return out


def paste_subject(image: np.ndarray, original: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 HxWx3: the original subject pasted over ``image`` with its soft ``alpha``;
    exactly ``original`` where ``alpha == 1`` and exactly ``image`` where ``alpha == 0``."""
    return composite(image, original, alpha)


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


def to_weight_image(mask: np.ndarray, subject_alpha: np.ndarray | None = None) -> Image.Image:
    """8-bit "L" image of the weight :func:`blend` gives the generated pixels: ``mask``, or,
    with ``subject_alpha``, ``mask * (1 - subject_alpha)``.

    The second form composites and pastes the original subject back in one pass: blending
    ``original + mask * (generated - original)`` and then the subject over it with its alpha
    is exactly ``original + mask * (1 - alpha) * (generated - original)``.
    """
    weight = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    if subject_alpha is not None:
        weight = weight * (1.0 - np.clip(np.asarray(subject_alpha, dtype=np.float32), 0.0, 1.0))
    return to_image(weight)


def blend(
    original: Image.Image,
    generated: Image.Image,
    weight: Image.Image,
    *,
    threads: int = 2,
    in_place: bool = False,
) -> Image.Image:
    """RGB image at ``original``'s size: ``original`` where ``weight`` is 0, ``generated``
    where it is 255, and the rounded linear blend in between.

    ``generated`` (RGB) and ``weight`` ("L", as from :func:`to_weight_image`) may be smaller
    than ``original``: they are then scaled up (OpenCV, bicubic and bilinear: several times
    faster than Pillow's resampling at 24 megapixels) and pasted band by band on up to
    ``threads`` threads (Pillow releases the GIL while it pastes); stretches whose weight is 0
    throughout are not touched, those at 255 throughout are copied without blending. A pixel
    whose weight neighbourhood is all 0 is left exactly as in ``original``. ``in_place``
    writes into ``original`` (an RGB image the caller no longer needs) instead of a copy,
    which at 24 megapixels saves tens of milliseconds.
    """
    if generated.size != weight.size:
        raise ValueError(
            f"blend needs generated and weight of one size, got {generated.size} and {weight.size}"
        )
    if original.mode != "RGB":
        out = original.convert("RGB")
    else:
        out = original if in_place else original.copy()
    if generated.size == out.size:
        out.paste(generated, (0, 0), weight)
        return out
    import cv2  # only large photos get here

    width, height = out.size
    # RGBA so that Pillow can use the upscaled pixels where they are (RGB is 4 bytes a pixel
    # inside Pillow); the alpha channel is never read, the weight is the mask. One spare row
    # below each, so that any run of columns of any band can be handed to Pillow where it lies
    # (its last row's stride reaches past the image) instead of as a cropped copy.
    pixels = cv2.cvtColor(np.asarray(generated.convert("RGB")), cv2.COLOR_RGB2RGBA)
    big = np.empty((height + 1, width, 4), dtype=np.uint8)
    cv2.resize(pixels, (width, height), dst=big[:height], interpolation=cv2.INTER_CUBIC)
    levels = np.asarray(weight)
    big_weight = np.empty((height + 1, width), dtype=np.uint8)
    cv2.resize(levels, (width, height), dst=big_weight[:height], interpolation=cv2.INTER_LINEAR)
    flat_pixels, flat_weight = big.reshape(-1), big_weight.reshape(-1)
    row_scale = generated.height / height
    # per output column, the small columns it is interpolated from (and a pixel more)
    first_col, last_col = _footprint(
        np.arange(width), np.arange(1, width + 1), generated.width / width, levels.shape[1]
    )

    def upscaled(left: int, top: int, right: int, bottom: int, *, mode: str) -> Image.Image:
        """The box of the upscaled pixels ("RGBA") or weights ("L"), without copying."""
        start, size = top * width + left, (right - left, bottom - top)
        if mode == "L":
            return Image.frombuffer("L", size, flat_weight[start:], "raw", "L", width, 1)
        return Image.frombuffer("RGBA", size, flat_pixels[4 * start:], "raw", "RGBA", 4 * width, 1)

    def one_band(top: int) -> None:
        bottom = min(height, top + _BLEND_BAND)
        # the small weights this band's pixels are interpolated from, and a pixel more
        near = levels[slice(*_footprint(top, bottom, row_scale, levels.shape[0]))]
        if not near.any():
            return  # weight 0 throughout: the original stays
        if near.min() == 255:
            out.paste(upscaled(0, top, width, bottom, mode="RGBA"), (0, top))  # no blending
            return
        # Pillow blends every pixel it pastes through a mask, even at 0 and 255: blend only
        # the runs of columns that need it, copy the all-255 ones, skip the all-0 ones
        for left, right, kind in _column_runs(near, first_col, last_col):
            box = (left, top, right, bottom)
            if kind == _MIXED:
                out.paste(upscaled(*box, mode="RGBA"), box[:2], upscaled(*box, mode="L"))
            elif kind == _FULL:
                out.paste(upscaled(*box, mode="RGBA"), box[:2])

    tops = range(0, height, _BLEND_BAND)
    if threads <= 1:
        for top in tops:
            one_band(top)
    else:
        from concurrent.futures import ThreadPoolExecutor

        # bands write disjoint rows of ``out``
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="regionedit-blend") as pool:
            list(pool.map(one_band, tops))
    return out


_EMPTY, _MIXED, _FULL = 0, 1, 2


def _column_runs(
    near: np.ndarray, first_col: np.ndarray, last_col: np.ndarray
) -> list[tuple[int, int, int]]:
    """(left, right, kind) runs of output columns whose small weights ``near`` (the rows a
    band reads) are all 0 (``_EMPTY``), all 255 (``_FULL``) or neither (``_MIXED``); output
    column x reads small columns ``first_col[x]:last_col[x]``."""
    # prefix counts of the small columns holding a non-zero, and a non-255, weight
    nonzero = np.concatenate(([0], np.cumsum(near.max(axis=0) > 0)))
    partial = np.concatenate(([0], np.cumsum(near.min(axis=0) < 255)))
    kind = np.full(len(first_col), _MIXED, dtype=np.int8)
    kind[nonzero[last_col] == nonzero[first_col]] = _EMPTY
    kind[partial[last_col] == partial[first_col]] = _FULL
    edges = [0, *(np.flatnonzero(np.diff(kind)) + 1).tolist(), len(kind)]
    return [(left, right, int(kind[left])) for left, right in zip(edges, edges[1:])]


def _footprint(start: Any, stop: Any, scale: float, limit: int) -> tuple[Any, Any]:
    """The source rows (or columns) that output rows ``start:stop`` of an upscale by
    ``1 / scale`` read, with a margin past the widest filter's support (bicubic: 2). Works on
    single rows and, element by element, on arrays of them."""
    first = np.maximum(0, np.floor(np.multiply(start, scale)).astype(int) - 3)
    last = np.minimum(limit, np.ceil(np.multiply(stop, scale)).astype(int) + 3)
    return first, last


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

    OpenCV's exact transform (Felzenszwalb's, linear in the pixels, outside the GIL): ~7 ms on
    a ragged megapixel mask where scipy's took ~50 ms and 16-bit shifting in tiles ~25 ms.
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
