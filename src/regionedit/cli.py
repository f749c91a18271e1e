"""``regionedit`` command line: a thin layer over the library.

Heavy libraries are imported inside the command handlers, so ``regionedit --help`` stays fast.
Errors print one line (no traceback unless ``--verbose``) and exit with the error's code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import __version__
from .errors import OutputError, RegionEditError

log = logging.getLogger("regionedit")


# -- shared option groups ----------------------------------------------------------------------


def classifier_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("classifier")
    g.add_argument(
        "--classifier",
        choices=["auto", "llm", "offline"],
        default="auto",
        help="who decides the region: an LLM (OPENAI_API_KEY / OPENAI_BASE_URL), the offline "
        "classifier, or auto: the LLM when an endpoint is configured, else offline (default)",
    )
    g.add_argument("--llm-model", help="LLM model name (default: $REGIONEDIT_LLM_MODEL or gpt-4o-mini)")
    return p


def mask_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("segmentation")
    g.add_argument("--segment-model", default="u2net", help="rembg model name (default: u2net)")
    g.add_argument("--segment-model-path", help="local rembg ONNX file, for offline use")
    g.add_argument(
        "--max-pixels", type=int,
        help="refuse larger inputs (default: $REGIONEDIT_MAX_PIXELS or Pillow's ~89 MP guard)",
    )
    g.add_argument("--grow", type=int, default=6, help="pixels the region reaches past the seam")
    g.add_argument("--feather", type=int, default=4, help="width of the soft seam in pixels")
    return p


def generation_options(
    unidentified_policies: Sequence[str] = ("error", "foreground", "background"),
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("generation")
    g.add_argument(
        "--inpainter", choices=["diffusers", "openai"], default="diffusers",
        help="local diffusers pipeline (default) or an OpenAI-compatible images edit endpoint",
    )
    g.add_argument(
        "--model",
        help="inpainting model: a Hugging Face id or a local folder "
        "(default: stable-diffusion-v1-5/stable-diffusion-inpainting; gpt-image-1 for openai)",
    )
    g.add_argument("--seed", type=int, help="random seed (drawn and recorded when omitted)")
    g.add_argument("--steps", type=int, default=30, help="denoising steps (default: 30)")
    g.add_argument("--guidance", type=float, default=7.5, help="guidance scale (default: 7.5)")
    g.add_argument("--strength", type=float, default=1.0, help="denoising strength (default: 1.0)")
    g.add_argument("--negative-prompt", help="what the regenerated region must not show")
    g.add_argument("--candidates", type=int, default=1, help="variants to generate (seed, seed+1, ...)")
    g.add_argument("--max-side", type=int, help="longest side to generate at (default: the model's)")
    g.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    g.add_argument("--dtype", help="float16, bfloat16 or float32 (default: per device)")
    g.add_argument("--attention-slicing", action="store_true", help="lower memory, a bit slower")
    g.add_argument("--cpu-offload", action="store_true", help="keep idle model parts on the CPU")
    g.add_argument(
        "--no-color-match", dest="color_match", action="store_false",
        help="keep the generator's colours as they are (default: remove its colour cast at the seam)",
    )
    g.add_argument(
        "--on-unidentified", choices=list(unidentified_policies), default="error",
        help="what to do when the region cannot be decided: fail (error, the default), or "
        "edit the foreground or background anyway" + (", or skip the item" if "skip" in unidentified_policies else ""),
    )
    return p


def make_editor(args: argparse.Namespace) -> Any:
    """An ``Editor`` configured from the command-line options present in ``args``."""
    from .editor import Editor

    return Editor(
        classifier=getattr(args, "classifier", "auto"),
        inpainter=getattr(args, "inpainter", "diffusers"),
        llm_model=getattr(args, "llm_model", None),
        segment_model=getattr(args, "segment_model", "u2net"),
        segment_model_path=getattr(args, "segment_model_path", None),
        inpaint_model=getattr(args, "model", None),
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
        attention_slicing=getattr(args, "attention_slicing", False),
        cpu_offload=getattr(args, "cpu_offload", False),
        color_match=getattr(args, "color_match", True),
        max_pixels=getattr(args, "max_pixels", None),
    )


def edit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The per-edit keyword arguments of ``Editor.edit`` from the command-line options."""
    return dict(
        region=args.region,
        seed=args.seed,
        steps=args.steps,
        guidance_scale=args.guidance,
        strength=args.strength,
        negative_prompt=args.negative_prompt,
        candidates=args.candidates,
        grow=args.grow,
        feather=args.feather,
        on_unidentified=args.on_unidentified,
        max_side=args.max_side,
    )


def refuse_overwriting_input(output: Path, inputs: Sequence[Path]) -> None:
    for source in inputs:
        if source.exists() and output.exists() and output.resolve() == source.resolve():
            raise OutputError(f"Refusing to overwrite the input {source}: choose another -o path.")


