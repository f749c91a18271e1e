"""Measure an edit: was everything outside the mask kept, is the seam invisible, does it match?

``score(original, edited, mask)`` compares an edited image with the image it was made from:

* **preserved** -- PSNR, SSIM and the largest absolute difference over the pixels the mask
  keeps (mask == 0) and nothing else. Masked pixels are left out, not zeroed, so a change
  inside the mask cannot move these numbers. A regionedit edit should score PSNR infinite,
  SSIM 1 and difference 0 here.
* **seam** -- the band ``band`` px deep on both sides of the mask edge: PSNR and SSIM against
  the original, and ``delta_e``, the colour step across the edge in the edited image (see
  :func:`seam_delta_e`); ``delta_e_original`` is the same measure on the original, i.e. the
  step the content itself has there.
* **clip** -- with a target text and a CLIP model: the CLIP score of the whole edited image and
  of the regenerated region (the mask's bounding box) against the target.

SSIM is Wang et al.'s (Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255) per
RGB channel, averaged over the channels. Over a subset of pixels (the kept ones, the seam band)
the local means and variances are computed from that subset's pixels only (normalised
convolution), then the SSIM map is averaged over the subset. With every pixel in the subset,
this is scikit-image's ``structural_similarity(gaussian_weights=True,
use_sample_covariance=False)`` away from the image border (float32 arithmetic: the same to
about 1e-4 per pixel).

Infinite PSNR (identical pixels) is ``math.inf`` in Python and the string ``"Infinity"`` in
``model_dump(mode="json")``, which stays valid JSON and reads back with ``float()``,
JavaScript's ``Number()`` and ``ScoreReport.model_validate``. ``None`` (JSON ``null``) means
"not measurable": the mask keeps no pixel, or has no edge.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, PlainSerializer

from . import masks
from .colormatch import delta_e76, seam_bands, srgb_to_lab
from .errors import DescriptionError, ImageInputError, ModelLoadError
from .imageio import ImageLike, load_image

__all__ = [
    "score",
    "format_score",
    "seam_delta_e",
    "ScoreReport",
    "PreservationMetrics",
    "SeamMetrics",
    "ClipScores",
]

#: PSNR in dB; infinite for identical pixels, written as "Infinity" in JSON
Decibels = Annotated[
    Optional[float],
    PlainSerializer(
        lambda v: "Infinity" if v is not None and math.isinf(v) else v, when_used="json"
    ),
]

_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # an 11 x 11 window, as in Wang et al. and scikit-image
_SSIM_RADIUS = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)  # scipy's rule for the kernel radius
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


class PreservationMetrics(BaseModel):
    """Edited vs original over the kept pixels (mask == 0) only."""

    model_config = ConfigDict(frozen=True)

    pixels: int
    psnr: Decibels = None
    ssim: Optional[float] = None
    max_abs_diff: Optional[int] = None


class SeamMetrics(BaseModel):
    """The band ``band`` px deep on each side of the mask edge."""

    model_config = ConfigDict(frozen=True)

    band: int
    pixels: int
    psnr: Decibels = None
    ssim: Optional[float] = None
    #: CIE76 colour step across the edge in the edited image (see :func:`seam_delta_e`)
    delta_e: Optional[float] = None
    #: the same measure on the original: the step the content itself has along this edge
    delta_e_original: Optional[float] = None


class ClipScores(BaseModel):
    """CLIP score (100 x cosine, floored at 0) of the edited image against the target text."""

    model_config = ConfigDict(frozen=True)

    model: str
    target: str
    whole: float
    #: the bounding box of the regenerated region; None when the mask is empty
    region: Optional[float] = None


class ScoreReport(BaseModel):
    """What :func:`score` returns; ``model_dump(mode="json")`` is valid JSON."""

    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    regenerated_fraction: float
    preserved: PreservationMetrics
    seam: SeamMetrics
    #: None unless both a target and a CLIP model were given
    clip: Optional[ClipScores] = None


def score(
    original: ImageLike,
    edited: ImageLike,
    mask: ImageLike,
    *,
    target: Optional[str] = None,
    clip_model: Optional[str] = None,
    band: int = 4,
) -> ScoreReport:
    """Compare ``edited`` with the ``original`` it was made from, given the regenerated ``mask``.

    Images are paths, PIL images or uint8 arrays; the mask is the same, white / nonzero meaning
    regenerated (any value above 0 counts, so a feathered edge belongs to the regenerated side;
    keep masks in PNG, as JPEG ringing lifts near-black pixels above 0).
    All three must have one size. With ``target`` and ``clip_model`` (a Hugging Face id or a
    local folder holding a CLIP model and processor), the CLIP scores are filled in.

    Raises ImageInputError (unreadable input, sizes differ), DescriptionError (empty target),
    ModelLoadError (CLIP model not loadable).
    """
    if band < 1:
        raise ValueError(f"band must be at least 1 pixel, got {band}")
    original_rgb = _load_rgb(original)
    edited_rgb = _load_rgb(edited)
    region = _load_region(mask)
    sizes = {
        "original": original_rgb.shape[1::-1],
        "edited": edited_rgb.shape[1::-1],
        "mask": region.shape[::-1],
    }
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {w}x{h}" for name, (w, h) in sizes.items())
        raise ImageInputError(
            f"Images and mask differ in size ({listed}). Score the edited image against the "
            "exact input it was made from, with the mask saved by the same edit "
            "(`regionedit edit --save-mask`)."
        )

    kept = ~region
    inner, outer = seam_bands(region, band)
    seam = inner | outer
    # the seam is thin: its SSIM needs only the pixels one Gaussian window around it
    near_seam = _box_around(seam, margin=_SSIM_RADIUS) or np.s_[:0, :0]
    preserved = PreservationMetrics(
        pixels=int(kept.sum()),
        psnr=_psnr(original_rgb, edited_rgb, kept),
        ssim=_masked_ssim(original_rgb, edited_rgb, kept),
        max_abs_diff=(
            int(np.abs(original_rgb[kept].astype(np.int16) - edited_rgb[kept]).max())
            if kept.any()
            else None
        ),
    )
    seam_metrics = SeamMetrics(
        band=band,
        pixels=int(seam.sum()),
        psnr=_psnr(original_rgb, edited_rgb, seam),
        ssim=_masked_ssim(original_rgb[near_seam], edited_rgb[near_seam], seam[near_seam]),
        delta_e=_seam_step(edited_rgb, region, inner, outer, band),
        delta_e_original=_seam_step(original_rgb, region, inner, outer, band),
    )
    clip = None
    if target is not None and clip_model is not None:
        if not target.strip():
            raise DescriptionError(
                "The target description is empty; pass the text the edit aimed for."
            )
        clip = _clip_scores(clip_model, target, edited_rgb, region)
    return ScoreReport(
        width=region.shape[1],
        height=region.shape[0],
        regenerated_fraction=float(region.mean()),
        preserved=preserved,
        seam=seam_metrics,
        clip=clip,
    )


def seam_delta_e(rgb: np.ndarray, region: np.ndarray, band: int) -> Optional[float]:
    """Mean CIE76 colour step across the edge of ``region`` (bool HxW) in ``rgb`` (uint8 HxWx3).

    At every regenerated pixel touching a kept one (8-neighbourhood), take the mean Lab colour
    of the regenerated band pixels and of the kept band pixels inside a (2 * band + 1)-px square
    around it, and measure their Delta-E 1976; return the mean over the edge. Local means average
    out texture, so a colour step along the seam shows even when the two sides differ in
    detail; a global cast shows as much as a local one. None when the region has no edge.
    """
    inner, outer = seam_bands(region, band)
    return _seam_step(rgb, region, inner, outer, band)


def _seam_step(
    rgb: np.ndarray, region: np.ndarray, inner: np.ndarray, outer: np.ndarray, band: int
) -> Optional[float]:
    """:func:`seam_delta_e` given the seam bands, on the crop around them only."""
    from scipy import ndimage

    box = _box_around(inner | outer, margin=band + 1)
    if box is None:
        return None
    region, inner, outer = region[box], inner[box], outer[box]
    edge = inner & ndimage.binary_dilation(~region, structure=np.ones((3, 3), dtype=bool))
    lab = srgb_to_lab(rgb[box])
    window = 2 * band + 1

    def local_mean(side: np.ndarray) -> np.ndarray:
        weight = side.astype(np.float64)
        count = ndimage.uniform_filter(weight, window, mode="constant")[edge]
        sums = [
            ndimage.uniform_filter(lab[..., c] * weight, window, mode="constant")[edge]
            for c in range(3)
        ]
        return np.stack(sums, axis=-1) / count[:, None]

    return float(delta_e76(local_mean(inner), local_mean(outer)).mean())


def _box_around(where: np.ndarray, margin: int) -> Optional[tuple[slice, slice]]:
    """Slices of the bounding box of ``where`` grown by ``margin``; None when it is empty."""
    box = masks.crop_box(where, padding=margin)
    if box is None:
        return None
    left, top, right, bottom = box
    return slice(top, bottom), slice(left, right)


def format_score(report: ScoreReport) -> str:
    """A few human-readable lines summarising ``report``."""

    def db(value: Optional[float]) -> str:
        if value is None:
            return "n/a"
        return "inf dB (identical)" if math.isinf(value) else f"{value:.2f} dB"

    def num(value: Optional[float], digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    p, s = report.preserved, report.seam
    lines = [
        f"Image {report.width}x{report.height}, "
        f"{100 * report.regenerated_fraction:.1f}% regenerated",
        f"Preserved ({p.pixels} px outside the mask): PSNR {db(p.psnr)}, SSIM {num(p.ssim, 4)}, "
        f"max |diff| {'n/a' if p.max_abs_diff is None else p.max_abs_diff}",
        f"Seam band ({s.band} px each side, {s.pixels} px): PSNR {db(s.psnr)}, "
        f"SSIM {num(s.ssim, 4)}",
        f"Colour step across the seam (Delta-E 1976): {num(s.delta_e, 2)} edited, "
        f"{num(s.delta_e_original, 2)} in the original",
    ]
    if report.clip is not None:
        c = report.clip
        lines.append(
            f"CLIP score vs {c.target!r} ({c.model}): whole {c.whole:.2f}, "
            f"region {num(c.region, 2)}"
        )
    return "\n".join(lines)


# -- pixel metrics --------------------------------------------------------------------------


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> Optional[float]:
    if not where.any():
        return None
    mse = float(np.mean((a[where].astype(np.float64) - b[where]) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _masked_ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> Optional[float]:
    """Mean SSIM over ``where``; None when ``where`` is empty."""
    return float(_ssim_map(a, b, where).mean()) if where.any() else None


def _ssim_map(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> np.ndarray:
    """SSIM (mean of the RGB channels) at each ``where`` pixel, local statistics taken from
    the ``where`` pixels only."""
    from scipy import ndimage

    weight = where.astype(np.float32)

    def blur(x: np.ndarray) -> np.ndarray:
        # mode="constant": beyond the border there is no pixel, so it weighs nothing
        return ndimage.gaussian_filter(
            x, sigma=_SSIM_SIGMA, truncate=_SSIM_TRUNCATE, mode="constant"
        )

    norm = blur(weight)[where]

    def local_mean(x: np.ndarray) -> np.ndarray:
        return blur(x * weight)[where] / norm

    total = np.zeros(norm.shape)
    for channel in range(3):
        x = a[..., channel].astype(np.float32)
        y = b[..., channel].astype(np.float32)
        mx, my = local_mean(x), local_mean(y)
        vx = local_mean(x * x) - mx * mx
        vy = local_mean(y * y) - my * my
        cov = local_mean(x * y) - mx * my
        total += ((2 * mx * my + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
            (mx * mx + my * my + _SSIM_C1) * (vx + vy + _SSIM_C2)
        )
    return total / 3


# -- inputs ---------------------------------------------------------------------------------


def _load_rgb(image: ImageLike) -> np.ndarray:
    """uint8 HxWx3 RGB of a path, PIL image or array."""
    return np.asarray(load_image(image).rgb)


def _load_region(mask: ImageLike) -> np.ndarray:
    """bool HxW, True where the mask is above 0 (regenerated)."""
    if isinstance(mask, np.ndarray):  # any dtype, bool included: only "above 0" matters
        return (mask if mask.ndim == 2 else mask.max(axis=-1)) > 0
    return masks.from_image(load_image(mask).rgb) > 0


# -- CLIP -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _load_clip(model: str) -> tuple[Any, Any]:
    """The CLIP model and processor for ``model``, loaded once per process."""
    from .inpaint import looks_like_path

    if looks_like_path(model) and not Path(model).expanduser().is_dir():
        raise ModelLoadError(
            f"There is no folder at {model!r} to load a CLIP model from. Check the path, or pass "
            "a Hugging Face id such as openai/clip-vit-base-patch32."
        )
    try:
        from transformers import CLIPModel, CLIPProcessor

        processor = CLIPProcessor.from_pretrained(model)
        clip = CLIPModel.from_pretrained(model).eval()
    except Exception as exc:  # from_pretrained fails in many ways; all mean "cannot load"
        raise ModelLoadError(
            f"Could not load the CLIP model {model!r}: {exc}. Pass a Hugging Face id of a CLIP "
            "checkpoint (e.g. openai/clip-vit-base-patch32) on a machine that can download it "
            "or has it cached, or a local folder written by CLIPModel.save_pretrained and "
            "CLIPProcessor.save_pretrained. With HF_HUB_OFFLINE=1 only cached models load."
        ) from exc
    return clip, processor


def _clip_scores(model: str, target: str, rgb: np.ndarray, region: np.ndarray) -> ClipScores:
    import torch

    from .inpaint import TORCH_LOAD_LOCK

    # ``regionedit batch`` scores on several writing threads: the first ones must not each load
    # the model (lru_cache does not hold back a second caller while the first one loads), nor
    # load it while another torch model loads
    with TORCH_LOAD_LOCK:
        clip, processor = _load_clip(model)
    images = [Image.fromarray(rgb)]
    box = masks.crop_box(region, padding=0)
    if box is not None:
        images.append(images[0].crop(box))
    # truncation: CLIP reads at most 77 tokens; a longer target must not crash the score
    inputs = processor(
        text=[target], images=images, return_tensors="pt", padding=True, truncation=True
    )
    with torch.inference_mode():
        out = clip(**inputs)
    image_embeds = torch.nn.functional.normalize(out.image_embeds, dim=-1)
    text_embeds = torch.nn.functional.normalize(out.text_embeds, dim=-1)
    scores = [max(100.0 * float(c), 0.0) for c in image_embeds @ text_embeds[0]]
    return ClipScores(
        model=model,
        target=target,
        whole=scores[0],
        region=scores[1] if len(scores) > 1 else None,
    )
