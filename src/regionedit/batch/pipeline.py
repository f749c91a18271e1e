"""The batch pipeline: many edits with one :class:`~regionedit.editor.Editor`, no files written.

:func:`edit_many` first classifies every distinct (source, target) pair once, concurrently, while
the inpainting model loads. Then it works through the items in chunks of ``batch_size``: a chunk
is prepared (loaded, decided, masked) on a thread of its own while the one before it generates,
its items are grouped by generation shape, each group is generated in model calls of up to
``batch_size`` images and composited, and the chunk's results are yielded in input order. The two
halves are :func:`classify_pairs` and :func:`edit_decided`, so that a run on a cluster classifies
once on its driver and edits on its workers.

An item's pixels depend only on its inputs, its settings and the batch size: never on timing.
With ``batch_size=1`` (the default) they are exactly those of :meth:`Editor.edit`; several images
per model call are faster on a GPU but can differ from one-image calls by float rounding.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import (
    TYPE_CHECKING, Any, Iterable, Iterator, Literal, Mapping, Optional, Sequence, Union,
)

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import (
    ClassifierError,
    DescriptionError,
    ImageInputError,
    ModelLoadError,
    SettingsError,
    UnidentifiedRegionError,
)
from ..types import Classification, EditResult, EditSettings, Region, StageTimings, settings_problem

if TYPE_CHECKING:  # pragma: no cover
    from ..editor import Decision, Editor, PreparedEdit

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BatchItem",
    "BatchItemLike",
    "BatchPolicy",
    "ItemResult",
    "PairDecisions",
    "as_batch_item",
    "classify_pairs",
    "edit_decided",
    "edit_many",
    "unprepared_result",
]

log = logging.getLogger("regionedit")

#: Images per inpainting model call. One keeps every image's pixels exactly those of a single
#: edit; raise it on a GPU for throughput (see :func:`edit_many`).
DEFAULT_BATCH_SIZE = 1

BatchPolicy = Literal["error", "foreground", "background", "skip"]
ItemStatus = Literal["ok", "skipped", "failed"]
Stage = Literal["load", "classify", "segment", "inpaint", "save"]


class BatchItem(BaseModel):
    """One edit of a batch: an image, its settings, and where a manifest wants its result."""

    model_config = ConfigDict(frozen=True)

    image: Path
    settings: EditSettings
    #: the result's path under the output folder, from a manifest's ``output`` column
    output: Optional[str] = None

    @property
    def source(self) -> str:
        return self.settings.source

    @property
    def target(self) -> str:
        return self.settings.target

    @classmethod
    def from_row(cls, row: Mapping[str, Any], defaults: Mapping[str, Any]) -> "BatchItem":
        """An item from a manifest row or a mapping: ``image``, ``output`` and the edit settings
        (``guidance`` may stand for ``guidance_scale``); ``defaults`` fill what it leaves
        unset. pydantic's ValidationError or ValueError name what is wrong."""
        values = dict(row)
        if "guidance" in values:
            values["guidance_scale"] = values.pop("guidance")
        if "on_unidentified" in values:
            raise ValueError("on_unidentified: is a setting of the whole run, not of one row")
        image = values.pop("image", None)
        if image is None or not str(image).strip():
            raise ValueError("image: a path is required")
        output = values.pop("output", None)
        settings = EditSettings.model_validate({**defaults, **values})
        return cls(image=Path(str(image).strip()), settings=settings, output=output)


#: what :func:`edit_many` accepts per item: a BatchItem, a mapping of its fields (as a manifest
#: row), or an ``(image, source, target)`` tuple
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


def edit_many(
    editor: "Editor",
    items: Iterable[BatchItemLike],
    *,
    on_unidentified: BatchPolicy = "error",
    dry_run: bool = False,
    llm_concurrency: int = 8,
    batch_size: int = DEFAULT_BATCH_SIZE,
    **defaults: Any,
) -> Iterator[ItemResult]:
    """Edit many images with ``editor``, yielding an :class:`ItemResult` per item, in input
    order.

    ``defaults`` are edit settings for every item (``steps=20``, ``seed=7``, ``grow=8``...);
    an item's own settings win. Every item and default is checked before any work
    (:class:`~regionedit.errors.SettingsError`). A failing item (unreadable image,
    undecidable region, empty mask, classifier unreachable after its retries) yields a
    ``failed`` result and the others go on; ``on_unidentified="skip"`` yields ``skipped`` for
    an undecidable region. Only a model that cannot be loaded ends the iteration, by raising
    :class:`~regionedit.errors.ModelLoadError`, since no later item could succeed.
    ``dry_run`` decides and masks without generating: no inpainting model is loaded.

    Up to ``llm_concurrency`` pairs are classified at a time. Up to ``batch_size`` images of
    one generation shape share a model call; at most two chunks of ``batch_size`` items are
    held at a time (one generating, one being prepared).
    """
    if llm_concurrency < 1 or batch_size < 1:
        raise SettingsError(
            f"llm_concurrency and batch_size must be at least 1, got {llm_concurrency} and "
            f"{batch_size}."
        )
    batch = [as_batch_item(value, defaults) for value in items]
    decisions = classify_pairs(
        editor, batch, on_unidentified=on_unidentified, llm_concurrency=llm_concurrency,
        load_inpainter=not dry_run,
    )
    yield from edit_decided(
        editor, batch, decisions, on_unidentified=on_unidentified, dry_run=dry_run,
        batch_size=batch_size,
    )


