"""Mask arithmetic: unit tests plus hypothesis properties against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from regionedit import masks
from regionedit.errors import SegmentationError

# no deadline: the first example of a run pays for importing scipy
properties = settings(max_examples=60, deadline=None)

small_masks = arrays(
    bool, st.tuples(st.integers(1, 14), st.integers(1, 14)), elements=st.booleans()
)
radii = st.integers(0, 5)


def _disk_dilation(mask: np.ndarray, px: int) -> np.ndarray:
    """Brute force: every pixel within Euclidean distance px of some mask pixel."""
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    if ys.size == 0:
        return np.zeros_like(mask)
    dist2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
    return (dist2 <= px * px).any(axis=-1)


def _disk(height: int, width: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


# -- grow / shrink / invert / binarize -------------------------------------------------------


@properties
@given(small_masks, radii)
def test_grow_is_disk_dilation(mask: np.ndarray, px: int) -> None:
    np.testing.assert_array_equal(masks.grow(mask, px), _disk_dilation(mask, px))


@properties
@given(small_masks, radii)
def test_shrink_is_the_dual_of_grow(mask: np.ndarray, px: int) -> None:
    # eroding the mask == growing its complement, and the image border never erodes
    np.testing.assert_array_equal(masks.erode(mask, px), ~_disk_dilation(~mask, px))


@properties
@given(small_masks, radii, radii)
def test_grow_is_monotone(mask: np.ndarray, a: int, b: int) -> None:
    small, large = sorted((a, b))
    grown_small, grown_large = masks.grow(mask, small), masks.grow(mask, large)
    assert not (mask & ~grown_small).any()
    assert not (grown_small & ~grown_large).any()


def test_grow_and_shrink_a_large_disk_exactly() -> None:
    # a megapixel-sized mask whose edge has pixels at exactly 20 px: none may fall either side
    from scipy.ndimage import distance_transform_edt

    mask = _disk(1100, 1300, 540, 700, 300)
    grown = masks.grow(mask, 20)
    np.testing.assert_array_equal(grown, distance_transform_edt(~mask) <= 20)
    assert grown[540, 700 + 320] and not grown[540, 700 + 322]
    shrunk = masks.erode(mask, 20)
    assert shrunk[540, 700 + 279] and not shrunk[540, 700 + 281]


@pytest.mark.parametrize("px", [1, 6, 12, 40])
def test_grow_and_feather_match_the_euclidean_transform_on_a_ragged_mask(px: int) -> None:
    # against scipy's exact transform, on a ragged outline with holes and specks
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    noise = np.random.default_rng(7).random((300, 420))
    mask = gaussian_filter(noise, 4) > 0.5
    np.testing.assert_array_equal(masks.grow(mask, px), distance_transform_edt(~mask) <= px)
    expected = np.clip((distance_transform_edt(mask) - 0.5) / px, 0.0, 1.0)
    np.testing.assert_allclose(masks.feather(mask, px), expected, atol=1e-6)


def test_shrink_keeps_a_subject_cut_by_the_frame() -> None:
    mask = np.zeros((20, 20), bool)
    mask[10:, :] = True  # subject continues below the image
    shrunk = masks.erode(mask, 3)
    assert shrunk[19].all() and not shrunk[12].any() and shrunk[14].all()


def test_px_zero_and_empty_masks() -> None:
    mask = _disk(10, 10, 5, 5, 3)
    np.testing.assert_array_equal(masks.grow(mask, 0), mask)
    np.testing.assert_array_equal(masks.erode(mask, 0), mask)
    empty = np.zeros((6, 7), bool)
    assert not masks.grow(empty, 3).any() and not masks.erode(empty, 3).any()
    assert masks.erode(~empty, 3).all() and masks.grow(~empty, 3).all()
    with pytest.raises(ValueError, match=">= 0"):
        masks.grow(mask, -1)


def test_binarize_and_invert() -> None:
    alpha = np.array([[0.0, 0.49, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(masks.binarize(alpha), [[False, False, True, True]])
    np.testing.assert_array_equal(masks.binarize(alpha, 0.2), [[False, True, True, True]])
    np.testing.assert_array_equal(
        masks.binarize(np.array([[0, 127, 128, 255]], np.uint8)), [[False, False, True, True]]
    )
    np.testing.assert_array_equal(masks.invert(np.array([[True, False]])), [[False, True]])


# -- feather ---------------------------------------------------------------------------------


@properties
@given(small_masks, st.integers(0, 6))
def test_feather_is_zero_outside_and_within_unit_range(mask: np.ndarray, px: int) -> None:
    soft = masks.feather(mask, px)
    assert soft.dtype == np.float32 and soft.shape == mask.shape
    assert (soft[~mask] == 0).all()
    assert (soft >= 0).all() and (soft <= 1).all()
    assert (soft[mask] > 0).all()
    # full strength only where the ramp is over: more than px pixels inside the edge
    full = soft == 1
    assert not (full & ~masks.erode(mask, px)).any()
    assert not (masks.erode(mask, px + 1) & ~full).any()


def test_feather_ramp_values() -> None:
    mask = np.zeros((12, 20), bool)
    mask[:, 10:] = True
    row = masks.feather(mask, 4)[6]
    np.testing.assert_allclose(row[8:16], [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1])
    np.testing.assert_array_equal(masks.feather(mask, 0), mask.astype(np.float32))


# -- foreground / background masks -----------------------------------------------------------


def _subject(height: int = 60, width: int = 80) -> np.ndarray:
    """Soft alpha: a disk with a 2-pixel soft edge."""
    yy, xx = np.mgrid[:height, :width]
    dist = np.hypot(yy - 30, xx - 40)
    return np.clip((20 - dist) / 2 + 0.5, 0, 1).astype(np.float32)


def test_foreground_mask_covers_the_grown_subject() -> None:
    alpha = _subject()
    fg = masks.foreground_mask(alpha, grow_px=6, feather_px=4)
    subject = masks.binarize(alpha)
    assert fg.dtype == np.float32
    assert (fg[subject] == 1).all()  # grow >= feather: the whole subject is regenerated
    assert (fg[~masks.grow(subject, 6)] == 0).all()
    assert 0 < fg[30, 40 + 24] < 1  # the soft seam lies in the grown band


@properties
@given(st.integers(0, 8), st.integers(0, 8))
def test_background_mask_reaches_into_the_subject_by_grow_px(grow_px: int, feather_px: int) -> None:
    alpha = _subject()
    bg = masks.background_mask(alpha, grow_px=grow_px, feather_px=feather_px)
    subject = masks.binarize(alpha)
    reach = masks.grow(~subject, grow_px)
    np.testing.assert_array_equal(bg > 0, reach)
    assert (bg[masks.erode(subject, grow_px)] == 0).all()
    assert (bg[~_disk(60, 80, 30, 40, 30)] == 1).all()  # the true background: fully


def test_background_mask_of_a_soft_edge_example() -> None:
    alpha = _subject()
    bg = masks.background_mask(alpha, grow_px=3, feather_px=2)
    row = bg[30]
    # the subject's last pixel on the right is x = 60; the mask reaches 3 px into it (x = 58..)
    assert row[40] == 0 and row[57] == 0
    assert row[58] == pytest.approx(0.25) and row[59] == pytest.approx(0.75)
    assert row[60] == 1 and row[70] == 1


# -- coverage --------------------------------------------------------------------------------


@properties
@given(small_masks)
def test_coverage_is_the_share_of_positive_pixels(mask: np.ndarray) -> None:
    assert masks.coverage(mask) == pytest.approx(mask.mean())
    assert masks.coverage(mask.astype(np.float32) * 0.3) == pytest.approx(mask.mean())


def test_check_coverage_refuses_empty_and_full_masks() -> None:
    with pytest.raises(SegmentationError, match="found no subject") as info:
        masks.check_coverage(np.zeros((50, 50), np.float32), what="foreground mask")
    message = str(info.value)
    assert "foreground mask" in message and "region=" in message and "RGBA" in message
    assert "segmentation model" in message
    with pytest.raises(SegmentationError, match="covers the whole image"):
        masks.check_coverage(np.ones((50, 50), np.float32))
    masks.check_coverage(masks.feather(_disk(50, 50, 25, 25, 10), 2))
    masks.check_coverage(np.ones((50, 50)), max_fraction=1.0)


# -- room for a new shape -------------------------------------------------------------------


@properties
@given(
    st.integers(4, 60), st.integers(4, 60), st.integers(0, 59), st.integers(0, 59),
    st.integers(1, 30), st.integers(1, 30),
)
def test_padded_box_holds_the_subject_and_its_padding_inside_the_image(
    height: int, width: int, top: int, left: int, tall: int, wide: int
) -> None:
    subject = np.zeros((height, width), dtype=bool)
    subject[top % height : top % height + tall, left % width : left % width + wide] = True
    box = masks.padded_box(subject)
    assert box.shape == subject.shape  # never leaves the image
    assert not (subject & ~box).any()  # holds the subject
    rows, cols = np.flatnonzero(subject.any(1)), np.flatnonzero(subject.any(0))
    pad = round(masks.BOX_PADDING_SHARE * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    # the subject's bounding box grown by the padding, clipped to the image, all True
    expected = np.zeros_like(subject)
    expected[max(0, rows[0] - pad) : rows[-1] + 1 + pad, max(0, cols[0] - pad) : cols[-1] + 1 + pad] = True
    np.testing.assert_array_equal(box, expected)


def test_padded_box_of_an_empty_mask_is_empty() -> None:
    assert not masks.padded_box(np.zeros((10, 10), dtype=bool)).any()


def test_room_adds_the_padded_box_to_the_outline_and_keep_is_the_outline() -> None:
    alpha = _disk(80, 100, 40, 50, 12).astype(np.float32)
    outline = masks.foreground_mask(alpha, grow_px=3, feather_px=2)
    roomy = masks.foreground_mask(alpha, grow_px=3, feather_px=2, room=True)
    box = masks.padded_box(alpha > 0.5)
    assert (roomy >= outline).all()  # contains the outline
    assert (roomy[box & ~masks.erode(box, 2)] > 0).all() and (roomy[masks.erode(box, 2)] == 1).all()
    assert (roomy > 0).sum() > (outline > 0).sum() * 1.3
    np.testing.assert_array_equal(
        masks.foreground_mask(alpha, grow_px=3, feather_px=2, room=False), outline
    )


# -- alpha, images, crop boxes ---------------------------------------------------------------


def test_has_meaningful_alpha() -> None:
    assert not masks.has_meaningful_alpha(None)
    assert not masks.has_meaningful_alpha(np.full((40, 40), 255, np.uint8))
    assert not masks.has_meaningful_alpha(np.zeros((40, 40), np.uint8))
    corner = np.full((40, 40), 255, np.uint8)
    corner[0, :3] = 0  # a few transparent pixels are not a subject matte
    assert not masks.has_meaningful_alpha(corner)
    cutout = np.where(_disk(40, 40, 20, 20, 10), 255, 0).astype(np.uint8)
    assert masks.has_meaningful_alpha(cutout)


@properties
@given(arrays(np.float32, (7, 9), elements=st.floats(0, 1, width=32)))
def test_to_image_and_back(mask: np.ndarray) -> None:
    image = masks.to_image(mask)
    assert image.mode == "L" and image.size == (9, 7)
    back = masks.from_image(image)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, mask, atol=0.5 / 255 + 1e-6)


def test_from_image_of_rgb() -> None:
    assert masks.from_image(Image.new("RGB", (4, 3), (255, 255, 255))).min() == 1.0


@properties
@given(small_masks, st.integers(0, 6), st.integers(0, 20))
def test_crop_box_contains_the_mask(mask: np.ndarray, padding: int, min_side: int) -> None:
    box = masks.crop_box(mask, padding=padding, min_side=min_side)
    if not mask.any():
        assert box is None
        return
    assert box is not None
    left, top, right, bottom = box
    height, width = mask.shape
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    inside = np.zeros_like(mask)
    inside[top:bottom, left:right] = True
    assert not (mask & ~inside).any()
    assert right - left >= min(min_side, width) and bottom - top >= min(min_side, height)
    # padding is honoured where the image allows
    ys, xs = np.nonzero(mask)
    assert left <= max(xs.min() - padding, 0) and right >= min(xs.max() + 1 + padding, width)


def test_crop_box_example() -> None:
    mask = np.zeros((100, 200), bool)
    mask[40:50, 190:195] = True
    assert masks.crop_box(mask, padding=4) == (186, 36, 199, 54)
    # widened to 64 px, shifted left to stay inside the image
    assert masks.crop_box(mask, padding=4, min_side=64) == (136, 13, 200, 77)
