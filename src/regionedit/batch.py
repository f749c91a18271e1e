"""Batch editing: a folder of images or a manifest of edits, in one run that can be resumed.

Three layers, each usable on its own:

* :func:`edit_many` (also ``Editor.edit_many``) is the pipeline, with no files written. Every
  distinct (source, target) pair is classified once, concurrently, up front; the next images are
  loaded and segmented on a prefetch thread while the current ones generate, several per model
  call, and the generated ones are composited on a thread of their own. One :class:`ItemResult`
  per item is yielded, in input order, as it finishes; a failing item is a result, not an
  exception.
* :func:`plan_folder` / :func:`plan_manifest` decide what to edit and where each result goes,
  before any model loads; :func:`run_batch` runs a plan into an output folder: the edited images,
  sidecars, masks and contact sheets, and ``run.jsonl`` (one fsynced line per finished item, then
  a summary line). A run repeated with the same settings skips what is already finished, matched
  on the input's content hash and a hash of every setting.
* :func:`add_parser` registers the ``regionedit batch`` command.

Every file is written to a temporary name and renamed, so killing a run at any moment leaves no
partial file and loses no finished item; temporary files a killed run left are removed at start.
"""

from __future__ import annotations

import argparse
import collections
import csv
import functools
import hashlib
import json
import logging
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import (
    TYPE_CHECKING, Any, Hashable, Iterable, Iterator, Literal, Mapping, Optional, Union,
)

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import (
    ImageInputError,
    ManifestError,
    ModelLoadError,
    OutputError,
    UnidentifiedRegionError,
)
from .types import Classification, EditResult, Region, StageTimings, output_paths

if TYPE_CHECKING:  # pragma: no cover
    from .editor import Editor, MaskResult
    from .imageio import LoadedImage

__all__ = [
    "BatchItem",
    "BatchItemLike",
    "ItemResult",
    "edit_many",
    "BatchOptions",
    "PlannedItem",
    "RejectedRow",
    "BatchPlan",
    "plan_folder",
    "plan_manifest",
    "BatchSummary",
    "run_batch",
    "add_parser",
    "RUN_LOG",
]

log = logging.getLogger("regionedit")

#: the run log in the output folder: one JSON object per line
RUN_LOG = "run.jsonl"
#: schema of the decision record a dry run writes instead of an edit sidecar
DRY_RUN_SCHEMA = "regionedit.dry-run/1"

BatchPolicy = Literal["error", "foreground", "background", "skip"]
ItemStatus = Literal["ok", "skipped", "failed"]
Stage = Literal["load", "classify", "segment", "inpaint", "save"]
ImageFormat = Literal["png", "jpg", "webp"]

#: Images per inpainting model call. With the VAE decoding one image at a time (the
#: ``DiffusersInpainter`` default), a call of 8 at 512 px adds 2.4 GB to an SD 1.5-size model
#: on CPU (1 image: 1.1 GB), less than 4 did without it (3.4 GB); bench/README.md, stop 11.
DEFAULT_BATCH_SIZE = 8

# Stages whose work happens before generation, on the prefetch thread.
_PREPARE_STAGES = ("load", "classify", "segment")
# Per-item settings, named as Editor.edit's keyword arguments.
_ITEM_SETTINGS = {
    "region", "seed", "negative_prompt", "steps", "guidance_scale", "strength", "candidates"
}
_IMAGE_SUFFIXES_KEPT = {".png", ".jpg", ".jpeg", ".webp"}


# -- the pipeline ------------------------------------------------------------------------------


class BatchItem(BaseModel):
    """One edit: an image, its two descriptions, and optional settings of its own.

    Settings left unset (None) take the run's values. This is also the schema of a manifest row;
    the columns are the field names, ``guidance`` standing for ``guidance_scale``, and ``output``
    (a path under the output folder) only means something to :func:`plan_manifest`.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, validate_by_name=True
    )

    image: Path
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    region: Optional[Region] = None
    seed: Optional[int] = Field(None, ge=0, lt=2**32)
    negative_prompt: Optional[str] = None
    steps: Optional[int] = Field(None, ge=1, le=1000)
    guidance_scale: Optional[float] = Field(None, ge=0, alias="guidance")
    strength: Optional[float] = Field(None, gt=0, le=1)
    candidates: Optional[int] = Field(None, ge=1, le=64)
    output: Optional[str] = None

    def settings(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """``Editor.edit`` keyword arguments for this item: ``defaults``, then its own values."""
        own = self.model_dump(include=_ITEM_SETTINGS, exclude_none=True)
        return {**defaults, **own}


#: what :func:`edit_many` accepts per item: a BatchItem, a mapping of its fields, or a
#: ``(image, source, target)`` tuple
BatchItemLike = Union[BatchItem, Mapping[str, Any], tuple]


class ItemResult(BaseModel):
    """What :func:`edit_many` yields for one item.

    ``status`` is ``ok`` (``result`` holds the edit; in a dry run only ``mask`` and the decision
    are set), ``skipped`` (region undecidable under ``on_unidentified="skip"``) or ``failed``
    (``error`` and the ``stage`` it failed in).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: int = Field(description="position of the item in the input")
    item: BatchItem
    status: ItemStatus
    region: Optional[Region] = None
    classification: Optional[Classification] = None
    result: Optional[EditResult] = None
    mask: Optional[Any] = Field(None, description="the MaskResult the edit used")
    loaded: Optional[Any] = Field(None, description="the LoadedImage of the input")
    error: Optional[Exception] = None
    stage: Optional[Stage] = None
    timings: StageTimings = Field(default_factory=StageTimings)


