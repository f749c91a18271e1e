"""Colour conversions and colour matching at the seam, on constructed edits of real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from regionedit.colormatch import (
    delta_e76,
    lab_to_srgb,
    match_colors,
    seam_bands,
    srgb_to_lab,
)
from regionedit.errors import ImageInputError
from regionedit.score import seam_delta_e


def _photo(name: str, size: tuple[int, int] = (160, 128)) -> np.ndarray:
    from skimage import data

    image = Image.fromarray(getattr(data, name)())
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


def _warm_cast(rgb: np.ndarray) -> np.ndarray:
    """A global cast like an inpainting VAE's: gains of +8% red, -10% blue in linear light."""
    x = rgb / 255.0
    linear = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    linear = np.clip(linear * np.array([1.08, 1.0, 0.90]), 0.0, 1.0)
    x = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.round(x * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene() -> dict[str, np.ndarray]:
    """An edit of the astronaut photo: the centre box regenerated.

    ``recast`` is the generator redrawing the original with a warm cast everywhere; ``beach``
    is a legitimate change (the coffee photo inside the box, reaching 8 px past it as a latent
    model's output does) under the same cast.
    """
    original = _photo("astronaut")
    region = np.zeros(original.shape[:2], dtype=bool)
    region[32:96, 40:120] = True
    spill = np.zeros_like(region)
    spill[24:104, 32:128] = True
    new = _photo("coffee")
    return {
        "original": original,
        "region": region,
        "mask": region.astype(np.float32),
        "new": new,
        "recast": _warm_cast(original),
        "beach": _warm_cast(np.where(spill[..., None], new, original)),
    }


def _composite(generated: np.ndarray, original: np.ndarray, region: np.ndarray) -> np.ndarray:
    return np.where(region[..., None], generated, original)


def test_lab_matches_scikit_image_and_round_trips_exactly() -> None:
    from skimage.color import rgb2lab

    photo = _photo("astronaut")
    assert np.abs(srgb_to_lab(photo) - rgb2lab(photo)).max() < 1e-2
    assert np.array_equal(lab_to_srgb(srgb_to_lab(photo)), photo)
    # white and black land on the Lab axis ends
    assert np.allclose(srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0]], np.uint8)),
                       [[100, 0, 0], [0, 0, 0]], atol=1e-2)


def test_delta_e76_is_lab_distance() -> None:
    assert delta_e76(np.array([50.0, 10.0, -5.0]), np.array([60.0, 0.0, -5.0])) == pytest.approx(
        np.hypot(10, 10)
    )


def test_seam_bands_are_band_deep_on_each_side() -> None:
    region = np.zeros((40, 40), dtype=bool)
    region[:, 20:] = True
    inner, outer = seam_bands(region, 3)
    assert np.array_equal(np.nonzero(inner.any(axis=0))[0], [20, 21, 22])
    assert np.array_equal(np.nonzero(outer.any(axis=0))[0], [17, 18, 19])
    # no edge, no band
    for flat in (np.zeros_like(region), np.ones_like(region)):
        assert not any(band.any() for band in seam_bands(flat, 3))


def test_matching_keeps_unmasked_pixels_and_is_deterministic(scene) -> None:
    first = match_colors(scene["recast"], scene["original"], scene["mask"])
    again = match_colors(scene["recast"], scene["original"], scene["mask"])
    assert first.dtype == np.uint8 and first.shape == scene["original"].shape
    assert np.array_equal(first[~scene["region"]], scene["original"][~scene["region"]])
    assert np.array_equal(first, again)
    assert not np.array_equal(first[scene["region"]], scene["recast"][scene["region"]])


def test_cast_removes_a_generator_cast_and_the_seam_step(scene) -> None:
    original, region = scene["original"], scene["region"]
    before = _composite(scene["recast"], original, region)
    after = match_colors(scene["recast"], original, scene["mask"])
    baseline = seam_delta_e(original, region, 4)
    assert seam_delta_e(after, region, 4) - baseline < 0.5 * (
        seam_delta_e(before, region, 4) - baseline
    )
    error_before = delta_e76(srgb_to_lab(before[region]), srgb_to_lab(original[region])).mean()
    error_after = delta_e76(srgb_to_lab(after[region]), srgb_to_lab(original[region])).mean()
    assert error_after < 0.5 * error_before


