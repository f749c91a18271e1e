"""A contact sheet: the input, its mask and every generated variant side by side in one image.

Comparing candidates means looking at them next to what they came from; one PNG per edit opens
in any viewer, and each tile is labelled (``input``, ``mask``, ``seed 1234``) so a variant can be
reproduced from its seed.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["contact_sheet", "TILE_SIZE", "PADDING", "LABEL_HEIGHT"]

#: tiles are scaled down (never up) to fit a square of this many pixels
TILE_SIZE = 256
#: pixels around and between tiles
PADDING = 8
#: pixels of the caption strip under each tile
LABEL_HEIGHT = 16

_BACKGROUND = (245, 245, 245)
_TEXT = (20, 20, 20)


def contact_sheet(
    tiles: Sequence[tuple[Image.Image, str]],
    *,
    tile_size: int = TILE_SIZE,
) -> Image.Image:
    """One RGB image with ``tiles`` (image, caption) in a row, left to right.

    Every cell is as large as the largest scaled tile, so the sheet is
    ``PADDING + n * (cell_width + PADDING)`` wide and
    ``PADDING + cell_height + LABEL_HEIGHT + PADDING`` high.
    """
    if not tiles:
        raise ValueError("a contact sheet needs at least one tile")
    thumbs = [(_thumbnail(image, tile_size), caption) for image, caption in tiles]
    cell_w = max(t.width for t, _ in thumbs)
    cell_h = max(t.height for t, _ in thumbs)
    sheet = Image.new(
        "RGB",
        (PADDING + len(thumbs) * (cell_w + PADDING), PADDING + cell_h + LABEL_HEIGHT + PADDING),
        _BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (thumb, caption) in enumerate(thumbs):
        left = PADDING + i * (cell_w + PADDING)
        top = PADDING + (cell_h - thumb.height) // 2
        sheet.paste(thumb, (left + (cell_w - thumb.width) // 2, top))
        draw.text((left, PADDING + cell_h + 2), caption, fill=_TEXT, font=font)
    return sheet


def _thumbnail(image: Image.Image, tile_size: int) -> Image.Image:
    """``image`` as RGB (transparency shown over the sheet's background), fit in the tile."""
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
    else:
        flat = image.convert("RGB")
    flat.thumbnail((tile_size, tile_size))  # keeps the aspect ratio, never enlarges
    return flat
