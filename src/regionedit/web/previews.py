"""Downscaled copies of images for the pages, made once and kept in ``OUT_DIR/.thumbs``.

A page of a 2,000-item batch shows hundreds of images; the full files can be tens of megapixels
each. A preview is decoded with the same loader and limits as any input
(:func:`regionedit.imageio.load_image`), so the browser only ever gets a small JPEG re-encoded by
the server, never the bytes of a file outside the output folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Optional

from ..errors import ImageInputError
from ..imageio import fit_within, load_image, save_image

__all__ = ["PREVIEW_SIDES", "PreviewSize", "preview", "THUMBS_DIR"]

#: the cache folder inside the output folder
THUMBS_DIR = ".thumbs"
PreviewSize = Literal["thumb", "view"]
#: longest side in pixels: thumbnails in lists, and the large view that compares two images
PREVIEW_SIDES: dict[str, int] = {"thumb": 256, "view": 1280}


def preview(
    source: Path,
    out_dir: Path,
    size: PreviewSize,
    *,
    sha256: Optional[str] = None,
    max_pixels: Optional[int] = None,
) -> Path:
    """The cached preview of ``source`` at ``size``, made on first use.

    The cache key includes the file's size and modification time, so a file replaced by a pick
    or a re-run gets a new preview. With ``sha256``, the file must still have that content hash
    (an original changed or replaced since the run is refused with ImageInputError).
    """
    side = PREVIEW_SIDES[size]
    try:
        stat = source.stat()
    except OSError as exc:
        raise ImageInputError(
            f"{source.name} cannot be read ({exc.strerror or exc}): it was moved or deleted "
            "after the run.", path=str(source),
        ) from None
    name = f"{source}\0{stat.st_mtime_ns}\0{stat.st_size}\0{side}"
    cached = out_dir / THUMBS_DIR / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".jpg")
    if cached.is_file():
        return cached
    loaded = load_image(source, max_pixels=max_pixels)
    if sha256 is not None and loaded.sha256 != sha256:
        raise ImageInputError(
            f"{source.name} has changed since the run edited it: re-run the item to edit the "
            "current file."
        )
    save_image(fit_within(loaded.rgb, side), cached, quality=85)
    return cached
