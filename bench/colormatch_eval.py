"""Colour match: regionedit's cast removal against two transfers, on constructed edits.

    python -m bench.colormatch_eval               # the tables in docs/compositing.md
    python -m bench.colormatch_eval --resample 2  # generated at half size (blurred)
    python -m bench.colormatch_eval --bleed 24    # new content fills the whole ring

Each case takes a photo from scikit-image's bundled data (rescaled to 256 px on the long side),
a regenerated region (the background outside a centred ellipse, or the ellipse itself), and
builds what an inpainting pipeline returns:

* the content: the original photo, or another photo inside the region ("new content": the
  legitimate change an edit makes), reaching ``bleed`` px past the mask as a latent-grid
  pipeline's does (8 px, or 8 x ``resample``); with ``resample`` N, generated at 1/N of the
  size, so blurred;
* a colour cast over the whole output (the VAE round trip), or none; plus mild noise.

The ground truth inside the region is the content without the cast. Every method composites
(corrected inside the mask, original outside), and each is scored by

* seam dE: :func:`regionedit.score.seam_delta_e` of the composite (band 4 px), next to the same
  measure on the ground-truth composite, the step the content itself has there;
* content dE: mean CIE76 difference inside the region between the corrected pixels and the
  ground truth. Lower is better; for "new content, no cast" anything above "none" is damage;
* worst: the largest rise of content dE over "none" in any one case (negative: the method
  helped in every case).

"cast" is the library's :func:`regionedit.colormatch.match_colors`; "band" and "histogram" are
in :mod:`bench.colormatch_methods`.
"""

from __future__ import annotations

import argparse
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data

from regionedit.colormatch import delta_e76, match_colors, srgb_to_lab
from regionedit.score import seam_delta_e

from .colormatch_methods import band_transfer, histogram_match

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
#: which photo becomes the new content of each base photo
NEW_CONTENT = {"astronaut": "coffee", "chelsea": "rocket", "coffee": "astronaut",
               "rocket": "chelsea"}
#: per-channel gains in linear RGB (a VAE-like global cast), or an sRGB contrast loss
CASTS = {
    "warm": ("gain", (1.08, 1.0, 0.90)),
    "cool-dark": ("gain", (0.88, 0.94, 1.04)),
    "washed-out": ("contrast", 0.85),
}
SEAM_BAND = 4
#: (name, correction(generated, original, mask, gap)); "none" composites as generated
Method = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]
METHODS: dict[str, Method] = {
    "none": lambda g, o, m, gap: np.where(m[..., None] > 0, g, o),
    "cast": lambda g, o, m, gap: match_colors(g, o, m, gap=gap),
    "cast, strength 0.5": lambda g, o, m, gap: match_colors(g, o, m, gap=gap, strength=0.5),
    "band": lambda g, o, m, gap: band_transfer(g, o, m),
    "band, strength 0.5": lambda g, o, m, gap: band_transfer(g, o, m, strength=0.5),
    "histogram": lambda g, o, m, gap: histogram_match(g, o, m),
}
#: the section's runs: (resample, bleed); bleed None is 8 x resample
FULL = {"default": (1, None), "resample 2": (2, None), "bleed 24": (1, 24)}
QUICK_PHOTOS = ("astronaut",)


def load(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    image = Image.fromarray(getattr(data, name)())
    if size is None:
        scale = 256 / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS).convert("RGB"))


