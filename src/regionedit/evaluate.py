"""Measure a region classifier on labelled description pairs.

A labelled file is JSON Lines, one pair a line::

    {"source": "a dog on grass", "target": "a dog on a beach", "label": "background"}

(``id`` and ``shape`` optional, other fields ignored). :func:`evaluate` runs a classifier over
the pairs, in a thread pool since an LLM answers slowly but many at once, and returns an
:class:`EvalReport`: accuracy, macro-F1, per-class precision / recall / F1, the confusion matrix
and the mistakes; where pairs carry a ``shape`` ("keep" or "change": whether a foreground edit
keeps the subject's outline), also how often the classifier's shape is right.

How failures count: a pair whose ``classify`` raises a :class:`~regionedit.errors.RegionEditError`
(no key, server down, empty description) is predicted ``"error"``. It counts as wrong: it is in
``n``, lowers the accuracy and the recall of its true label, and is listed in ``mistakes`` with
the message; it is no prediction of any label, so no label's precision changes and the confusion
matrix (true label x predicted label) leaves it out: ``errors`` counts those pairs. For the
shape, such a pair counts as a wrong shape.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from . import errors
from .errors import LabelledDataError, RegionEditError
from .types import Label, Shape

if TYPE_CHECKING:  # pragma: no cover
    from .classify import Classifier

__all__ = [
    "LABELS",
    "LabelledPair",
    "LabelledDataError",
    "ClassMetrics",
    "Mistake",
    "EvalReport",
    "load_pairs",
    "evaluate",
    "confusion_matrix",
    "precision_recall_f1",
    "macro_f1",
    "shape_accuracy",
    "format_report",
    "run_eval_cli",
]

#: the fixed order of labels in every table and matrix
LABELS: tuple[Label, ...] = ("foreground", "background", "unidentified")

Prediction = Union[Label, Literal["error"]]


class LabelledPair(BaseModel):
    """One line of a labelled file: the two descriptions and the region the edit must change."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    source: str
    target: str
    label: Label
    id: Optional[str] = None
    #: whether the edit keeps the subject's outline ("keep" for every background pair)
    shape: Optional[Shape] = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # ids are often numbers in hand-made files; they are only ever shown
        return str(value) if isinstance(value, int) else value


class ClassMetrics(BaseModel):
    """Precision, recall and F1 of one label; ``support`` is how many pairs truly have it."""

    precision: float
    recall: float
    f1: float
    support: int


class Mistake(BaseModel):
    """A pair the classifier got wrong, or could not answer (``predicted == "error"``)."""

    id: Optional[str] = None
    source: str
    target: str
    label: Label
    predicted: Prediction
    #: the classifier's reason, or the error message
    reason: str
    #: the class of the error raised, for ``predicted == "error"`` (e.g. "ClassifierError")
    error: Optional[str] = None
    #: the labelled and the predicted shape, in :attr:`EvalReport.shape_mistakes`
    shape: Optional[Shape] = None
    predicted_shape: Optional[Union[Shape, Literal["error"]]] = None


class ShapeMetrics(BaseModel):
    """How often the predicted shape matches the labelled one: on every pair that has a
    ``shape``, and on those labelled foreground (where the shape decides the mask)."""

    accuracy: float
    n: int
    foreground_accuracy: Optional[float] = None
    foreground_n: int = 0


class EvalReport(BaseModel):
    """The result of :func:`evaluate`. ``model_dump()`` is JSON-ready."""

    classifier: str
    #: the version the classifier reported (e.g. "offline-v1", or the LLM model and prompt)
    classifier_version: str = ""
    n: int
    accuracy: float
    macro_f1: float
    #: keyed by label, in :data:`LABELS` order
    per_class: dict[str, ClassMetrics]
    labels: list[str] = list(LABELS)
    #: ``confusion[i][j]``: pairs of true label ``labels[i]`` predicted ``labels[j]``
    confusion: list[list[int]]
    #: pairs whose classify() raised (they are in ``mistakes``, not in ``confusion``)
    errors: int
    mistakes: list[Mistake]
    #: None when no pair of the file has a ``shape``
    shape: Optional[ShapeMetrics] = None
    #: pairs with a ``shape`` whose predicted shape differs (the label may be right)
    shape_mistakes: list[Mistake] = []
    elapsed_s: float
    pairs_per_s: float
    concurrency: int


# -- reading -----------------------------------------------------------------------------------


