"""Colour tools for the seam: sRGB <-> CIELAB, Delta-E, seam bands, and colour matching.

Inpainting pipelines shift colours: the VAE round trip gives the whole generated image a cast
(diffusers issues 4782, 9867), so once the original pixels are pasted back outside the mask,
a colour step can show along the seam. :func:`match_colors` removes that cast from the
regenerated region before compositing: a Reinhard mean/std transfer in Lab, learnt on a *kept*
ring outside the mask (past the few pixels new content may spill into), from the generator's
rendering of those pixels to the original ones. There the content is meant to be the same, so
the difference is the pipeline's cast alone, and removing it does not undo the edit (a new beach
stays a beach). When the generator did not redraw the kept pixels, the region is left as it is.
docs/compositing.md compares it with transfers that pull new content towards the old colours
(``python -m bench.colormatch_eval``).
"""

from __future__ import annotations

import math

import numpy as np

from ._log import log, once
from .errors import ImageInputError

__all__ = [
    "match_colors",
    "reinhard_transfer",
    "srgb_to_lab",
    "lab_to_srgb",
    "delta_e76",
    "seam_bands",
]


# sRGB (D65) primaries -> CIE XYZ, and the D65 2-degree white point; the same constants as
# scikit-image's rgb2lab, so results agree with it to rounding.
_RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0  # where CIELAB's cube root switches to its linear segment

# A flat band (clear sky, a wall) has almost no spread: without bounds, a std ratio would
# amplify noise many times over.
_STD_RATIO_RANGE = (0.5, 2.0)
# "cast": a band pixel whose original-minus-generated difference lies further than this from
# the typical difference is new content, not cast (see _same_content)
_CAST_INLIER_DELTA_E = 10.0
_MIN_CAST_PIXELS = 64
# at most this many ring pixels (evenly spaced) are used to learn the cast
_MAX_CAST_SAMPLES = 8192
# A latent diffusion model regenerates whole 8 x 8 px latent cells, so new content can spill
# a cell past the mask: the cast is learnt beyond that.
_LATENT_CELL = 8
# The strong casts bench/colormatch_eval.py simulates move the ring's mean by under 9 Delta-E;
# a mean difference past this means the generator drew other content on the kept ring, and
# matching it would undo the edit.
_MAX_CAST_DELTA_E = 20.0
# Grid points per channel of the lookup table the colour map is applied with (Pillow allows up
# to 65): at 33, trilinear interpolation stays within one 8-bit level of the exact map.
_LUT_SIZE = 33


