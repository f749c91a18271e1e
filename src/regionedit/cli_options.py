"""The command line's options: the option groups the commands share, the edit-setting flags
built from :class:`~regionedit.types.EditSettings`, and the ``Editor`` they configure."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from .errors import OutputError, SettingsError
from .models import (
    DEFAULT_IMAGE_EDIT_MODEL,
    DEFAULT_INPAINT_MODEL,
    DEFAULT_LLM_MODEL,
    DEFAULT_SEGMENT_MODEL,
    SEGMENT_MODEL_CPU,
    SEGMENT_MODEL_GPU,
)
from .presets import FAMILIES, GPU_DEFAULT_ORDER

if TYPE_CHECKING:  # pragma: no cover
    from .editor import Editor
    from .types import EditSettings

#: edit settings whose flag is not their name with dashes
_FLAG_OF = {"guidance_scale": "--guidance"}
#: per-edit settings every editing command takes as flags (source, target and region are
#: each command's own)
_SETTING_FLAGS = (
    "seed", "steps", "guidance_scale", "strength", "negative_prompt", "candidates", "grow",
    "feather", "extent", "on_unidentified", "max_side",
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def flag(name: str) -> str:
    """The command-line flag of the edit setting ``name``."""
    return _FLAG_OF.get(name, "--" + name.replace("_", "-"))


def at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(
                f"must be a whole number of at least {low}, not {text!r}"
            )
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


# -- shared option groups ----------------------------------------------------------------------


def classifier_options() -> argparse.ArgumentParser:
    p = Parser(add_help=False)
    g = p.add_argument_group("classifier")
    g.add_argument(
        "--classifier",
        choices=["auto", "llm", "offline"],
        default="auto",
        help="who decides the region: an LLM (OPENAI_API_KEY / OPENAI_BASE_URL), the offline "
        "classifier, or auto: the LLM when an endpoint is configured, else offline (default)",
    )
    g.add_argument(
        "--llm-model",
        help=f"LLM model name (default: $REGIONEDIT_LLM_MODEL or {DEFAULT_LLM_MODEL})",
    )
    g.add_argument(
        "--llm-timeout", type=_positive_seconds, metavar="SECONDS",
        help="seconds one LLM request may take (default: $REGIONEDIT_LLM_TIMEOUT or 30)",
    )
    g.add_argument(
        "--llm-attempts", type=at_least(1), metavar="N",
        help="requests per question before giving up, retries included "
        "(default: $REGIONEDIT_LLM_ATTEMPTS or 4)",
    )
    return p


def segmentation_options() -> argparse.ArgumentParser:
    p = Parser(add_help=False)
    g = p.add_argument_group("segmentation")
    g.add_argument(
        "--segment-model", default=DEFAULT_SEGMENT_MODEL,
        help=f"rembg model name, or auto: {SEGMENT_MODEL_GPU} with CUDA, {SEGMENT_MODEL_CPU} "
        f"otherwise (default: {DEFAULT_SEGMENT_MODEL})",
    )
    g.add_argument("--segment-model-path", help="local rembg ONNX file, for offline use")
    g.add_argument(
        "--max-pixels", type=at_least(1),
        help="refuse larger inputs (default: $REGIONEDIT_MAX_PIXELS or Pillow's ~89 MP guard)",
    )
    return p


def generation_options() -> argparse.ArgumentParser:
    p = Parser(add_help=False)
    g = p.add_argument_group("generation")
    g.add_argument(
        "--inpainter", choices=["diffusers", "openai"], default="diffusers",
        help="local diffusers pipeline (default) or an OpenAI-compatible images edit endpoint",
    )
    g.add_argument(
        "--model",
        help=f"inpainting model: a preset ({', '.join(FAMILIES)}; docs/models.md), a Hugging "
        f"Face id or a local folder (default: by device: {' or '.join(GPU_DEFAULT_ORDER)} on a "
        f"CUDA GPU with the free memory, else {DEFAULT_INPAINT_MODEL}; "
        f"{DEFAULT_IMAGE_EDIT_MODEL} with --inpainter openai)",
    )
    g.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    g.add_argument("--dtype", help="float16, bfloat16 or float32 (default: per device)")
    g.add_argument("--attention-slicing", action="store_true", help="lower memory, a bit slower")
    g.add_argument("--cpu-offload", action="store_true", help="keep idle model parts on the CPU")
    g.add_argument(
        "--no-color-match", dest="color_match", action="store_false",
        help="keep the generator's colours as they are (default: remove its colour cast at the "
        "seam)",
    )
    return p


def settings_options(
    names: Sequence[str] = _SETTING_FLAGS, *, extra_policies: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """One flag per edit setting in ``names``, its help and default read from
    :class:`~regionedit.types.EditSettings`. Values stay text here: EditSettings checks them
    (see :func:`edit_settings`), so every bad value gets the same one-line message."""
    from .types import EditSettings, allowed_values

    p = Parser(add_help=False)
    g = p.add_argument_group("edit settings")
    for name in names:
        field = EditSettings.model_fields[name]
        default = field.default
        shown = "" if default is None or "default:" in (field.description or "") else (
            f" (default: {default})"
        )
        kwargs: dict[str, Any] = {"metavar": name.split("_")[0].upper()}
        if allowed_values(name).startswith("one of "):
            choices = allowed_values(name).removeprefix("one of ").split(", ")
            if name == "on_unidentified":
                choices += extra_policies
            kwargs = {"choices": choices}
        g.add_argument(flag(name), dest=name, help=f"{field.description}{shown}", **kwargs)
    return p


def edit_settings(args: argparse.Namespace, **given: Any) -> dict[str, Any]:
    """The edit settings the command line sets (flags left out keep EditSettings' defaults),
    with ``given`` added."""
    for name in ("region", *_SETTING_FLAGS):
        value = getattr(args, name, None)
        if value is not None:
            given[name] = value
    return given


def checked_settings(source: str, target: str, settings: dict[str, Any]) -> "EditSettings":
    """``settings`` as EditSettings; a bad one raises SettingsError naming its flag."""
    from pydantic import ValidationError

    from .types import EditSettings, settings_problem

    try:
        return EditSettings(source=source, target=target, **settings)
    except ValidationError as exc:
        spell = lambda name, value: f"{flag(name)} {value}:"  # noqa: E731
        raise SettingsError(settings_problem(exc, spell)) from None


def make_editor(args: argparse.Namespace) -> "Editor":
    """An ``Editor`` configured from the command-line options present in ``args``."""
    from .editor import Editor

    return Editor(
        classifier=getattr(args, "classifier", "auto"),
        inpainter=getattr(args, "inpainter", "diffusers"),
        llm_model=getattr(args, "llm_model", None),
        llm_timeout=getattr(args, "llm_timeout", None),
        llm_attempts=getattr(args, "llm_attempts", None),
        segment_model=getattr(args, "segment_model", DEFAULT_SEGMENT_MODEL),
        segment_model_path=getattr(args, "segment_model_path", None),
        inpaint_model=getattr(args, "model", None),
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
        attention_slicing=getattr(args, "attention_slicing", False),
        cpu_offload=getattr(args, "cpu_offload", False),
        color_match=getattr(args, "color_match", True),
        max_pixels=getattr(args, "max_pixels", None),
    )


def refuse_overwriting_input(output: Path, inputs: Sequence[Path]) -> None:
    for source in inputs:
        if source.exists() and output.exists() and output.resolve() == source.resolve():
            raise OutputError(f"Refusing to overwrite the input {source}: choose another -o path.")