#: what :func:`classify_pairs` gives per (source, target) pair: the decision, or why there is none
PairDecisions = dict[tuple[str, str], Union["Decision", Exception]]


def classify_pairs(
    editor: "Editor",
    items: Sequence[BatchItem],
    *,
    on_unidentified: BatchPolicy = "error",
    llm_concurrency: int = 8,
    load_inpainter: bool = False,
) -> PairDecisions:
    """Decide the region of every distinct (source, target) pair of ``items`` that do not set
    their own region: one classifier call per pair, up to ``llm_concurrency`` at a time. A pair
    the classifier fails on (or, under ``on_unidentified`` "error" or "skip", cannot decide)
    gets its exception, which its items fail (or are skipped) with in :func:`edit_decided`.
    ``load_inpainter`` loads the inpainting model meanwhile.
    """
    decide_policy = "error" if on_unidentified == "skip" else on_unidentified
    with ThreadPoolExecutor(llm_concurrency, thread_name_prefix="regionedit-classify") as pool:
        if load_inpainter:
            # seconds for real weights: loaded while the descriptions are classified
            pool.submit(_load_inpainter, editor)
        pairs = dict.fromkeys((i.source, i.target) for i in items if i.settings.region is None)
        pending = {
            pair: pool.submit(editor.decide, *pair, on_unidentified=decide_policy)
            for pair in pairs
        }
        return {pair: _outcome(future) for pair, future in pending.items()}


