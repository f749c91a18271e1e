"""Compare the colour matching methods of regionedit.colormatch on constructed edits.

    .venv/bin/python bench/colormatch_eval.py               # the tables in docs/compositing.md
    .venv/bin/python bench/colormatch_eval.py --resample 2
    .venv/bin/python bench/colormatch_eval.py --bleed 24

Each case takes a photo from scikit-image's bundled data (rescaled to 256 px on the long side),
a regenerated region (the background outside a centred ellipse, or the ellipse itself), and
builds what an inpainting pipeline returns:

* the content: the original photo, or another photo inside the region ("new content": the
  legitimate change an edit makes), reaching 8 px past the mask as a latent-grid pipeline
  does (--bleed); with --resample N, generated at 1/N of the size (so blurred) and reaching
  8*N px past the mask;
* a colour cast over the whole output (the VAE round trip), or none; plus mild noise.

The ground truth inside the region is the content without the cast. For every method we
composite (corrected inside the mask, original outside) and report

* seam dE: :func:`regionedit.score.seam_delta_e` of the composite (band 4 px), next to the same
  measure on the ground-truth composite, the step the content itself has there;
* content dE: mean CIE76 difference inside the region between the corrected pixels and the
  ground truth. Lower is better; for "new content, no cast" anything above "none" is damage;
* worst content change: the largest rise of content dE over "none" in any one case (negative:
  the method helped in every case).
"""

from __future__ import annotations

import argparse
import itertools
from collections import defaultdict

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data

from regionedit.colormatch import delta_e76, match_colors, srgb_to_lab
from regionedit.score import seam_delta_e

PHOTOS = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee,
          "rocket": data.rocket}
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


def load(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    image = Image.fromarray(PHOTOS[name]())
    if size is None:
        scale = 256 / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


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


def cases(bleed: int, factor: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for photo, where, scenario, cast in itertools.product(
        PHOTOS, ("background", "foreground"), ("same content", "new content"),
        (*CASTS, None),
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
        content = np.where(reach[..., None], new, original)
        generated = apply_cast(content, cast, rng)
        if factor > 1:
            generated = resample(generated, factor)
        label = f"{scenario}, {'cast' if cast else 'no cast'}"
        yield label, original, generated, region, new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--band", type=int, default=16, help="statistics band for match_colors")
    parser.add_argument("--resample", type=int, default=1,
                        help="generate at 1/N of the image size (blur), new content reaching "
                             "8*N px past the mask, and tell match_colors gap=8*N")
    parser.add_argument("--bleed", type=int, help="px new content reaches past the mask "
                        "(default 8 * resample)")
    args = parser.parse_args()
    bleed = 8 * args.resample if args.bleed is None else args.bleed
    gap = dict(gap=8 * args.resample)

    methods: list[tuple[str, dict]] = [
        ("none", {}),
        ("cast", dict(method="cast", **gap)),
        ("cast, strength 0.5", dict(method="cast", strength=0.5, **gap)),
        ("band", dict(method="band")),
        ("band, strength 0.5", dict(method="band", strength=0.5)),
        ("histogram", dict(method="histogram")),
    ]
    rows: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    truth_seam: dict[str, list[float]] = defaultdict(list)
    for label, original, generated, region, new in cases(bleed, args.resample):
        mask = region.astype(np.float32)
        truth = np.where(region[..., None], new, original)
        truth_seam[label].append(seam_delta_e(truth, region, SEAM_BAND))
        truth_lab = srgb_to_lab(new[region])
        for name, kwargs in methods:
            corrected = (
                match_colors(generated, original, mask, band=args.band, **kwargs)
                if kwargs
                else np.where(region[..., None], generated, original)
            )
            seam = seam_delta_e(corrected, region, SEAM_BAND)
            content = float(delta_e76(srgb_to_lab(corrected[region]), truth_lab).mean())
            rows[label][name].append((seam, content))

    for label, by_method in rows.items():
        n = len(truth_seam[label])
        print(f"\n### {label} ({n} cases; ground-truth seam dE {np.mean(truth_seam[label]):.2f})\n")
        print("| method | seam dE | content dE | worst content change |")
        print("|---|---:|---:|---:|")
        untouched = np.array(by_method["none"])[:, 1]
        for name, values in by_method.items():
            seam, content = np.mean(values, axis=0)
            worst = (np.array(values)[:, 1] - untouched).max()
            print(f"| {name} | {seam:.2f} | {content:.2f} | {worst:+.2f} |")


if __name__ == "__main__":
    main()
