"""Running a batch plan into an output folder, and the run's journal.

:func:`run_batch` writes each result atomically (image, sidecar, mask, contact sheet) and appends
one fsynced line per finished item to ``run.jsonl`` (:class:`RunJournal`), then a summary line. A
run repeated with the same settings skips what is already finished, matched on the input's
content hash and a hash of every setting; killing a run at any moment leaves no partial file and
loses no finished item, and temporary files a killed run left are removed at start.

The bookkeeping (resume keys, the journal, the summary, the progress bar) is :func:`run_plan`,
shared by every way of editing the items: :func:`run_batch` edits them in this process,
:mod:`regionedit.batch.on_ray` on a Ray cluster.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Optional

from pydantic import BaseModel, Field

from ..errors import ImageInputError, ManifestError, OutputError
from ..types import StageTimings, output_paths
from .pipeline import ItemResult, Stage, edit_many
from .plan import BatchOptions, BatchPlan, PlannedItem, sheet_path

if TYPE_CHECKING:  # pragma: no cover
    from ..editor import Editor

__all__ = ["RUN_LOG", "BatchSummary", "RunJournal", "run_batch", "run_plan", "write_item"]

log = logging.getLogger("regionedit")

#: the run log in the output folder: one JSON object per line
RUN_LOG = "run.jsonl"
#: schema of the decision record a dry run writes instead of an edit sidecar
DRY_RUN_SCHEMA = "regionedit.dry-run/1"


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

    def execute(todo: list[Todo], record: Record) -> None:
        _edit_and_write(editor, todo, options, record)

    return run_plan(plan, options, editor.config(), execute, progress=progress)


#: an item left to do: the planned item, and its ``run.jsonl`` line so far (input, resume key)
Todo = tuple[PlannedItem, dict[str, Any]]
#: records one finished item's ``run.jsonl`` line (what :func:`write_item` returned)
Record = Callable[[dict[str, Any]], None]


def run_plan(
    plan: BatchPlan,
    options: BatchOptions,
    editor_config: dict[str, Any],
    execute: Callable[[list[Todo], Record], None],
    *,
    progress: bool = False,
) -> BatchSummary:
    """The bookkeeping of a run, whatever edits its items: :func:`run_batch` edits them in this
    process, :func:`~regionedit.batch.on_ray.run_batch_on_ray` on a Ray cluster.

    Prepares the output folder, records the rejected rows and unreadable inputs, and finds the
    items not finished by an earlier run (keyed on ``editor_config``, what
    :meth:`~regionedit.editor.Editor.config` returns). ``execute(todo, record)`` then edits those
    and writes their files, calling ``record(line)`` once per finished item, in any order; each
    line is appended to ``run.jsonl`` and counted. The summary line is appended however
    ``execute`` ends; what it raises (ModelLoadError, KeyboardInterrupt...) stops the run, is
    named in the summary's ``stopped`` and raised again.
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

    def count(entry: dict[str, Any]) -> None:
        journal.append(entry)
        status = entry["status"]
        setattr(summary, status, getattr(summary, status) + 1)
        if status == "failed":
            keys = ("input", "line", "stage", "error_type", "error")
            summary.failures.append({k: entry[k] for k in keys if entry.get(k) is not None})
        seconds = entry.get("seconds", {})
        for stage in StageTimings.model_fields:
            setattr(totals, stage, getattr(totals, stage) + seconds.get(stage, 0.0))

    for row in plan.rejected:
        entry = _entry(row.label, line=row.line)
        count({**entry, **_error_fields(ManifestError(row.error), None)})
    todo: list[Todo] = []
    for planned in plan.items:
        entry = _entry(planned.label, line=planned.line)
        entry.update(_request(planned, options))
        try:
            entry.update(_keys(planned, editor_config, options))
        except ImageInputError as exc:
            count({**entry, **_error_fields(exc, "load")})
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

    def record(entry: dict[str, Any]) -> None:
        count(entry)
        bar.set_postfix(failed=summary.failed, refresh=False)
        bar.update()

    try:
        execute(todo, record)
        # a worker killed while writing leaves a temporary file that no later write replaces
        summary.stale_temp_files_removed += _remove_stale_temp_files(options.out_dir)
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
        raise
    except Exception as exc:  # a model that cannot load, a full disk, a lost cluster
        summary.stopped = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        summary.seconds = {"total": time.perf_counter() - started, **totals.model_dump()}
        summary.finished_at = _now()
        journal.append(summary.model_dump())
    return summary


def _edit_and_write(
    editor: "Editor", todo: list[Todo], options: BatchOptions, record: Record
) -> None:
    """Edit ``todo`` in this process and write each result; lines are recorded in input order."""
    outcomes = edit_many(
        editor,
        [planned.item for planned, _ in todo],
        on_unidentified=options.on_unidentified,
        dry_run=options.dry_run,
        llm_concurrency=options.llm_concurrency,
        batch_size=options.batch_size,
        **options.edit,
    )
    # Files are written on threads of their own: encoding a large PNG takes seconds, and on
    # this thread it would hold up the next model call.
    threads = _writer_threads()
    writers = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="regionedit-write")
    writing: collections.deque[Future] = collections.deque()

    def record_written(*, keep: int) -> None:
        """Record written items in order, waiting until at most ``keep`` are unrecorded."""
        while writing and (len(writing) > keep or writing[0].done()):
            line = writing[0].result()
            writing.popleft()
            record(line)

    interrupted = False
    try:
        for (planned, entry), outcome in zip(todo, outcomes):
            writing.append(writers.submit(write_item, planned, entry, outcome, options))
            # a written item's images are freed once it is recorded: bound what waits
            record_written(keep=2 * threads)
        record_written(keep=0)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        outcomes.close()
        # Writes already started finish (each is atomic) and are recorded; after an
        # interruption the others are dropped, and the next run redoes those items.
        writers.shutdown(wait=True, cancel_futures=interrupted)
        for written in writing:
            if not written.cancelled() and written.exception() is None:
                record(written.result())


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


def _request(planned: PlannedItem, options: BatchOptions) -> dict[str, Any]:
    """What the item asked for, so that its line alone is enough to redo it (a reviewer re-runs
    a failed item from it): the input file, the planned output and the edit settings."""
    return {
        "image": str(planned.item.image),
        "output": planned.output.relative_to(options.out_dir).as_posix(),
        "settings": planned.item.settings.model_dump(mode="json"),
    }


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
        "edit": item.settings.model_dump(mode="json"),
        "on_unidentified": options.on_unidentified,
        "batch_size": options.batch_size,
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


def write_item(
    planned: PlannedItem, entry: dict[str, Any], outcome: ItemResult, options: BatchOptions
) -> dict[str, Any]:
    """Write an item's files (atomically; nothing for a failed or skipped item) and return its
    ``run.jsonl`` line: ``entry``, the line so far, completed with the outcome. A reviewer
    redoing one item from the web app writes it the same way."""
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
    from ..contact_sheet import contact_sheet
    from ..imageio import atomic_write_bytes, save_image

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
            "settings": planned.item.settings.model_dump(mode="json"),
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
        from ..score import score

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
        written["sheet"] = save_image(contact_sheet(tiles), sheet_path(output))
    return written


def _remove_stale_temp_files(folder: Path) -> int:
    """Delete the temporary files a killed run left (they are never finished results)."""
    from ..imageio import is_temp_file

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
