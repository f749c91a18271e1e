"""Every inpainting family regionedit has a preset for, edited end to end on a tiny random
pipeline of its real diffusers class, saved to disk and loaded like a hub id; the presets, the
default by device, and each family's own call arguments."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from regionedit import Editor
from regionedit.errors import InpaintError, ModelLoadError
from regionedit.inpaint import InpaintRequest, generation_size
from regionedit.inpaint_diffusers import DiffusersInpainter
from regionedit.models import DEFAULT_INPAINT_MODEL
from regionedit.presets import (
    FAMILIES,
    GPU_DEFAULT_ORDER,
    default_family,
    family_for_pipeline,
    pipeline_arguments,
)
from support.tiny_families import (
    FAMILY_NAMES,
    build_family,
    tiny_family_path,  # noqa: F401  (a session fixture)
)

FAST = dict(steps=2, max_side=64)
#: families whose latents are packed in 2x2 patches: sizes in multiples of 16
PACKED = {name for name, family in FAMILIES.items() if family.latent_patch == 2}


@pytest.fixture(scope="session")
def family_inpainter(tiny_family_path):  # noqa: F811
    """``family_inpainter(name)``: a loaded CPU inpainter on that family's tiny pipeline,
    shared by the session."""
    loaded: dict[str, DiffusersInpainter] = {}

    def get(family: str) -> DiffusersInpainter:
        if family not in loaded:
            inpainter = DiffusersInpainter(tiny_family_path(family), device="cpu")
            inpainter.load()
            loaded[family] = inpainter
        return loaded[family]

    return get


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def _request(width: int = 64, height: int = 48, **kwargs) -> InpaintRequest:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    image = Image.fromarray(np.stack([x, x[:, ::-1], x * 0 + 90], -1).astype(np.uint8), "RGB")
    mask = np.zeros((height, width), np.float32)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1.0
    options = {"seed": 0, "steps": 2, "max_side": 64, **kwargs}
    return InpaintRequest(image, mask, "a red ball", **options)


# ------------------------------------------------------------------ each family, end to end
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_each_family_edits_a_photo_through_the_editor(
    family, family_inpainter, rembg_segmenter, small_photo_path
):
    inpainter = family_inpainter(family)
    editor = Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=inpainter)
    first = editor.edit(small_photo_path, "a cat", "a dog", seed=5, **FAST)
    again = editor.edit(small_photo_path, "a cat", "a dog", seed=5, **FAST)
    other = editor.edit(small_photo_path, "a cat", "a dog", seed=6, **FAST)

    original = _pixels(Image.open(small_photo_path))
    edited = _pixels(first.image)
    assert edited.shape == original.shape
    kept = first.mask == 0
    assert kept.any() and (~kept).any()
    assert np.array_equal(edited[kept], original[kept])
    assert np.abs(edited[first.mask == 1] - original[first.mask == 1]).mean() > 1
    assert np.array_equal(edited, _pixels(again.image))
    assert not np.array_equal(edited, _pixels(other.image))

    info = inpainter.describe()
    assert info["family"] == family
    assert info["pipeline"] == FAMILIES[family].pipeline
    expected_loader = (
        "AutoPipelineForInpainting" if FAMILIES[family].auto_pipeline else FAMILIES[family].pipeline
    )
    assert info["loaded_with"] == expected_loader
    assert info["size_multiple"] == (16 if family in PACKED else 8)
    json.dumps(info)


def test_automodel_maps_the_families_it_claims_and_not_the_others(tiny_family_path):  # noqa: F811
    from diffusers import AutoPipelineForInpainting

    for name, family in FAMILIES.items():
        folder = tiny_family_path(name)
        if family.auto_pipeline:
            pipe = AutoPipelineForInpainting.from_pretrained(folder)
            assert type(pipe).__name__ == family.pipeline
        else:
            with pytest.raises(ValueError, match="AutoPipeline can't find"):
                AutoPipelineForInpainting.from_pretrained(folder)


@pytest.mark.parametrize("family", sorted(PACKED))
def test_transformer_families_generate_at_multiples_of_16(family, family_inpainter):
    inpainter = family_inpainter(family)
    # 100x30 at a long side of 64: 64x19.2, which rounds to 64x16 on a grid of 16 (64x24 on 8)
    width, height, *_ = inpainter.batch_key(_request(100, 30))
    assert (width, height) == (64, 16)
    out = inpainter.inpaint_many([_request(100, 30)])[0]
    assert out.size == (100, 30)
    with pytest.raises(InpaintError, match="at least 16"):
        inpainter.inpaint(_request().image, _request().mask, "x", seed=0, steps=2, max_side=8)


@pytest.mark.parametrize("family", ["sdxl", "flux", "qwen-image", "z-image", "flux2-klein"])
def test_batches_match_single_calls_in_every_family(family, family_inpainter):
    inpainter = family_inpainter(family)
    requests = [_request(seed=1), _request(seed=2), _request(seed=3, steps=3)]
    together = inpainter.inpaint_many(requests, batch_size=4)
    alone = [inpainter.inpaint_many([r], batch_size=1)[0] for r in requests]
    for a, b in zip(together, alone):
        # one call of several images matches one call each up to float rounding
        assert np.abs(_pixels(a) - _pixels(b)).max() <= 2


@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(16, 2048))
def test_generation_size_on_a_grid_of_16_keeps_the_aspect(width, height, long_side):
    gen_w, gen_h = generation_size((width, height), long_side, multiple=16)
    assert gen_w % 16 == 0 and gen_h % 16 == 0
    assert 16 <= min(gen_w, gen_h) and max(gen_w, gen_h) == long_side // 16 * 16
    if min(width, height) * long_side >= 32 * max(width, height):  # not clamped to 16
        assert abs(gen_w / gen_h - width / height) <= 16 / min(gen_w, gen_h) * (width / height) + 1e-9


# ------------------------------------------------------------------ each family's arguments
def test_steps_and_guidance_left_unset_take_the_familys_values(family_inpainter):
    inpainter = family_inpainter("z-image")
    family = FAMILIES["z-image"]
    assert (family.steps, family.guidance_scale) == (8, 0.0)
    unset = inpainter.inpaint_many([_request(steps=None)])[0]
    explicit = inpainter.inpaint_many([_request(steps=8, guidance_scale=0.0)])[0]
    other = inpainter.inpaint_many([_request(steps=8, guidance_scale=3.0)])[0]
    assert np.array_equal(_pixels(unset), _pixels(explicit))
    assert not np.array_equal(_pixels(unset), _pixels(other))
    info = inpainter.describe()
    assert (info["default_steps"], info["default_guidance_scale"]) == (8, 0.0)


@pytest.mark.parametrize("family", ["sd15", "flux", "qwen-image", "chroma"])
def test_a_negative_prompt_steers_the_families_that_take_one(family, family_inpainter):
    inpainter = family_inpainter(family)
    settings = dict(guidance_scale=5.0)
    plain = inpainter.inpaint_many([_request(**settings)])[0]
    negative = inpainter.inpaint_many([_request(negative_prompt="blurry", **settings)])[0]
    assert not np.array_equal(_pixels(plain), _pixels(negative))


def test_klein_has_no_negative_prompt_it_is_left_out_and_said(family_inpainter, caplog):
    inpainter = family_inpainter("flux2-klein")
    plain = inpainter.inpaint_many([_request(guidance_scale=4.0)])[0]
    with caplog.at_level(logging.WARNING, logger="regionedit"):
        negative = inpainter.inpaint_many([_request(negative_prompt="blurry", guidance_scale=4.0)])[0]
    assert np.array_equal(_pixels(plain), _pixels(negative))
    assert "takes no negative_prompt" in caplog.text


def test_pipeline_arguments_translate_guidance_per_family():
    call = dict(prompt=["a", "b"], guidance_scale=5.0, strength=1.0)
    everything = {"prompt", "guidance_scale", "true_cfg_scale", "negative_prompt", "strength"}

    sd, dropped = pipeline_arguments(FAMILIES["sd15"], call, everything)
    assert sd == call and dropped == []

    # Qwen-Image guides only through true CFG, which needs a negative prompt
    qwen, _ = pipeline_arguments(FAMILIES["qwen-image"], call, everything)
    assert qwen["true_cfg_scale"] == 5.0 and "guidance_scale" not in qwen
    assert qwen["negative_prompt"] == [" ", " "]
    own, _ = pipeline_arguments(FAMILIES["qwen-image"], {**call, "negative_prompt": ["x", ""]},
                                everything)
    assert own["negative_prompt"] == ["x", ""]

    # Flux: guidance_scale is the distilled model's input; a negative prompt adds true CFG
    flux, _ = pipeline_arguments(FAMILIES["flux"], call, everything)
    assert flux["guidance_scale"] == 5.0 and "true_cfg_scale" not in flux
    flux_neg, _ = pipeline_arguments(FAMILIES["flux"], {**call, "negative_prompt": ["x", "y"]},
                                     everything)
    assert flux_neg["true_cfg_scale"] == FAMILIES["flux"].negative_cfg_scale

    # what the pipeline has no parameter for is left out and named
    klein, dropped = pipeline_arguments(
        FAMILIES["flux2-klein"], {**call, "negative_prompt": ["x", "y"]},
        {"prompt", "guidance_scale", "strength"},
    )
    assert "negative_prompt" not in klein and dropped == ["negative_prompt"]

    # an unknown pipeline is called as classifier-free guidance
    assert pipeline_arguments(None, call, everything)[0] == call


# ------------------------------------------------------------------ presets and defaults
def test_presets_describe_every_family():
    assert list(FAMILIES) == list(FAMILY_NAMES)
    assert FAMILIES["sd15"].model == DEFAULT_INPAINT_MODEL
    for name, family in FAMILIES.items():
        assert family.name == name
        assert family.size_multiple in (8, 16)
        assert family.dtype in ("float16", "bfloat16")
        assert family.gpu_gb > family.weights_gb > 0
        assert family.cpu in ("yes", "slow", "no")
        assert family_for_pipeline(family.pipeline) is family
        assert family_for_pipeline(family.base_pipeline) is family
    assert family_for_pipeline("KandinskyV22InpaintPipeline") is None


def test_preset_sizes_are_the_counts_of_the_real_configs():
    from bench.gpu_families import parameter_counts

    safety_checker = 0.30  # SD 1.5's, which the benchmark's pipeline leaves out
    for name, family in FAMILIES.items():
        counted = sum(parameter_counts(name).values()) / 1e9
        if name == "sd15":
            counted += safety_checker
        assert family.parameters == pytest.approx(counted, abs=0.01), name


def test_the_default_is_chosen_by_device_and_always_allows_commercial_use():
    assert default_family("cpu", None)[0].name == "sd15"
    assert default_family("mps", None)[0].name == "sd15"
    assert default_family("cuda", 140.0)[0].name == GPU_DEFAULT_ORDER[0] == "z-image"
    assert default_family("cuda:1", 12.0)[0].name == "sdxl"
    family, why = default_family("cuda", 6.0)
    assert family.name == "sd15" and "6 GB free" in why
    for free in (None, 1.0, 8.0, 16.0, 30.0, 80.0, 200.0):
        for device in ("cpu", "cuda", "mps"):
            assert default_family(device, free)[0].commercial_use


def test_no_model_named_on_cpu_loads_sd15(monkeypatch):
    # offline, the hub id cannot be fetched: the error names the model that was chosen
    inpainter = DiffusersInpainter(device="cpu")
    assert inpainter.describe()["model"] is None
    with pytest.raises(ModelLoadError, match=DEFAULT_INPAINT_MODEL):
        inpainter.load()


def test_no_model_named_on_a_large_gpu_loads_the_gpu_default(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80e9, 141e9))
    with pytest.raises(ModelLoadError, match=FAMILIES["z-image"].model):
        DiffusersInpainter(device="cuda").load()


@pytest.mark.parametrize("name", ["sdxl", "flux", "qwen-image"])
def test_a_preset_name_loads_its_model(name):
    with pytest.raises(ModelLoadError, match=FAMILIES[name].model.replace(".", r"\.")):
        DiffusersInpainter(name, device="cpu").load()
    with pytest.raises(ModelLoadError, match=FAMILIES[name].model.replace(".", r"\.")):
        Editor(classifier="offline", inpaint_model=name, device="cpu").inpainter.load()


def test_a_folder_named_like_a_preset_is_written_with_a_path(tmp_path, monkeypatch):
    build_family("sd15", tmp_path / "sdxl")
    monkeypatch.chdir(tmp_path)
    inpainter = DiffusersInpainter("./sdxl", device="cpu")
    inpainter.load()
    assert inpainter.describe()["family"] == "sd15"


# ------------------------------------------------------------------ the GPU benchmark, tiny
def test_gpu_benchmark_runs_tiny_on_cpu(tmp_path: Path):
    from bench.gpu_families import main

    # a UNet family, one AutoPipeline maps and one it does not: every family's builder and
    # loading are exercised above, this checks the script (about 3 s)
    families = ["sd15", "qwen-image", "flux2-klein"]
    output = tmp_path / "tiny.json"
    argv = ["--tiny", "--families", ",".join(families), "--output", str(output),
            "--workspace", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads(output.read_text())
    assert report["through_disk"] is True and report["steps"] == 2
    assert [row["family"] for row in report["families"]] == families
    for row in report["families"]:
        assert row["output_size"] == [512, 512]
        assert row["edit_s"] > 0 and row["load_s"] > 0 and row["peak_gb"] > 0
        assert row["pipeline"] == FAMILIES[row["family"]].pipeline
