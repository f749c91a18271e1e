"""score(): preservation outside the mask, the seam, and CLIP scores on a tiny random CLIP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regionedit.colormatch import delta_e76, lab_to_srgb, srgb_to_lab
from regionedit.errors import DescriptionError, ImageInputError, ModelLoadError
from regionedit.score import ScoreReport, _ssim_map, format_score, score


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The astronaut photo at 128x96, values kept within 20..235 so +-10 never clips."""
    from skimage import data

    small = Image.fromarray(data.astronaut()).resize((128, 96), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(small), 20, 235).astype(np.uint8)


@pytest.fixture(scope="module")
def box_mask() -> np.ndarray:
    mask = np.zeros((96, 128), dtype=np.uint8)
    mask[30:70, 40:100] = 255
    return mask


def test_identical_images_score_perfectly(photo, box_mask) -> None:
    report = score(photo, photo, box_mask)
    assert report.preserved.psnr == math.inf
    assert report.preserved.ssim == pytest.approx(1.0)
    assert report.preserved.max_abs_diff == 0
    assert report.preserved.pixels == 96 * 128 - 40 * 60
    assert report.regenerated_fraction == pytest.approx(40 * 60 / (96 * 128))
    assert report.seam.psnr == math.inf and report.seam.ssim == pytest.approx(1.0)
    assert report.seam.delta_e == pytest.approx(report.seam.delta_e_original)
    assert report.clip is None

    # JSON: valid (no bare Infinity), infinite PSNR as "Infinity", and it reads back
    text = json.dumps(report.model_dump(mode="json"), allow_nan=False)
    assert json.loads(text)["preserved"]["psnr"] == "Infinity"
    assert ScoreReport.model_validate_json(text).preserved.psnr == math.inf
    assert "inf dB (identical)" in format_score(report)


def test_constant_difference_outside_the_mask_gives_the_hand_computed_psnr(
    photo, box_mask
) -> None:
    edited = photo.astype(np.int16)
    edited[box_mask == 0] += 10
    report = score(photo, edited.astype(np.uint8), box_mask)
    # every kept pixel and channel is off by 10: MSE 100
    assert report.preserved.psnr == pytest.approx(10 * math.log10(255**2 / 100))
    assert report.preserved.max_abs_diff == 10
    assert report.preserved.ssim < 1.0


def test_changes_inside_the_mask_do_not_touch_the_preservation_metrics(photo, box_mask) -> None:
    rng = np.random.default_rng(0)
    edited = photo.copy()
    inside = box_mask > 0
    edited[inside] = rng.integers(0, 256, (int(inside.sum()), 3), dtype=np.uint8)
    report = score(photo, edited, box_mask)
    # SSIM windows straddle the seam, but only kept pixels enter the statistics
    assert report.preserved.psnr == math.inf
    assert report.preserved.ssim == 1.0
    assert report.preserved.max_abs_diff == 0
    assert report.seam.psnr < 20 and report.seam.ssim < 0.9


def test_an_edit_that_leaks_past_its_mask_is_caught(photo, box_mask) -> None:
    """The region was replaced with a shifted copy, but the mask handed over is 8 px off."""
    edited = photo.copy()
    edited[30:70, 40:100] = np.roll(photo, 5, axis=1)[30:70, 40:100]
    assert score(photo, edited, box_mask).preserved.psnr == math.inf
    shifted_mask = np.roll(box_mask, 8, axis=1)
    leaked = score(photo, edited, shifted_mask).preserved
    assert math.isfinite(leaked.psnr) and leaked.max_abs_diff > 0 and leaked.ssim < 1.0


def test_seam_delta_e_measures_a_constructed_lab_step() -> None:
    """Kept side Lab (50, 0, 0), regenerated side (60, 10, -5): a CIE76 step of 15."""
    kept_rgb, new_rgb = lab_to_srgb(np.array([[50.0, 0.0, 0.0], [60.0, 10.0, -5.0]]))
    expected = float(delta_e76(*srgb_to_lab(np.stack([kept_rgb, new_rgb]))))
    assert expected == pytest.approx(15.0, abs=0.5)  # uint8 rounding
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 24:56] = 255
    original = np.broadcast_to(kept_rgb, (64, 64, 3)).copy()
    edited = np.where(mask[..., None] > 0, new_rgb, kept_rgb).astype(np.uint8)
    seam = score(original, edited, mask).seam
    assert seam.delta_e == pytest.approx(expected, abs=0.01)
    assert seam.delta_e_original == pytest.approx(0.0, abs=1e-9)

    # the same step under a texture common to both sides: local means still see ~15
    texture = np.random.default_rng(1).integers(-12, 13, (64, 64, 1))
    textured = np.clip(edited.astype(int) + texture, 0, 255).astype(np.uint8)
    assert score(original, textured, mask).seam.delta_e == pytest.approx(expected, abs=1.0)


def test_sizes_must_match(photo, box_mask) -> None:
    with pytest.raises(ImageInputError, match="differ in size") as caught:
        score(photo, photo[:, :-1], box_mask)
    assert "edited 127x96" in str(caught.value)
    with pytest.raises(ImageInputError, match="mask 128x95"):
        score(photo, photo, box_mask[:-1])


