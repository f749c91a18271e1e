"""Batch runs on a Ray cluster: the plan, files and ``run.jsonl`` of :func:`run_batch`, the
edits spread over Ray workers.

The driver (the process that calls :func:`run_batch_on_ray`) keeps the run's bookkeeping
(:func:`~regionedit.batch.run.run_plan`: resume keys, the journal, the summary, the progress
bar) and classifies every distinct description pair once
(:func:`~regionedit.batch.pipeline.classify_pairs`). The items then flow through a Ray Data
dataset: ``map_batches`` over :class:`EditWorker`, a callable class holding one
:class:`~regionedit.editor.Editor` per actor, so that each actor loads its models once. A worker
edits its items (:func:`~regionedit.batch.pipeline.edit_decided`), writes their files
atomically into the output folder, which every node must reach at the same path, and returns
their ``run.jsonl`` lines; the driver appends them.

Faults: Ray restarts a worker process that dies and runs its unfinished model batches again
(their files are rewritten atomically; their lines reach the driver once). A model batch (one
item, at the default batch size) whose worker died :data:`MAX_ATTEMPTS` times fails, instead of
being retried for ever; the other items go on.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from ..errors import ClusterError, ModelLoadError, RegionEditError, SettingsError
from ..types import Classification
from .pipeline import (
    BatchItem,
    ItemResult,
    as_batch_item,
    classify_pairs,
    edit_decided,
    unprepared_result,
)
from .plan import BatchOptions, BatchPlan, PlannedItem
from .run import BatchSummary, Record, Todo, run_plan, write_item

if TYPE_CHECKING:  # pragma: no cover
    from ..editor import Decision, Editor

__all__ = ["MAX_ATTEMPTS", "FORWARDED_ENV", "EditWorker", "require_ray", "run_batch_on_ray"]

log = logging.getLogger("regionedit")

#: times a model batch is started on a worker before its items fail (default): a worker process
#: that dies on the same item again and again (a crash in a decoder or a model, memory) must not
#: stall the run
MAX_ATTEMPTS = 3
#: variables of the driver's environment passed on to the workers when set: model caches and
#: offline switches (paths must be valid on every node)
FORWARDED_ENV = (
    "U2NET_HOME",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "REGIONEDIT_MAX_PIXELS",
)
#: Ray Data blocks of a run at most: one per model batch, up to this many (each costs the driver
#: a little bookkeeping)
_MAX_BLOCKS = 10_000

Workers = Union[int, tuple[int, int]]


def run_batch_on_ray(
    make_editor: Callable[[], "Editor"],
    plan: BatchPlan,
    options: BatchOptions,
    *,
    address: Optional[str] = None,
    workers: Workers = 1,
    gpus_per_worker: float = 0,
    cpus_per_worker: Optional[float] = None,
    runtime_env: Optional[Mapping[str, Any]] = None,
    max_attempts: int = MAX_ATTEMPTS,
    progress: bool = False,
) -> BatchSummary:
    """Run ``plan`` on Ray: the same files, ``run.jsonl`` and summary as :func:`run_batch`.

    ``make_editor`` builds the :class:`~regionedit.editor.Editor`; it is called once on the
    driver (to classify, and for the resume key) and once in every worker, so it is sent to the
    workers: a module-level function or ``functools.partial(Editor, inpaint_model=...)``. Model
    paths it names must exist on every node.

    ``address``: ``None`` joins the cluster in ``RAY_ADDRESS`` if set, else starts a Ray on this
    machine for the run; ``"auto"`` joins the cluster this machine belongs to; ``"host:6379"``
    joins the one whose head node that is. A Ray already initialised in this process is used as
    it is. ``workers`` is the number of actors, or ``(min, max)`` for a pool that grows with the
    cluster; each reserves ``gpus_per_worker`` GPUs (a fraction shares one GPU between several
    workers) and ``cpus_per_worker`` CPUs (default: Ray's, one). ``runtime_env`` is Ray's runtime
    environment for the workers; :data:`FORWARDED_ENV` variables set here are added to its
    ``env_vars``. An item whose worker process died ``max_attempts`` times editing it (with
    ``options.batch_size`` above 1: editing its model batch) fails, with
    :class:`~regionedit.errors.ClusterError` in its ``run.jsonl`` line; Ray restarts the
    worker, and the other items go on.

    Items finished by an earlier run, local or on Ray, with the same input and settings are not
    redone. Raises :class:`~regionedit.errors.SettingsError` (Ray not installed, bad
    ``workers``), :class:`~regionedit.errors.ClusterError` (no cluster at ``address``, the run
    lost on the cluster) and what :func:`run_batch` raises.
    """
    ray = require_ray("run_batch_on_ray")
    sizes = _pool_sizes(workers)
    if gpus_per_worker < 0 or (cpus_per_worker is not None and cpus_per_worker <= 0):
        raise SettingsError(
            "gpus_per_worker must be at least 0 and cpus_per_worker more than 0, got "
            f"{gpus_per_worker} and {cpus_per_worker}."
        )
    if max_attempts < 1:
        raise SettingsError(f"max_attempts must be at least 1, got {max_attempts}.")
    env = dict((runtime_env or {}).get("env_vars", {}))
    for name in FORWARDED_ENV:
        if name in os.environ:
            env.setdefault(name, os.environ[name])
    workers_env = {**(runtime_env or {}), "env_vars": env}
    editor = make_editor()

    def execute(todo: list[Todo], record: Record) -> None:
        rows = _decide_on_driver(editor, todo, options, record)
        if not rows:
            return  # nothing left for a worker: no cluster needed
        with _connected(ray, address), _quiet_data(ray):
            dataset = _dataset(
                ray, rows, options, make_editor, _classifier_name(editor, todo),
                sizes=sizes, gpus=gpus_per_worker, cpus=cpus_per_worker,
                runtime_env=workers_env, max_attempts=max_attempts,
            )
            _record_lines(dataset.iter_rows(), rows, record)

    return run_plan(plan, options, editor.config(), execute, progress=progress)


# -- on the driver -------------------------------------------------------------------------------


def require_ray(caller: str) -> Any:
    """The ``ray`` module, or SettingsError saying what to install (``caller`` names the
    flag or function that needs it)."""
    try:
        import ray
        import ray.data  # noqa: F401  # the extra, not only ray's core
    except ImportError:
        raise SettingsError(
            f"{caller} needs Ray Data: pip install 'regionedit[ray]' "
            "(or pip install 'ray[data]')."
        ) from None
    return ray


def _pool_sizes(workers: Workers) -> tuple[int, int]:
    """(min, max) actors for ``workers``: a fixed number, or (min, max)."""
    sizes = workers if isinstance(workers, tuple) else (workers, workers)
    if len(sizes) != 2 or not all(isinstance(n, int) for n in sizes) or not (
        1 <= sizes[0] <= sizes[1]
    ):
        raise SettingsError(
            "workers must be a number of workers of at least 1, or (min, max) with "
            f"1 <= min <= max, not {workers!r}."
        )
    return sizes


def _decide_on_driver(
    editor: "Editor", todo: list[Todo], options: BatchOptions, record: Record
) -> list[dict[str, Any]]:
    """Classify the distinct pairs of ``todo`` here, once; record the items that fail or are
    skipped for want of a decision, and return the others as dataset rows, one per model batch.

    The batches are the local run's: ``batch_size`` consecutive items of ``todo``, less those
    recorded here. So items share model calls as they do locally, and get the same pixels
    whatever the batch size.
    """
    items = [as_batch_item(planned.item, options.edit) for planned, _ in todo]
    decisions = classify_pairs(
        editor, items, on_unidentified=options.on_unidentified,
        llm_concurrency=options.llm_concurrency,
    )
    rows = []
    for start in range(0, len(todo), options.batch_size):
        works = []
        for index in range(start, min(start + options.batch_size, len(todo))):
            (planned, entry), item = todo[index], items[index]
            decision = None if item.settings.region else decisions.get((item.source, item.target))
            if isinstance(decision, Exception):
                # exceptions do not travel well between processes: these items end here
                outcome = unprepared_result(index, item, decision, options.on_unidentified)
                record(write_item(planned, entry, outcome, options))
                continue
            # Paths travel as given: relative ones are taken from the driver's folder (see
            # EditWorker), so that sidecars record the paths a local run records.
            works.append({
                "planned": planned.model_dump(mode="json"),
                "entry": entry,
                "item": item.model_dump(mode="json"),
                "decision": (
                    None if decision is None
                    else [decision[0], decision[1].model_dump(mode="json")]
                ),
            })
        if works:
            rows.append({"batch": start // options.batch_size, "works": json.dumps(works)})
    return rows


def _classifier_name(editor: "Editor", todo: list[Todo]) -> Optional[str]:
    """The classifier a local run would name in its sidecars: the one that decided the pairs
    (workers decide nothing, and so build none)."""
    if all(planned.item.settings.region for planned, _ in todo):
        return None
    return editor.classifier.name


class _connected:
    """Ray initialised for the run: joined or started here, and shut down after it; a Ray the
    caller initialised is used as it is and left running."""

    def __init__(self, ray: Any, address: Optional[str]) -> None:
        self.ray = ray
        self.address = address
        self.owned = False

    def __enter__(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address is None:
            kwargs: dict[str, Any] = dict(address="local", include_dashboard=False)
        else:
            if address not in ("auto", "local"):
                _check_reachable(address)
            kwargs = dict(address=address)
        try:
            ray.init(logging_level=logging.WARNING, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(
                f"Cannot join the Ray cluster at {address}: {_first_line(exc)}. Start one with "
                "`ray start --head`, or check --ray (address= in Python) or RAY_ADDRESS."
            ) from None
        self.owned = True

    def __exit__(self, *exc_info: Any) -> None:
        if self.owned:
            self.ray.shutdown()


class _quiet_data:
    """Ray Data without its progress bars and its notes about them, for the run: the driver
    shows its own progress bar, counted from ``run.jsonl``. Its warnings and errors still show."""

    def __init__(self, ray: Any) -> None:
        self.context = ray.data.DataContext.get_current()
        self.logger = logging.getLogger("ray.data")
        self.saved = (self.context.enable_progress_bars, self.logger.level)

    def __enter__(self) -> None:
        self.context.enable_progress_bars = False
        # "progress bars disabled" (a warning) and "execution finished" (info): said by us
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc_info: Any) -> None:
        self.context.enable_progress_bars, level = self.saved
        self.logger.setLevel(level)


def _check_reachable(address: str) -> None:
    """Fail in seconds on an address nothing answers at (ray.init waits minutes for one)."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=10):
            pass
    except ValueError:
        raise SettingsError(
            f"The Ray address {address!r} (--ray, or address= in Python, or RAY_ADDRESS) must "
            "be auto or HOST:PORT."
        ) from None
    except OSError as exc:
        raise ClusterError(
            f"No Ray cluster answers at {address} ({exc.strerror or exc}). Start one with "
            "`ray start --head` on the head node, or check --ray (address= in Python) or "
            "RAY_ADDRESS."
        ) from None


def _dataset(
    ray: Any,
    rows: list[dict[str, Any]],
    options: BatchOptions,
    make_editor: Callable[[], "Editor"],
    classifier_name: Optional[str],
    *,
    sizes: tuple[int, int],
    gpus: float,
    cpus: Optional[float],
    runtime_env: dict[str, Any],
    max_attempts: int,
) -> Any:
    """The Ray dataset of the edited model batches: per row ``batch``, ``lines`` (a JSON list
    of the items' ``run.jsonl`` lines) and ``fatal`` (why no item can be edited, or "")."""
    # A block is what a worker that dies redoes, and what reaches the driver at once: one model
    # batch, unless there are very many.
    blocks = min(_MAX_BLOCKS, len(rows))
    low, high = (min(size, blocks) for size in sizes)  # each worker loads the models: no idle ones
    pool = (
        ray.data.ActorPoolStrategy(size=low) if low == high
        else ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    )
    attempts = ray.remote(num_cpus=0)(_Attempts).remote(max_attempts)
    return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        EditWorker,
        fn_constructor_kwargs=dict(
            make_editor=make_editor,
            options=options.model_dump(mode="json"),
            classifier_name=classifier_name,
            attempts=attempts,
            cwd=os.getcwd(),
        ),
        batch_size=1,  # a row is a whole model batch already
        batch_format="numpy",
        compute=pool,
        num_gpus=gpus or None,
        num_cpus=cpus,
        runtime_env=runtime_env,
        udf_modifying_row_count=False,
    )


