"""The models regionedit uses when none is named, and the models known to be retired.

Written once here; the stages, the CLI help and the error messages read them from this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = [
    "DEFAULT_LLM_MODEL",
    "DEFAULT_IMAGE_EDIT_MODEL",
    "DEFAULT_SEGMENT_MODEL",
    "DEFAULT_INPAINT_MODEL",
    "Retirement",
    "RETIRED",
    "retirement",
]

# -- the LLM region classifier -----------------------------------------------------------------

#: chat model of the LLM region classifier (``--llm-model``, ``REGIONEDIT_LLM_MODEL``):
#: OpenAI's named successor of gpt-4o-mini, a reasoning model (the classifier asks it for the
#: least reasoning it accepts)
DEFAULT_LLM_MODEL = "gpt-6-luna"

# -- the OpenAI image edit inpainter -----------------------------------------------------------

#: image edit model of ``--inpainter openai`` (``--model``)
DEFAULT_IMAGE_EDIT_MODEL = "gpt-image-1.5"

# -- segmentation ------------------------------------------------------------------------------

#: rembg model that cuts out the main subject (``--segment-model``)
DEFAULT_SEGMENT_MODEL = "u2net"

# -- diffusers inpainting ----------------------------------------------------------------------

#: diffusers inpainting model on CPU, Apple MPS and GPUs too small for the larger families; the
#: ``sd15`` preset. The presets of every family, and the default on a CUDA GPU (chosen by its
#: free memory when the model loads), are in :mod:`regionedit.presets`.
DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"


# -- retired models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Retirement:
    """A model its provider has shut down, or announced it will."""

    model: str
    #: ISO date of the shutdown
    date: str
    #: the provider's named successor, when there is one
    replacement: Optional[str] = None


#: model name -> its retirement
RETIRED: dict[str, Retirement] = {
    r.model: r
    for r in (
        Retirement("gpt-image-1", "2026-10-23", "gpt-image-2"),
        # chat models, as the openai SDK's model notes announce them
        Retirement("gpt-4o-mini", "2027-01-14", "gpt-6-luna"),
        Retirement("gpt-4o-mini-2024-07-18", "2027-01-14", "gpt-6-luna"),
        Retirement("gpt-4o", "2027-01-14"),
        Retirement("gpt-4.1", "2027-01-14"),
        Retirement("gpt-4.1-mini", "2027-01-14"),
        Retirement("gpt-4.1-nano", "2026-10-23"),
        Retirement("o4-mini", "2026-10-23"),
        Retirement("o3-mini", "2026-10-23"),
        Retirement("gpt-4-turbo", "2026-10-23"),
        Retirement("gpt-4", "2026-10-23"),
        Retirement("gpt-3.5-turbo", "2026-10-23"),
        Retirement("gpt-5", "2026-12-11"),
        Retirement("gpt-5-mini", "2026-12-11"),
        Retirement("gpt-5-nano", "2026-12-11"),
        Retirement("o3", "2026-12-11"),
    )
}


def retirement(model: str) -> Optional[Retirement]:
    """The retirement of ``model`` when it is known, else None."""
    return RETIRED.get(model)
