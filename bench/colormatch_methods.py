"""Two colour transfers the colour-match evaluation compares with regionedit's cast removal.

Both pull the regenerated region towards the colours of the kept pixels, which hides a seam
but also repaints a legitimate change (a new beach in the old forest's colours); that is why
the library removes only the generator's cast (:func:`regionedit.colormatch.match_colors`).
They take and return what ``match_colors`` does: uint8 HxWx3 ``generated`` and ``original``,
an HxW ``mask`` (> 0 = regenerated); the result is the corrected generated pixels inside the
mask and the original ones outside it.
"""

from __future__ import annotations

import numpy as np

from regionedit.colormatch import (
    lab_to_srgb,
    reinhard_transfer,
    seam_bands,
    srgb_to_lab,
)


def band_transfer(
    generated: np.ndarray, original: np.ndarray, mask: np.ndarray, *, band: int = 16,
    strength: float = 1.0,
) -> np.ndarray:
    """Reinhard transfer (per-channel Lab mean and spread) from the regenerated band ``band``
    px inside the seam to the kept band outside it, applied to the whole region."""
    region, result = _composite(generated, original, mask)
    if region.any() and not region.all():
        inner, outer = seam_bands(region, band)
        reinhard_transfer(result, region, srgb_to_lab(generated[inner]),
                          srgb_to_lab(original[outer]), strength=strength)
    return result


def histogram_match(
    generated: np.ndarray, original: np.ndarray, mask: np.ndarray, *, strength: float = 1.0
) -> np.ndarray:
    """Per-channel Lab histogram (quantile) matching of the whole regenerated region to the
    whole kept region."""
    region, result = _composite(generated, original, mask)
    if region.any() and not region.all():
        values = srgb_to_lab(generated[region])
        matched = _match_histograms(values, srgb_to_lab(original[~region]))
        result[region] = lab_to_srgb(values + strength * (matched - values))
    return result


def _composite(
    generated: np.ndarray, original: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(region, generated pixels inside it and original ones outside)."""
    region = np.asarray(mask) > 0
    return region, np.where(region[..., None], generated, original)


def _match_histograms(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel quantile mapping of ``values`` (N x 3) onto the distribution of
    ``reference``."""
    matched = np.empty_like(values)
    reference_quantiles = np.arange(1, len(reference) + 1) / len(reference)
    for channel in range(values.shape[1]):
        # equal values share one quantile, so a flat area stays flat
        _, inverse, counts = np.unique(
            values[:, channel], return_inverse=True, return_counts=True
        )
        level_quantiles = np.cumsum(counts) / len(values)
        mapped = np.interp(level_quantiles, reference_quantiles, np.sort(reference[:, channel]))
        matched[:, channel] = mapped[inverse]
    return matched
