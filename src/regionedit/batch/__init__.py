"""Batch editing: a folder of images or a manifest of edits, in one run that can be resumed.

Three layers, each usable on its own:

* :func:`edit_many` (also ``Editor.edit_many``, in :mod:`.pipeline`) edits many images with one
  editor and writes nothing: one :class:`ItemResult` per item, in input order; a failing item is
  a result, not an exception.
* :func:`plan_folder` / :func:`plan_manifest` (:mod:`.plan`) decide what to edit and where each
  result goes, before any model loads.
* :func:`run_batch` (:mod:`.run`) runs a plan into an output folder: results written
  atomically, ``run.jsonl`` journalled, finished items recognised when the run is repeated.
  :func:`run_batch_on_ray` (:mod:`.on_ray`, ``pip install 'regionedit[ray]'``) runs it on a Ray
  cluster, with the same files and journal.

``regionedit batch`` is the command-line face of the three (:mod:`regionedit.cli`).
"""

from .pipeline import (
    DEFAULT_BATCH_SIZE,
    BatchItem,
    BatchItemLike,
    BatchPolicy,
    ItemResult,
    edit_many,
)
from .plan import BatchOptions, BatchPlan, PlannedItem, RejectedRow, plan_folder, plan_manifest
from .run import RUN_LOG, BatchSummary, RunJournal, run_batch
from .on_ray import run_batch_on_ray  # imports Ray only when called

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BatchItem",
    "BatchItemLike",
    "BatchPolicy",
    "ItemResult",
    "edit_many",
    "BatchOptions",
    "BatchPlan",
    "PlannedItem",
    "RejectedRow",
    "plan_folder",
    "plan_manifest",
    "RUN_LOG",
    "BatchSummary",
    "RunJournal",
    "run_batch",
    "run_batch_on_ray",
]
