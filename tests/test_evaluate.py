"""Evaluation: metric arithmetic against answers computed by hand, file loading, the report."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from regionedit.errors import ClassifierError, DescriptionError
from regionedit.evaluate import (
    EvalReport,
    LabelledDataError,
    confusion_matrix,
    evaluate,
    format_report,
    load_pairs,
    macro_f1,
    precision_recall_f1,
    run_eval_cli,
    shape_accuracy,
)
from regionedit.types import Classification

# A small labelled file and what a table-driven classifier answers for each line. By hand:
#   true       fg  fg  fg  bg  bg  un
#   predicted  fg  bg  fg  bg  un  error
# confusion (rows true fg/bg/un, columns predicted fg/bg/un): [2 1 0] [0 1 1] [0 0 0]
# foreground: precision 2/2 = 1,   recall 2/3, F1 = 2*(1*2/3)/(1+2/3) = 0.8
# background: precision 1/2 = 0.5, recall 1/2, F1 = 0.5
# unidentified: precision 0/1 = 0, recall 0/1, F1 = 0
# accuracy 3/6 = 0.5; macro-F1 (0.8 + 0.5 + 0) / 3 = 0.4333...
SMALL_FILE = [
    {"id": "p1", "source": "a cat", "target": "a dog", "label": "foreground"},
    {"id": "p2", "source": "a red car", "target": "a blue car", "label": "foreground"},
    {"id": "p3", "source": "a man", "target": "a man with a hat", "label": "foreground"},
    {"id": "p4", "source": "a dog on grass", "target": "a dog on sand", "label": "background"},
    {"id": "p5", "source": "a cup on a desk", "target": "a cup on a shelf", "label": "background"},
    {"id": "p6", "source": "a photo of a fox", "target": "a sketch of a fox", "label": "unidentified"},
]
ANSWERS = {"p1": "foreground", "p2": "background", "p3": "foreground", "p4": "background",
           "p5": "unidentified", "p6": "error"}
TRUE = [row["label"] for row in SMALL_FILE]
PREDICTED = [ANSWERS[row["id"]] for row in SMALL_FILE]


class TableClassifier:
    """Answers from a table keyed by source description; "error" raises ClassifierError."""

    name = "table"

    def __init__(self, answers_by_source: dict[str, str]) -> None:
        self.answers = answers_by_source

    def classify(self, source: str, target: str) -> Classification:
        label = self.answers[source]
        if label == "error":
            raise ClassifierError("The test server is down. Try again later.", attempts=3)
        return Classification(label=label, reason=f"table says {label}", classifier="table-v0")


def table_classifier() -> TableClassifier:
    return TableClassifier({row["source"]: ANSWERS[row["id"]] for row in SMALL_FILE})


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "small.jsonl", [json.dumps(row) for row in SMALL_FILE])


# -- arithmetic --------------------------------------------------------------------------------


def test_confusion_matrix_by_hand():
    assert confusion_matrix(TRUE, PREDICTED) == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_precision_recall_f1_by_hand():
    m = precision_recall_f1(TRUE, PREDICTED)
    assert list(m) == ["foreground", "background", "unidentified"]
    assert (m["foreground"].precision, m["foreground"].recall) == (1.0, pytest.approx(2 / 3))
    assert m["foreground"].f1 == pytest.approx(0.8)
    assert (m["background"].precision, m["background"].recall, m["background"].f1) == (
        0.5, 0.5, 0.5
    )
    assert (m["unidentified"].precision, m["unidentified"].recall, m["unidentified"].f1) == (
        0.0, 0.0, 0.0
    )
    assert [m[label].support for label in m] == [3, 2, 1]


def test_macro_f1_by_hand():
    assert macro_f1(TRUE, PREDICTED) == pytest.approx((0.8 + 0.5 + 0.0) / 3)


def test_a_label_never_predicted_has_precision_zero():
    true, predicted = ["foreground", "background"], ["foreground", "foreground"]
    m = precision_recall_f1(true, predicted)
    assert (m["background"].precision, m["background"].recall, m["background"].f1) == (0, 0, 0)
    assert m["foreground"].precision == 0.5 and m["foreground"].recall == 1.0
    # "unidentified" occurs nowhere, so it is not averaged in: (2/3 + 0) / 2
    assert macro_f1(true, predicted) == pytest.approx(1 / 3)


def test_metric_inputs_must_match_in_length():
    with pytest.raises(ValueError, match="2 true labels but 1 predictions"):
        confusion_matrix(["foreground", "background"], ["foreground"])


# -- loading -----------------------------------------------------------------------------------


def test_load_pairs_reads_ids_and_ignores_extra_fields(tmp_path):
    path = write_lines(
        tmp_path / "pairs.jsonl",
        [
            '{"source": "a cat", "target": "a dog", "label": "foreground", "note": "x", "n": 3}',
            "",
            '{"id": 17, "source": "a", "target": "b", "label": "unidentified"}',
        ],
    )
    pairs = load_pairs(path)
    assert [(p.id, p.label) for p in pairs] == [(None, "foreground"), ("17", "unidentified")]
    assert pairs[0].source == "a cat" and pairs[0].target == "a dog"


GOOD = '{"source": "a", "target": "b", "label": "background"}'


@pytest.mark.parametrize(
    ("lines", "line_number", "words"),
    [
        ([GOOD, GOOD, '{"source": "a", "target": "b", "label": '], 3, "not valid JSON"),
        ([GOOD, '{"source": "a", "target": "b"}'], 2, "label"),
        (['{"source": "a", "target": "b", "label": "fg"}'], 1, "label"),
        ([GOOD, '["a", "b", "background"]'], 2, "expected a JSON object"),
        ([GOOD, GOOD, GOOD, '{"source": 5, "target": "b", "label": "background"}'], 4, "source"),
    ],
)
def test_load_pairs_names_the_bad_line(tmp_path, lines, line_number, words):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(LabelledDataError) as caught:
        load_pairs(path)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert f"line {line_number}:" in message
    assert words in message
    assert str(path) in message


def test_load_pairs_refuses_a_missing_or_empty_file(tmp_path):
    with pytest.raises(LabelledDataError, match="Cannot read"):
        load_pairs(tmp_path / "nowhere.jsonl")
    with pytest.raises(LabelledDataError, match="no labelled pair"):
        load_pairs(write_lines(tmp_path / "empty.jsonl", ["", "  "]))


# -- evaluate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
def test_evaluate_on_the_small_file(small_file, concurrency):
    report = evaluate(table_classifier(), load_pairs(small_file), concurrency=concurrency)
    assert report.classifier == "table"
    assert report.classifier_version == "table-v0"
    assert report.n == 6
    assert report.accuracy == 0.5
    assert report.macro_f1 == pytest.approx(0.4333333)
    assert report.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert report.per_class["foreground"].f1 == pytest.approx(0.8)
    assert report.errors == 1
    assert report.concurrency == concurrency
    assert report.pairs_per_s == pytest.approx(report.n / report.elapsed_s)
    # mistakes in file order, with the classifier's reason or the error message
    assert [(m.id, m.label, m.predicted) for m in report.mistakes] == [
        ("p2", "foreground", "background"),
        ("p5", "background", "unidentified"),
        ("p6", "unidentified", "error"),
    ]
    assert report.mistakes[0].reason == "table says background"
    assert report.mistakes[0].error is None
    assert report.mistakes[2].reason.startswith("The test server is down")
    assert report.mistakes[2].error == "ClassifierError"


def test_evaluate_calls_the_classifier_concurrently(small_file):
    barrier = threading.Barrier(3, timeout=10)

    class Gathering(TableClassifier):
        def classify(self, source: str, target: str) -> Classification:
            barrier.wait()  # passes only when three calls are in flight together
            return Classification(label="foreground")

    pairs = load_pairs(small_file)
    report = evaluate(Gathering({}), pairs, concurrency=3)
    assert report.n == 6 and report.errors == 0


def test_evaluate_refuses_bad_arguments(small_file):
    with pytest.raises(ValueError, match="concurrency"):
        evaluate(table_classifier(), load_pairs(small_file), concurrency=0)
    with pytest.raises(LabelledDataError):
        evaluate(table_classifier(), [])


def test_other_exceptions_are_bugs_and_propagate(small_file):
    class Broken(TableClassifier):
        def classify(self, source: str, target: str) -> Classification:
            raise KeyError("bug")

    with pytest.raises(KeyError):
        evaluate(Broken({}), load_pairs(small_file), concurrency=2)


# -- output ------------------------------------------------------------------------------------


def test_format_report_table(small_file):
    report = evaluate(table_classifier(), load_pairs(small_file))
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0].startswith("classifier table (table-v0): 6 pairs in ")
    assert "accuracy 0.500   macro-F1 0.433   errors 1" in lines[1]
    assert "foreground         1.000   0.667   0.800        3" in lines
    assert "unidentified       0.000   0.000   0.000        1" in lines
    assert f"{'foreground':<14}{2:>14}{1:>14}{0:>14}" in lines
    assert "3 mistakes (--show-errors lists them)" in lines
    assert "p2" not in text

    shown = format_report(report, show_errors=True)
    assert "mistakes (3)" in shown
    assert "[p2] foreground -> background: 'a red car' -> 'a blue car' (table says background)" in (
        shown
    )
    assert "[p6] unidentified -> error: 'a photo of a fox'" in shown


def test_report_json_round_trip(small_file):
    report = evaluate(table_classifier(), load_pairs(small_file))
    line = json.dumps(report.model_dump())
    assert "\n" not in line
    data = json.loads(line)
    assert data["macro_f1"] == pytest.approx(0.4333333)
    assert data["labels"] == ["foreground", "background", "unidentified"]
    assert data["per_class"]["background"] == {
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2
    }
    assert data["mistakes"][2]["predicted"] == "error"
    assert EvalReport.model_validate(data) == report


def test_run_eval_cli_with_the_offline_classifier(small_file):
    text, status = run_eval_cli(small_file, "offline", concurrency=2)
    assert status == 0
    assert text.startswith("classifier offline (offline-v2): 6 pairs")
    assert "confusion (rows: true label, columns: predicted)" in text

    text, status = run_eval_cli(small_file, "offline", json_out=True)
    assert status == 0
    assert text.startswith("classifier offline")
    data = json.loads(text.splitlines()[-1])
    assert data["classifier"] == "offline" and data["n"] == 6


def test_run_eval_cli_fails_when_every_pair_fails(tmp_path):
    path = write_lines(
        tmp_path / "blank.jsonl",
        ['{"source": " ", "target": "a dog", "label": "foreground"}'] * 2,
    )
    text, status = run_eval_cli(path, "offline", show_errors=True, json_out=True)
    assert status == DescriptionError.exit_code == 2
    assert "every pair failed; the first error: The source description is empty" in text
    assert json.loads(text.splitlines()[-1])["errors"] == 2


# -- shape: whether a foreground edit keeps the subject's outline ------------------------------

# The small file again, with shapes, and a classifier answering label and shape from a table.
# By hand, over the five pairs that carry a shape (p6 has none):
#   labelled   change keep   change keep keep
#   predicted  change change change keep error
# shape accuracy 3/5 = 0.6; on the three labelled foreground (p1, p2, p3): 2/3
SHAPES = {"p1": "change", "p2": "keep", "p3": "change", "p4": "keep", "p5": "keep"}
PREDICTED_SHAPES = {"p1": "change", "p2": "change", "p3": "change", "p4": "keep", "p5": "error"}


class ShapeTableClassifier(TableClassifier):
    def __init__(self) -> None:
        super().__init__({row["source"]: row["id"] for row in SMALL_FILE})

    def classify(self, source: str, target: str) -> Classification:
        key = self.answers[source]
        if PREDICTED_SHAPES.get(key) == "error" or ANSWERS[key] == "error":
            raise ClassifierError("The test server is down. Try again later.", attempts=1)
        return Classification(label=ANSWERS[key], shape=PREDICTED_SHAPES[key], classifier="t")


@pytest.fixture
def shaped_file(tmp_path: Path) -> Path:
    rows = [{**row, **({"shape": SHAPES[row["id"]]} if row["id"] in SHAPES else {})}
            for row in SMALL_FILE]
    return write_lines(tmp_path / "shaped.jsonl", [json.dumps(row) for row in rows])


def test_shape_accuracy_by_hand():
    true = [SHAPES.get(row["id"]) for row in SMALL_FILE]
    predicted = [PREDICTED_SHAPES.get(row["id"], "keep") for row in SMALL_FILE]
    assert shape_accuracy(true, predicted) == pytest.approx(3 / 5)
    assert shape_accuracy([None, None], ["keep", "change"]) is None


def test_the_report_gives_shape_accuracy_where_the_file_has_shapes(shaped_file, small_file):
    report = evaluate(ShapeTableClassifier(), load_pairs(shaped_file), concurrency=2)

    assert report.shape is not None
    assert (report.shape.accuracy, report.shape.n) == (pytest.approx(0.6), 5)
    assert (report.shape.foreground_accuracy, report.shape.foreground_n) == (
        pytest.approx(2 / 3), 3
    )
    assert [(m.id, m.shape, m.predicted_shape) for m in report.shape_mistakes] == [
        ("p2", "keep", "change"), ("p5", "keep", "error")
    ]
    text = format_report(report)
    assert "shape accuracy 0.600 on 5 pairs (pairs labelled foreground: 0.667 on 3)" in text
    assert "3 mistakes, 2 shape mistakes (--show-errors lists them)" in text
    assert "[p2] foreground keep -> background change" in format_report(report, show_errors=True)
    data = json.loads(json.dumps(report.model_dump()))
    assert data["shape"]["accuracy"] == pytest.approx(0.6)
    assert EvalReport.model_validate(data) == report

    # a file without shapes reports none
    plain = evaluate(ShapeTableClassifier(), load_pairs(small_file))
    assert plain.shape is None and plain.shape_mistakes == []
    assert "shape" not in format_report(plain)


def test_a_shape_outside_keep_and_change_names_its_line(tmp_path):
    path = write_lines(
        tmp_path / "bad-shape.jsonl",
        [GOOD, '{"source": "a", "target": "b", "label": "foreground", "shape": "grow"}'],
    )
    with pytest.raises(LabelledDataError, match="line 2: shape"):
        load_pairs(path)


def test_the_shipped_pairs_carry_a_shape_on_every_line():
    pairs = load_pairs(Path(__file__).resolve().parents[1] / "fixtures" / "labelled_pairs.jsonl")
    assert all(p.shape in ("keep", "change") for p in pairs)
    # a background or unidentified edit has no outline to outgrow
    assert all(p.shape == "keep" for p in pairs if p.label != "foreground")