def load_pairs(path: Union[str, os.PathLike[str]]) -> list[LabelledPair]:
    """Read a JSON Lines file of labelled pairs; blank lines are skipped.

    Raises :class:`LabelledDataError` (a ``ValueError``) naming the file and line of the first
    bad line, or when the file cannot be read or holds no pair.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelledDataError(
            f"Cannot read the labelled pairs file {str(path)!r}: {exc}. Check the path; the file "
            "must be UTF-8 JSON Lines."
        ) from exc
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelledDataError(
                f"{where}: not valid JSON ({exc.msg}). Each line must be one JSON object like "
                '{"source": "...", "target": "...", "label": "background"}.'
            ) from exc
        if not isinstance(record, dict):
            raise LabelledDataError(
                f"{where}: expected a JSON object with source, target and label, "
                f"got {type(record).__name__}."
            )
        try:
            pairs.append(LabelledPair.model_validate(record))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors()
            )
            raise LabelledDataError(
                f"{where}: {problems}. A line needs text fields source and target and a label "
                f"among {', '.join(LABELS)}."
            ) from exc
    if not pairs:
        raise LabelledDataError(f"{path} holds no labelled pair. Add one JSON object a line.")
    return pairs


# -- metric arithmetic (pure functions) --------------------------------------------------------


def confusion_matrix(
    true: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = LABELS
) -> list[list[int]]:
    """Counts of (true, predicted) pairs: rows are true labels, columns predicted labels.

    Predictions outside ``labels`` (such as ``"error"``) appear in no column.
    """
    _same_length(true, predicted)
    index = {label: k for k, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(true, predicted):
        if t in index and p in index:
            matrix[index[t]][index[p]] += 1
    return matrix


def precision_recall_f1(
    true: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = LABELS
) -> dict[str, ClassMetrics]:
    """Per-label precision, recall, F1 and support.

    A division by zero gives 0: a label never predicted has precision 0, a label no pair has
    recall 0, and F1 is 0 when precision and recall both are. A prediction outside ``labels``
    (``"error"``) is wrong for its pair's true label and counts for no label's precision.
    """
    _same_length(true, predicted)
    metrics = {}
    for label in labels:
        hits = sum(1 for t, p in zip(true, predicted) if t == label and p == label)
        predicted_as = sum(1 for p in predicted if p == label)
        support = sum(1 for t in true if t == label)
        precision = hits / predicted_as if predicted_as else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics[label] = ClassMetrics(precision=precision, recall=recall, f1=f1, support=support)
    return metrics


def macro_f1(
    true: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = LABELS
) -> float:
    """The unweighted mean of the F1 of each label that occurs, truly or as a prediction.

    A label absent from both (a file with no style edit, a classifier that never says
    "unidentified" on it) is left out rather than averaged in as 0, as scikit-learn does.
    """
    per_class = precision_recall_f1(true, predicted, labels)
    present = [label for label in labels if label in set(true) | set(predicted)]
    if not present:
        return 0.0
    return sum(per_class[label].f1 for label in present) / len(present)


def shape_accuracy(true: Sequence[Optional[str]], predicted: Sequence[str]) -> Optional[float]:
    """The share of pairs with a labelled shape (not None) whose predicted shape matches it;
    None when no pair has one."""
    _same_length(true, predicted)  # type: ignore[arg-type]
    scored = [(t, p) for t, p in zip(true, predicted) if t is not None]
    if not scored:
        return None
    return sum(1 for t, p in scored if t == p) / len(scored)


def _same_length(true: Sequence[str], predicted: Sequence[str]) -> None:
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predictions")


# -- running -----------------------------------------------------------------------------------


def evaluate(
    classifier: "Classifier", pairs: Sequence[LabelledPair], *, concurrency: int = 8
) -> EvalReport:
    """Classify every pair and measure the answers against the labels.

    ``concurrency`` > 1 runs that many ``classify`` calls at once in threads (the classifier must
    be thread-safe; both of regionedit's are). A pair whose ``classify`` raises a
    ``RegionEditError`` is predicted ``"error"`` and counts as wrong (see the module docstring);
    any other exception is a bug and propagates.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not pairs:
        raise LabelledDataError("No labelled pair to evaluate. Pass at least one pair.")

    def answer(pair: LabelledPair) -> tuple[Prediction, str, str, str]:
        """(prediction, reason or error message, classifier version or error class, shape)"""
        try:
            result = classifier.classify(pair.source, pair.target)
        except RegionEditError as exc:
            return "error", str(exc), type(exc).__name__, "error"
        return result.label, result.reason, result.classifier, result.shape

    started = time.perf_counter()
    if concurrency == 1:
        answers = [answer(pair) for pair in pairs]
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            answers = list(pool.map(answer, pairs))
    elapsed = time.perf_counter() - started

    true = [pair.label for pair in pairs]
    predicted = [prediction for prediction, _, _, _ in answers]
    hits = sum(1 for t, p in zip(true, predicted) if t == p)

    def mistake(pair: LabelledPair, prediction: Prediction, reason: str, extra: str, shape: str):
        return Mistake(
            id=pair.id,
            source=pair.source,
            target=pair.target,
            label=pair.label,
            predicted=prediction,
            reason=reason,
            error=extra if prediction == "error" else None,
            shape=pair.shape,
            predicted_shape=shape,  # type: ignore[arg-type]
        )

    return EvalReport(
        classifier=getattr(classifier, "name", type(classifier).__name__),
        classifier_version=next((v for p, _, v, _ in answers if p != "error" and v), ""),
        n=len(pairs),
        accuracy=hits / len(pairs),
        macro_f1=macro_f1(true, predicted),
        per_class=precision_recall_f1(true, predicted),
        confusion=confusion_matrix(true, predicted),
        errors=predicted.count("error"),
        mistakes=[
            mistake(pair, *answer)
            for pair, answer in zip(pairs, answers)
            if answer[0] != pair.label
        ],
        shape=_shape_metrics(pairs, [shape for _, _, _, shape in answers]),
        shape_mistakes=[
            mistake(pair, *answer)
            for pair, answer in zip(pairs, answers)
            if pair.shape is not None and answer[3] != pair.shape
        ],
        elapsed_s=elapsed,
        pairs_per_s=len(pairs) / max(elapsed, 1e-9),  # finite, so the JSON stays valid
        concurrency=concurrency,
    )


def _shape_metrics(pairs: Sequence[LabelledPair], shapes: Sequence[str]) -> Optional[ShapeMetrics]:
    overall = shape_accuracy([p.shape for p in pairs], shapes)
    if overall is None:
        return None
    foreground = [(p.shape, s) for p, s in zip(pairs, shapes) if p.label == "foreground"]
    return ShapeMetrics(
        accuracy=overall,
        n=sum(1 for p in pairs if p.shape is not None),
        foreground_accuracy=shape_accuracy([t for t, _ in foreground], [s for _, s in foreground]),
        foreground_n=sum(1 for t, _ in foreground if t is not None),
    )


# -- showing -----------------------------------------------------------------------------------


def format_report(report: EvalReport, *, show_errors: bool = False) -> str:
    """A plain-text table of the report; ``show_errors`` adds one line per mistake."""
    version = f" ({report.classifier_version})" if report.classifier_version else ""
    lines = [
        f"classifier {report.classifier}{version}: {report.n} pairs in "
        f"{report.elapsed_s:.2f} s ({report.pairs_per_s:.0f} pairs/s, "
        f"concurrency {report.concurrency})",
        f"accuracy {report.accuracy:.3f}   macro-F1 {report.macro_f1:.3f}   "
        f"errors {report.errors}",
        "",
        f"{'label':<14}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}",
    ]
    for label in report.labels:
        m = report.per_class[label]
        lines.append(
            f"{label:<14}{m.precision:>10.3f}{m.recall:>8.3f}{m.f1:>8.3f}{m.support:>9d}"
        )
    lines += ["", "confusion (rows: true label, columns: predicted)"]
    lines.append(" " * 14 + "".join(f"{label:>14}" for label in report.labels))
    for label, row in zip(report.labels, report.confusion):
        lines.append(f"{label:<14}" + "".join(f"{count:>14d}" for count in row))
    shape = report.shape
    if shape is not None:
        line = f"shape accuracy {shape.accuracy:.3f} on {shape.n} pairs"
        if shape.foreground_accuracy is not None:
            line += (
                f" (pairs labelled foreground: {shape.foreground_accuracy:.3f} on "
                f"{shape.foreground_n})"
            )
        lines += ["", line]
    if show_errors:
        lines += ["", f"mistakes ({len(report.mistakes)})"]
        for m in report.mistakes:
            tag = f"[{m.id}] " if m.id else ""
            lines.append(
                f"{tag}{m.label} -> {m.predicted}: {m.source!r} -> {m.target!r} ({m.reason})"
            )
        if shape is not None:
            lines += ["", f"shape mistakes ({len(report.shape_mistakes)})"]
            for m in report.shape_mistakes:
                tag = f"[{m.id}] " if m.id else ""
                lines.append(
                    f"{tag}{m.label} {m.shape} -> {m.predicted} {m.predicted_shape}: "
                    f"{m.source!r} -> {m.target!r}"
                )
    elif report.mistakes or report.shape_mistakes:
        counts = f"{len(report.mistakes)} mistakes"
        if shape is not None:
            counts += f", {len(report.shape_mistakes)} shape mistakes"
        lines += ["", f"{counts} (--show-errors lists them)"]
    return "\n".join(lines)


def run_eval_cli(
    path: Union[str, os.PathLike[str]],
    classifier_name: str,
    *,
    json_out: bool = False,
    show_errors: bool = False,
    concurrency: int = 8,
    classifier_kwargs: Optional[dict[str, Any]] = None,
) -> tuple[str, int]:
    """What ``regionedit eval-classifier`` prints, and its exit status.

    The text is the table of :func:`format_report`; with ``json_out`` its last line is the report
    as one JSON object. The status is 0 once any pair was classified; when every pair failed it
    is the exit code of that error's class, so a missing key or a dead server does not pass for
    a score of 0. Raises :class:`LabelledDataError` for a bad file, and what
    ``get_classifier(classifier_name, **classifier_kwargs)`` raises.
    """
    from .classify import get_classifier

    pairs = load_pairs(path)
    classifier = get_classifier(classifier_name, **(classifier_kwargs or {}))
    report = evaluate(classifier, pairs, concurrency=concurrency)
    text = format_report(report, show_errors=show_errors)
    status = 0
    if report.errors == report.n:
        first = report.mistakes[0]
        text += f"\n\nevery pair failed; the first error: {first.reason}"
        status = getattr(errors, first.error or "", RegionEditError).exit_code
    if json_out:
        text += "\n" + json.dumps(report.model_dump(mode="json"))
    return text, status