def _as_item(value: BatchItemLike) -> BatchItem:
    """``value`` as a :class:`BatchItem` (pydantic's ValidationError when it is not one)."""
    if isinstance(value, BatchItem):
        return value
    if isinstance(value, tuple):
        image, source, target = value
        return BatchItem(image=image, source=source, target=target)
    return BatchItem.model_validate(value)


def edit_many(
    editor: "Editor",
    items: Iterable[BatchItemLike],
    *,
    on_unidentified: BatchPolicy = "error",
    dry_run: bool = False,
    llm_concurrency: int = 8,
    prefetch: int = 2,
    batch_size: int = DEFAULT_BATCH_SIZE,
    **defaults: Any,
) -> Iterator[ItemResult]:
    """Edit many images with ``editor``, yielding an :class:`ItemResult` per item, in input
    order, as each finishes.

    ``defaults`` are :meth:`Editor.edit` keyword arguments for every item (``steps=20``,
    ``seed=7``, ``grow=8``...); an item's own settings win. A failing item (unreadable image,
    undecidable region, empty mask, classifier unreachable after its retries) yields a
    ``failed`` result and the others go on; ``on_unidentified="skip"`` yields ``skipped`` for an
    undecidable region. Only a model that cannot be loaded ends the iteration, by raising
    :class:`~regionedit.errors.ModelLoadError`, since no later item could succeed.
    ``dry_run`` classifies and masks without generating: no inpainting model is loaded.

    Classification runs on up to ``llm_concurrency`` threads, each distinct (source, target)
    pair asked once, while the inpainting model loads on a thread of its own; images are
    loaded and segmented up to ``prefetch`` items ahead of the generation. Generation takes up
    to ``batch_size`` images of one generation size and settings per model call (see
    :meth:`Editor.generate`; 1 gives one call per image, as :meth:`Editor.edit` does), keeping
    up to ``2 * batch_size`` items waiting for others of their size, so that mixed portrait
    and landscape photos still fill the calls. Compositing runs on a thread of its own while
    the next images generate; at most ``3 * batch_size`` items are taken and not yet yielded.
    """
    if llm_concurrency < 1 or prefetch < 1 or batch_size < 1:
        raise ValueError("llm_concurrency, prefetch and batch_size must be at least 1")
    batch = [_as_item(value) for value in items]
    settings = [item.settings(defaults) for item in batch]
    decide_policy = "error" if on_unidentified == "skip" else on_unidentified
    stop = threading.Event()
    # room for a whole generation batch and ``prefetch`` more items being prepared behind it
    ready: queue.Queue[ItemResult] = queue.Queue(maxsize=prefetch + batch_size)
    pool = ThreadPoolExecutor(max_workers=llm_concurrency, thread_name_prefix="regionedit-classify")
    finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="regionedit-finish")
    try:
        # Submitted in item order, so the pool answers the first items first.
        decisions: dict[tuple[str, str], Future] = {}
        for item, kwargs in zip(batch, settings):
            pair = (item.source, item.target)
            if kwargs.get("region") is None and pair not in decisions:
                decisions[pair] = pool.submit(editor.decide, *pair, on_unidentified=decide_policy)

        def prepare_all() -> None:
            for index, (item, kwargs) in enumerate(zip(batch, settings)):
                decision = None
                if kwargs.get("region") is None:
                    decision = decisions[(item.source, item.target)]
                prepared = _prepare(editor, index, item, kwargs, decision, on_unidentified)
                while not stop.is_set():  # a bounded put that notices the consumer leaving
                    try:
                        ready.put(prepared, timeout=0.2)
                        break
                    except queue.Full:
                        pass
                else:
                    return

        threading.Thread(target=prepare_all, name="regionedit-prefetch", daemon=True).start()
        if not dry_run:
            # loading the inpainting model (seconds for real weights) overlaps the first
            # classifications; the segmentation model loads when an image needs it (cut-outs
            # with their own alpha never do)
            threading.Thread(target=_load_inpainter, args=(editor,), name="regionedit-load",
                             daemon=True).start()

        # Items are taken in order but generated in groups of one generation size and settings,
        # so that a folder of portrait and landscape photos still fills each model call. At
        # most ``lookahead`` items wait for generation, and ``batch_size`` more may be taken
        # while a generated group composites: waiting for that compositing instead left the
        # model idle ~0.1 s per call.
        lookahead = 2 * batch_size
        waiting: dict[Hashable, list[tuple[ItemResult, Any]]] = {}
        done: dict[int, Union[ItemResult, Future]] = {}  # by index, until handed out
        taken = handed = 0
        stopped: Optional[ModelLoadError] = None

        def room_to_take() -> bool:
            pending = sum(len(group) for group in waiting.values())
            return pending < lookahead and taken - handed < lookahead + batch_size

        while handed < len(batch):
            while (
                taken < len(batch) and stopped is None and room_to_take()
                and not _full_groups(waiting, batch_size)
                # a finished result and nothing to group: hand it out before taking more
                and (waiting or not isinstance(done.get(handed), ItemResult))
            ):
                prepared, kwargs = ready.get(), settings[taken]
                taken += 1
                if isinstance(prepared.error, ModelLoadError):
                    stopped = prepared.error
                elif dry_run or prepared.status != "ok" or prepared.loaded is None:
                    done[prepared.index] = prepared
                else:
                    try:
                        job = _prepare_generation(editor, prepared, kwargs, decide_policy)
                        waiting.setdefault(editor.generation_group(job), []).append((prepared, job))
                    except ModelLoadError as exc:
                        stopped = exc
                    except Exception as exc:
                        done[prepared.index] = _failed(
                            prepared.index, prepared.item, exc, "inpaint", prepared.timings
                        )
            just_started: set[int] = set()
            # a group that is not full goes only when no more items will come, or when no more
            # may be taken and the next item to hand out is among those waiting
            if waiting and stopped is None and (
                _full_groups(waiting, batch_size)
                or taken == len(batch)
                or (not room_to_take() and handed not in done)
            ):
                try:
                    for index, outcome in _generate(editor, _next_group(waiting, batch_size),
                                                    batch_size, finisher):
                        done[index] = outcome
                        just_started.add(index)
                except ModelLoadError as exc:
                    stopped = exc
            # In input order, up to the first item still waiting or just generated: those
            # composite on the finisher while the next group generates.
            while handed in done and handed not in just_started:
                earlier = done.pop(handed)
                yield earlier.result() if isinstance(earlier, Future) else earlier
                handed += 1
            if stopped is not None:
                raise stopped
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        finisher.shutdown(wait=False, cancel_futures=True)