def test_files_and_pil_images_score_like_arrays(photo, box_mask, tmp_path: Path) -> None:
    edited = photo.copy()
    edited[box_mask > 0] = 255 - edited[box_mask > 0]
    edited[:5] = 0  # and a damaged strip outside the mask
    Image.fromarray(photo).save(tmp_path / "original.png")
    Image.fromarray(edited).save(tmp_path / "edited.png")
    Image.fromarray(box_mask, "L").save(tmp_path / "mask.png")
    from_arrays = score(photo, edited, box_mask)
    from_files = score(tmp_path / "original.png", str(tmp_path / "edited.png"),
                       tmp_path / "mask.png")
    from_pil = score(Image.fromarray(photo), Image.fromarray(edited),
                     Image.fromarray(box_mask, "L"))
    assert from_files == from_arrays == from_pil
    # a float mask in [0, 1]: any value above 0 is regenerated
    assert score(photo, edited, (box_mask > 0) * np.float32(0.2)) == from_arrays


def test_unreadable_file_is_an_image_input_error(photo, box_mask, tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageInputError):
        score(tmp_path / "broken.png", photo, box_mask)


def test_masks_without_kept_pixels_or_without_edge(photo) -> None:
    everything = score(photo, photo, np.ones(photo.shape[:2], dtype=np.uint8))
    assert everything.preserved.pixels == 0 and everything.preserved.psnr is None
    nothing = score(photo, photo, np.zeros(photo.shape[:2], dtype=np.uint8))
    assert nothing.seam.pixels == 0 and nothing.seam.delta_e is None
    assert nothing.preserved.psnr == math.inf
    for report in (everything, nothing):
        data = json.loads(json.dumps(report.model_dump(mode="json"), allow_nan=False))
        assert "n/a" in format_score(report)
    assert data["seam"]["psnr"] is None


def test_ssim_equals_scikit_image_away_from_the_border(photo) -> None:
    from skimage.metrics import structural_similarity

    noisy = np.clip(photo + np.random.default_rng(2).normal(0, 8, photo.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    _, reference = structural_similarity(
        photo, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, channel_axis=2, full=True,
    )
    every = np.ones(photo.shape[:2], dtype=bool)
    ours = _ssim_map(photo, noisy, every).reshape(photo.shape[:2])
    inner = (slice(6, -6), slice(6, -6))
    # float32 arithmetic: per-pixel agreement to 1e-3, of the mean to 1e-6
    assert np.allclose(ours[inner], reference.mean(axis=2)[inner], atol=1e-3)
    assert ours[inner].mean() == pytest.approx(reference.mean(axis=2)[inner].mean(), abs=1e-6)


# -- CLIP -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CLIP model (32-unit towers, 32 px images) with its processor, saved to disk."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    from support.tiny_sd import byte_level_vocab

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=77)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
            num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
            num_attention_heads=4, num_hidden_layers=2,
        ),
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clip_scores_whole_image_and_region(photo, box_mask, tiny_clip_path: Path) -> None:
    edited = photo.copy()
    edited[box_mask > 0] = [40, 120, 200]
    target = "an astronaut on a beach " * 20  # longer than CLIP's 77 tokens: truncated
    report = score(photo, edited, box_mask, target=target, clip_model=str(tiny_clip_path))
    clip = report.clip
    assert clip is not None and clip.model == str(tiny_clip_path) and clip.target == target
    assert clip.region is not None
    for value in (clip.whole, clip.region):
        assert math.isfinite(value) and 0.0 <= value <= 100.0
    # a random model still tells the two images apart
    assert clip.whole != clip.region
    assert "CLIP score" in format_score(report)
    again = score(photo, edited, box_mask, target=target, clip_model=str(tiny_clip_path))
    assert again.clip == clip


def test_clip_is_skipped_without_target_or_model(photo, box_mask, tiny_clip_path) -> None:
    assert score(photo, photo, box_mask, clip_model=str(tiny_clip_path)).clip is None
    assert score(photo, photo, box_mask, target="a beach").clip is None
    no_region = score(photo, photo, np.zeros_like(box_mask), target="a beach",
                      clip_model=str(tiny_clip_path))
    assert no_region.clip is not None and no_region.clip.region is None


def test_clip_errors_give_advice(photo, box_mask, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="save_pretrained"):  # a folder with no model
        score(photo, photo, box_mask, target="a beach", clip_model=str(tmp_path))
    with pytest.raises(ModelLoadError, match="no folder"):
        score(photo, photo, box_mask, target="a beach", clip_model=str(tmp_path / "missing"))
    with pytest.raises(DescriptionError, match="empty"):
        score(photo, photo, box_mask, target="  ", clip_model=str(tmp_path))


def test_clip_loads_once_when_threads_score_at_the_same_time(
    photo, box_mask, tiny_clip_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import threading
    import time

    import transformers

    model = shutil.copytree(tiny_clip_path, tmp_path / "clip")  # a model no test loaded yet
    loads = []
    real = transformers.CLIPModel.from_pretrained.__func__

    def slow_load(cls, *args, **kwargs):
        loads.append(args[0])
        time.sleep(0.3)  # long enough for the other threads to ask meanwhile
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", classmethod(slow_load))
    edited = photo.copy()
    edited[box_mask > 0] = 255 - edited[box_mask > 0]
    reports: list = []

    def one() -> None:
        reports.append(score(photo, edited, box_mask, target="a beach", clip_model=str(model)))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(loads) == 1
    assert len(reports) == 3 and reports[0].clip == reports[1].clip == reports[2].clip