def ellipse(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    return ((yy - h / 2) / (0.33 * h)) ** 2 + ((xx - w / 2) / (0.28 * w)) ** 2 <= 1


def apply_cast(rgb: np.ndarray, cast: str | None, rng: np.random.Generator) -> np.ndarray:
    x = rgb / 255.0
    if cast is not None:
        kind, value = CASTS[cast]
        if kind == "gain":
            linear = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
            linear = np.clip(linear * np.array(value), 0, 1)
            x = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
        else:
            x = value * x + (1 - value) / 2
    x = x + rng.normal(0, 1.5 / 255, x.shape)  # reconstruction noise
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def resample(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Down to 1/factor and back: what generating at a lower resolution does to detail."""
    image = Image.fromarray(rgb)
    small = image.resize((image.width // factor, image.height // factor), Image.Resampling.LANCZOS)
    return np.asarray(small.resize(image.size, Image.Resampling.LANCZOS))


def cases(photos: tuple[str, ...], bleed: int, factor: int, seed: int = 0) -> Iterator[tuple]:
    """(scenario, original, generated, region, new content) for every constructed edit."""
    rng = np.random.default_rng(seed)
    for photo, where, scenario, cast in itertools.product(
        photos, ("background", "foreground"), ("same content", "new content"), (*CASTS, None),
    ):
        if scenario == "same content" and cast is None:
            continue  # nothing to correct, nothing to change: not informative
        original = load(photo)
        inside = ellipse(original.shape[:2])
        region = ~inside if where == "background" else inside
        new = original if scenario == "same content" else load(
            NEW_CONTENT[photo], original.shape[1::-1]
        )
        reach = ndimage.binary_dilation(region, iterations=bleed) if bleed else region
        generated = apply_cast(np.where(reach[..., None], new, original), cast, rng)
        if factor > 1:
            generated = resample(generated, factor)
        yield f"{scenario}, {'cast' if cast else 'no cast'}", original, generated, region, new


def evaluate(photos: tuple[str, ...] = PHOTOS, *, resample_by: int = 1,
             bleed: int | None = None) -> dict[str, Any]:
    """Per scenario: its case count, the ground truth's seam dE, and per method its mean seam
    dE, mean content dE and worst content change over "none"."""
    bleed = 8 * resample_by if bleed is None else bleed
    gap = 8 * resample_by  # how far new content may spill, as the caller knows it
    scores: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    truth_seam: dict[str, list[float]] = defaultdict(list)
    for scenario, original, generated, region, new in cases(photos, bleed, resample_by):
        truth_seam[scenario].append(
            seam_delta_e(np.where(region[..., None], new, original), region, SEAM_BAND)
        )
        truth_lab = srgb_to_lab(new[region])
        mask = region.astype(np.float32)
        for name, method in METHODS.items():
            corrected = method(generated, original, mask, gap)
            content = float(delta_e76(srgb_to_lab(corrected[region]), truth_lab).mean())
            scores[scenario][name].append((seam_delta_e(corrected, region, SEAM_BAND), content))
    found = {}
    for scenario, by_method in scores.items():
        untouched = np.array(by_method["none"])[:, 1]
        found[scenario] = {
            "cases": len(truth_seam[scenario]),
            "ground_truth_seam_de": float(np.mean(truth_seam[scenario])),
            "methods": {
                name: {
                    "seam_de": float(np.mean(np.array(values)[:, 0])),
                    "content_de": float(np.mean(np.array(values)[:, 1])),
                    "worst_content_change": float((np.array(values)[:, 1] - untouched).max()),
                }
                for name, values in by_method.items()
            },
        }
    return found


def run(ws: Any, *, quick: bool) -> dict[str, Any]:
    photos = QUICK_PHOTOS if quick else PHOTOS
    runs = {"default": FULL["default"]} if quick else FULL
    return {
        "parameters": {"photos": photos, "runs": {name: {"resample": r, "bleed": b}
                                                  for name, (r, b) in runs.items()}},
        "runs": {name: evaluate(photos, resample_by=r, bleed=b)
                 for name, (r, b) in runs.items()},
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    from .report import number

    found = []
    for run_name, scenarios in result["runs"].items():
        for scenario, scored in scenarios.items():
            methods = scored["methods"] if run_name == "default" else {
                name: scored["methods"][name] for name in ("none", "cast")
            }
            found.append((
                f"{run_name}: {scenario}: content dE",
                "; ".join(f"{name} {number(m['content_de'])}" for name, m in methods.items()),
            ))
    return found


def markdown(scenarios: dict[str, Any]) -> str:
    """:func:`evaluate`'s result as the tables of docs/compositing.md."""
    lines = []
    for scenario, scored in scenarios.items():
        lines += [
            "", f"{scenario[0].upper()}{scenario[1:]} ({scored['cases']} cases; ground-truth "
            f"seam dE {scored['ground_truth_seam_de']:.2f}):", "",
            "| method | seam dE | content dE | worst |", "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {m['seam_de']:.2f} | {m['content_de']:.2f} | "
            f"{m['worst_content_change']:+.2f} |"
            for name, m in scored["methods"].items()
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.colormatch_eval",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--resample", type=int, default=1,
                        help="generate at 1/N of the image size (blur), new content reaching "
                        "8*N px past the mask, and tell match_colors gap=8*N")
    parser.add_argument("--bleed", type=int,
                        help="px new content reaches past the mask (default 8 * resample)")
    args = parser.parse_args(argv)
    print(markdown(evaluate(resample_by=args.resample, bleed=args.bleed)))


if __name__ == "__main__":
    main()
