"""End to end through the public Python API, on real photos, with tiny real models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import regionedit
from regionedit import Editor
from regionedit.errors import (
    ClassifierError,
    DescriptionError,
    ImageInputError,
    ModelLoadError,
    SegmentationError,
    UnidentifiedRegionError,
)

FAST = dict(steps=2, max_side=64)


@pytest.fixture
def editor(rembg_segmenter, tiny_inpainter) -> Editor:
    return Editor(classifier="llm", segmenter=rembg_segmenter, inpainter=tiny_inpainter)


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


@pytest.mark.parametrize("region", ["foreground", "background"])
def test_pixels_outside_the_mask_are_the_input(editor, small_photo_path, region):
    result = editor.edit(small_photo_path, "a cat", "a tiger", region=region, seed=1, **FAST)
    original = _pixels(Image.open(small_photo_path))
    edited = _pixels(result.image)
    assert edited.shape == original.shape
    kept = result.mask == 0
    assert kept.any() and (~kept).any()
    assert np.array_equal(edited[kept], original[kept])
    # the regenerated region did change
    assert np.abs(edited[result.mask == 1] - original[result.mask == 1]).mean() > 1
    assert result.region == region
    assert result.classification.source == "override"


def test_background_edit_keeps_the_opaque_subject(editor, small_photo_path):
    result = editor.edit(small_photo_path, "a cat", "a cat on a beach", region="background", seed=3, **FAST)
    alpha = editor.mask(small_photo_path, "background").subject_alpha
    original = _pixels(Image.open(small_photo_path))
    solid = alpha >= 1.0
    if solid.any():
        assert np.array_equal(_pixels(result.image)[solid], original[solid])


def test_same_seed_same_pixels_and_seed_is_recorded(editor, small_photo_path):
    a = editor.edit(small_photo_path, "a cat", "a dog", region="foreground", seed=42, **FAST)
    b = editor.edit(small_photo_path, "a cat", "a dog", region="foreground", seed=42, **FAST)
    c = editor.edit(small_photo_path, "a cat", "a dog", region="foreground", seed=43, **FAST)
    assert np.array_equal(_pixels(a.image), _pixels(b.image))
    assert not np.array_equal(_pixels(a.image), _pixels(c.image))
    drawn = editor.edit(small_photo_path, "a cat", "a dog", region="foreground", **FAST)
    assert isinstance(drawn.settings.seed, int)


def test_classifier_decides_the_region_through_the_llm(editor, small_photo_path, fake_llm, llm_env):
    fake_llm.answer("background", "the setting changes")
    result = editor.edit(small_photo_path, "a cat on a sofa", "a cat on a beach", seed=0, **FAST)
    assert result.region == "background"
    assert result.classification.source == "llm"
    assert result.classification.reason == "the setting changes"


def test_unidentified_raises_by_default_and_policy_overrides(editor, small_photo_path, fake_llm, llm_env):
    fake_llm.answer("unidentified", "a style change affects the whole image")
    with pytest.raises(UnidentifiedRegionError) as info:
        editor.edit(small_photo_path, "a photo of a cat", "a watercolor of a cat", seed=0, **FAST)
    assert info.value.source == "a photo of a cat"
    assert info.value.reason == "a style change affects the whole image"
    assert "region" in str(info.value)
    result = editor.edit(
        small_photo_path, "a photo of a cat", "a watercolor of a cat", seed=0,
        on_unidentified="background", **FAST,
    )
    assert result.region == "background"
    assert result.classification.label == "unidentified"


def test_llm_without_key_names_both_ways_out(rembg_segmenter, tiny_inpainter, small_photo_path):
    editor = Editor(classifier="llm", segmenter=rembg_segmenter, inpainter=tiny_inpainter)
    with pytest.raises(ClassifierError) as info:
        editor.edit(small_photo_path, "a cat", "a dog", seed=0, **FAST)
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and "region" in message


@pytest.mark.parametrize("make", [
    lambda p: Image.open(p),
    lambda p: np.asarray(Image.open(p).convert("RGB")),
    lambda p: str(p),
])
def test_accepts_path_pil_and_numpy(editor, small_photo_path, make):
    result = editor.edit(make(small_photo_path), "a cat", "a dog", region="foreground", seed=5, **FAST)
    assert result.image.size == Image.open(small_photo_path).size


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_output_keeps_the_input_mode(editor, small_photo_path, mode, tmp_path):
    path = tmp_path / f"in-{mode}.png"
    Image.open(small_photo_path).convert(mode).save(path)
    result = editor.edit(path, "a cat", "a dog", region="foreground", seed=5, **FAST)
    assert result.image.mode == mode
    assert result.image.size == Image.open(path).size


def test_input_alpha_is_used_as_the_subject_mask(rembg_segmenter, tiny_inpainter, rgba_subject_path):
    editor = Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=tiny_inpainter)
    made = editor.mask(rgba_subject_path, "foreground", grow=0, feather=0)
    assert made.source == "input-alpha"
    alpha = np.asarray(Image.open(rgba_subject_path).getchannel("A")) / 255.0
    assert np.array_equal(made.mask > 0, alpha >= 0.5)


def test_candidates_have_consecutive_seeds(editor, small_photo_path):
    result = editor.edit(small_photo_path, "a cat", "a dog", region="foreground", seed=10, candidates=3, **FAST)
    assert [c.seed for c in result.candidates] == [10, 11, 12]
    assert result.image is result.candidates[0].image


def test_save_writes_image_mask_and_reproducible_sidecar(editor, small_photo_path, tmp_path):
    result = editor.edit(small_photo_path, "a cat", "a dog", region="foreground", seed=9, **FAST)
    written = result.save(tmp_path / "out.png", mask=True, sidecar=True)
    assert Image.open(written["image"]).size == result.image.size
    mask = np.asarray(Image.open(written["mask"]))
    assert np.array_equal(mask > 0, result.mask > 0)
    record = json.loads(written["sidecar"].read_text())
    assert record["settings"]["seed"] == 9
    assert record["region"] == "foreground"
    assert record["input"]["sha256"]
    # replaying the recorded settings reproduces the pixels
    s = record["settings"]
    again = editor.edit(
        small_photo_path, s["source"], s["target"], region=record["region"], seed=s["seed"],
        steps=s["steps"], max_side=s["max_side"], guidance_scale=s["guidance_scale"],
        strength=s["strength"], grow=s["grow"], feather=s["feather"],
    )
    assert np.array_equal(_pixels(again.image), _pixels(Image.open(written["image"])))
    assert not list(tmp_path.glob(".*tmp"))


def test_timings_are_recorded(editor, small_photo_path):
    result = editor.edit(small_photo_path, "a cat", "a dog", region="foreground", seed=1, **FAST)
    assert result.timings.inpaint > 0 and result.timings.segment > 0
    assert result.timings.total >= result.timings.inpaint


def test_empty_description_is_refused(editor, small_photo_path):
    with pytest.raises(DescriptionError):
        editor.edit(small_photo_path, "a cat", "   ", region="foreground", **FAST)


def test_corrupt_image_is_refused(editor, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageInputError) as info:
        editor.edit(bad, "a cat", "a dog", region="foreground", **FAST)
    assert "broken.jpg" in str(info.value)


def test_empty_mask_is_a_segmentation_error(rembg_segmenter, tiny_inpainter, tmp_path):
    class NoSubject:
        name = "none"

        def subject_alpha(self, image):
            return np.zeros((image.height, image.width), np.float32)

        def describe(self):
            return {"segmenter": "none"}

    editor = Editor(classifier="offline", segmenter=NoSubject(), inpainter=tiny_inpainter)
    path = tmp_path / "flat.png"
    Image.new("RGB", (64, 48), (120, 130, 140)).save(path)
    with pytest.raises(SegmentationError):
        editor.edit(path, "a cat", "a dog", region="foreground", **FAST)


def test_missing_inpainting_model_is_a_model_load_error(rembg_segmenter, small_photo_path, tmp_path):
    editor = Editor(classifier="offline", segmenter=rembg_segmenter, inpaint_model=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError) as info:
        editor.edit(small_photo_path, "a cat", "a dog", region="foreground", **FAST)
    assert "nope" in str(info.value)


def test_module_level_edit_uses_one_default_editor(monkeypatch, rembg_segmenter, tiny_inpainter, small_photo_path):
    from regionedit import editor as editor_module

    shared = Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=tiny_inpainter)
    monkeypatch.setattr(editor_module, "_default_editor", shared)
    result = regionedit.edit(small_photo_path, "a cat", "a dog", region="foreground", seed=2, **FAST)
    assert result.image.size == Image.open(small_photo_path).size
    assert editor_module.default_editor() is shared


class RecordingInpainter:
    """The real inpainter, remembering the image sizes it was given."""

    name = "recording"

    def __init__(self, inner):
        self.inner = inner
        self.sizes: list[tuple[int, int]] = []

    @property
    def native_size(self):
        return self.inner.native_size

    def load(self):
        return self.inner.load()

    def batch_key(self, request):
        return self.inner.batch_key(request)

    def inpaint_many(self, requests, *, batch_size=1):
        for request in requests:
            self.sizes.append(request.image.size)
            assert request.mask.shape == (request.image.height, request.image.width)
        return self.inner.inpaint_many(requests, batch_size=batch_size)

    def describe(self):
        return {"inpainter": self.name}


def _subject_image(path, size, box):
    """An RGBA photo whose alpha marks an opaque ellipse inside ``box`` as the subject."""
    from PIL import ImageDraw

    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize(size)
    alpha = Image.new("L", size, 0)
    ImageDraw.Draw(alpha).ellipse(box, fill=255)
    photo.putalpha(alpha)
    photo.save(path)
    return path


def test_small_foreground_subject_is_generated_on_a_crop(tiny_inpainter, rembg_segmenter, tmp_path):
    path = _subject_image(tmp_path / "small.png", (256, 192), (100, 80, 130, 110))
    recorder = RecordingInpainter(tiny_inpainter)
    editor = Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=recorder)
    result = editor.edit(path, "a ball", "an apple", region="foreground", seed=1, **FAST)
    (crop,) = recorder.sizes
    assert crop[0] < 256 and crop[1] < 192  # a crop around the subject, not the whole photo
    original = _pixels(Image.open(path))
    kept = result.mask == 0
    assert np.array_equal(_pixels(result.image)[kept], original[kept])

    whole = RecordingInpainter(tiny_inpainter)
    Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=whole,
           crop_small_subjects=False).edit(path, "a ball", "an apple", region="foreground", seed=1, **FAST)
    assert whole.sizes == [(256, 192)]


def test_small_subject_of_a_large_photo_is_generated_from_a_full_size_crop(
    tiny_inpainter, rembg_segmenter, tmp_path
):
    path = _subject_image(tmp_path / "large.png", (512, 384), (200, 160, 260, 220))
    recorder = RecordingInpainter(tiny_inpainter)
    editor = Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=recorder,
                    work_side=128)
    result = editor.edit(path, "a ball", "an apple", region="foreground", seed=1, **FAST)
    (crop,) = recorder.sizes
    # cut from the 512 px photo, not from its 128 px working copy: the crop alone is larger
    # than the whole working copy, and smaller than the photo
    assert 128 < crop[0] < 512 and crop[1] < 384
    original = _pixels(Image.open(path))
    kept = result.mask == 0
    assert kept.mean() > 0.5
    assert np.array_equal(_pixels(result.image)[kept], original[kept])
    changed = result.mask == 1
    assert np.abs(_pixels(result.image)[changed] - original[changed]).mean() > 1


def test_background_edit_pastes_the_subject_back_with_its_soft_alpha(tiny_inpainter, rembg_segmenter, tmp_path):
    path = _subject_image(tmp_path / "subject.png", (128, 96), (30, 20, 100, 80))
    editor = Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=tiny_inpainter)
    result = editor.edit(path, "a ball in a room", "a ball on a beach", region="background", seed=2, **FAST)
    alpha = np.asarray(Image.open(path).getchannel("A"))
    original = np.asarray(Image.open(path)).astype(np.int16)
    edited = np.asarray(result.image).astype(np.int16)
    assert result.image.mode == "RGBA"
    opaque = alpha == 255
    assert opaque.sum() > 1000
    assert np.array_equal(edited[opaque], original[opaque])
    # the background did change, and the new background is visible: a cut-out gets one
    background = alpha == 0
    assert np.abs(edited[background][:, :3] - original[background][:, :3]).mean() > 1
    assert (edited[..., 3][result.mask == 1] == 255).all()


def test_prepare_generate_composite_is_edit(editor, small_photo_path):
    kwargs = dict(region="background", seed=11, candidates=2, **FAST)
    expected = editor.edit(small_photo_path, "a cat", "a cat on a beach", **kwargs)

    prepared = editor.prepare(small_photo_path, editor.settings("a cat", "a cat on a beach", **kwargs))
    (generated,) = editor.generate([prepared])
    assert len(generated) == 2 and generated[0].size == (96, 64)
    result = editor.composite(prepared, generated)

    for got, want in zip(result.candidates, expected.candidates):
        assert got.seed == want.seed
        assert np.array_equal(np.asarray(got.image), np.asarray(want.image))
    assert result.timings.inpaint > 0 and result.timings.composite > 0


def test_load_models_loads_both_models_ahead_of_the_first_image(
    tmp_path, monkeypatch, tiny_rembg_model, tiny_sd_path, small_photo_path
):
    import shutil
    from pathlib import Path

    home = tmp_path / "u2net"
    home.mkdir()
    onnx = Path(shutil.copy(tiny_rembg_model, home))
    monkeypatch.setenv("U2NET_HOME", str(home))
    model = Path(shutil.copytree(tiny_sd_path, tmp_path / "sd"))
    editor = Editor(classifier="offline", segment_model_path=str(onnx), inpaint_model=str(model),
                    device="cpu")

    editor.load_models()
    onnx.unlink()
    shutil.rmtree(model)  # what is loaded no longer needs its files

    result = editor.edit(small_photo_path, "a cat", "a cat on a beach", region="background",
                         seed=1, **FAST)
    assert result.image.size == Image.open(small_photo_path).size