def srgb_to_lab(rgb: np.ndarray, *, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """CIELAB (D65) of sRGB values: uint8 in 0..255 (or floats in 0..1), shape (..., 3).

    ``dtype`` is the precision of the result; float32 is ample for colours that go back to
    8 bits, and halves the time and memory on large images.
    """
    values = np.asarray(rgb)
    # 8-bit input: look the 256 linear values up instead of raising millions to a power
    if values.dtype == np.uint8:
        linear = _SRGB_U8_TO_LINEAR.astype(dtype, copy=False)[values]
    else:
        linear = _to_linear(values).astype(dtype, copy=False)
    xyz = linear @ _RGB_TO_XYZ.T.astype(dtype, copy=False)
    xyz /= _D65_WHITE.astype(dtype, copy=False)
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def _to_linear(srgb: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve of values in 0..1."""
    srgb = np.asarray(srgb, dtype=np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


_SRGB_U8_TO_LINEAR = _to_linear(np.arange(256) / 255.0)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """uint8 sRGB of CIELAB (D65) values, shape (..., 3); out-of-gamut colours are clipped.

    float32 input is converted in float32, anything else in float64.
    """
    return np.round(_lab_to_unit_srgb(lab) * 255.0).astype(np.uint8)


def _lab_to_unit_srgb(lab: np.ndarray, *, clip: bool = True) -> np.ndarray:
    """sRGB in [0, 1] (floats, clipped to the gamut unless ``clip=False``) of CIELAB (D65)
    values."""
    lab = np.asarray(lab)
    dtype = np.float32 if lab.dtype == np.float32 else np.float64
    lab = lab.astype(dtype, copy=False)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0))
    xyz *= _D65_WHITE.astype(dtype, copy=False)
    linear = xyz @ _XYZ_TO_RGB.T.astype(dtype, copy=False)
    if clip:
        np.clip(linear, 0.0, 1.0, out=linear)
    # the transfer curve, odd-extended below 0 so that an unclipped value keeps its sign
    magnitude = np.abs(linear)
    scaled = np.sign(linear) * np.where(
        magnitude <= 0.0031308, 12.92 * magnitude, 1.055 * magnitude ** (1.0 / 2.4) - 0.055
    )
    return np.clip(scaled, 0.0, 1.0) if clip else scaled


def delta_e76(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIE76 colour difference: Euclidean distance in Lab (about 2.3 is just noticeable)."""
    return np.linalg.norm(np.asarray(lab1) - np.asarray(lab2), axis=-1)


def seam_bands(region: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The two sides of the seam around ``region`` (bool HxW), each ``width`` pixels deep.

    Returns ``(inner, outer)``: region pixels within ``width`` px (Euclidean) of a pixel
    outside it, and outside pixels within ``width`` px of the region. The image border is not
    a seam. Both are empty when the region is empty or covers the whole image.
    """
    from scipy import ndimage

    region = np.asarray(region, dtype=bool)
    if not region.any() or region.all():
        empty = np.zeros_like(region)
        return empty, empty.copy()
    # distance_transform_edt gives each nonzero pixel its distance to the nearest zero one
    inner = region & (ndimage.distance_transform_edt(region) <= width)
    outer = ~region & (ndimage.distance_transform_edt(~region) <= width)
    return inner, outer


def match_colors(
    generated: np.ndarray,
    original: np.ndarray,
    mask: np.ndarray,
    *,
    band: int = 16,
    strength: float = 1.0,
    gap: int | None = None,
) -> np.ndarray:
    """Remove the generator's colour cast from the regenerated region, so that no step shows at
    the seam.

    ``generated`` and ``original`` are uint8 HxWx3, ``mask`` is HxW (> 0 = regenerated);
    ``generated`` is the inpainter's output before compositing, so outside the mask it holds
    the generator's own rendering of the kept pixels, which is what the cast is learnt from.
    ``band`` is the depth in pixels of the ring the cast is learnt on; ``strength`` in [0, 1]
    blends between no correction and the full one. ``gap`` is how far past the mask new content
    may spill in ``generated``; the ring starts beyond it. The default assumes a latent model
    generating at 512 px: one 8 px latent cell scaled to the image,
    ``max(8, ceil(8 * long_side / 512))``.

    Returns uint8 HxWx3: corrected generated pixels where mask > 0 and the original pixels
    everywhere else. Deterministic.
    """
    generated = np.asarray(generated)
    original = np.asarray(original)
    region = np.asarray(mask) > 0
    if generated.shape != original.shape or generated.shape[:2] != region.shape:
        raise ImageInputError(
            f"match_colors needs images and mask of one size, got generated {generated.shape}, "
            f"original {original.shape}, mask {region.shape}. Resize the generated image to the "
            "original's size before matching colours."
        )
    if generated.ndim != 3 or generated.shape[2] != 3 or generated.dtype != np.uint8:
        raise ImageInputError(
            f"match_colors needs uint8 HxWx3 RGB arrays, got {generated.dtype} "
            f"{generated.shape}. Convert with np.asarray(image.convert('RGB'))."
        )
    if band < 1:
        raise ValueError(f"band must be at least 1 pixel, got {band}")
    if gap is None:
        gap = max(_LATENT_CELL, math.ceil(_LATENT_CELL * max(region.shape) / 512))
    if gap < 0:
        raise ValueError(f"gap must be at least 0 pixels, got {gap}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")

    # what is returned whenever no correction can be made
    result = original.copy()
    np.copyto(result, generated, where=region[..., None])
    if not region.any():
        return result
    if region.all():
        log.debug("Colour matching skipped: the mask leaves no original pixels to match.")
        return result
    # Learnt on the small ring first: when no cast can be told, no regenerated pixel is
    # converted at all.
    samples = _cast_samples(generated, original, region, gap, band)
    if samples is not None:
        reinhard_transfer(result, region, *samples, strength=strength)
    return result


def _cast_samples(
    generated: np.ndarray,
    original: np.ndarray,
    region: np.ndarray,
    gap: int,
    band: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Paired Lab samples (generated, original) of the generator's cast, or None if it
    cannot be told.

    The cast is learnt on the kept ring from ``gap`` to ``gap + band`` px (chessboard
    distance) outside the region, where the generator should have redrawn the original
    content.
    """
    import cv2

    from .masks import crop_box

    reach = gap + band
    # The ring lies within ``reach`` of the region, so only that box is measured. Chessboard
    # distance never exceeds the Euclidean one, so every ring pixel is at least ``gap`` px from
    # the region, as the spill needs; the ring is a sample of kept pixels, and its exact shape
    # does not matter. (The region is not empty here, so there is a box.)
    left, top, right, bottom = crop_box(region, padding=reach) or (0, 0, *region.shape[::-1])
    window = np.s_[top:bottom, left:right]
    distance = cv2.distanceTransform((~region[window]).astype(np.uint8), cv2.DIST_C, 3)
    ring = (distance > gap) & (distance <= reach)
    # Means, spreads and medians are settled long before the ring's tens of thousands of
    # pixels: an evenly spaced sample of them costs a fraction of the Lab conversions.
    rows, cols = np.nonzero(ring)
    stride = max(1, len(rows) // _MAX_CAST_SAMPLES)
    # indexing with the sampled positions, not the whole ring, gathers only the sample
    picked = rows[::stride] + top, cols[::stride] + left
    generated_ring = srgb_to_lab(generated[picked])
    original_ring = srgb_to_lab(original[picked])
    same = _same_content(generated_ring, original_ring)
    if same.sum() < max(_MIN_CAST_PIXELS, 0.5 * len(same)):
        once(
            "colormatch-not-redrawn",
            "Colour matching skipped: the generated image does not redraw the kept pixels near "
            "the seam closely enough to tell its colour cast (said once; see the debug log).",
        )
        return None
    shift = delta_e76(original_ring[same].mean(axis=0), generated_ring[same].mean(axis=0))
    if shift > _MAX_CAST_DELTA_E:
        once(
            "colormatch-new-content",
            "Colour matching skipped: a shift of Delta-E %.0f is new content, not a cast (said "
            "once; see the debug log).", shift,
        )
        return None
    return generated_ring[same], original_ring[same]


def _same_content(generated: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Which band pixels (N x 3 Lab, paired) the generator rendered as the original content.

    A cast moves every pixel by a similar amount; new content that spills past the mask (a
    latent cell is 8 px wide) differs wildly. Keep the pixels whose difference lies near the
    median difference, twice, so that the spill does not count as cast.
    """
    residual = original - generated
    same = np.ones(len(residual), dtype=bool)
    for _ in range(2):
        if not same.any():
            break
        typical = np.median(residual[same], axis=0)
        same = delta_e76(residual, typical) < _CAST_INLIER_DELTA_E
    return same


def reinhard_transfer(
    result: np.ndarray,
    region: np.ndarray,
    source: np.ndarray,
    reference: np.ndarray,
    *,
    strength: float,
) -> None:
    """Map the colours of ``result`` (uint8 HxWx3) where ``region`` is True, in place, by the
    per-channel Lab mean/std map from ``source`` to ``reference`` (N x 3 Lab samples).

    The map depends on a pixel's colour alone, so it is computed once on a grid of colours and
    applied as a 3D lookup table with trilinear interpolation (Pillow's ``Color3DLUT``, in C):
    a few milliseconds for a megapixel, where converting every pixel to Lab and back took
    tens, and within one 8-bit level of the exact map (``tests/test_colormatch.py``).
    The bench's colour-matching comparison uses it with other samples.
    """
    from PIL import Image, ImageFilter

    source_std = source.std(axis=0)
    reference_std = reference.std(axis=0)
    ratio = np.clip((reference_std + 1e-6) / (source_std + 1e-6), *_STD_RATIO_RANGE)
    # matched = (lab - source_mean) * ratio + reference_mean, blended by strength
    gain = 1.0 + strength * (ratio - 1.0)
    offset = strength * (reference.mean(axis=0) - source.mean(axis=0) * ratio)
    levels = np.linspace(0.0, 1.0, _LUT_SIZE)
    # Color3DLUT's table order: red varies fastest, then green, then blue.
    blue, green, red = np.meshgrid(levels, levels, levels, indexing="ij")
    grid = np.stack([red, green, blue], axis=-1).reshape(-1, 3)
    # Unclipped: clipping inside the table would bend the map between grid points near the
    # gamut's edge; Pillow clips after interpolating.
    table = _lab_to_unit_srgb(srgb_to_lab(grid) * gain + offset, clip=False)
    lut = ImageFilter.Color3DLUT(_LUT_SIZE, table.astype(np.float32))
    mapped = np.asarray(Image.fromarray(result).filter(lut))
    np.copyto(result, mapped, where=region[..., None])
