"""Stage 3: regenerate the masked region with an inpainting model.

An *inpainter* takes the image, a soft mask (1 = regenerate) and a prompt, and returns a
freshly generated image of the same size. It does not composite: the compositing stage pastes
the original pixels back outside the mask, because inpainting pipelines shift colours there.

Backends are looked up by name in :data:`INPAINTERS` and follow :class:`Inpainter`; adding one
means writing such a class and adding one line to the registry. The backends themselves live in
their own modules (``inpaint_diffusers``, ``inpaint_openai``) so that their libraries load only
when chosen.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Union, runtime_checkable

import numpy as np
from PIL import Image

from .errors import InpaintError

__all__ = [
    "INPAINTERS",
    "SIZE_MULTIPLE",
    "TORCH_LOAD_LOCK",
    "Inpainter",
    "InpaintRequest",
    "generation_size",
    "get_inpainter",
    "looks_like_path",
]

#: Generation sizes are rounded to this: the VAE works on 8x8 pixel blocks.
SIZE_MULTIPLE = 8


#: Held while any torch model of regionedit's is imported and loaded. Two loads at once in two
#: threads break each other: diffusers' lazy module can hand a half-imported module to the
#: second thread (ImportError), and ``from_pretrained`` builds modules on the "meta" device by
#: patching torch for the whole process while it runs, so a model loading beside it can come
#: out without weights ("Cannot copy out of meta tensor").
TORCH_LOAD_LOCK = threading.Lock()


@runtime_checkable
class Inpainter(Protocol):
    """What the editor needs from an inpainting backend.

    The editor hands a backend a list of :class:`InpaintRequest` (one per image and candidate)
    and gets back, in order, each request's generated RGB image at ``request.image.size``, not
    composited, or the :class:`~regionedit.errors.InpaintError` that stopped it: one bad
    request must not fail the others. A backend that generates several images per model call
    groups the requests whose :meth:`batch_key` is equal; one that cannot returns None there.
    """

    name: str

    def load(self) -> Any:
        """Load the model now, not at the first request (a server does this at start-up);
        returns what was loaded. Raises :class:`~regionedit.errors.ModelLoadError`."""
        ...

    @property
    def native_size(self) -> Optional[int]:
        """The longer side, in pixels, the model generates at when a request sets no
        ``max_side``; None when the backend chooses its own size."""
        ...

    def batch_key(self, request: "InpaintRequest") -> Optional[Hashable]:
        """Requests with equal keys can share one model call; None: one call per request."""
        ...

    def inpaint_many(
        self, requests: Sequence["InpaintRequest"], *, batch_size: int = 1
    ) -> list[Union[Image.Image, InpaintError]]:
        """Each request's generated image, or the InpaintError that stopped it, in order; up
        to ``batch_size`` images per model call where :meth:`batch_key` allows.
        :class:`~regionedit.errors.ModelLoadError` is raised, since no request can succeed."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the backend and model, for the sidecar."""
        ...


@dataclass(frozen=True)
class InpaintRequest:
    """One image to inpaint. ``image`` is RGB; ``mask`` is float32 HxW in [0, 1] at its size,
    1 meaning "regenerate"; ``max_side`` caps the generation size (None: the model's own).
    ``steps`` and ``guidance_scale`` left None take the model's recommended values (30 and 7.5
    for SD 1.5; see :mod:`regionedit.presets`)."""

    image: Image.Image
    mask: np.ndarray
    prompt: str
    seed: int
    negative_prompt: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    strength: float = 1.0
    max_side: int | None = None


#: Backend name -> "module:Class". Strings, so a backend's dependencies load only when chosen.
INPAINTERS: dict[str, str] = {
    "diffusers": "regionedit.inpaint_diffusers:DiffusersInpainter",
    "openai": "regionedit.inpaint_openai:OpenAIImageInpainter",
}


def get_inpainter(name: str = "diffusers", **kwargs: Any) -> Inpainter:
    """Create the inpainting backend registered as ``name``, passing ``kwargs`` to it.

    Raises ValueError naming the registered backends when ``name`` is unknown.
    """
    target = INPAINTERS.get(name)
    if target is None:
        known = ", ".join(sorted(INPAINTERS))
        raise ValueError(f"Unknown inpainter {name!r}. Choose one of: {known}.")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**kwargs)


def generation_size(
    size: tuple[int, int], long_side: int, *, multiple: int = SIZE_MULTIPLE
) -> tuple[int, int]:
    """(width, height) to generate at for an image of ``size`` = (width, height).

    The aspect ratio is kept, the longer side becomes ``long_side`` (rounded down to a
    multiple of ``multiple``), the shorter is rounded to the nearest multiple; both are at
    least ``multiple``. Models whose latents are packed in 2x2 patches (Flux, SD3, Qwen-Image,
    Z-Image) need 16, the VAE alone 8.
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    longest = max(multiple, long_side // multiple * multiple)
    scale = longest / max(width, height)

    def snap(side: int) -> int:
        snapped = round(side * scale / multiple) * multiple
        return min(longest, max(multiple, snapped))

    return snap(width), snap(height)


def looks_like_path(model: str | os.PathLike[str]) -> bool:
    """True when ``model`` is meant as a local folder rather than a hub id like "org/name"."""
    if isinstance(model, os.PathLike) or Path(model).exists():
        return True
    text = str(model)
    return text.startswith((".", "/", "~", "\\")) or "\\" in text or text.count("/") > 1