def _record_lines(stream: Any, rows: list[dict[str, Any]], record: Record) -> None:
    """Record each line the workers return, once, as it arrives."""
    left = {row["batch"] for row in rows}
    try:
        for row in stream:
            if row["fatal"]:
                raise ModelLoadError(row["fatal"])
            batch = int(row["batch"])
            if batch in left:  # a row comes once; this guards the journal all the same
                left.discard(batch)
                for line in json.loads(row["lines"]):
                    record(line)
    except (KeyboardInterrupt, RegionEditError):
        raise
    except Exception as exc:  # Ray's own errors, a worker's bug: the run stops, resumable
        raise ClusterError(
            f"The run on Ray stopped: {type(exc).__name__}: {_first_line(exc)}. Run the same "
            "command again to resume."
        ) from exc
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    if left:
        raise ClusterError(
            f"Ray returned no result for {len(left)} model batch(es). Run the same command "
            "again to edit their items."
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


class _Attempts:
    """A Ray actor counting the times each model batch has been started on a worker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.started: dict[int, int] = {}

    def start(self, batch: int) -> Optional[int]:
        """None if the batch may start (again), else the number of times its worker died."""
        self.started[batch] = self.started.get(batch, 0) + 1
        return None if self.started[batch] <= self.limit else self.started[batch] - 1


# -- on the workers ------------------------------------------------------------------------------


class EditWorker:
    """The callable class of the run's ``map_batches``: one per Ray actor, holding one
    :class:`~regionedit.editor.Editor`, so that each actor loads the models once."""

    def __init__(
        self,
        make_editor: Callable[[], "Editor"],
        options: dict[str, Any],
        classifier_name: Optional[str],
        attempts: Any,
        cwd: str,
    ) -> None:
        if os.path.isdir(cwd):
            # relative input and output paths mean what they mean on the driver
            os.chdir(cwd)
        self.options = BatchOptions.model_validate(options)
        self.classifier_name = classifier_name
        self.attempts = attempts
        # Its models load on first use, once: an actor restarted only to report an item that
        # killed its predecessor loads none.
        self.editor = make_editor()

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        batches = [int(b) for b in rows["batch"]]
        lines, fatal = [], []
        for batch, text in zip(batches, rows["works"]):
            works = json.loads(text)
            died = ray.get(self.attempts.start.remote(batch))
            try:
                done = [self._lost(w, died) for w in works] if died else self._edit(works)
            except ModelLoadError as exc:  # no item can be edited here: the driver stops the run
                lines.append("[]")
                fatal.append(str(exc))
            else:
                lines.append(json.dumps(done))
                fatal.append("")
        return {
            "batch": np.array(batches, dtype=np.int64),
            "lines": np.array(lines, dtype=object),
            "fatal": np.array(fatal, dtype=object),
        }

    def _edit(self, works: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Edit the items of a model batch and write their files; their lines, in order."""
        items = [BatchItem.model_validate(work["item"]) for work in works]
        decisions: dict[tuple[str, str], "Decision"] = {}
        for work, item in zip(works, items):
            if work["decision"] is not None:
                region, classification = work["decision"]
                decisions[(item.source, item.target)] = (
                    region, Classification.model_validate(classification)
                )
        options = self.options
        outcomes = edit_decided(
            self.editor, items, decisions, on_unidentified=options.on_unidentified,
            dry_run=options.dry_run, batch_size=options.batch_size,
        )
        lines = []
        for work, outcome in zip(works, outcomes):
            if outcome.result is not None:
                outcome.result.models["classifier"] = self.classifier_name
            planned = PlannedItem.model_validate(work["planned"])
            lines.append(write_item(planned, work["entry"], outcome, options))
        return lines

    def _lost(self, work: dict[str, Any], deaths: int) -> dict[str, Any]:
        """The line of an item whose worker died ``deaths`` times editing its model batch."""
        error = ClusterError(
            f"the Ray worker editing this item died {deaths} time(s) (a crash in an image "
            "decoder or a model, or out of memory); check the workers' logs, then run the same "
            "command again to retry it"
        )
        item = BatchItem.model_validate(work["item"])
        outcome = ItemResult(index=0, item=item, status="failed", error=error)
        planned = PlannedItem.model_validate(work["planned"])
        return write_item(planned, work["entry"], outcome, self.options)
