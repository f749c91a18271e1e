"""Inpainting model families: short preset names, what each model is, and how its pipeline is
called.

``DiffusersInpainter(model="sdxl")`` (CLI ``--model sdxl``) loads the preset's Hugging Face
model; any other hub id or local folder still works, and its family is recognised from the
pipeline class its ``model_index.json`` names, so a fine-tune of a family is called the way the
family is. With no model named, :func:`default_family` picks one for the device.

Where the figures come from:

* ``parameters``: counted from each repository's published component configs (rebuilt in
  ``bench/gpu_families.py`` with random weights on torch's meta device; the counts match the
  model cards' sizes: UNet 0.86 B, Flux 11.9 B, Qwen-Image 20.4 B, ...). ``weights_gb`` is
  that times 2 bytes (float16 / bfloat16), in decimal gigabytes.
* ``gpu_gb``: an estimate (weights plus room for activations and the VAE at the native size),
  until ``bench/gpu_families.py`` measures the peak on a GPU.
* licences, native sizes and recommended settings: the model cards, and diffusers' pipeline
  defaults and examples where noted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Optional

from .models import DEFAULT_INPAINT_MODEL

__all__ = [
    "FAMILIES",
    "GPU_DEFAULT_ORDER",
    "Family",
    "default_family",
    "family_for_pipeline",
    "pipeline_arguments",
    "preset",
]

#: "cfg": classifier-free guidance, ``guidance_scale`` weighs the prompt against the negative
#: prompt. "true-cfg": the same, but the pipeline calls the scale ``true_cfg_scale`` and needs
#: a negative prompt to guide at all. "distilled": ``guidance_scale`` is an input of a
#: guidance-distilled model (one pass per step); a negative prompt needs true CFG on top.
Guidance = Literal["cfg", "true-cfg", "distilled"]


@dataclass(frozen=True)
class Family:
    """One inpainting family: its preset model and how its pipeline is called."""

    #: preset name (``--model NAME``)
    name: str
    #: what the preset loads: a Hugging Face model id
    model: str
    #: the diffusers inpainting pipeline class this family runs in
    pipeline: str
    #: the text-to-image pipeline class a checkpoint of the family usually declares
    base_pipeline: str
    #: ``AutoPipelineForInpainting`` maps the family (otherwise the class is loaded directly)
    auto_pipeline: bool
    licence: str
    #: the licence allows commercial use without a separate agreement
    commercial_use: bool
    #: longer side, in pixels, the model is trained at
    native_size: int
    #: latent patch side: generation sizes are multiples of the VAE factor times this
    latent_patch: int
    #: weights' dtype on a GPU
    dtype: str
    #: billions of parameters, all components
    parameters: float
    #: estimated GPU memory for one edit at the native size, GB
    gpu_gb: float
    #: "yes", "slow" or "no": practical on a CPU in float32 (twice the weights' bytes in RAM)
    cpu: str
    guidance: Guidance
    #: denoising steps and guidance scale used when the edit does not set them
    steps: int
    guidance_scale: float
    #: true CFG scale a negative prompt turns on, for "distilled" guidance
    negative_cfg_scale: Optional[float] = None
    note: str = ""

    @property
    def weights_gb(self) -> float:
        """Weights in float16 / bfloat16, GB."""
        return round(self.parameters * 2, 1)

    @property
    def size_multiple(self) -> int:
        """Generation sizes are multiples of this, in pixels (VAE factor 8 times the patch)."""
        return 8 * self.latent_patch


#: preset name -> family; the order is the README table's
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="sd15", model=DEFAULT_INPAINT_MODEL,
            pipeline="StableDiffusionInpaintPipeline", base_pipeline="StableDiffusionPipeline",
            auto_pipeline=True, licence="CreativeML OpenRAIL-M", commercial_use=True,
            native_size=512, latent_patch=1, dtype="float16",
            # UNet 0.86 + CLIP-L 0.12 + VAE 0.08 + safety checker 0.30
            parameters=1.37, gpu_gb=4.0, cpu="yes",
            guidance="cfg", steps=30, guidance_scale=7.5,
            note="inpainting-trained UNet; ships a safety checker",
        ),
        Family(
            name="sdxl", model="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
            pipeline="StableDiffusionXLInpaintPipeline",
            base_pipeline="StableDiffusionXLPipeline",
            auto_pipeline=True, licence="CreativeML OpenRAIL++-M", commercial_use=True,
            native_size=1024, latent_patch=1, dtype="float16",
            parameters=3.47, gpu_gb=10.0, cpu="slow",  # UNet 2.57 + CLIP-L + CLIP-G 0.70
            guidance="cfg", steps=30, guidance_scale=7.5,
            note="inpainting-trained UNet",
        ),
        Family(
            name="sd3", model="stabilityai/stable-diffusion-3.5-large",
            pipeline="StableDiffusion3InpaintPipeline",
            base_pipeline="StableDiffusion3Pipeline",
            auto_pipeline=True, licence="Stability AI Community License",
            commercial_use=False,  # free only under USD 1M annual revenue; gated download
            native_size=1024, latent_patch=2, dtype="bfloat16",
            parameters=13.72, gpu_gb=32.0, cpu="no",  # MMDiT 8.06 + T5-XXL 4.76 + 2 CLIPs
            guidance="cfg", steps=28, guidance_scale=3.5,  # the model card's settings
        ),
        Family(
            name="flux", model="black-forest-labs/FLUX.1-dev",
            pipeline="FluxInpaintPipeline", base_pipeline="FluxPipeline",
            auto_pipeline=True, licence="FLUX.1 [dev] Non-Commercial License",
            commercial_use=False,
            native_size=1024, latent_patch=2, dtype="bfloat16",
            parameters=16.87, gpu_gb=38.0, cpu="no",  # transformer 11.90 + T5-XXL 4.76 + CLIP-L
            # 28 steps: diffusers' default; guidance 3.5: the model card's
            guidance="distilled", steps=28, guidance_scale=3.5, negative_cfg_scale=4.0,
            note="black-forest-labs/FLUX.1-schnell (Apache-2.0) loads the same way",
        ),
        Family(
            name="qwen-image", model="Qwen/Qwen-Image",
            pipeline="QwenImageInpaintPipeline", base_pipeline="QwenImagePipeline",
            auto_pipeline=True, licence="Apache-2.0", commercial_use=True,
            # the pipeline's default size; the model card also lists 1328 px for 1:1
            native_size=1024, latent_patch=2, dtype="bfloat16",
            parameters=28.85, gpu_gb=64.0, cpu="no",  # MMDiT 20.43 + Qwen2.5-VL-7B 8.29
            guidance="true-cfg", steps=50, guidance_scale=4.0,  # diffusers' defaults
        ),
        Family(
            name="z-image", model="Tongyi-MAI/Z-Image-Turbo",
            pipeline="ZImageInpaintPipeline", base_pipeline="ZImagePipeline",
            auto_pipeline=True, licence="Apache-2.0", commercial_use=True,
            native_size=1024, latent_patch=2, dtype="bfloat16",
            parameters=10.26, gpu_gb=24.0, cpu="no",  # DiT 6.16 + Qwen3-4B 4.02
            # distilled to few steps without guidance: diffusers' inpainting example
            guidance="cfg", steps=8, guidance_scale=0.0,
        ),
        Family(
            name="flux2-klein", model="black-forest-labs/FLUX.2-klein-base-9B",
            pipeline="Flux2KleinInpaintPipeline", base_pipeline="Flux2KleinPipeline",
            auto_pipeline=False, licence="FLUX Non-Commercial License", commercial_use=False,
            native_size=1024, latent_patch=2, dtype="bfloat16",
            parameters=17.35, gpu_gb=40.0, cpu="no",  # transformer 9.08 + Qwen3-8B 8.19
            guidance="cfg", steps=50, guidance_scale=8.0,  # diffusers' defaults
            note="no negative prompt argument",
        ),
        Family(
            name="chroma", model="lodestones/Chroma1-HD",
            pipeline="ChromaInpaintPipeline", base_pipeline="ChromaPipeline",
            auto_pipeline=False, licence="Apache-2.0", commercial_use=True,
            native_size=1024, latent_patch=2, dtype="bfloat16",
            parameters=13.75, gpu_gb=32.0, cpu="no",  # transformer 8.90 + T5-XXL 4.76
            guidance="cfg", steps=28, guidance_scale=7.0,  # diffusers' defaults
        ),
    )
}

#: With no model named, the first of these whose licence allows commercial use and whose
#: estimate fits the GPU's free memory; SD 1.5 when none does, and on CPU and MPS. Z-Image
#: Turbo first: an Apache-2.0 model of the newest generation that a 24 GB card holds,
#: distilled to 8 steps without guidance (8 passes of a 6 B transformer per edit). Qwen-Image,
#: also Apache-2.0, needs 64 GB and 50 steps of two passes each on a 20 B transformer: it is
#: chosen by name, not by default.
GPU_DEFAULT_ORDER = ("z-image", "sdxl")


def preset(name: str) -> Optional[Family]:
    """The family whose preset is ``name`` (``"sdxl"``...), or None."""
    return FAMILIES.get(name)


def _base_name(class_name: str) -> str:
    for task in ("Inpainting", "Inpaint", "Img2Img"):
        class_name = class_name.replace(task, "")
    return class_name


def family_for_pipeline(class_name: str) -> Optional[Family]:
    """The family of a pipeline class name, as a checkpoint's ``model_index.json`` declares
    it or as loaded (``FluxPipeline``, ``FluxInpaintPipeline``...); None for other pipelines."""
    base = _base_name(class_name)
    for family in FAMILIES.values():
        if base == family.base_pipeline:
            return family
    return None


def default_family(device: str, free_gb: Optional[float]) -> tuple[Family, str]:
    """The family to load when no model is named, and why (for the sidecar).

    ``device`` is the torch device the model will run on; ``free_gb`` its free memory in GB
    (None when unknown). Only CUDA devices get more than SD 1.5: on CPU the others are far too
    slow, and an MPS device's memory is shared with the whole system.
    """
    if device.split(":")[0] == "cuda" and free_gb is not None:
        for name in GPU_DEFAULT_ORDER:
            family = FAMILIES[name]
            if family.commercial_use and free_gb >= family.gpu_gb:
                return family, (
                    f"default for {device} with {free_gb:.0f} GB free: {name} needs about "
                    f"{family.gpu_gb:.0f} GB"
                )
        return FAMILIES["sd15"], (
            f"default for {device} with {free_gb:.0f} GB free: too little for "
            + " or ".join(f"{n} ({FAMILIES[n].gpu_gb:.0f} GB)" for n in GPU_DEFAULT_ORDER)
        )
    return FAMILIES["sd15"], f"default for {device}"


def pipeline_arguments(
    family: Optional[Family], call: Mapping[str, Any], accepted: Collection[str]
) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments for ``family``'s pipeline from regionedit's call, and the names of
    arguments that pipeline has no parameter for (left out).

    ``call`` holds ``guidance_scale`` in the classifier-free sense and, when any image of the
    call has one, ``negative_prompt``; ``accepted`` are the parameters of the pipeline's
    ``__call__``. A family of unknown kind is called as classifier-free guidance.
    """
    arguments = dict(call)
    kind = family.guidance if family is not None else "cfg"
    if kind == "true-cfg":
        scale = arguments.pop("guidance_scale")
        arguments["true_cfg_scale"] = scale
        if "negative_prompt" not in arguments and scale > 1:
            # without a negative prompt these pipelines do not guide at all; a blank one is
            # what diffusers' own examples pass
            arguments["negative_prompt"] = [" "] * len(arguments["prompt"])
    elif kind == "distilled" and "negative_prompt" in arguments:
        # the guidance input steers a distilled model; a negative prompt needs true CFG (two
        # passes per step) on top of it
        assert family is not None and family.negative_cfg_scale is not None
        arguments["true_cfg_scale"] = family.negative_cfg_scale
    dropped = sorted(name for name in arguments if name not in accepted)
    return {k: v for k, v in arguments.items() if k in accepted}, dropped
