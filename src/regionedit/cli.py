"""``regionedit`` command line: a thin layer over the library.

Heavy libraries are imported inside the command handlers, so ``regionedit --help`` stays fast.
Errors print one line (no traceback unless ``--verbose``) and exit with the error's code; a bad
option is refused before any work, naming the flag and what it allows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from . import __version__
from .cli_options import (
    Parser,
    at_least,
    checked_settings,
    classifier_options,
    edit_settings,
    generation_options,
    make_editor,
    refuse_overwriting_input,
    segmentation_options,
    settings_options,
)
from .errors import RegionEditError, SettingsError, speaking_cli

if TYPE_CHECKING:  # pragma: no cover
    from .batch import BatchSummary

log = logging.getLogger("regionedit")

# -- commands ----------------------------------------------------------------------------------


def cmd_edit(args: argparse.Namespace) -> int:
    from .types import output_paths

    settings = checked_settings(args.source, args.target, edit_settings(args))
    out = Path(args.output)
    # every file the edit writes: the image, the other candidates, the mask, the sidecar
    outputs = output_paths(out, candidates=settings.candidates)
    if not args.save_mask:
        del outputs["mask"]
    if args.no_sidecar:
        del outputs["sidecar"]
    for path in outputs.values():
        refuse_overwriting_input(path, [Path(args.image)])
    result = make_editor(args).edit(
        args.image, args.source, args.target, **settings.model_dump(exclude_unset=True,
                                                                    exclude={"source", "target"})
    )
    written = result.save(out, mask=args.save_mask, sidecar=not args.no_sidecar)
    summary = {
        "output": str(written["image"]),
        "region": result.region,
        "decided_by": result.classification.source,
        "reason": result.classification.reason,
        "subject": result.classification.subject,
        "shape": result.classification.shape,
        "extent": result.mask_result.extent,
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

    settings = checked_settings("-", "-", edit_settings(args))
    out = Path(args.output)
    refuse_overwriting_input(out, [Path(args.image)])
    made = make_editor(args).mask(
        args.image, args.region, grow=settings.grow, feather=settings.feather,
        extent=settings.extent,
    )
    save_image(made.image(), out)
    print(json.dumps({"output": str(out), "region": args.region, "mask_from": made.source,
                      "extent": made.extent}))
    return 0


def cmd_eval_classifier(args: argparse.Namespace) -> int:
    from .evaluate import run_eval_cli

    given = {"model": args.llm_model, "timeout": args.llm_timeout,
             "max_attempts": args.llm_attempts}
    kwargs = {k: v for k, v in given.items() if v is not None} if args.classifier == "llm" else {}
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


def cmd_batch(args: argparse.Namespace) -> int:
    """``regionedit batch``: plan, report bad rows, run, print the summary."""
    from pydantic import ValidationError

    from .batch import BatchOptions, plan_folder, plan_manifest, run_batch

    if args.ray is None and (args.workers is not None or args.gpus_per_worker is not None):
        raise SettingsError("--workers and --gpus-per-worker need --ray.")
    if args.ray and args.input_dir is None and args.manifest is None and Path(args.ray).is_dir():
        raise SettingsError(
            f"--ray took {args.ray} as its address: write --ray after INPUT_DIR, or --ray=ADDRESS."
        )
    if args.ray is not None:
        from .batch.on_ray import require_ray

        require_ray("--ray")
    if (args.input_dir is None) == (args.manifest is None):
        raise SettingsError("Give either INPUT_DIR or --manifest.")
    if args.input_dir is not None and not (args.source and args.target):
        raise SettingsError("INPUT_DIR needs --source and --target.")
    if args.manifest is not None and (args.source or args.target or args.recursive):
        raise SettingsError("With --manifest, sources and targets come from its columns.")
    settings = edit_settings(args)
    policy = settings.pop("on_unidentified", "error")
    checked_settings("-", "-", {**settings, "on_unidentified": "error"})
    try:
        options = BatchOptions(
            out_dir=Path(args.output), image_format=args.image_format, name=args.name,
            save_mask=args.save_mask, dry_run=args.dry_run, on_unidentified=policy,
            llm_concurrency=args.llm_concurrency, batch_size=args.batch_size,
            score=args.score, clip_model=args.clip_model, edit=settings,
        )
    except ValidationError as exc:  # the folder options; the edit settings were checked above
        error = exc.errors(include_url=False)[0]
        option = "--" + str(error["loc"][0]).replace("_", "-")
        problem = error["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{option}: {problem}.") from None
    if args.manifest is not None:
        plan = plan_manifest(args.manifest, options, strict=args.strict)
        for row in plan.rejected:
            log.warning("%s line %d: %s", args.manifest, row.line, row.error)
    else:
        plan = plan_folder(
            args.input_dir, args.source, args.target, options, recursive=args.recursive
        )
    if args.ray is None:
        summary = run_batch(make_editor(args), plan, options, progress=sys.stderr.isatty())
    else:
        import functools

        from .batch.on_ray import run_batch_on_ray

        summary = run_batch_on_ray(
            functools.partial(make_editor, args), plan, options, address=args.ray or None,
            workers=args.workers or 1, gpus_per_worker=args.gpus_per_worker or 0,
            progress=sys.stderr.isatty(),
        )
    print(format_summary(summary, options.out_dir))
    return summary.exit_code


def cmd_serve(args: argparse.Namespace) -> int:
    """``regionedit serve``: the web app over OUT_DIR until Ctrl-C."""
    from .web import serve

    serve(
        args.out_dir, host=args.host, port=args.port, token=args.token,
        editor=make_editor(args), max_upload_bytes=args.max_upload_mb * 2**20,
    )
    return 0


def format_summary(summary: "BatchSummary", out_dir: Path) -> str:
    """The end-of-run report printed by ``regionedit batch``."""
    from .batch import RUN_LOG
    from .types import StageTimings

    seconds = summary.seconds
    stages = ", ".join(
        f"{stage} {seconds.get(stage, 0.0):.1f}s" for stage in StageTimings.model_fields
    )
    lines = [
        f"{summary.items} item(s): {summary.ok} ok, {summary.skipped} skipped, "
        f"{summary.failed} failed, {summary.already_done} already done"
        + (f"; {summary.ignored_files} non-image file(s) ignored" if summary.ignored_files else "")
        + (" (dry run)" if summary.dry_run else ""),
        f"time: {seconds.get('total', 0.0):.1f}s ({stages})",
    ]
    for failure in summary.failures:
        where = f"line {failure['line']} " if failure.get("line") is not None else ""
        lines.append(
            f"failed: {where}{failure['input']}: {failure['error_type']}: {failure['error']}"
        )
    lines.append(f"log: {out_dir / RUN_LOG}")
    return "\n".join(lines)


# -- parser ------------------------------------------------------------------------------------

BATCH_EXIT_CODES = """\
exit codes:
  0    every item edited, skipped (--on-unidentified skip) or already done by an earlier run
  1    at least one item failed (see the summary and OUT_DIR/run.jsonl)
  2    bad command line, or a manifest refused by --strict (nothing was run)
  3    the input folder does not exist
  8    a model could not be loaded (the run stopped; run it again to resume)
  9    the output folder cannot be written, or an output would overwrite an input
  10   the Ray cluster (--ray) cannot be reached or lost the run (run it again to resume)
  130  interrupted (run the same command again to resume)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="regionedit",
        description="Text-driven photo editing: regenerate only the region that must change.",
    )
    parser.add_argument("--version", action="version", version=f"regionedit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=Parser)
    cls, seg, gen = classifier_options(), segmentation_options(), generation_options()
    region = dict(choices=["foreground", "background"], help="skip the classifier")

    p = sub.add_parser("edit", parents=[cls, seg, gen, settings_options()], help="edit one image")
    p.add_argument("image", help="input image")
    p.add_argument("--source", required=True, help="what the image shows now")
    p.add_argument("--target", required=True, help="what it should show")
    p.add_argument("-o", "--output", required=True, help="output image path")
    p.add_argument("--region", **region)
    p.add_argument("--save-mask", action="store_true", help="also write OUTPUT stem + .mask.png")
    p.add_argument("--no-sidecar", action="store_true", help="do not write the JSON sidecar")
    p.set_defaults(handler=cmd_edit)

    p = sub.add_parser("classify", parents=[cls], help="decide the region, print it as JSON")
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.set_defaults(handler=cmd_classify)

    p = sub.add_parser("mask", parents=[seg, settings_options(("grow", "feather", "extent"))],
                       help="write the mask an edit would regenerate")
    p.add_argument("image")
    p.add_argument("--region", required=True, choices=["foreground", "background"])
    p.add_argument("-o", "--output", required=True, help="mask image path (white = regenerated)")
    p.set_defaults(handler=cmd_mask)

    p = sub.add_parser(
        "eval-classifier", parents=[cls], help="measure a classifier on labelled pairs"
    )
    p.add_argument("data", help="JSONL with source, target, label")
    p.add_argument("--json", action="store_true", help="also print the report as JSON (last line)")
    p.add_argument("--show-errors", action="store_true", help="list the mistakes")
    p.add_argument("--concurrency", type=at_least(1), default=8, help="parallel classifier calls")
    p.set_defaults(handler=cmd_eval_classifier)

    p = sub.add_parser("score", help="measure how well an edit kept what it should")
    p.add_argument("original")
    p.add_argument("edited")
    p.add_argument("mask", help="white = regenerated")
    p.add_argument("--target", help="target description, for the CLIP score")
    p.add_argument("--clip-model", help="CLIP model id or folder (CLIP score only when given)")
    p.add_argument("--band", type=at_least(1), default=4, help="seam band half-width in pixels")
    p.add_argument("--json", action="store_true", help="also print the report as JSON (last line)")
    p.set_defaults(handler=cmd_score)

    _add_batch_parser(sub, [cls, seg, gen, settings_options(extra_policies=("skip",))])

    p = sub.add_parser(
        "serve", parents=[cls, seg, gen],
        help="a local web app: edit a photo, review a batch output folder, and an HTTP API",
        description="Serve the edit page (/), the review page of OUT_DIR (/review) and the HTTP "
        "API (/api/, described at /api/docs) until Ctrl-C. One editor serves every request.",
    )
    p.add_argument("out_dir", nargs="?", default=".", metavar="OUT_DIR",
                   help="a batch output folder to review; single edits are saved under "
                   "OUT_DIR/edits (default: the current folder)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=at_least(1), default=7860, help="port (default: 7860)")
    p.add_argument("--token", help="required with any other --host: every request must carry it "
                   "(default: $REGIONEDIT_TOKEN)")
    p.add_argument("--max-upload-mb", type=at_least(1), default=50,
                   help="largest photo upload in MB (default: 50)")
    p.set_defaults(handler=cmd_serve)
    return parser


def _add_batch_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    from .batch.pipeline import DEFAULT_BATCH_SIZE

    p = sub.add_parser(
        "batch", parents=parents,
        help="edit a folder of images, or the edits listed in a manifest (resumable)",
        description="Edit every image of INPUT_DIR with the same --source/--target, or the "
        "edits listed in a --manifest. Results, sidecars and OUT_DIR/run.jsonl go to OUT_DIR; "
        "run the same command again to finish an interrupted or partly failed run.",
        epilog=BATCH_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input_dir", nargs="?", metavar="INPUT_DIR", help="folder of images")
    p.add_argument(
        "--manifest",
        help="CSV (with a header) or JSONL file, one edit per row: image, source, target, and "
        "optionally output and any edit setting by its name (guidance for --guidance); image "
        "paths are relative to the manifest",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument("--source", help="what the images show now (INPUT_DIR runs)")
    p.add_argument("--target", help="what they should show (INPUT_DIR runs)")
    p.add_argument("--region", choices=["foreground", "background"], help="skip the classifier")
    p.add_argument("--recursive", action="store_true", help="also edit images in sub-folders")
    p.add_argument(
        "--format", dest="image_format", choices=["png", "jpg", "webp"], default="png",
        help="output image format (default: png)",
    )
    p.add_argument(
        "--name", default="{stem}.edited",
        help="output file name without suffix: {stem} is the input's, {index} the item number "
        "(default: {stem}.edited)",
    )
    p.add_argument("--save-mask", action="store_true", help="also write <name>.mask.png")
    p.add_argument(
        "--strict", action="store_true", help="refuse the whole run if any manifest row is bad"
    )
    p.add_argument(
        "--dry-run", action="store_true",
        help="decide and mask only: write <name>.mask.png and <name>.json; no inpainting "
        "model is loaded",
    )
    p.add_argument(
        "--llm-concurrency", type=at_least(1), default=8,
        help="classifier requests at a time (default: 8)",
    )
    p.add_argument(
        "--batch-size", type=at_least(1), default=DEFAULT_BATCH_SIZE,
        help=f"images per inpainting model call (default: {DEFAULT_BATCH_SIZE}, which gives "
        "each image exactly the pixels of a single edit; more is faster on a GPU but can "
        "change pixels by float rounding)",
    )
    p.add_argument(
        "--score", action="store_true",
        help="write preservation and seam scores (regionedit score) into each sidecar",
    )
    p.add_argument("--clip-model", help="with --score: also CLIP scores against the target")

    def workers(text: str) -> "int | tuple[int, int]":
        try:
            sizes = tuple(int(part) for part in text.split(","))
        except ValueError:
            sizes = ()
        if len(sizes) not in (1, 2) or not 1 <= sizes[0] <= sizes[-1]:
            raise argparse.ArgumentTypeError(
                f"must be a number of workers N or MIN,MAX (1 <= MIN <= MAX), not {text!r}"
            )
        return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])

    def gpus(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value < float("inf"):
            raise argparse.ArgumentTypeError(
                f"must be a number of GPUs of at least 0, not {text!r}"
            )
        return value

    ray = p.add_argument_group("on a Ray cluster (pip install 'regionedit[ray]'; see docs/ray.md)")
    ray.add_argument(
        "--ray", nargs="?", const="", metavar="ADDRESS",
        help="edit on Ray workers: 'auto' or HOST:PORT joins that cluster; "
        "with no ADDRESS, the one in RAY_ADDRESS, else a Ray started on this machine. Inputs "
        "and OUT_DIR must be at the same path on every node",
    )
    ray.add_argument(
        "--workers", type=workers, metavar="N|MIN,MAX",
        help="with --ray: workers, each loading the models once (default: 1); MIN,MAX lets "
        "the pool grow with the cluster",
    )
    ray.add_argument(
        "--gpus-per-worker", type=gpus, metavar="GPUS",
        help="with --ray: GPUs each worker reserves (default: 0); a fraction such as 0.5 "
        "puts several workers on one GPU",
    )
    p.set_defaults(handler=cmd_batch)


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
    with speaking_cli():
        parser = build_parser()
        args = parser.parse_args(argv)
        _configure_logging(args.verbose)
        handler: Callable[[argparse.Namespace], int] = args.handler
        try:
            return handler(args)
        except RegionEditError as exc:
            if args.verbose:
                log.exception("failed")
            # one line, whatever the message: a log or a script reads the last line
            print("error: " + " ".join(str(exc).split()), file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