def _load_inpainter(editor: "Editor") -> None:
    """Load the inpainting model ahead of its first use; a failure is left for that use to
    report."""
    try:
        load = getattr(editor.inpainter, "load", None)
        if callable(load):
            load()
    except Exception:
        log.debug("loading the inpainting model ahead of time failed", exc_info=True)


def _prepare_generation(
    editor: "Editor", prepared: ItemResult, kwargs: dict[str, Any], decide_policy: str
) -> Any:
    """The :class:`~regionedit.editor.PreparedEdit` of a loaded, decided and masked item."""
    item = prepared.item
    return editor.prepare(
        prepared.loaded, item.source, item.target,
        decided=(prepared.region, prepared.classification), prepared_mask=prepared.mask,
        on_unidentified=decide_policy, **kwargs,
    )


def _full_groups(
    waiting: dict[Hashable, list[tuple[ItemResult, Any]]], batch_size: int
) -> list[Hashable]:
    """The keys of the groups in ``waiting`` that fill a model call."""
    return [key for key, group in waiting.items() if len(group) >= batch_size]


def _next_group(
    waiting: dict[Hashable, list[tuple[ItemResult, Any]]], batch_size: int
) -> list[tuple[ItemResult, Any]]:
    """Take the next model call's items out of ``waiting``: the full group whose first item
    came first, else the group of the oldest waiting item."""
    candidates = _full_groups(waiting, batch_size) or list(waiting)
    key = min(candidates, key=lambda k: waiting[k][0][0].index)
    group, waiting[key] = waiting[key][:batch_size], waiting[key][batch_size:]
    if not waiting[key]:
        del waiting[key]
    return group


def _generate(
    editor: "Editor",
    group: list[tuple[ItemResult, Any]],
    batch_size: int,
    finisher: ThreadPoolExecutor,
) -> list[tuple[int, Union[ItemResult, Future]]]:
    """Generate ``group`` (on the caller's thread) and hand its compositing to ``finisher``;
    per item, its index and its result or the future of it."""
    jobs = [job for _, job in group]
    outcomes: list[tuple[int, Union[ItemResult, Future]]] = []
    for (prepared, job), generated in zip(group, editor.generate(jobs, batch_size=batch_size)):
        if isinstance(generated, Exception):
            timings = _with_prepare_stages(job.timings, prepared)
            outcome: Union[ItemResult, Future] = _failed(
                prepared.index, prepared.item, generated, "inpaint", timings
            )
        else:
            outcome = finisher.submit(_finish_item, editor, prepared, job, generated)
        outcomes.append((prepared.index, outcome))
    return outcomes


def _finish_item(editor: "Editor", prepared: ItemResult, job: Any, generated: Any) -> ItemResult:
    """Composite a generated item (on the finisher thread); a failure becomes a result."""
    try:
        result = editor.finish(job, generated)
    except Exception as exc:
        timings = _with_prepare_stages(job.timings, prepared)
        return _failed(prepared.index, prepared.item, exc, "inpaint", timings)
    _with_prepare_stages(result.timings, prepared)
    return prepared.model_copy(update={"result": result, "timings": result.timings})


def _with_prepare_stages(timings: StageTimings, prepared: ItemResult) -> StageTimings:
    """``timings`` with the stages measured on the prefetch thread (not in ``prepare()``,
    which reused their results) copied in from ``prepared``."""
    for stage in _PREPARE_STAGES:
        setattr(timings, stage, getattr(prepared.timings, stage))
    return timings


