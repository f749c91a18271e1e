"""regionedit: text-driven photo editing that regenerates only the region that must change.

    >>> import regionedit
    >>> result = regionedit.edit("dog.jpg", "a dog sitting on grass", "a dog sitting on a beach")
    >>> result.save("dog-beach.png", sidecar=True)

``import regionedit`` is light: torch, diffusers, rembg and openai are imported only when the
stage that needs them first runs. Names below are resolved lazily for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors

__version__ = "0.1.0"

_LAZY = {
    "edit": "editor",
    "Editor": "editor",
    "EditResult": "types",
    "EditSettings": "types",
    "Classification": "types",
    "StageTimings": "types",
    "Candidate": "types",
    "LLMClassifier": "classify",
    "OfflineClassifier": "offline_classifier",
    "RembgSegmenter": "segment",
    "DiffusersInpainter": "inpaint_diffusers",
    "OpenAIImageInpainter": "inpaint_openai",
    "SeamCompositor": "composite",
    "load_image": "imageio",
}

__all__ = ["errors", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .classify import LLMClassifier
    from .editor import Editor, edit
    from .imageio import load_image
    from .composite import SeamCompositor
    from .inpaint_diffusers import DiffusersInpainter
    from .inpaint_openai import OpenAIImageInpainter
    from .offline_classifier import OfflineClassifier
    from .segment import RembgSegmenter
    from .types import Candidate, Classification, EditResult, EditSettings, StageTimings


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'regionedit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
