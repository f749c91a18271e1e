"""Stage 3: the diffusers inpainting backend, on a tiny random pipeline loaded from disk."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from regionedit.errors import InpaintError, ModelLoadError
from regionedit.inpaint import INPAINTERS, Inpainter, generation_size, get_inpainter
from regionedit.inpaint_diffusers import (
    DiffusersInpainter,
    _is_out_of_memory,
    degenerate_output_reason,
)
from support.tiny_sd import TINY_NATIVE_SIZE

FAST = {"steps": 2}


def _photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A smooth colour gradient, so resizing and generation have something to work on."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, 255 - (x + y) / 2], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB").convert(mode)


def _centre_mask(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.float32)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1.0
    return mask


def _run(inpainter: DiffusersInpainter, width: int = 64, height: int = 48, **kwargs) -> np.ndarray:
    options = {"seed": 0, **FAST, **kwargs}
    image, mask = _photo(width, height), _centre_mask(width, height)
    out = inpainter.inpaint(image, mask, "a red ball", **options)
    return np.asarray(out)


# ---------------------------------------------------------------------------- loading
def test_loads_saved_folder_through_from_pretrained(tiny_inpainter, tiny_sd_path):
    info = tiny_inpainter.describe()
    assert info["inpainter"] == "diffusers"
    assert info["model"] == str(tiny_sd_path)
    assert info["loaded"] is True
    assert info["pipeline"] == "StableDiffusionInpaintPipeline"
    assert (info["device"], info["dtype"]) == ("cpu", "float32")
    assert info["native_size"] == TINY_NATIVE_SIZE
    assert info["safety_checker"] is False
    json.dumps(info)  # goes into the sidecar as is


def test_loads_lazily_and_only_once(tiny_sd_path):
    # safety_checker=False must also load: the opt-out passes safety_checker=None through
    inpainter = DiffusersInpainter(tiny_sd_path, device="cpu", safety_checker=False)
    assert inpainter.describe()["loaded"] is False
    _run(inpainter)
    pipe = inpainter.load()
    _run(inpainter, seed=1)
    assert inpainter.load() is pipe
    assert inpainter.describe()["loaded"] is True


def test_missing_folder_is_a_model_load_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError) as err:
        DiffusersInpainter(missing, device="cpu").load()
    message = str(err.value)
    assert str(missing) in message
    assert "save_pretrained" in message


def test_folder_missing_a_component_is_a_model_load_error(tiny_sd_path, tmp_path):
    broken = tmp_path / "no-unet"
    shutil.copytree(tiny_sd_path, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelLoadError) as err:
        DiffusersInpainter(broken, device="cpu").load()
    assert str(broken) in str(err.value)
    assert "unet" in str(err.value)


def test_hub_id_offline_is_a_model_load_error_with_download_advice():
    # A made-up id: never in anyone's cache, so this can never start a real download.
    model_id = "regionedit-tests/no-such-inpainting-model"
    with pytest.raises(ModelLoadError) as err:
        DiffusersInpainter(model_id, device="cpu").load()
    message = str(err.value)
    assert f"hf download {model_id}" in message
    assert "HF_HUB_OFFLINE" in message  # conftest sets it


def test_invalid_settings_are_refused(tiny_sd_path):
    with pytest.raises(ModelLoadError, match="float16"):
        DiffusersInpainter(tiny_sd_path, dtype="float8")
    with pytest.raises(ModelLoadError, match="cpu_offload"):
        DiffusersInpainter(tiny_sd_path, device="cpu", cpu_offload=True).load()


def test_unavailable_device_is_a_model_load_error(tiny_sd_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelLoadError, match="device='cpu'"):
        DiffusersInpainter(tiny_sd_path, device="cuda").load()


# ---------------------------------------------------------------------------- registry
def test_registry_builds_the_diffusers_backend(tiny_sd_path):
    inpainter = get_inpainter("diffusers", model=tiny_sd_path, device="cpu")
    assert isinstance(inpainter, DiffusersInpainter)
    assert isinstance(inpainter, Inpainter)
    assert inpainter.name == "diffusers"


def test_registry_rejects_unknown_names_listing_the_known_ones():
    with pytest.raises(ValueError) as err:
        get_inpainter("dall-e-1")
    for name in INPAINTERS:
        assert name in str(err.value)


# ---------------------------------------------------------------------------- generation
@pytest.mark.parametrize(("width", "height", "mode"), [(97, 61, "RGB"), (300, 120, "RGB"),
                                                       (61, 97, "RGB"), (64, 64, "L")])
def test_output_has_the_input_size_for_any_aspect(tiny_inpainter, width, height, mode):
    out = tiny_inpainter.inpaint(_photo(width, height, mode), _centre_mask(width, height),
                                 "a red ball", seed=3, **FAST)
    assert out.size == (width, height)
    assert out.mode == "RGB"
    assert np.asarray(out).std() > 0  # generated content, not a blank fill


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_inpainter):
    first = _run(tiny_inpainter, seed=7)
    assert np.array_equal(first, _run(tiny_inpainter, seed=7))
    assert not np.array_equal(first, _run(tiny_inpainter, seed=8))


@pytest.mark.parametrize(
    "change",
    [{"steps": 3}, {"guidance_scale": 1.5}, {"strength": 0.5}, {"negative_prompt": "blurry"}],
    ids=lambda change: next(iter(change)),
)
def test_generation_settings_reach_the_pipeline(tiny_inpainter, change):
    assert not np.array_equal(_run(tiny_inpainter), _run(tiny_inpainter, **change))


def test_generates_at_native_size_or_max_side(tiny_inpainter):
    """Watch the real UNet's input: latents are the generation size over the VAE factor (2)."""
    latent_shapes: list[tuple[int, int]] = []
    unet = tiny_inpainter.load().unet
    hook = unet.register_forward_pre_hook(
        lambda _module, args: latent_shapes.append(tuple(args[0].shape[-2:]))
    )
    try:
        _run(tiny_inpainter, width=300, height=120)  # native 64 -> 64x24
        native = latent_shapes[-1]
        _run(tiny_inpainter, width=300, height=120, max_side=40)  # -> 40x16
        limited = latent_shapes[-1]
    finally:
        hook.remove()
    assert native == (24 // 2, 64 // 2)
    assert limited == (16 // 2, 40 // 2)


def test_invalid_generation_arguments_are_inpaint_errors(tiny_inpainter):
    image = _photo(64, 48)
    with pytest.raises(InpaintError, match="mask"):
        tiny_inpainter.inpaint(image, _centre_mask(48, 64), "x", seed=0, **FAST)
    with pytest.raises(InpaintError, match="strength"):
        tiny_inpainter.inpaint(image, _centre_mask(64, 48), "x", seed=0, strength=0.0, **FAST)
    with pytest.raises(InpaintError, match="steps"):
        tiny_inpainter.inpaint(image, _centre_mask(64, 48), "x", seed=0, steps=2, strength=0.3)
    with pytest.raises(InpaintError, match="max_side"):
        tiny_inpainter.inpaint(image, _centre_mask(64, 48), "x", seed=0, max_side=4, **FAST)


@pytest.mark.parametrize(("bias", "problem"), [(float("nan"), "NaN"), (-100.0, "black")])
def test_unusable_output_is_retried_once_then_an_inpaint_error(
    tiny_sd_path, tmp_path, caplog, bias, problem
):
    """A real pipeline whose VAE decoder emits NaN (or clamps to black) for every seed."""
    import torch
    from diffusers import AutoPipelineForInpainting

    pipe = AutoPipelineForInpainting.from_pretrained(tiny_sd_path)
    with torch.no_grad():
        pipe.vae.decoder.conv_out.weight.zero_()
        pipe.vae.decoder.conv_out.bias.fill_(bias)
    pipe.save_pretrained(tmp_path / "broken")

    inpainter = DiffusersInpainter(tmp_path / "broken", device="cpu")
    with caplog.at_level(logging.WARNING, logger="regionedit"), pytest.raises(InpaintError) as err:
        _run(inpainter, seed=41)
    assert problem in str(err.value)
    assert "seeds 41 and 42" in str(err.value)
    assert "retrying with seed 42" in caplog.text


# ---------------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize(
    ("size", "long_side", "expected"),
    [
        ((512, 512), 512, (512, 512)),
        ((300, 120), 64, (64, 24)),
        ((97, 61), 64, (64, 40)),
        ((61, 97), 64, (40, 64)),
        ((10, 10), 64, (64, 64)),  # small inputs are upscaled to the model's size
        ((1000, 500), 100, (96, 48)),  # the long side never exceeds max_side
        ((5, 1000), 64, (8, 64)),  # never below 8
        ((4000, 3000), 1024, (1024, 768)),
    ],
)
def test_generation_size(size, long_side, expected):
    assert generation_size(size, long_side) == expected


@given(
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
    long_side=st.integers(8, 2048),
)
def test_generation_size_keeps_aspect_on_a_grid_of_8(width, height, long_side):
    gen_w, gen_h = generation_size((width, height), long_side)
    assert gen_w % 8 == 0 and gen_h % 8 == 0
    assert 8 <= min(gen_w, gen_h) <= max(gen_w, gen_h) == long_side // 8 * 8
    # the short side is the best multiple of 8 for the aspect ratio
    if width >= height:
        assert abs(gen_h - gen_w * height / width) <= 4 or gen_h == 8
    else:
        assert abs(gen_w - gen_h * width / height) <= 4 or gen_w == 8


def test_degenerate_output_reason():
    fine = np.full((4, 4, 3), 0.5, dtype=np.float32)
    assert degenerate_output_reason(fine) is None
    assert degenerate_output_reason(np.zeros_like(fine)) == "an all-black image"
    with_nan = fine.copy()
    with_nan[1, 2, 0] = np.nan
    assert "NaN" in degenerate_output_reason(with_nan)
    assert "safety checker" in degenerate_output_reason(np.zeros_like(fine), flagged=True)


def test_out_of_memory_errors_are_recognised():
    import torch

    assert _is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert _is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert not _is_out_of_memory(RuntimeError("expected scalar type Half but found Float"))
    assert not _is_out_of_memory(ValueError("out of memory"))


# ---------------------------------------------------------------------------- several at once
def test_inpaint_many_matches_one_at_a_time_and_keeps_order(tiny_inpainter):
    from regionedit.inpaint import InpaintRequest

    requests = [
        InpaintRequest(_photo(64, 48), _centre_mask(64, 48), "a red ball", seed=1, steps=2),
        InpaintRequest(_photo(48, 64), _centre_mask(48, 64), "a blue cup", seed=2, steps=2),
        InpaintRequest(_photo(64, 48), _centre_mask(64, 48), "a green hat", seed=3, steps=2,
                       negative_prompt="blurry"),
        # a bad request fails alone
        InpaintRequest(_photo(64, 48), _centre_mask(48, 64), "x", seed=4, steps=2),
    ]
    together = tiny_inpainter.inpaint_many(requests, batch_size=4)

    assert isinstance(together[3], InpaintError) and "mask is" in str(together[3])
    for request, image in zip(requests[:3], together):
        assert image.size == request.image.size
        alone = tiny_inpainter.inpaint(
            request.image, request.mask, request.prompt, seed=request.seed, steps=2,
            negative_prompt=request.negative_prompt,
        )
        # each image starts from its own seed's noise: batching changes float rounding only
        difference = np.abs(np.asarray(image, dtype=np.int16) - np.asarray(alone))
        assert difference.max() <= 2


def test_a_batch_is_decoded_one_image_at_a_time_unless_vae_slicing_is_off(
    tiny_sd_path, monkeypatch
):
    from regionedit.inpaint import InpaintRequest

    requests = [
        InpaintRequest(_photo(64, 48), _centre_mask(64, 48), f"a ball {i}", seed=i, steps=2)
        for i in range(3)
    ]
    for slicing, expected in ((True, [1, 1, 1]), (False, [3])):
        inpainter = DiffusersInpainter(tiny_sd_path, device="cpu", vae_slicing=slicing)
        decoder = inpainter.load().vae.decoder
        decoded: list[int] = []
        real = decoder.forward

        def counting(latents, *args, _real=real, _decoded=decoded, **kwargs):
            _decoded.append(latents.shape[0])
            return _real(latents, *args, **kwargs)

        monkeypatch.setattr(decoder, "forward", counting)
        # the decoder's full-size activations are most of a batch's memory: decoding one image
        # at a time keeps a batch's memory near a single image's
        assert all(not isinstance(out, Exception)
                   for out in inpainter.inpaint_many(requests, batch_size=3))
        assert decoded == expected


def test_loading_from_two_threads_at_once_loads_once(tiny_sd_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from diffusers import AutoPipelineForInpainting

    calls = []
    real = AutoPipelineForInpainting.from_pretrained

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoPipelineForInpainting, "from_pretrained", counting)
    inpainter = DiffusersInpainter(tiny_sd_path, device="cpu")
    with ThreadPoolExecutor(max_workers=2) as threads:
        pipes = list(threads.map(lambda _: inpainter.load(), range(2)))
    assert pipes[0] is pipes[1]
    assert len(calls) == 1


def test_separate_inpainters_load_in_threads_at_once(tiny_sd_path, tiny_inpainter):
    # e.g. a server with an Editor per worker thread: unserialised, from_pretrained's
    # process-wide meta-device patching left some of these models without weights
    from concurrent.futures import ThreadPoolExecutor

    expected = _run(tiny_inpainter, seed=4)
    inpainters = [DiffusersInpainter(tiny_sd_path, device="cpu") for _ in range(6)]
    with ThreadPoolExecutor(max_workers=3) as threads:
        outputs = list(threads.map(lambda inpainter: _run(inpainter, seed=4), inpainters))
    for output in outputs:
        assert np.array_equal(output, expected)


def test_inpaint_many_refuses_a_batch_size_below_one(tiny_inpainter):
    with pytest.raises(ValueError, match="batch_size"):
        tiny_inpainter.inpaint_many([], batch_size=0)


def test_loading_says_nothing_a_user_cannot_act_on(tiny_sd_path):
    # transformers announces image processors falling back to Pillow without torchvision when
    # diffusers imports them; regionedit uses none of them
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from regionedit.inpaint_diffusers import DiffusersInpainter\n"
        f"DiffusersInpainter({str(tiny_sd_path)!r}, device='cpu').load()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "requires torchvision" not in done.stderr and "[transformers]" not in done.stderr
