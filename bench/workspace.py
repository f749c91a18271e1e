"""What every section runs on: the tiny test models and real photos, built in a folder.

The models are the test suite's own (``tests/support``): a random Stable Diffusion inpainting
pipeline saved with ``save_pretrained`` (native size 64 px) and a U^2-Net-compatible ONNX model
that rembg's real session code loads. Nothing is downloaded; building them takes seconds, and
only the sections that run a model build them.
Photos are scikit-image's bundled samples (public domain / CC0), written as JPEG files so the
editor's load stage decodes a real file.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

#: the repository root: ``python -m bench...`` runs from here
REPO_ROOT = Path(__file__).resolve().parent.parent
_TESTS = REPO_ROOT / "tests"

#: the scikit-image samples used, all real photographs in which the tiny segmentation model
#: finds a subject ("rocket", a dark night scene, has none for it)
PHOTO_NAMES = ("astronaut", "chelsea", "coffee")

#: a background edit the offline classifier recognises ("a flag" -> "mountains" is a backdrop),
#: used wherever a section does not ask an LLM
SOURCE = "an astronaut in front of a flag"
TARGET = "an astronaut in front of mountains"


class Workspace:
    """The folder the sections write their photos in, and the tiny models, built there on first
    use (a later run given the same folder reuses them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        #: folder rembg must see as U2NET_HOME to accept ``u2net_model``
        self.u2net_home = folder / "u2net_home"
        os.environ["U2NET_HOME"] = str(self.u2net_home)
        os.environ["HF_HUB_OFFLINE"] = "1"
        # The builders and the fake LLM server live with the tests, so that tests and
        # benchmarks run the very same models and server.
        if str(_TESTS) not in sys.path:
            sys.path.insert(0, str(_TESTS))

    @functools.cached_property
    def sd_model(self) -> Path:
        """The tiny Stable Diffusion inpainting pipeline's folder (native size 64 px)."""
        from support.tiny_sd import build_tiny_sd_inpainting

        folder = self.folder / "tiny-sd-inpainting"
        if not (folder / "model_index.json").exists():
            _quietly(build_tiny_sd_inpainting, folder)
        return folder

    @functools.cached_property
    def u2net_model(self) -> Path:
        """The tiny U^2-Net-shaped ONNX segmentation model."""
        from support.tiny_rembg import build_tiny_u2net

        model = self.u2net_home / "tiny_u2net.onnx"
        if not model.exists():
            build_tiny_u2net(model)
        return model

    def env(self) -> dict[str, str]:
        """Environment for a subprocess: offline, rembg pointed at the tiny model, no LLM."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(
            HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", U2NET_HOME=str(self.u2net_home)
        )
        return env


def build_workspace(folder: Path) -> Workspace:
    """The workspace in ``folder``; its models are built when a section first uses them."""
    return Workspace(folder)


def _quietly(build: Callable[[Path], Any], folder: Path) -> None:
    """Run a builder with diffusers' "Writing model shards" bar switched off."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    try:
        build(folder)
    finally:
        diffusers_logging.enable_progress_bar()


def photo(name: str) -> Image.Image:
    """One of :data:`PHOTO_NAMES` as an RGB image."""
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def square_photo(side: int) -> Image.Image:
    """The astronaut (512x512 as shipped) at ``side`` x ``side`` pixels."""
    image = photo("astronaut")
    if image.size != (side, side):
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    return image


def write_jpeg(image: Image.Image, path: Path) -> Path:
    """Save ``image`` as a quality-95 JPEG at ``path`` (once; an existing file is kept)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=95)
    return path


def photo_set(folder: Path, count: int, long_side: int) -> list[Path]:
    """``count`` different real photos of ``long_side`` px: crops of the samples at shifting
    offsets and scales, so no two items of a batch are the same image."""
    sources = [photo(name) for name in PHOTO_NAMES]
    paths = []
    for index in range(count):
        source = sources[index % len(sources)]
        # crop 70-100 % of the photo, walking the crop's corner across it
        share = 0.7 + 0.3 * ((index // len(sources)) % 4) / 3
        width, height = round(source.width * share), round(source.height * share)
        step = index // (len(sources) * 4)
        left = (source.width - width) * (step % 3) // 2
        top = (source.height - height) * ((step // 3) % 3) // 2
        crop = source.crop((left, top, left + width, top + height))
        scale = long_side / max(crop.size)
        crop = crop.resize(
            (max(8, round(crop.width * scale)), max(8, round(crop.height * scale))),
            Image.Resampling.LANCZOS,
        )
        paths.append(write_jpeg(crop, folder / f"photo-{index:04d}.jpg"))
    return paths