def test_cast_keeps_a_legitimate_change(scene) -> None:
    """The new content, minus the cast, must survive: the beach stays a beach."""
    original, region = scene["original"], scene["region"]
    truth = srgb_to_lab(scene["new"][region])
    uncorrected = delta_e76(srgb_to_lab(scene["beach"][region]), truth).mean()
    out = match_colors(scene["beach"], original, scene["mask"])
    assert delta_e76(srgb_to_lab(out[region]), truth).mean() < uncorrected


def test_cast_leaves_a_faithful_generator_alone(scene) -> None:
    """No cast to learn: the new content comes back nearly untouched (well under 1 dE)."""
    original, region = scene["original"], scene["region"]
    noise = np.random.default_rng(0).integers(-2, 3, original.shape)  # rendering noise only
    generated = np.clip(_composite(scene["new"], original, region) + noise, 0, 255).astype(np.uint8)
    out = match_colors(generated, original, scene["mask"])
    change = delta_e76(srgb_to_lab(out[region]), srgb_to_lab(generated[region])).mean()
    assert change < 1.0


def test_cast_does_nothing_when_the_kept_pixels_were_not_redrawn(scene) -> None:
    """An unrelated image around the mask tells nothing about a cast: no correction."""
    original, region = scene["original"], scene["region"]
    unrelated = _photo("coffee")
    out = match_colors(unrelated, original, scene["mask"])
    assert np.array_equal(out[region], unrelated[region])
    assert np.array_equal(out[~region], original[~region])


def test_strength_blends_towards_no_correction(scene) -> None:
    original, region, mask = scene["original"], scene["region"], scene["mask"]
    none = match_colors(scene["recast"], original, mask, strength=0.0)
    half = match_colors(scene["recast"], original, mask, strength=0.5)
    full = match_colors(scene["recast"], original, mask)
    assert np.array_equal(none[region], scene["recast"][region])
    lab = {k: srgb_to_lab(v[region]).mean(axis=0) for k, v in
           {"none": none, "half": half, "full": full}.items()}
    assert np.allclose(lab["half"], (lab["none"] + lab["full"]) / 2, atol=0.5)


def test_empty_and_full_masks(scene) -> None:
    original, generated = scene["original"], scene["recast"]
    empty = np.zeros(original.shape[:2], dtype=np.float32)
    assert np.array_equal(match_colors(generated, original, empty), original)
    # nothing left to match against: the generated image comes back as it is
    assert np.array_equal(match_colors(generated, original, np.ones_like(empty)), generated)


def test_bad_inputs_raise(scene) -> None:
    original, mask = scene["original"], scene["mask"]
    with pytest.raises(ImageInputError, match="one size"):
        match_colors(original[:, :-1], original, mask)
    with pytest.raises(ImageInputError, match="uint8"):
        match_colors(original.astype(np.float32), original.astype(np.float32), mask)
    with pytest.raises(ValueError, match="strength"):
        match_colors(original, original, mask, strength=2.0)


def test_float32_lab_round_trips_every_8_bit_colour_it_is_given() -> None:
    """The correction converts in float32; that precision must not move any 8-bit colour."""
    codes = np.arange(0, 2**24, 7, dtype=np.uint32)  # 2.4 M colours spread over the cube
    rgb = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=-1)
    rgb = rgb.astype(np.uint8)
    lab32 = srgb_to_lab(rgb, dtype=np.float32)
    assert lab32.dtype == np.float32
    assert np.abs(lab32 - srgb_to_lab(rgb)).max() < 1e-3
    assert np.array_equal(lab_to_srgb(lab32), rgb)


def test_cast_is_corrected_in_every_part_of_a_large_region() -> None:
    """A region taller than one correction step (about 1 M pixels) is corrected throughout."""
    original = _photo("astronaut", (1024, 1536))
    region = np.zeros(original.shape[:2], dtype=bool)
    region[100:1436, 150:874] = True
    generated = _warm_cast(original)
    out = match_colors(generated, original, region.astype(np.float32))
    assert np.array_equal(out[~region], original[~region])
    truth = srgb_to_lab(original)
    for rows in (slice(100, 700), slice(700, 1436)):  # first and later correction steps
        part = region.copy()
        part[:rows.start] = part[rows.stop:] = False
        before = delta_e76(srgb_to_lab(generated[part]), truth[part]).mean()
        after = delta_e76(srgb_to_lab(out[part]), truth[part]).mean()
        assert after < 0.6 * before