def _prepare(
    editor: "Editor",
    index: int,
    item: BatchItem,
    kwargs: dict[str, Any],
    decision: Optional[Future],
    on_unidentified: BatchPolicy,
) -> ItemResult:
    """Load, decide and mask one item (on the prefetch thread); failures become results."""
    from .editor import timed_stage

    timings = StageTimings()
    stage: Stage = "load"
    try:
        with timed_stage(timings, "load"):
            loaded = editor.load(item.image)
        stage = "classify"
        with timed_stage(timings, "classify"):
            if decision is not None:
                region, classification = decision.result()
            else:
                region, classification = editor.decide(
                    item.source, item.target, region=kwargs.get("region")
                )
        stage = "segment"
        with timed_stage(timings, "segment"):
            mask_kwargs = {k: kwargs[k] for k in ("grow", "feather") if k in kwargs}
            mask = editor.mask(loaded, region, **mask_kwargs)
    except UnidentifiedRegionError as exc:
        if on_unidentified != "skip":
            return _failed(index, item, exc, stage, timings)
        undecided = Classification(label="unidentified", reason=exc.reason, source="policy")
        return ItemResult(
            index=index, item=item, status="skipped", classification=undecided, error=exc,
            stage=stage, timings=timings,
        )
    except Exception as exc:  # one bad item must not end a batch of thousands
        return _failed(index, item, exc, stage, timings)
    return ItemResult(
        index=index, item=item, status="ok", region=region, classification=classification,
        mask=mask, loaded=loaded, timings=timings,
    )


def _failed(
    index: int, item: BatchItem, exc: Exception, stage: Stage, timings: StageTimings
) -> ItemResult:
    log.debug("item %d (%s) failed in %s", index, item.image, stage, exc_info=exc)
    return ItemResult(
        index=index, item=item, status="failed", error=exc, stage=stage, timings=timings
    )


# -- planning: what to edit, and where each result goes ----------------------------------------


class BatchOptions(BaseModel):
    """How a batch run writes its results, and the settings every item starts from."""

    out_dir: Path
    image_format: ImageFormat = "png"
    #: output file name without suffix; ``{stem}`` is the input's, ``{index}`` the item number
    name: str = "{stem}.edited"
    save_mask: bool = False
    dry_run: bool = False
    on_unidentified: BatchPolicy = "error"
    llm_concurrency: int = Field(8, ge=1)
    prefetch: int = Field(2, ge=1)
    #: images per model call (not part of the resume key: it changes speed, not results)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    #: write ``regionedit.score`` figures (and CLIP scores when ``clip_model`` is set) into
    #: each sidecar
    score: bool = False
    clip_model: Optional[str] = None
    #: :meth:`Editor.edit` keyword arguments for every item; a manifest row's own values win
    edit: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _file_name_pattern(cls, value: str) -> str:
        try:
            example = value.format(stem="photo", index=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"the name pattern {value!r} is not usable ({exc!r}); the fields are {{stem}} "
                "and {index}, e.g. '{stem}.edited'"
            ) from None
        if not example.strip(". ") or "/" in example or "\\" in example:
            raise ValueError(f"the name pattern {value!r} must give a file name, not a path")
        return value

    def output_for(self, relative_input: Path, index: int, explicit: Optional[str]) -> Path:
        """The edited image's path for the input at ``relative_input`` (relative to the input
        folder or the manifest): the same sub-folders under ``out_dir``, named by ``name``."""
        if explicit:
            path = Path(explicit)
            if path.suffix.lower() not in _IMAGE_SUFFIXES_KEPT:
                path = path.with_name(f"{path.name}.{self.image_format}")
            return self.out_dir / path
        name = self.name.format(stem=relative_input.stem, index=index)
        return self.out_dir / relative_input.parent / f"{name}.{self.image_format}"


class PlannedItem(BaseModel):
    """One item of a plan: the edit, how the user named its input, and its output path."""

    item: BatchItem
    label: str = Field(description="the input path relative to the input folder or manifest")
    output: Path
    line: Optional[int] = Field(None, description="manifest line")


class RejectedRow(BaseModel):
    """A manifest row that cannot be run, and why."""

    label: str
    line: int
    error: str


class BatchPlan(BaseModel):
    """Everything a run will do, decided before any model loads."""

    items: list[PlannedItem] = Field(default_factory=list)
    rejected: list[RejectedRow] = Field(default_factory=list)
    #: files in the input folder that are not images (or are links leading out of it)
    ignored_files: int = 0


