"""The models regionedit uses when none is named, and the models known to be retired.

Written once here; the stages, the CLI help and the error messages read them from this module.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "DEFAULT_LLM_MODEL",
    "DEFAULT_IMAGE_EDIT_MODEL",
    "DEFAULT_SEGMENT_MODEL",
    "SEGMENT_MODEL_GPU",
    "SEGMENT_MODEL_CPU",
    "SegmentModel",
    "SEGMENT_MODELS",
    "default_segment_model",
    "DEFAULT_INPAINT_MODEL",
    "Retirement",
    "RETIRED",
    "retirement",
    "ModelDownload",
    "can_reach",
    "check_downloads",
]

# -- the LLM region classifier -----------------------------------------------------------------

#: chat model of the LLM region classifier (``--llm-model``, ``REGIONEDIT_LLM_MODEL``):
#: OpenAI's named successor of gpt-4o-mini, a reasoning model (the classifier asks it for the
#: least reasoning it accepts)
DEFAULT_LLM_MODEL = "gpt-6-luna"

# -- the OpenAI image edit inpainter -----------------------------------------------------------

#: image edit model of ``--inpainter openai`` (``--model``). The openai SDK's notes name
#: gpt-image-2.5-sunburst first as the successor of the retired GPT image models, and document
#: it for everything an edit uses: masked edits and arbitrary resolutions.
DEFAULT_IMAGE_EDIT_MODEL = "gpt-image-2.5-sunburst"

# -- segmentation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentModel:
    """One of rembg's local subject models, as regionedit knows it."""

    name: str
    #: licence of the weights
    licence: str
    #: whether that licence allows commercial use
    commercial_use: bool
    #: approximate size of the file rembg downloads on first use, in MB
    download_mb: float
    #: side of the square input rembg feeds the model
    input_side: int
    #: the rembg session that loads a local file of this architecture (``model_path``), if any
    custom_session: Optional[str] = None
    #: the file rembg downloads it from, among its release files (REMBG_RELEASE_FILES)
    release_file: Optional[str] = None

    @property
    def url(self) -> Optional[str]:
        return REMBG_RELEASE_FILES + self.release_file if self.release_file else None


#: rembg's single-subject models. Sizes are those of the fp32 ONNX files (measured on exports
#: of the same architectures, bench/results/segmentation-models.json, rounded).
#: where rembg downloads its models from
REMBG_RELEASE_FILES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"

SEGMENT_MODELS: dict[str, SegmentModel] = {
    m.name: m
    for m in (
        SegmentModel("birefnet-general", "MIT", True, 964, 1024, "birefnet_custom",
                     "BiRefNet-general-epoch_244.onnx"),
        SegmentModel("birefnet-general-lite", "MIT", True, 216, 1024, "birefnet_custom",
                     "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx"),
        SegmentModel("birefnet-portrait", "MIT", True, 964, 1024, "birefnet_custom",
                     "BiRefNet-portrait-epoch_150.onnx"),
        SegmentModel("birefnet-dis", "MIT", True, 964, 1024, "birefnet_custom",
                     "BiRefNet-DIS-epoch_590.onnx"),
        SegmentModel("birefnet-hrsod", "MIT", True, 964, 1024, "birefnet_custom",
                     "BiRefNet-HRSOD_DHU-epoch_115.onnx"),
        SegmentModel("birefnet-cod", "MIT", True, 964, 1024, "birefnet_custom",
                     "BiRefNet-COD-epoch_125.onnx"),
        SegmentModel("birefnet-massive", "MIT", True, 964, 1024, "birefnet_custom",
                     "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx"),
        SegmentModel("isnet-general-use", "Apache-2.0", True, 176, 1024, "dis_custom",
                     "isnet-general-use.onnx"),
        SegmentModel("u2net", "Apache-2.0", True, 176, 320, "u2net_custom", "u2net.onnx"),
        SegmentModel("u2netp", "Apache-2.0", True, 4.6, 320, "u2net_custom", "u2netp.onnx"),
        SegmentModel("u2net_human_seg", "Apache-2.0", True, 176, 320, "u2net_custom",
                     "u2net_human_seg.onnx"),
        # BRIA's RMBG 2.0: usable when named, never chosen by regionedit
        SegmentModel("bria-rmbg", "CC BY-NC 4.0", False, 964, 1024, None, "bria-rmbg-2.0.onnx"),
    )
}

#: the segmentation model where onnxruntime can use a CUDA GPU: the best of rembg's models
#: whose licence allows commercial use (BiRefNet, Swin-L backbone; far ahead of IS-Net and
#: U^2-Net on the DIS5K benchmark)
SEGMENT_MODEL_GPU = "birefnet-general"
#: the segmentation model on CPU: IS-Net. Through onnxruntime on CPU, BiRefNet costs ~8x its
#: CPU time and ~7x its memory even with the Swin-T backbone (21 CPU-seconds and 12.5 GB for a
#: photo, against 2.5 s and 1.8 GB); IS-Net is still well ahead of U^2-Net on DIS5K
#: (bench/results/segmentation-models.json, docs/models-segmentation.md)
SEGMENT_MODEL_CPU = "isnet-general-use"
#: ``--segment-model`` default: SEGMENT_MODEL_GPU or SEGMENT_MODEL_CPU, by the onnxruntime
#: execution providers available (:func:`default_segment_model`)
DEFAULT_SEGMENT_MODEL = "auto"


