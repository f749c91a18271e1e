"""Real photographs for tests: scikit-image's bundled public-domain/CC0 samples, written to
files once per test session.

* ``chelsea_path``: the cat "Chelsea" (451x300), JPEG.
* ``astronaut_path``: Eileen Collins (512x512, public domain, NASA), PNG.
* ``small_photo_path``: Chelsea downscaled to 96x64, PNG, for fast end-to-end runs.
* ``rgba_subject_path``: Chelsea at 128x85 as RGBA PNG whose alpha is an opaque ellipse
  (the "subject") with a soft 3-pixel edge on a fully transparent surround.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("photos")


@pytest.fixture(scope="session")
def chelsea_path(photo_dir: Path) -> Path:
    path = photo_dir / "chelsea.jpg"
    _chelsea().save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def astronaut_path(photo_dir: Path) -> Path:
    from skimage import data

    path = photo_dir / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="session")
def small_photo_path(photo_dir: Path) -> Path:
    path = photo_dir / "small.png"
    _chelsea().resize((96, 64), Image.Resampling.LANCZOS).save(path)
    return path


@pytest.fixture(scope="session")
def rgba_subject_path(photo_dir: Path) -> Path:
    path = photo_dir / "subject_rgba.png"
    photo = _chelsea().resize((128, 85), Image.Resampling.LANCZOS)
    height, width = photo.height, photo.width
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    # distance (in pixels, roughly) outside an ellipse centred on the cat's head and body
    radius = np.hypot((xx - width * 0.55) / (width * 0.3), (yy - height * 0.5) / (height * 0.38))
    outside = (radius - 1.0) * min(width * 0.3, height * 0.38)
    alpha = np.clip(1.0 - outside / 3.0, 0.0, 1.0)
    photo.putalpha(Image.fromarray(np.rint(alpha * 255).astype(np.uint8)))
    photo.save(path)
    return path
