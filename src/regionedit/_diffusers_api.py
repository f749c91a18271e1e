"""What regionedit needs from diffusers' pipelines beyond calling them: which class loads a
model, in which dtype, what its ``__call__`` takes, its native size, quiet loading, and
work-arounds for bugs of the installed diffusers. Imports torch and diffusers only when called.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

from .errors import ModelLoadError, option
from .models import ModelDownload, can_reach
from .presets import Family

__all__ = [
    "hub_arguments",
    "hub_download",
    "load_failure_message",
    "hub_reachable",
    "auto_device",
    "call_parameters",
    "default_dtype",
    "family_class",
    "fix_known_problems",
    "free_memory_gb",
    "native_size",
    "pipeline_config",
    "quiet_loading",
]


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide the "Loading pipeline components" / "Loading weights" bars: a library does not print.

    Hub download bars are left alone: a multi-gigabyte first download should show progress.
    Also hides what the user can do nothing about: a deprecation warning diffusers triggers in
    huggingface_hub on every hub load, and transformers' notices that image processors the
    pipelines import fall back to Pillow without torchvision (regionedit does not use them).
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore = []
    for lib in (diffusers_logging, transformers_logging):
        if lib.is_progress_bar_enabled():
            lib.disable_progress_bar()
            restore.append(lib)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity(max(verbosity, transformers_logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        for lib in restore:
            lib.enable_progress_bar()


def pipeline_config(model: str, hub: dict[str, Any]) -> dict[str, Any]:
    """The model's ``model_index.json``: its ``_class_name`` tells the family before loading."""
    from diffusers import DiffusionPipeline

    return dict(DiffusionPipeline.load_config(model, **hub))


def family_class(family: Family, model: str) -> Any:
    """The family's diffusers pipeline class; a clear error where diffusers predates it."""
    import diffusers

    cls = getattr(diffusers, family.pipeline, None)
    if cls is None:
        raise ModelLoadError(
            f"{model} is a {family.name} model, whose pipeline {family.pipeline} the installed "
            f"diffusers {diffusers.__version__} does not have. Upgrade it: "
            "pip install -U diffusers."
        )
    return cls


def default_dtype(device: str, family: Family | None) -> str:
    """float32 on CPU (half precision is slow or unsupported there); the family's on a GPU."""
    if device.startswith("cpu"):
        return "float32"
    return family.dtype if family is not None else "float16"


def free_memory_gb(torch: Any, device: str) -> float | None:
    """Free memory of a CUDA device in GB; None for other devices."""
    if not device.startswith("cuda"):
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return free / 1e9


def call_parameters(pipe: Any) -> frozenset[str]:
    """The named parameters of the pipeline's ``__call__`` (its ``**kwargs``, kept only for
    deprecated arguments, does not count)."""
    parameters = inspect.signature(type(pipe).__call__).parameters.values()
    return frozenset(
        p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    )


def fix_known_problems(pipe: Any) -> None:
    """Work around pipeline bugs of the installed diffusers that a correct model triggers."""
    transformer = getattr(pipe, "transformer", None)
    if type(pipe).__name__ == "ChromaInpaintPipeline" and not hasattr(
        transformer.config, "guidance_embeds"
    ):
        # diffusers 0.42's Chroma inpainting reads transformer.config.guidance_embeds, which
        # Chroma's transformer does not have (AttributeError on every call). Chroma has no
        # guidance embedding: False is its true value.
        transformer.register_to_config(guidance_embeds=False)


def auto_device(torch: Any) -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def native_size(pipe: Any, family: Family | None = None) -> int:
    """The model's training resolution: latent sample size times the VAE's downscale factor,
    else the family's (Z-Image's pipeline and transformer do not say)."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
    if sample is None:  # e.g. Flux keeps it on the pipeline
        sample = getattr(pipe, "default_sample_size", None)
    if isinstance(sample, (list, tuple)):
        sample = max(sample)
    if not sample:
        return family.native_size if family is not None else 512
    return int(sample) * int(getattr(pipe, "vae_scale_factor", 8))


def hub_download(model: str, family: Family | None) -> ModelDownload | None:
    """What loading the hub id ``model`` downloads, or None when it is in the hub cache
    already (its ``model_index.json`` is)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "model_index.json"), str):
        return None
    size_mb = None
    if family is not None:
        # the SD 1.5 and SDXL repositories' default files are float32, the newer ones bfloat16
        size_mb = family.parameters * (4 if family.dtype == "float16" else 2) * 1000
    folder = option("inpaint_model=FOLDER", "--model FOLDER")
    return ModelDownload(
        kind="inpainting model", model=model, url=f"{constants.ENDPOINT}/{model}",
        size_mb=size_mb, path=constants.HF_HUB_CACHE, switched_off=constants.HF_HUB_OFFLINE,
        offline_advice=(
            f"on a machine with internet access run `hf download {model} --local-dir FOLDER`, "
            f"copy FOLDER here and load it with {folder} (with HF_HUB_OFFLINE=1 set, the hub "
            "is not asked at all)"
        ),
    )


def hub_reachable() -> bool:
    """Whether the Hugging Face hub may be asked: HF_HUB_OFFLINE is not set and its host
    answers."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    return can_reach(urlsplit(constants.ENDPOINT).hostname or "huggingface.co")


def hub_arguments(model: str, family: Family | None) -> dict[str, Any]:
    """``from_pretrained``'s hub arguments for the hub id ``model``; a one-line ModelLoadError
    at once, instead of the hub client's retries, when the model is not in the cache and the
    hub cannot be reached."""
    reachable = hub_reachable()
    download = hub_download(model, family)
    if download is None:
        # in the cache: without a network, do not ask the hub for a newer version
        return {} if reachable else {"local_files_only": True}
    if not reachable:
        raise ModelLoadError(f"Cannot download {download.describe()}: {hub_unreachable()}. "
                             f"To work offline, {download.offline_advice}.")
    return {}


def hub_unreachable() -> str:
    """Why the hub is not asked: HF_HUB_OFFLINE, or no network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set, so nothing is downloaded (unset it to download)"
    return f"this machine cannot reach {constants.ENDPOINT} (no network, or name resolution failed)"


def load_failure_message(model: str, chosen_by: str, exc: Exception) -> str:
    """Why ``model`` could not be loaded and how to make it loadable, on one line."""
    chosen = "" if chosen_by == "named" else f" ({chosen_by})"
    cause = " ".join(f"{type(exc).__name__}: {exc}".split())
    cause = cause if len(cause) <= 300 else cause[:297] + "..."
    head = f"Could not load inpainting model {model!r}{chosen}: {cause}."
    from .inpaint import looks_like_path

    if looks_like_path(model):
        advice = (
            "A local model must be a folder written by pipeline.save_pretrained(folder): "
            "model_index.json plus one subfolder per component (unet or transformer, vae, "
            "text_encoder, tokenizer, scheduler). Check the path, or re-save the folder."
        )
    else:
        folder = option("inpaint_model=FOLDER", "--model FOLDER")
        advice = (
            f"Download it once with `hf download {model}` or run once with network access, or "
            f"load a folder written by pipeline.save_pretrained with {folder}."
        )
    return f"{head} {advice}"