def plan_folder(
    folder: str | os.PathLike[str],
    source: str,
    target: str,
    options: BatchOptions,
    *,
    recursive: bool = False,
) -> BatchPlan:
    """Every image in ``folder`` (and its sub-folders with ``recursive``), each edited from
    ``source`` to ``target``.

    Files Pillow does not know as images are counted in ``ignored_files`` and left alone, as are
    symbolic links that lead out of the folder; linked sub-folders are not entered. The output
    folder may lie inside the input folder (it is not scanned) but may not be the input folder.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise ImageInputError(f"{folder} is not a folder. Give the folder holding the images.")
    out_dir = options.out_dir.resolve()
    if out_dir == root:
        raise OutputError(
            f"The output folder {options.out_dir} is the input folder: choose another -o folder, "
            "so results never mix with (or overwrite) the inputs."
        )
    suffixes = _readable_image_suffixes()
    plan = BatchPlan()
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow linked folders
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() != out_dir)
        for name in sorted(filenames):
            path = here / name
            if (
                path.suffix.lower() not in suffixes
                or not _is_within(path.resolve(), root)
                or not path.is_file()
            ):
                log.debug("ignoring %s: not an image file inside %s", path, root)
                plan.ignored_files += 1
                continue
            relative = path.relative_to(root)
            item = BatchItem(image=path, source=source, target=target)
            output = options.output_for(relative, len(plan.items) + 1, None)
            plan.items.append(PlannedItem(item=item, label=relative.as_posix(), output=output))
        if not recursive:
            break
    return _resolve_output_clashes(plan)


def plan_manifest(
    manifest: str | os.PathLike[str], options: BatchOptions, *, strict: bool = False
) -> BatchPlan:
    """The edits listed in a CSV or JSONL manifest, validated row by row.

    Rows that cannot run (a bad value, an image missing or outside the manifest's folder, an
    ``output`` outside the output folder) go to ``plan.rejected`` with their line numbers;
    with ``strict`` any such row raises :class:`~regionedit.errors.ManifestError` instead.
    Unknown columns and unreadable manifests always raise it.
    """
    manifest = Path(manifest)
    base = manifest.parent.resolve()
    plan = BatchPlan()
    for line, row in _manifest_rows(manifest):
        label = str(row.get("image", "")) if isinstance(row, dict) else ""
        try:
            if isinstance(row, str):
                raise ValueError(row)
            item = BatchItem.model_validate(row)
            image = _inside_manifest_folder(base, item.image)
            if item.output is not None:
                _check_output_name(item.output)
        except (ValidationError, ValueError) as exc:
            plan.rejected.append(RejectedRow(label=label, line=line, error=_row_problem(exc)))
            continue
        relative = image.relative_to(base)
        output = options.output_for(relative, len(plan.items) + 1, item.output)
        plan.items.append(
            PlannedItem(
                item=item.model_copy(update={"image": image}),
                label=relative.as_posix(),
                output=output,
                line=line,
            )
        )
    if strict and plan.rejected:
        raise ManifestError(
            f"{manifest} has {len(plan.rejected)} row(s) that cannot run; nothing was done:\n"
            + "\n".join(f"  line {r.line}: {r.error}" for r in plan.rejected)
            + "\nFix these rows, or run without --strict to edit the valid rows only."
        )
    return _resolve_output_clashes(plan)


def _manifest_columns() -> set[str]:
    fields = BatchItem.model_fields
    return set(fields) | {f.alias for f in fields.values() if f.alias}


def _manifest_rows(manifest: Path) -> Iterator[tuple[int, Union[dict[str, Any], str]]]:
    """(line number, row) for each row; a row that is not even a record is a problem string."""
    suffix = manifest.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ManifestError(
            f"Cannot tell the format of the manifest {manifest}: name it .csv (with a header "
            "row) or .jsonl (one JSON object per line)."
        )
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            if suffix == ".csv":
                yield from _csv_rows(manifest, f)
            else:
                yield from _jsonl_rows(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"Cannot read the manifest {manifest}: {exc}. Check the path, and save it as UTF-8."
        ) from None


def _csv_rows(manifest: Path, f: Any) -> Iterator[tuple[int, Union[dict[str, Any], str]]]:
    reader = csv.DictReader(f)
    header = [name.strip() for name in reader.fieldnames or []]
    unknown = sorted(set(header) - _manifest_columns())
    missing = [name for name in ("image", "source", "target") if name not in header]
    if unknown or missing:
        raise ManifestError(
            f"The manifest {manifest} header "
            + (f"has unknown column(s) {', '.join(unknown)}" if unknown else "")
            + ("; " if unknown and missing else "")
            + (f"lacks the column(s) {', '.join(missing)}" if missing else "")
            + f". The columns are: {', '.join(sorted(_manifest_columns()))}."
        )
    reader.fieldnames = header
    for row in reader:
        if None in row:  # DictReader puts surplus cells under the key None
            yield reader.line_num, f"{len(row[None])} more value(s) than the header has columns"
            continue
        # An empty cell means "not set here": the run's value applies.
        yield reader.line_num, {k: v for k, v in row.items() if v is not None and v.strip()}


def _jsonl_rows(f: Any) -> Iterator[tuple[int, Union[dict[str, Any], str]]]:
    for line, text in enumerate(f, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if isinstance(value, dict):
            yield line, {k: v for k, v in value.items() if v is not None}
        else:
            yield line, f"expected a JSON object, got {type(value).__name__}"


def _row_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'row'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
    return str(exc)


def _inside_manifest_folder(base: Path, image: Path) -> Path:
    """``base / image`` tidied (``a/../b`` -> ``b``); ValueError when it, or the file a link
    there leads to, is outside ``base``, or when it is not a file."""
    path = base / os.path.normpath(image)
    if image.is_absolute() or not _is_within(path.resolve(), base):
        raise ValueError(
            f"image: {image} is outside the manifest's folder {base}; image paths are relative "
            "to the manifest and stay inside its folder (move the image or the manifest)"
        )
    if not path.is_file():
        raise ValueError(f"image: {image} not found next to the manifest ({path})")
    return path


def _check_output_name(output: str) -> None:
    path = Path(output)
    if path.is_absolute() or ".." in path.parts or not path.name.strip(". "):
        raise ValueError(f"output: {output!r} must be a file path inside the output folder")


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _readable_image_suffixes() -> frozenset[str]:
    """File suffixes of every format Pillow can open."""
    from PIL import Image

    return frozenset(
        suffix for suffix, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
    )


def _files_written_for(output: Path) -> list[Path]:
    """Every file an item with this output may write: what ``EditResult.save`` writes with up
    to 64 candidates (the most ``candidates`` allows), and the contact sheet."""
    return [*output_paths(output, candidates=64).values(), _sheet_path(output)]


def _sheet_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.sheet.png")


def _resolve_output_clashes(plan: BatchPlan) -> BatchPlan:
    """Give the 2nd, 3rd... item writing to the same path a ``.2``, ``.3``... suffix, and
    refuse any output path that is one of the inputs."""
    inputs = {planned.item.image.resolve() for planned in plan.items}
    seen: dict[str, int] = {}
    for planned in plan.items:
        key = str(planned.output).casefold()  # case-insensitive file systems clash too
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            output = planned.output
            planned.output = output.with_name(f"{output.stem}.{seen[key]}{output.suffix}")
        if any(path.resolve() in inputs for path in _files_written_for(planned.output)):
            raise OutputError(
                f"The output {planned.output} would overwrite an input image: choose another "
                "output folder (-o) or name pattern (--name)."
            )
    return plan


# -- running a plan into an output folder ------------------------------------------------------


class BatchSummary(BaseModel):
    """Counts and times of one run; its last line in ``run.jsonl``."""

    type: Literal["summary"] = "summary"
    items: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    #: finished by an earlier run with the same settings, not redone
    already_done: int = 0
    ignored_files: int = 0
    stale_temp_files_removed: int = 0
    dry_run: bool = False
    failures: list[dict[str, Any]] = Field(default_factory=list)
    #: seconds: ``total`` (wall clock) and the sum over items of each stage
    seconds: dict[str, float] = Field(default_factory=dict)
    #: why the run ended early (interrupted, a model could not be loaded); None when it did not
    stopped: Optional[str] = None
    started_at: str = ""
    finished_at: str = ""

    @property
    def exit_code(self) -> int:
        """0 when every item is ok, skipped or already done; 1 otherwise."""
        return 1 if self.failed or self.stopped else 0


def run_batch(
    editor: "Editor", plan: BatchPlan, options: BatchOptions, *, progress: bool = False
) -> BatchSummary:
    """Run ``plan`` with ``editor``, writing results and ``run.jsonl`` under ``options.out_dir``.

    Items finished by an earlier run with the same input content and settings are not redone;
    failed and interrupted ones are. ``progress`` shows a progress bar on stderr. Raises only for
    what ends the whole run (:class:`~regionedit.errors.ModelLoadError`, an unwritable output
    folder, KeyboardInterrupt), after appending the summary line.
    """
    started = time.perf_counter()
    summary = BatchSummary(
        items=len(plan.items) + len(plan.rejected),
        ignored_files=plan.ignored_files,
        dry_run=options.dry_run,
        started_at=_now(),
    )
    try:
        options.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the output folder {options.out_dir}: {exc.strerror or exc}. "
            "Choose a folder you can write to."
        ) from None
    summary.stale_temp_files_removed = _remove_stale_temp_files(options.out_dir)
    journal = RunJournal(options.out_dir / RUN_LOG)
    finished = journal.finished()
    totals = StageTimings()

    def record(entry: dict[str, Any], timings: StageTimings) -> None:
        journal.append(entry)
        status = entry["status"]
        setattr(summary, status, getattr(summary, status) + 1)
        if status == "failed":
            keys = ("input", "line", "stage", "error_type", "error")
            summary.failures.append({k: entry[k] for k in keys if entry.get(k) is not None})
        for stage in StageTimings.model_fields:
            setattr(totals, stage, getattr(totals, stage) + getattr(timings, stage))

    for row in plan.rejected:
        entry = _entry(row.label, line=row.line)
        record({**entry, **_error_fields(ManifestError(row.error), None)}, StageTimings())
    todo: list[tuple[PlannedItem, dict[str, Any]]] = []
    editor_config = editor.config()
    for planned in plan.items:
        entry = _entry(planned.label, line=planned.line)
        try:
            entry.update(_keys(planned, editor_config, options))
        except ImageInputError as exc:
            record({**entry, **_error_fields(exc, "load")}, StageTimings())
            continue
        if _is_finished(finished.get((entry["input_sha256"], entry["settings_sha256"])), options):
            summary.already_done += 1
        else:
            todo.append((planned, entry))

    from tqdm import tqdm

    bar = tqdm(
        total=summary.items,
        initial=summary.items - len(todo),
        disable=not progress,
        desc="regionedit batch",
        unit="image",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    bar.set_postfix(failed=summary.failed)
    outcomes = edit_many(
        editor,
        [planned.item for planned, _ in todo],
        on_unidentified=options.on_unidentified,
        dry_run=options.dry_run,
        llm_concurrency=options.llm_concurrency,
        prefetch=options.prefetch,
        batch_size=options.batch_size,
        **options.edit,
    )
    # Files are written on threads of their own: encoding a large PNG takes seconds, and on
    # this thread it would hold up the next model call. Lines are recorded in input order.
    threads = _writer_threads()
    writers = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="regionedit-write")
    writing: collections.deque[tuple[Future, StageTimings]] = collections.deque()

    def record_written(*, keep: int) -> None:
        """Record written items in order, waiting until at most ``keep`` are unrecorded."""
        while writing and (len(writing) > keep or writing[0][0].done()):
            written, timings = writing[0]
            line = written.result()
            writing.popleft()
            record(line, timings)
            bar.set_postfix(failed=summary.failed, refresh=False)
            bar.update()

    try:
        for (planned, entry), outcome in zip(todo, outcomes):
            writing.append((writers.submit(_finish, planned, entry, outcome, options),
                            outcome.timings))
            # a written item's images are freed once it is recorded: bound what waits
            record_written(keep=2 * threads)
        record_written(keep=0)
    except ModelLoadError as exc:
        summary.stopped = f"{type(exc).__name__}: {exc}"
        raise
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
        raise
    finally:
        outcomes.close()
        # Writes already started finish (each is atomic) and are recorded; after an
        # interruption the others are dropped, and the next run redoes those items.
        writers.shutdown(wait=True, cancel_futures=summary.stopped == "interrupted")
        for written, timings in writing:
            if not written.cancelled() and written.exception() is None:
                record(written.result(), timings)
        bar.close()
        summary.seconds = {"total": time.perf_counter() - started, **totals.model_dump()}
        summary.finished_at = _now()
        journal.append(summary.model_dump())
    return summary


def _writer_threads() -> int:
    """Threads that write a batch's files: one per core, up to 4 (encoders release the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _entry(label: str, *, line: Optional[int]) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "item", "input": label}
    if line is not None:
        entry["line"] = line
    return entry