def default_segment_model(providers: Iterable[str]) -> str:
    """The segmentation model regionedit picks for these onnxruntime execution providers."""
    return SEGMENT_MODEL_GPU if "CUDAExecutionProvider" in providers else SEGMENT_MODEL_CPU


# A model picked without the user naming it must be one they may use commercially.
for _name in (SEGMENT_MODEL_GPU, SEGMENT_MODEL_CPU):
    if not SEGMENT_MODELS[_name].commercial_use:  # pragma: no cover  (a wrong edit above)
        raise ImportError(f"{_name} may not be used commercially; it cannot be a default")


# -- diffusers inpainting ----------------------------------------------------------------------

#: diffusers inpainting model on CPU, Apple MPS and GPUs too small for the larger families; the
#: ``sd15`` preset. The presets of every family, and the default on a CUDA GPU (chosen by its
#: free memory when the model loads), are in :mod:`regionedit.presets`.
DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"


# -- retired models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Retirement:
    """A model its provider has shut down, or announced it will."""

    model: str
    #: ISO date of the shutdown
    date: str
    #: the provider's named successor, when there is one
    replacement: Optional[str] = None


#: model name -> its retirement
RETIRED: dict[str, Retirement] = {
    r.model: r
    for r in (
        # image edit models (the openai SDK's notes; OpenAI's deprecations of 2026-06-02)
        Retirement("gpt-image-1", "2026-10-23", "gpt-image-2.5-sunburst"),
        Retirement("gpt-image-1.5", "2026-12-01", "gpt-image-2"),
        Retirement("gpt-image-1-mini", "2026-12-01", "gpt-image-2"),
        Retirement("chatgpt-image-latest", "2026-12-01", "gpt-image-2"),
        Retirement("dall-e-2", "2026-05-12"),
        Retirement("dall-e-3", "2026-05-12"),
        # chat models, as the openai SDK's model notes announce them
        Retirement("gpt-4o-mini", "2027-01-14", "gpt-6-luna"),
        Retirement("gpt-4o-mini-2024-07-18", "2027-01-14", "gpt-6-luna"),
        Retirement("gpt-4o", "2027-01-14"),
        Retirement("gpt-4.1", "2027-01-14"),
        Retirement("gpt-4.1-mini", "2027-01-14"),
        Retirement("gpt-4.1-nano", "2026-10-23"),
        Retirement("o4-mini", "2026-10-23"),
        Retirement("o3-mini", "2026-10-23"),
        Retirement("gpt-4-turbo", "2026-10-23"),
        Retirement("gpt-4", "2026-10-23"),
        Retirement("gpt-3.5-turbo", "2026-10-23"),
        Retirement("gpt-5", "2026-12-11"),
        Retirement("gpt-5-mini", "2026-12-11"),
        Retirement("gpt-5-nano", "2026-12-11"),
        Retirement("o3", "2026-12-11"),
    )
}


def retirement(model: str) -> Optional[Retirement]:
    """The retirement of ``model`` when it is known, else None."""
    return RETIRED.get(model)


# -- what a first use downloads ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDownload:
    """A model a stage will download on first use: what, from where, how big, to where, and
    how to get it without network access here."""

    #: "rembg model", "inpainting model"
    kind: str
    model: str
    #: where it comes from; None when the library did not say
    url: Optional[str]
    #: approximate size in MB; None when unknown
    size_mb: Optional[float]
    #: the file or folder it is saved in
    path: str
    #: how to get it without network access here: one clause, no final full stop
    offline_advice: str
    #: downloads from its source are switched off on this machine (HF_HUB_OFFLINE)
    switched_off: bool = False

    def possible(self) -> bool:
        """Whether this machine can download it now."""
        return not self.switched_off and (self.host is None or can_reach(self.host))

    @property
    def size_text(self) -> str:
        if self.size_mb is None:
            return "size unknown"
        return f"~{self.size_mb / 1000:.1f} GB" if self.size_mb >= 1000 else f"~{self.size_mb:g} MB"

    @property
    def host(self) -> Optional[str]:
        return urllib.parse.urlsplit(self.url).hostname if self.url else None

    def describe(self) -> str:
        """``the rembg model 'NAME' (~N MB)``: for "will download" notices."""
        return f"the {self.kind} {self.model!r} ({self.size_text})"


def can_reach(host: str, *, timeout: float = 3.0) -> bool:
    """Whether this machine can open a connection to ``host`` (HTTPS). With a proxy configured
    the answer is yes: the proxy, not this check, decides."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                                             "all_proxy")):
        return True
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_downloads(stages: Iterable[object]) -> None:
    """Before ``stages`` first load their models: say what will be downloaded, or, when it
    cannot be (no network, downloads switched off), raise one ModelLoadError naming every
    missing model and how to get it. A stage without ``pending_download()`` has its model."""
    downloads = []
    for stage in stages:
        pending = getattr(stage, "pending_download", None)
        download = pending() if callable(pending) else None
        if download is not None:
            downloads.append(download)
    blocked = [d for d in downloads if not d.possible()]
    if blocked:
        from .errors import ModelLoadError

        hosts = " or ".join(sorted({d.host or d.path for d in blocked}))
        what = "; ".join(f"{d.describe()}: to work offline, {d.offline_advice}" for d in blocked)
        raise ModelLoadError(
            f"{len(blocked)} model(s) must be downloaded first, and this machine cannot download "
            f"from {hosts} (no network, or HF_HUB_OFFLINE is set): {what}."
        )
    if downloads:
        logging.getLogger("regionedit").info("First use: downloading %s.", "; ".join(
            f"{d.describe()} into {d.path}" for d in downloads
        ))