def edit_decided(
    editor: "Editor",
    items: Sequence[BatchItem],
    decisions: PairDecisions,
    *,
    on_unidentified: BatchPolicy = "error",
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[ItemResult]:
    """:func:`edit_many` after :func:`classify_pairs`: ``items`` (complete, as
    :func:`as_batch_item` makes them) edited with the ``decisions`` made for their pairs, one
    :class:`ItemResult` per item in input order. ModelLoadError is raised."""
    batch = list(items)

    def prepare(start: int) -> list[Union[ItemResult, "PreparedEdit"]]:
        return [
            _prepare(editor, index, batch[index], decisions, on_unidentified, dry_run)
            for index in range(start, min(start + batch_size, len(batch)))
        ]

    with ThreadPoolExecutor(1, thread_name_prefix="regionedit-prepare") as reader:
        ahead = reader.submit(prepare, 0) if batch else None
        for start in range(0, len(batch), batch_size):
            assert ahead is not None
            chunk = ahead.result()  # a ModelLoadError raised while preparing ends the run here
            if start + batch_size < len(batch):
                ahead = reader.submit(prepare, start + batch_size)
            yield from _generate_chunk(editor, start, batch, chunk, batch_size)


def as_batch_item(value: BatchItemLike, defaults: Mapping[str, Any]) -> BatchItem:
    """``value`` as a :class:`BatchItem` with ``defaults`` filled in (an item's own settings
    win); SettingsError if bad."""
    try:
        if isinstance(value, BatchItem):
            own = value.settings.model_dump(exclude_unset=True)
            settings = EditSettings.model_validate({**defaults, **own})
            return value.model_copy(update={"settings": settings})
        if isinstance(value, tuple):
            image, source, target = value
            value = {"image": image, "source": source, "target": target}
        return BatchItem.from_row(value, defaults)
    except ValidationError as exc:
        raise SettingsError(settings_problem(exc)) from None
    except ValueError as exc:
        raise SettingsError(f"Bad batch item: {exc}.") from None


def _load_inpainter(editor: "Editor") -> None:
    """Load the inpainting model ahead of its first use when it is on this machine (a model
    still to download is announced, or refused, with the other models the first item needs);
    a failure is left for that use to report."""
    try:
        pending = getattr(editor.inpainter, "pending_download", None)
        if callable(pending) and pending() is not None:
            return
        editor.inpainter.load()
    except Exception:
        log.debug("loading the inpainting model ahead of time failed", exc_info=True)


def _outcome(future: Future) -> Union["Decision", Exception]:
    try:
        return future.result()
    except Exception as exc:  # the items of this pair fail with it; the others go on
        return exc


def _prepare(
    editor: "Editor",
    index: int,
    item: BatchItem,
    decisions: PairDecisions,
    on_unidentified: BatchPolicy,
    dry_run: bool,
) -> Union[ItemResult, "PreparedEdit"]:
    """Load, decide and mask one item: its PreparedEdit, or (dry run, failure, skipped) its
    result. ModelLoadError is raised."""
    decision = None if item.settings.region else decisions.get((item.source, item.target))
    try:
        if isinstance(decision, Exception):
            raise decision
        if not dry_run:
            return editor.prepare(item.image, item.settings, decision=decision)
        settings = item.settings
        timings = StageTimings()
        with timings.measure("load"):
            loaded = editor.load(item.image)
        region, classification = decision or editor.decide(
            settings.source, settings.target, region=settings.region
        )
        with timings.measure("segment"):
            mask = editor.mask(
                loaded, region, grow=settings.grow, feather=settings.feather,
                extent=settings.extent, shape=classification.shape,
            )
        return ItemResult(
            index=index, item=item, status="ok", region=region, classification=classification,
            mask=mask, loaded=loaded, timings=timings,
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # one bad item must not end a batch of thousands
        return unprepared_result(index, item, exc, on_unidentified)


def unprepared_result(
    index: int, item: BatchItem, exc: Exception, on_unidentified: BatchPolicy
) -> ItemResult:
    """The result of an item whose preparation (loading, deciding, masking) raised ``exc``:
    skipped for an undecidable region under ``on_unidentified="skip"``, otherwise failed in
    the stage ``exc`` comes from."""
    if not isinstance(exc, UnidentifiedRegionError):
        return _failed(index, item, exc, _stage_of(exc))
    if on_unidentified != "skip":
        return _failed(index, item, exc, "classify")
    undecided = Classification(label="unidentified", reason=exc.reason, source="policy")
    return ItemResult(
        index=index, item=item, status="skipped", classification=undecided, error=exc,
        stage="classify",
    )


def _generate_chunk(
    editor: "Editor",
    start: int,
    batch: list[BatchItem],
    chunk: list[Union[ItemResult, "PreparedEdit"]],
    batch_size: int,
) -> list[ItemResult]:
    """Generate and composite a prepared chunk, its items grouped by generation shape; the
    chunk's results in input order."""
    results: dict[int, ItemResult] = {}
    groups: dict[Any, list[int]] = {}
    for index, prepared in enumerate(chunk, start=start):
        if isinstance(prepared, ItemResult):
            results[index] = prepared
        else:
            groups.setdefault(editor.generation_key(prepared), []).append(index)
    for members in groups.values():
        jobs = [chunk[index - start] for index in members]
        generated = editor.generate(jobs, batch_size=batch_size)
        for index, job, images in zip(members, jobs, generated):
            results[index] = _composited(editor, index, batch[index], job, images)
    return [results[index] for index in range(start, start + len(chunk))]


def _composited(
    editor: "Editor", index: int, item: BatchItem, job: "PreparedEdit", generated: Any
) -> ItemResult:
    if isinstance(generated, Exception):
        return _failed(index, item, generated, "inpaint", job.timings)
    try:
        result = editor.composite(job, generated)
    except Exception as exc:
        return _failed(index, item, exc, "inpaint", job.timings)
    return ItemResult(
        index=index, item=item, status="ok", region=job.region,
        classification=job.classification, result=result, mask=job.mask, loaded=job.loaded,
        timings=result.timings,
    )


def _stage_of(exc: Exception) -> Stage:
    """The stage an exception raised while preparing an item comes from."""
    if isinstance(exc, ImageInputError):
        return "load"
    if isinstance(exc, (ClassifierError, DescriptionError, SettingsError)):
        return "classify"
    return "segment"


def _failed(
    index: int, item: BatchItem, exc: Exception, stage: Stage,
    timings: Optional[StageTimings] = None,
) -> ItemResult:
    log.debug("item %d (%s) failed in %s", index, item.image, stage, exc_info=exc)
    return ItemResult(
        index=index, item=item, status="failed", error=exc, stage=stage,
        timings=timings or StageTimings(),
    )