# -- commands ----------------------------------------------------------------------------------


def cmd_edit(args: argparse.Namespace) -> int:
    from .types import output_paths

    out = Path(args.output)
    # every file the edit writes: the image, the other candidates, the mask, the sidecar
    outputs = output_paths(out, candidates=args.candidates)
    if not args.save_mask:
        del outputs["mask"]
    if args.no_sidecar:
        del outputs["sidecar"]
    for path in outputs.values():
        refuse_overwriting_input(path, [Path(args.image)])
    result = make_editor(args).edit(args.image, args.source, args.target, **edit_kwargs(args))
    written = result.save(out, mask=args.save_mask, sidecar=not args.no_sidecar)
    summary = {
        "output": str(written["image"]),
        "region": result.region,
        "decided_by": result.classification.source,
        "reason": result.classification.reason,
        "seed": result.seed,
        "seconds": round(result.timings.total, 3),
    }
    print(json.dumps(summary))
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    decision = make_editor(args).classify(args.source, args.target)
    print(json.dumps(decision.model_dump()))
    return 0


def cmd_mask(args: argparse.Namespace) -> int:
    from .imageio import save_image

    out = Path(args.output)
    refuse_overwriting_input(out, [Path(args.image)])
    made = make_editor(args).mask(args.image, args.region, grow=args.grow, feather=args.feather)
    save_image(made.image(), out)
    print(json.dumps({"output": str(out), "region": args.region, "mask_from": made.source}))
    return 0


def cmd_eval_classifier(args: argparse.Namespace) -> int:
    from .evaluate import run_eval_cli

    kwargs = {"model": args.llm_model} if args.llm_model and args.classifier == "llm" else {}
    text, status = run_eval_cli(
        args.data, args.classifier, json_out=args.json, show_errors=args.show_errors,
        concurrency=args.concurrency, classifier_kwargs=kwargs,
    )
    print(text)
    return status


def cmd_score(args: argparse.Namespace) -> int:
    from .score import format_score, score

    report = score(
        args.original, args.edited, args.mask, target=args.target, clip_model=args.clip_model,
        band=args.band,
    )
    print(format_score(report))
    if args.json:
        print(json.dumps(report.model_dump(mode="json")))
    return 0


# -- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regionedit",
        description="Text-driven photo editing: regenerate only the region that must change.",
    )
    parser.add_argument("--version", action="version", version=f"regionedit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cls, msk, gen = classifier_options(), mask_options(), generation_options()

    p = sub.add_parser("edit", parents=[cls, msk, gen], help="edit one image")
    p.add_argument("image", help="input image")
    p.add_argument("--source", required=True, help="what the image shows now")
    p.add_argument("--target", required=True, help="what it should show")
    p.add_argument("-o", "--output", required=True, help="output image path")
    p.add_argument("--region", choices=["foreground", "background"], help="skip the classifier")
    p.add_argument("--save-mask", action="store_true", help="also write OUTPUT stem + .mask.png")
    p.add_argument("--no-sidecar", action="store_true", help="do not write the JSON sidecar")
    p.set_defaults(handler=cmd_edit)

    p = sub.add_parser("classify", parents=[cls], help="decide the region, print it as JSON")
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.set_defaults(handler=cmd_classify)

    p = sub.add_parser("mask", parents=[msk], help="write the mask an edit would regenerate")
    p.add_argument("image")
    p.add_argument("--region", required=True, choices=["foreground", "background"])
    p.add_argument("-o", "--output", required=True, help="mask image path (white = regenerated)")
    p.set_defaults(handler=cmd_mask)

    p = sub.add_parser("eval-classifier", parents=[cls], help="measure a classifier on labelled pairs")
    p.add_argument("data", help="JSONL with source, target, label")
    p.add_argument("--json", action="store_true", help="also print the report as JSON (last line)")
    p.add_argument("--show-errors", action="store_true", help="list the mistakes")
    p.add_argument("--concurrency", type=int, default=8, help="parallel classifier calls")
    p.set_defaults(handler=cmd_eval_classifier)

    p = sub.add_parser("score", help="measure how well an edit kept what it should")
    p.add_argument("original")
    p.add_argument("edited")
    p.add_argument("mask", help="white = regenerated")
    p.add_argument("--target", help="target description, for the CLIP score")
    p.add_argument("--clip-model", help="CLIP model id or folder (CLIP score only when given)")
    p.add_argument("--band", type=int, default=4, help="seam band half-width in pixels")
    p.add_argument("--json", action="store_true", help="also print the report as JSON (last line)")
    p.set_defaults(handler=cmd_score)

    from .batch import add_parser as add_batch

    add_batch(sub)
    return parser


def _configure_logging(verbose: bool) -> None:
    if not verbose:
        # transformers warns about optional backends on import; noise to a CLI user
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("regionedit: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except RegionEditError as exc:
        if args.verbose:
            log.exception("failed")
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
