"""Reliability, models: out of memory, NaN or black output, and broken model files give an
error that says what to do, and one failed generation does not stop a batch.

Faults are injected into a real tiny diffusers pipeline (tests/support/tiny_sd.py) by replacing
the forward of one of its components, so every regionedit code path between the caller and the
model runs as in production. Already covered elsewhere: a hub id offline and a missing or
incomplete model folder (test_inpaint.py), NaN or black output on every seed (test_inpaint.py),
missing and corrupt rembg models (test_segment.py), a missing model on the CLI (test_cli.py).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from regionedit import Editor
from regionedit.errors import InpaintError, ModelLoadError
from regionedit.inpaint_diffusers import DiffusersInpainter

FAST = dict(steps=2, max_side=64)
CUDA_OOM = "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 7.79 GiB total capacity)"


@pytest.fixture
def inpainter(tiny_sd_path: Path) -> DiffusersInpainter:
    """A tiny pipeline of each test's own: its components get faults injected, and what it
    learns from running out of memory must not carry over to the next test. Without VAE
    slicing, so that the decoder runs once per model call, where the faults are injected."""
    inpainter = DiffusersInpainter(tiny_sd_path, device="cpu", vae_slicing=False)
    inpainter.load()
    return inpainter


@pytest.fixture
def editor(rembg_segmenter: Any, inpainter: DiffusersInpainter) -> Editor:
    return Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=inpainter)


def script_decoder(
    inpainter: DiffusersInpainter, monkeypatch: pytest.MonkeyPatch, *faults: str
) -> list[str]:
    """Make the pipeline's VAE decoder (called once per generation) misbehave: the n-th call
    does ``faults[n]`` ("oom", "nan", "black" or "ok"); later calls are normal. Returns the list
    of what each call did."""
    import torch

    decoder = inpainter.load().vae.decoder
    real: Callable[..., Any] = decoder.forward
    done: list[str] = []

    def forward(*args: Any, **kwargs: Any) -> Any:
        fault = faults[len(done)] if len(done) < len(faults) else "ok"
        done.append(fault)
        if fault == "oom":
            raise torch.OutOfMemoryError(CUDA_OOM)
        out = real(*args, **kwargs)
        if fault == "nan":
            return out * float("nan")  # what float16 overflow looks like
        if fault == "black":
            return torch.full_like(out, -1.0)  # decoded to 0 everywhere
        return out

    monkeypatch.setattr(decoder, "forward", forward)
    return done


def test_out_of_memory_is_an_inpaint_error_with_advice_and_the_editor_goes_on(
    editor: Editor, inpainter: DiffusersInpainter, small_photo_path: Path, monkeypatch
) -> None:
    calls = script_decoder(inpainter, monkeypatch, "oom")

    with pytest.raises(InpaintError) as caught:
        editor.edit(small_photo_path, "a cat", "a tiger", region="foreground", seed=1, **FAST)

    message = str(caught.value)
    assert "Out of memory generating at 64x40 on cpu" in message
    for advice in ("max_side", "cpu_offload=True", "attention_slicing=True"):
        assert advice in message
    assert calls == ["oom"]  # not retried: the same size would run out again
    # the memory is back; the same editor edits the next image
    result = editor.edit(small_photo_path, "a cat", "a tiger", region="foreground", seed=1, **FAST)
    assert np.isfinite(np.asarray(result.image, dtype=np.float32)).all()


def test_nan_output_is_retried_with_the_next_seed(
    editor: Editor,
    inpainter: DiffusersInpainter,
    small_photo_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    edit = dict(region="foreground", **FAST)
    expected = editor.edit(small_photo_path, "a cat", "a tiger", seed=8, **edit)
    calls = script_decoder(inpainter, monkeypatch, "nan")

    with caplog.at_level(logging.WARNING, logger="regionedit"):
        result = editor.edit(small_photo_path, "a cat", "a tiger", seed=7, **edit)

    assert calls == ["nan", "ok"]
    assert "seed 7 gave NaN values" in caplog.text and "retrying with seed 8" in caplog.text
    # the retry is the generation seed 8 gives: reproducible from the recorded settings
    assert np.array_equal(np.asarray(result.image), np.asarray(expected.image))


def test_a_batch_goes_on_past_out_of_memory_and_black_output(
    editor: Editor,
    inpainter: DiffusersInpainter,
    small_photo_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # item 1 runs out of memory; item 2 comes out black on both seeds; item 3 is fine
    calls = script_decoder(inpainter, monkeypatch, "oom", "black", "black")
    items = [(small_photo_path, "a cat", target) for target in ("a tiger", "a fox", "a dog")]

    results = list(editor.edit_many(items, region="foreground", seed=1, batch_size=1, **FAST))

    assert [r.status for r in results] == ["failed", "failed", "ok"]
    assert [r.stage for r in results[:2]] == ["inpaint", "inpaint"]
    assert "Out of memory" in str(results[0].error)
    assert "an all-black image twice (seeds 1 and 2)" in str(results[1].error)
    assert isinstance(results[0].error, InpaintError) and isinstance(results[1].error, InpaintError)
    assert calls == ["oom", "black", "black", "ok"]
    assert results[2].result.image.size == (96, 64)


def test_a_batch_that_runs_out_of_memory_is_split_and_retried(
    editor: Editor,
    inpainter: DiffusersInpainter,
    small_photo_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = [(small_photo_path, "a cat", target) for target in ("a tiger", "a fox", "a dog")]
    alone = [r.result.image for r in editor.edit_many(items, region="foreground", seed=1,
                                                      batch_size=1, **FAST)]
    # the three images go into one model call, which runs out of memory once
    calls = script_decoder(inpainter, monkeypatch, "oom")

    results = list(editor.edit_many(items, region="foreground", seed=1, batch_size=3, **FAST))

    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert calls == ["oom", "ok", "ok"]  # 3 at once, then 1 and 2
    for result, expected in zip(results, alone):
        # each image had its own seed's noise: the same image as generated alone, up to the
        # float rounding of a batched call
        difference = np.abs(np.asarray(result.result.image, dtype=np.int16) - np.asarray(expected))
        assert difference.max() <= 2


def test_a_batch_size_that_ran_out_of_memory_is_not_tried_again(
    editor: Editor,
    inpainter: DiffusersInpainter,
    small_photo_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    decoder = inpainter.load().vae.decoder
    real: Callable[..., Any] = decoder.forward
    images_per_call: list[int] = []

    def fits_two(latents: Any, *args: Any, **kwargs: Any) -> Any:
        images_per_call.append(latents.shape[0])
        if latents.shape[0] > 2:
            raise torch.OutOfMemoryError(CUDA_OOM)
        return real(latents, *args, **kwargs)

    monkeypatch.setattr(decoder, "forward", fits_two)
    items = [(small_photo_path, "a cat", f"a tiger number {i}") for i in range(4)]
    first = list(editor.edit_many(items, region="foreground", seed=1, batch_size=4, **FAST))
    assert [r.status for r in first] == ["ok"] * 4
    assert images_per_call == [4, 2, 2]
    images_per_call.clear()
    again = list(editor.edit_many(items, region="foreground", seed=1, batch_size=4, **FAST))
    assert [r.status for r in again] == ["ok"] * 4
    assert images_per_call == [2, 2]  # no second failed attempt at four


def test_out_of_memory_while_moving_the_model_to_the_device(
    tiny_sd_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from diffusers import UNet2DConditionModel

    def too_big(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(UNet2DConditionModel, "to", too_big)
    with pytest.raises(ModelLoadError) as caught:
        DiffusersInpainter(tiny_sd_path, device="cpu").load()
    assert "does not fit in cpu memory" in str(caught.value)
    assert "cpu_offload=True" in str(caught.value) and "--cpu-offload" not in str(caught.value)


def _truncate_weights(folder: Path) -> None:
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted download


def _break_model_index(folder: Path) -> None:
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionInpaintPipel')


@pytest.mark.parametrize("damage", [_truncate_weights, _break_model_index])
def test_damaged_model_folder_is_a_model_load_error(
    tiny_sd_path: Path, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    folder = tmp_path / "damaged-model"
    shutil.copytree(tiny_sd_path, folder)
    damage(folder)

    with pytest.raises(ModelLoadError) as caught:
        DiffusersInpainter(folder, device="cpu").load()

    message = str(caught.value)
    assert f"Could not load inpainting model {str(folder)!r}" in message
    assert "save_pretrained" in message  # what a loadable folder is made of
