"""Large photos: masks and generation on a scaled-down working copy, the full-size result
blended once. ``work_side`` is lowered so that test photos count as large."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from regionedit import Editor, masks
from regionedit.errors import SettingsError
from regionedit.colormatch import lab_to_srgb, reinhard_transfer, srgb_to_lab

FAST = dict(steps=2, seed=5)


def _rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


@pytest.fixture
def small_work_editor(rembg_segmenter, tiny_inpainter) -> Editor:
    return Editor(segmenter=rembg_segmenter, inpainter=tiny_inpainter, work_side=96)


@pytest.mark.parametrize("region", ["foreground", "background"])
def test_large_photo_keeps_every_unmasked_pixel(small_work_editor, chelsea_path, region):
    result = small_work_editor.edit(chelsea_path, "a cat", "a tiger", region=region, **FAST)
    original = _rgb(Image.open(chelsea_path))
    edited = _rgb(result.image)
    assert edited.shape == original.shape == (300, 451, 3)
    assert result.mask.shape == (300, 451) and result.mask.dtype == np.float32
    assert result.mask_result.scaled and max(result.mask_result.work_image.size) == 96
    kept = result.mask == 0
    assert kept.mean() > 0.05 and (result.mask == 1).mean() > 0.05
    assert np.array_equal(edited[kept], original[kept])
    changed = result.mask == 1
    assert np.abs(edited[changed] - original[changed]).mean() > 5


class EllipseSegmenter:
    """A segmenter whose subject is a crisp centred ellipse, at whatever size it is given."""

    name = "ellipse"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def subject_alpha(self, image: Image.Image) -> np.ndarray:
        self.sizes.append(image.size)
        width, height = image.size
        rows, cols = np.mgrid[:height, :width]
        inside = ((rows - height / 2) / (0.35 * height)) ** 2 + ((cols - width / 2) / (0.3 * width)) ** 2
        return (inside <= 1).astype(np.float32)

    def describe(self) -> dict:
        return {"segmenter": self.name}


def test_background_edit_of_a_large_photo_pastes_the_subject_back(tiny_inpainter, chelsea_path):
    segmenter = EllipseSegmenter()
    editor = Editor(segmenter=segmenter, inpainter=tiny_inpainter, work_side=96)
    result = editor.edit(chelsea_path, "a cat", "a cat on a beach", region="background", **FAST)
    assert segmenter.sizes == [(96, 64)]  # the segmenter saw the working copy only
    solid = result.mask_result.subject_alpha >= 1.0
    assert solid.mean() > 0.1
    assert np.array_equal(_rgb(result.image)[solid], _rgb(Image.open(chelsea_path))[solid])


def test_large_cut_out_keeps_its_own_alpha_edge(rembg_segmenter, tiny_inpainter, rgba_subject_path, tmp_path):
    editor = Editor(segmenter=rembg_segmenter, inpainter=tiny_inpainter, work_side=64)
    big = Image.open(rgba_subject_path).resize((384, 255), Image.Resampling.LANCZOS)
    big.save(tmp_path / "big.png")
    result = editor.edit(tmp_path / "big.png", "a cat", "a cat in snow", region="background", **FAST)
    assert result.mask_result.source == "input-alpha" and result.mask_result.scaled
    alpha = np.asarray(big.getchannel("A"))
    opaque = alpha == 255
    # the subject comes back exactly where the input's own (full-size) alpha is opaque
    assert np.array_equal(_rgb(result.image)[opaque], _rgb(big)[opaque])
    assert result.image.mode == "RGBA"


def test_edit_of_a_large_photo_leaves_the_callers_image_alone(small_work_editor, chelsea_path):
    photo = Image.open(chelsea_path).convert("RGB")
    before = photo.tobytes()
    result = small_work_editor.edit(photo, "a cat", "a tiger", region="background", **FAST)
    assert photo.tobytes() == before  # edit() composites in place, into its own copy only
    assert result.image is not photo and result.mask_result.scaled
    changed = result.mask == 1
    assert np.abs(_rgb(result.image)[changed] - _rgb(photo)[changed]).mean() > 5


def test_compositing_a_prepared_edit_twice_gives_the_same_image(small_work_editor, chelsea_path):
    settings = small_work_editor.settings("a cat", "a tiger", region="background", **FAST)
    prepared = small_work_editor.prepare(chelsea_path, settings)
    (generated,) = small_work_editor.generate([prepared])
    first = small_work_editor.composite(prepared, generated)
    second = small_work_editor.composite(prepared, generated)
    assert first.image is not second.image
    assert np.array_equal(_rgb(first.image), _rgb(second.image))


def test_larger_generation_than_the_working_copy_uses_the_full_image(small_work_editor, chelsea_path):
    result = small_work_editor.edit(chelsea_path, "a cat", "a tiger", region="foreground", max_side=128, **FAST)
    kept = result.mask == 0
    assert np.array_equal(_rgb(result.image)[kept], _rgb(Image.open(chelsea_path))[kept])


def test_grow_and_feather_shrink_with_the_working_copy(small_work_editor, chelsea_path):
    made = small_work_editor.mask(chelsea_path, "foreground", grow=20, feather=10)
    # 451 px -> 96 px: 20 px of growth is 4 working pixels, 10 px of feather 2
    alpha = made.work_alpha >= 0.5
    grown = masks.grow(alpha, 4)
    assert np.array_equal(made.work_mask > 0, grown)
    assert np.array_equal(made.work_mask, masks.feather(grown, 2))


def test_work_side_is_checked():
    with pytest.raises(SettingsError, match="work_side"):
        Editor(work_side=8)


# -- the pure pieces ---------------------------------------------------------------------------


def test_working_copy_keeps_the_aspect_and_is_lanczos_quality(astronaut_path):
    from regionedit.imageio import fit_within

    big = Image.open(astronaut_path).convert("RGB").resize((2100, 1400), Image.Resampling.BICUBIC)
    small = fit_within(big, 700)
    assert small.size == (700, 467) and small.mode == "RGB"
    lanczos = big.resize((700, 467), Image.Resampling.LANCZOS)
    assert np.abs(_rgb(small) - _rgb(lanczos)).mean() < 1.0
    assert fit_within(big, 4000) is big


def test_resize_keeps_zero_as_zero():
    mask = np.zeros((20, 30), dtype=np.float32)
    mask[5:15, 10:20] = 1.0
    big = masks.resize(mask, (90, 60))
    assert big.shape == (60, 90) and big.dtype == np.float32
    assert big.min() == 0.0 and big.max() == 1.0
    assert (big[:10] == 0).all() and (big[-10:] == 0).all()


def test_colour_map_lookup_table_is_within_a_level_of_the_exact_map(astronaut_path):
    photo = np.asarray(Image.open(astronaut_path).convert("RGB"))
    region = np.zeros(photo.shape[:2], dtype=bool)
    region[64:448, 64:448] = True
    source = srgb_to_lab(photo[region][::7])
    reference = source * np.array([1.0, 1.15, 0.9]) + np.array([4.0, -3.0, 5.0])
    mapped = photo.copy()
    reinhard_transfer(mapped, region, source, reference, strength=1.0)
    ratio = np.clip(reference.std(axis=0) / source.std(axis=0), 0.5, 2.0)
    exact = lab_to_srgb(srgb_to_lab(photo[region]) * ratio
                        + reference.mean(axis=0) - source.mean(axis=0) * ratio)
    difference = np.abs(mapped[region].astype(int) - exact)
    assert (difference <= 1).mean() > 0.995 and difference.max() <= 8
    assert np.array_equal(mapped[~region], photo[~region])


@pytest.mark.parametrize(("mode", "suffix"), [("L", "png"), ("P", "png"), ("RGBA", "png"),
                                              ("CMYK", "jpg"), ("I;16", "png")])
def test_large_photos_of_every_mode_come_back_in_their_mode(small_work_editor, chelsea_path,
                                                           mode, suffix, tmp_path):
    path = tmp_path / f"large-{mode.replace(';', '')}.{suffix}"
    source = Image.open(chelsea_path)
    (source.convert("L").convert("I;16") if mode == "I;16" else source.convert(mode)).save(path)
    result = small_work_editor.edit(path, "a cat", "a tiger", region="background", **FAST)
    assert result.mask_result.scaled
    assert result.image.size == (451, 300)
    expected = {"P": "RGB", "I;16": "L"}.get(mode, mode)
    assert result.image.mode == expected
    kept = result.mask == 0
    before = np.asarray(Image.open(path).convert("RGB"))
    after = np.asarray(result.image.convert("RGB"))
    if mode in ("L", "RGBA", "P"):
        # exact where kept; CMYK and 16-bit inputs come back through a lossy conversion
        # (RGB <-> CMYK, 16 -> 8 bits), as at any size
        assert np.array_equal(after[kept], before[kept])
