"""Stage 4, compositing: the generated pixels go in where the mask says, nothing else changes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from regionedit import masks
from regionedit.composite import Placement, SeamCompositor, weight_image
from regionedit.imageio import load_image

properties = settings(max_examples=40, deadline=None)
plain = SeamCompositor(color_match=False)

images = arrays(np.uint8, (9, 11, 3))
soft_masks = arrays(
    np.float32, (9, 11), elements=st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1, width=32))
)


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@properties
@given(images, images, soft_masks)
def test_kept_pixels_are_the_input_and_regenerated_ones_the_generation(
    original: np.ndarray, generated: np.ndarray, mask: np.ndarray
) -> None:
    loaded = load_image(original)
    out = np.asarray(plain.composite(loaded, Image.fromarray(generated),
                                     Placement(loaded.rgb, mask)))
    np.testing.assert_array_equal(out[mask == 0], original[mask == 0])
    np.testing.assert_array_equal(out[mask == 1], generated[mask == 1])
    # in between, the blend by the 8-bit weight
    expected = original + (generated.astype(float) - original) * mask[..., None]
    assert np.abs(out - expected).max() <= 2


@properties
@given(images, images, soft_masks, soft_masks)
def test_a_background_edit_puts_the_subject_back_with_its_alpha(
    original: np.ndarray, generated: np.ndarray, mask: np.ndarray, alpha: np.ndarray
) -> None:
    loaded = load_image(original)
    placement = Placement(loaded.rgb, mask, subject_alpha=alpha)
    out = np.asarray(plain.composite(loaded, Image.fromarray(generated), placement)).astype(int)
    np.testing.assert_array_equal(out[alpha == 1], original[alpha == 1])
    np.testing.assert_array_equal(out[mask == 0], original[mask == 0])
    # one blend with weight mask * (1 - alpha) is the blend by the mask, then the subject
    # pasted over it with its alpha, up to 8-bit rounding of the weight
    blended = original + (generated.astype(float) - original) * mask[..., None]
    two_steps = blended + (original - blended) * alpha[..., None]
    assert np.abs(out - two_steps).max() <= 2


def test_a_small_generation_is_scaled_up_and_untouched_pixels_stay_exact():
    original = _noise(333, 500, 1)
    generated = Image.fromarray(_noise(67, 100, 2))
    mask = np.zeros((67, 100), dtype=np.float32)
    mask[10:60, 20:90] = 1.0
    mask[10:60, 20:25] = 0.5  # a seam of partial weights
    loaded = load_image(original)
    small = loaded.rgb.resize((100, 67))
    out = np.asarray(plain.composite(loaded, generated, Placement(small, mask)))
    full_mask = masks.resize(mask, (500, 333))
    untouched = full_mask == 0
    assert untouched.mean() > 0.3
    np.testing.assert_array_equal(out[untouched], original[untouched])
    inside = full_mask == 1
    import cv2

    scaled = cv2.resize(np.asarray(generated), (500, 333), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out[inside], scaled[inside])


def test_a_crop_goes_back_where_it_came_from():
    original = _noise(120, 160, 3)
    loaded = load_image(original)
    box = (40, 30, 100, 90)
    mask = np.zeros((60, 60), dtype=np.float32)
    mask[10:50, 10:50] = 1.0
    generated = np.full((60, 60, 3), 200, dtype=np.uint8)
    out = np.asarray(plain.composite(loaded, Image.fromarray(generated),
                                     Placement(loaded.rgb.crop(box), mask, box=box)))
    assert (out[40:80, 50:90] == 200).all()
    outside = np.ones((120, 160), dtype=bool)
    outside[40:80, 50:90] = False
    np.testing.assert_array_equal(out[outside], original[outside])


def test_the_result_comes_back_in_the_inputs_mode():
    gray = Image.fromarray(_noise(40, 50, 4)[..., 0], "L")
    loaded = load_image(gray)
    mask = np.zeros((40, 50), dtype=np.float32)
    mask[10:30, 10:40] = 1.0
    out = plain.composite(loaded, Image.new("RGB", (50, 40), (255, 0, 0)), Placement(loaded.rgb, mask))
    assert out.mode == "L" and out.size == (50, 40)
    np.testing.assert_array_equal(np.asarray(out)[mask == 0], np.asarray(gray)[mask == 0])


def test_colour_matching_removes_a_cast_but_keeps_the_kept_pixels():
    original = np.full((64, 64, 3), 120, dtype=np.uint8)
    original[:, 32:] = 60
    mask = np.zeros((64, 64), dtype=np.float32)
    mask[16:48, 16:48] = 1.0
    # the generator redrew everything with a +30 cast
    generated = np.clip(original.astype(int) + 30, 0, 255).astype(np.uint8)
    loaded = load_image(original)
    matched = np.asarray(SeamCompositor().composite(loaded, Image.fromarray(generated),
                                                    Placement(loaded.rgb, mask)))
    unmatched = np.asarray(plain.composite(loaded, Image.fromarray(generated),
                                           Placement(loaded.rgb, mask)))
    inside = mask == 1
    assert np.abs(matched[inside].astype(int) - original[inside]).mean() < 5
    assert np.abs(unmatched[inside].astype(int) - original[inside]).mean() > 25
    np.testing.assert_array_equal(matched[mask == 0], original[mask == 0])


def test_weight_image_is_mask_times_what_is_not_subject():
    mask = np.array([[0.0, 0.5, 1.0, 1.0]], dtype=np.float32)
    alpha = np.array([[1.0, 0.0, 0.5, 1.0]], dtype=np.float32)
    assert np.asarray(weight_image(mask)).tolist() == [[0, 128, 255, 255]]
    assert np.asarray(weight_image(mask, alpha)).tolist() == [[0, 128, 128, 0]]