def _error_fields(exc: BaseException, stage: Optional[Stage]) -> dict[str, Any]:
    return {"status": "failed", "stage": stage, "error_type": type(exc).__name__, "error": str(exc)}


def _keys(
    planned: PlannedItem, editor_config: dict[str, Any], options: BatchOptions
) -> dict[str, str]:
    """The resume key of an item: its input's content hash and a hash of every setting that
    changes what the run writes for it."""
    item = planned.item
    settings = {
        "editor": editor_config,
        "source": item.source,
        "target": item.target,
        "edit": item.settings(options.edit),
        "on_unidentified": options.on_unidentified,
        "output": planned.output.relative_to(options.out_dir).as_posix(),
        "save_mask": options.save_mask,
        "dry_run": options.dry_run,
        "score": [options.score, options.clip_model],
    }
    encoded = json.dumps(settings, sort_keys=True, default=str).encode()
    return {
        "input_sha256": _file_sha256(item.image),
        "settings_sha256": hashlib.sha256(encoded).hexdigest(),
    }


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ImageInputError(
            f"Cannot read {path}: {exc.strerror or exc}. Check that the file exists and is "
            "readable.",
            path=str(path),
        ) from None
    return digest.hexdigest()


def _is_finished(entry: Optional[dict[str, Any]], options: BatchOptions) -> bool:
    """An earlier line says the item finished, every file it lists is still there, and its
    sidecar still carries the same key (a run with other settings may have rewritten it)."""
    if entry is None or entry.get("status") not in ("ok", "skipped"):
        return False
    outputs = entry.get("outputs", {})
    if not all((options.out_dir / path).is_file() for path in outputs.values()):
        return False
    record = outputs.get("sidecar") or outputs.get("decision")
    if record is None:  # skipped: nothing was written
        return True
    try:
        written = json.loads((options.out_dir / record).read_text(encoding="utf-8"))["batch"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(written.get(key) == entry[key] for key in ("input_sha256", "settings_sha256"))


def _finish(
    planned: PlannedItem, entry: dict[str, Any], outcome: ItemResult, options: BatchOptions
) -> dict[str, Any]:
    """Write an item's files and return its ``run.jsonl`` line."""
    entry = {**entry, "status": outcome.status}
    if outcome.classification is not None:
        entry.update(
            region=outcome.region,
            decided_by=outcome.classification.source,
            reason=outcome.classification.reason,
        )
    if outcome.status == "ok":
        try:
            written = _write_outputs(planned, entry, outcome, options)
        except Exception as exc:  # a full disk for one item is recorded like any failure
            entry.update(_error_fields(exc, "save"))
        else:
            entry["outputs"] = {
                kind: path.relative_to(options.out_dir).as_posix() for kind, path in written.items()
            }
            if outcome.result is not None:
                entry["seeds"] = [c.seed for c in outcome.result.candidates]
    elif outcome.status == "failed":
        entry.update(_error_fields(outcome.error, outcome.stage))
    seconds = outcome.timings.model_dump()
    entry.update(seconds={**seconds, "total": outcome.timings.total}, finished_at=_now())
    return entry


def _write_outputs(
    planned: PlannedItem, entry: dict[str, Any], outcome: ItemResult, options: BatchOptions
) -> dict[str, Path]:
    from .contact_sheet import contact_sheet
    from .imageio import atomic_write_bytes, save_image

    batch_record = {
        "batch": {
            "input": planned.label,
            "input_sha256": entry["input_sha256"],
            "settings_sha256": entry["settings_sha256"],
            "run_log": RUN_LOG,
        }
    }
    output = planned.output
    mask = outcome.mask
    if options.dry_run:
        decision = {
            "schema": DRY_RUN_SCHEMA,
            "input": str(planned.item.image),
            "region": outcome.region,
            "classification": outcome.classification.model_dump(),
            "mask_from": mask.source,
            "settings": planned.item.settings(options.edit),
            **batch_record,
        }
        paths = output_paths(output)
        written = {"mask": save_image(mask.image(), paths["mask"])}
        side = paths["sidecar"]
        text = json.dumps(decision, indent=2) + "\n"
        written["decision"] = atomic_write_bytes(side, text.encode())
        return written
    result = outcome.result
    if options.score:
        from .score import score

        report = score(
            outcome.loaded.rgb, result.image.convert("RGB"), result.mask_image(),
            target=planned.item.target if options.clip_model else None,
            clip_model=options.clip_model,
        )
        batch_record["score"] = report.model_dump(mode="json")
    written = result.save(
        output, mask=options.save_mask, sidecar=True, sidecar_extra=batch_record
    )
    if len(result.candidates) > 1:
        tiles = [(outcome.loaded.rgb, "input"), (mask.image(), "mask")]
        tiles += [(c.image, f"seed {c.seed}") for c in result.candidates]
        sheet_path = _sheet_path(output)
        written["sheet"] = save_image(contact_sheet(tiles), sheet_path)
    return written


def _remove_stale_temp_files(folder: Path) -> int:
    """Delete the temporary files a killed run left (they are never finished results)."""
    from .imageio import is_temp_file

    removed = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if is_temp_file(name):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run in %s", removed, folder)
    return removed


class RunJournal:
    """``run.jsonl``: one JSON object per line, each appended with a single write and fsynced.

    A run killed mid-write can leave at most a partial last line; it is cut off when the
    journal is next opened, so every line in the file is always a whole JSON object.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._repair()

    def _repair(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("%s: dropping an incomplete last line (the run was killed)", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())

    def records(self) -> Iterator[dict[str, Any]]:
        """Every line, parsed; a line that is not JSON (edited by hand) is skipped with a
        warning."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for number, text in enumerate(lines, start=1):
            try:
                yield json.loads(text)
            except json.JSONDecodeError:
                log.warning("%s line %d is not JSON; ignoring it", self.path, number)

    def finished(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The latest item line per (input hash, settings hash)."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in self.records():
            if entry.get("type") == "item" and "settings_sha256" in entry:
                latest[(entry["input_sha256"], entry["settings_sha256"])] = entry
        return latest

    def append(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry, default=str) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(
                f"Cannot append to {self.path}: {exc.strerror or exc}. Free some space or fix "
                "the folder's permissions, then run the same command again to resume."
            ) from None


# -- command line ------------------------------------------------------------------------------

EXIT_CODES = """\
exit codes:
  0    every item edited, skipped (--on-unidentified skip) or already done by an earlier run
  1    at least one item failed (see the summary and OUT_DIR/run.jsonl)
  2    bad command line, or a manifest refused by --strict (nothing was run)
  3    the input folder does not exist
  8    a model could not be loaded (the run stopped; run it again to resume)
  9    the output folder cannot be written, or an output would overwrite an input
  130  interrupted (run the same command again to resume)
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``regionedit batch`` on the CLI's subparsers."""
    from .cli import classifier_options, generation_options, mask_options

    p = sub.add_parser(
        "batch",
        parents=[
            classifier_options(),
            mask_options(),
            generation_options(unidentified_policies=("error", "foreground", "background", "skip")),
        ],
        help="edit a folder of images, or the edits listed in a manifest (resumable)",
        description="Edit every image of INPUT_DIR with the same --source/--target, or the "
        "edits listed in a --manifest. Results, sidecars and OUT_DIR/run.jsonl go to OUT_DIR; "
        "run the same command again to finish an interrupted or partly failed run.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input_dir", nargs="?", metavar="INPUT_DIR", help="folder of images")
    p.add_argument(
        "--manifest",
        help="CSV (with a header) or JSONL file, one edit per row: image, source, target, and "
        "optionally region, seed, negative_prompt, steps, guidance, strength, candidates, "
        "output; image paths are relative to the manifest",
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
        "--name",
        default="{stem}.edited",
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
        "--llm-concurrency", type=int, default=8, help="classifier requests at a time (default: 8)"
    )
    p.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
        help=f"images per inpainting model call (default: {DEFAULT_BATCH_SIZE}; lower it if "
        "memory runs out often: a batch that does not fit in GPU memory is split and retried)",
    )
    p.add_argument(
        "--score", action="store_true",
        help="write preservation and seam scores (regionedit score) into each sidecar",
    )
    p.add_argument("--clip-model", help="with --score: also CLIP scores against the target")
    p.set_defaults(handler=functools.partial(cmd_batch, parser=p))
    return p


def cmd_batch(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    """``regionedit batch``: plan, report bad rows, run, print the summary; returns the exit
    code."""
    from .cli import edit_kwargs, make_editor

    if (args.input_dir is None) == (args.manifest is None):
        parser.error("give either INPUT_DIR or --manifest")
    if args.input_dir is not None and not (args.source and args.target):
        parser.error("INPUT_DIR needs --source and --target")
    if args.manifest is not None and (args.source or args.target or args.recursive):
        parser.error("with --manifest, sources and targets come from its columns")
    defaults = edit_kwargs(args)
    try:
        options = BatchOptions(
            out_dir=Path(args.output),
            image_format=args.image_format,
            name=args.name,
            save_mask=args.save_mask,
            dry_run=args.dry_run,
            on_unidentified=defaults.pop("on_unidentified"),
            llm_concurrency=args.llm_concurrency,
            batch_size=args.batch_size,
            score=args.score,
            clip_model=args.clip_model,
            edit=defaults,
        )
    except ValidationError as exc:
        parser.error(_row_problem(exc))
    if args.manifest is not None:
        plan = plan_manifest(args.manifest, options, strict=args.strict)
        for row in plan.rejected:
            log.warning("%s line %d: %s", args.manifest, row.line, row.error)
    else:
        plan = plan_folder(
            args.input_dir, args.source, args.target, options, recursive=args.recursive
        )
    summary = run_batch(make_editor(args), plan, options, progress=sys.stderr.isatty())
    print(format_summary(summary, options.out_dir))
    return summary.exit_code


def format_summary(summary: BatchSummary, out_dir: Path) -> str:
    """The end-of-run report printed by ``regionedit batch``."""
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
