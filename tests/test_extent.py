"""Room for a new shape: a foreground edit the classifier calls a shape ``change`` regenerates the
subject's padded box too; ``keep`` regenerates the outline; every pixel outside the mask is the
input's, exactly, and the sidecar says what was decided."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from regionedit import Editor, masks

FAST = dict(steps=2, seed=3)


@pytest.fixture
def cut_out(tmp_path):
    """A photo whose alpha marks a small upright ellipse (the subject) on a transparent ground."""
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((160, 120))
    alpha = Image.new("L", photo.size, 0)
    ImageDraw.Draw(alpha).ellipse((60, 30, 90, 90), fill=255)
    photo.putalpha(alpha)
    path = tmp_path / "subject.png"
    photo.save(path)
    return path


@pytest.fixture
def editor(llm_env, rembg_segmenter, tiny_inpainter):
    return Editor(classifier="llm", segmenter=rembg_segmenter, inpainter=tiny_inpainter,
                  crop_small_subjects=False)


def _pixels(image):
    return np.asarray(image.convert("RGB")).astype(np.int16)


def test_a_shape_change_regenerates_the_padded_box(editor, llm_env, cut_out, tmp_path):
    llm_env.answer("foreground", "the cat becomes a dog", subject="a cat", shape="change")

    result = editor.edit(cut_out, "a cat on a lawn", "a dog on a lawn", **FAST)

    subject = np.asarray(Image.open(cut_out).getchannel("A")) >= 128
    box = masks.padded_box(subject)
    assert result.mask_result.extent == "box"
    assert (result.mask[box] > 0).all()  # the whole padded box is regenerated
    assert (result.mask > 0).sum() > 1.5 * subject.sum()
    kept = result.mask == 0
    assert kept.mean() > 0.4
    assert np.array_equal(_pixels(result.image)[kept], _pixels(Image.open(cut_out))[kept])

    sidecar = json.loads(result.save(tmp_path / "out.png", sidecar=True)["sidecar"].read_text())
    assert sidecar["classification"]["subject"] == "a cat"
    assert sidecar["classification"]["shape"] == "change"
    assert sidecar["mask"]["extent"] == "box" and sidecar["settings"]["extent"] == "auto"


def test_a_shape_kept_regenerates_the_outline_only(editor, llm_env, cut_out):
    llm_env.answer("foreground", "the cat turns black", subject="a cat", shape="keep")

    result = editor.edit(cut_out, "a cat", "a black cat", **FAST)

    outline = editor.mask(cut_out, "foreground", extent="outline")
    assert result.mask_result.extent == "outline"
    np.testing.assert_array_equal(result.mask, outline.mask)


@pytest.mark.parametrize(("extent", "shape", "applied"), [
    ("box", "keep", "box"), ("outline", "change", "outline"), ("auto", "change", "box"),
    ("auto", "keep", "outline"),
])
def test_the_extent_setting_overrides_or_follows_the_shape(editor, cut_out, extent, shape, applied):
    made = editor.mask(cut_out, "foreground", extent=extent, shape=shape)
    assert made.extent == applied


def test_a_background_edit_ignores_the_extent(editor, cut_out):
    box = editor.mask(cut_out, "background", extent="box", shape="change")
    plain = editor.mask(cut_out, "background", extent="outline")
    assert box.extent == "outline"
    np.testing.assert_array_equal(box.mask, plain.mask)


def test_editor_extent_is_the_default_of_its_edits(llm_env, rembg_segmenter, tiny_inpainter,
                                                    cut_out):
    llm_env.answer("foreground", "the cat turns black", subject="a cat", shape="keep")
    editor = Editor(classifier="llm", segmenter=rembg_segmenter, inpainter=tiny_inpainter,
                    extent="box", crop_small_subjects=False)
    assert editor.edit(cut_out, "a cat", "a black cat", **FAST).mask_result.extent == "box"
    outline = editor.edit(cut_out, "a cat", "a black cat", extent="outline", **FAST)
    assert outline.mask_result.extent == "outline"


def test_a_subject_filling_the_frame_keeps_its_outline(editor, tmp_path):
    photo = Image.new("RGBA", (100, 80), (200, 100, 50, 0))
    alpha = Image.new("L", photo.size, 0)
    ImageDraw.Draw(alpha).rectangle((6, 5, 93, 74), fill=255)  # the padded box is the photo
    photo.putalpha(alpha)
    photo.save(tmp_path / "big.png")

    made = editor.mask(tmp_path / "big.png", "foreground", extent="box")

    assert made.extent == "outline"
    assert (made.mask == 0).any()  # not the whole photo
