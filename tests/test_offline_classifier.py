"""The offline classifier: its answers on hand-written pairs, its errors, and its quality floor."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from regionedit.errors import DescriptionError, RegionEditError
from regionedit.evaluate import evaluate, load_pairs
from regionedit.offline_classifier import CLASSIFIER_VERSION, OfflineClassifier

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "fixtures" / "labelled_pairs.jsonl"
#: the PIE-Bench development split, in a shared/data folder beside the checkout (or above it)
PIE_DEV = next(
    (
        found
        for folder in REPO.parents
        if (found := folder / "shared" / "data" / "pie_pairs_dev.jsonl").exists()
    ),
    REPO.parent / "shared" / "data" / "pie_pairs_dev.jsonl",
)


@pytest.fixture(scope="module")
def classifier() -> OfflineClassifier:
    return OfflineClassifier()


FOREGROUND = [
    ("a red sneaker on a white background", "a blue sneaker on a white background"),
    ("a golden retriever sitting on the grass", "a husky sitting on the grass"),
    ("a man in a blue suit standing in an office", "a man in a black tuxedo standing in an office"),
    ("a girl wearing a yellow raincoat", "a girl wearing a yellow raincoat and rubber boots"),
    ("a woman with glasses reading a book in a library", "a woman reading a book in a library"),
    ("a knight in shining armor", "a knight in rusty armor"),
    ("a boy sitting on a chair", "a boy standing on a chair"),
    ("There is a bicycle leaning against a wall.", "There is a motorcycle leaning against a wall."),
]
BACKGROUND = [
    ("a red sneaker on a white background", "a red sneaker on a marble countertop"),
    ("a horse running in a field", "a horse running on a beach"),
    ("a man in a blue suit standing in an office", "a man in a blue suit standing on a city street"),
    ("a candle in a glass jar on a wooden table",
     "a candle in a glass jar on a wooden table in a cozy living room"),
    ("a girl blowing bubbles in a meadow",
     "a girl blowing bubbles in a meadow with a rainbow in the background"),
    ("The photo shows my dog lying on the living room carpet.",
     "The photo shows my dog lying on the grass in our backyard."),
    ("a dog runing on the beech", "a dog running on a snowy feild"),
]
UNIDENTIFIED = [
    ("a photo of a dog on a lawn", "a watercolor painting of a dog on a lawn"),
    ("a cat sitting on a chair", "a pencil sketch of a cat sitting on a chair"),
    ("a lion resting in the savanna", "a cartoon lion resting in the savanna"),
    ("a city street at night", "a city street at night in the style of van gogh"),
    ("a bowl of fruit on a table", "a bowl of fruit on a table, pixel art"),
    ("a woman playing the violin", "three trucks driving through a desert"),
]


@pytest.mark.parametrize(
    ("source", "target", "label"),
    [(s, t, "foreground") for s, t in FOREGROUND]
    + [(s, t, "background") for s, t in BACKGROUND]
    + [(s, t, "unidentified") for s, t in UNIDENTIFIED],
)
def test_representative_pairs(classifier, source, target, label):
    result = classifier.classify(source, target)
    assert result.label == label, result.reason
    assert result.reason.strip()
    assert result.source == "offline"
    assert result.classifier == CLASSIFIER_VERSION == "offline-v2"


def test_follows_the_classifier_protocol(classifier):
    from regionedit.classify import Classifier

    assert classifier.name == "offline"
    assert isinstance(classifier, Classifier)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("a dog on a beach", "a dog on a beach"),
        ("A Dog on a Beach.", "a dog on a beach"),
        ("a cat on the sofa", "the cat on a sofa"),
        ("a white chiar in an empty room", "a white chair in an empty room"),
    ],
)
def test_same_meaning_is_unidentified(classifier, source, target):
    result = classifier.classify(source, target)
    assert result.label == "unidentified"
    assert "same" in result.reason


def test_style_change_names_the_style_in_its_reason(classifier):
    result = classifier.classify("a photo of a mountain lake", "an oil painting of a mountain lake")
    assert result.label == "unidentified"
    assert "style" in result.reason and "oil painting" in result.reason


def test_a_painting_in_the_picture_is_a_thing_not_a_style(classifier):
    pair = ("a man reading in front of a wall", "a man reading in front of a wall with a painting")
    assert classifier.classify(*pair).label != "unidentified"
    assert classifier.classify("a book on the table", "a painting on the table").label == (
        "foreground"
    )


def test_subject_and_setting_both_changing_is_unidentified(classifier):
    result = classifier.classify("a cat sitting on the grass", "a dog sitting on a beach")
    assert result.label == "unidentified"
    assert "both" in result.reason


def test_weather_policy(classifier):
    pair = ("a fox in a forest in autumn", "a fox in a forest in winter")
    assert classifier.classify(*pair).label == "background"
    refusing = OfflineClassifier(weather="unidentified")
    result = refusing.classify(*pair)
    assert result.label == "unidentified"
    assert "season, weather or time-of-day" in result.reason
    with pytest.raises(ValueError, match="weather must be"):
        OfflineClassifier(weather="foreground")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "target", "role"),
    [("", "a dog", "source"), ("a dog", "   \n\t", "target"), ("  ", "", "source")],
)
def test_empty_description_is_refused(classifier, source, target, role):
    with pytest.raises(DescriptionError) as caught:
        classifier.classify(source, target)
    assert isinstance(caught.value, RegionEditError)
    message = str(caught.value)
    assert f"The {role} description is empty" in message
    assert "e.g." in message  # says what to write instead


def test_same_answers_from_many_threads(classifier):
    pairs = [(p.source, p.target) for p in load_pairs(FIXTURE)]
    alone = [OfflineClassifier().classify(s, t) for s, t in pairs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda pair: classifier.classify(*pair), pairs * 3))
    assert together == alone * 3


def test_works_with_the_network_blocked(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network use is not allowed in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    result = OfflineClassifier().classify("a dog on grass", "a dog on a beach")
    assert result.label == "background"


def test_imports_no_model_library():
    code = (
        "import sys, json; import regionedit.offline_classifier as m; "
        "m.OfflineClassifier().classify('a dog on grass', 'a dog on a beach'); "
        "print(json.dumps(sorted(k for k in ('torch', 'transformers', 'sentence_transformers', "
        "'openai', 'huggingface_hub') if k in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_quality_floor_on_the_fixture_set(classifier):
    pairs = load_pairs(FIXTURE)
    assert len(pairs) >= 60
    assert {p.label for p in pairs} == {"foreground", "background", "unidentified"}
    assert all(p.shape is not None for p in pairs)
    report = evaluate(classifier, pairs)
    # measured 0.983 and 0.969 (docs/classifier-eval.md); the floors leave room for lexicon edits
    assert report.errors == 0
    assert report.macro_f1 >= 0.9, [m.model_dump() for m in report.mistakes]
    assert report.per_class["unidentified"].recall >= 0.9
    assert report.shape is not None and report.shape.accuracy >= 0.9, report.shape_mistakes


@pytest.mark.skipif(not PIE_DEV.exists(), reason=f"{PIE_DEV} is not on this machine")
def test_quality_on_pie_bench_dev_split(classifier):
    report = evaluate(classifier, load_pairs(PIE_DEV))
    # measured 0.958 (docs/classifier-eval.md) on the pairs the rules were written from; the
    # target is 0.88 on held-back pairs labelled the same way
    assert report.n == 334
    assert report.macro_f1 >= 0.88, report.per_class


# -- version 2 of the regions: the main subject, or everything else ---------------------------


@pytest.mark.parametrize(
    ("source", "target", "label", "shape"),
    [
        # the README's example: the flag behind the astronaut is no part of the astronaut
        ("an astronaut in front of an American flag",
         "an astronaut in front of the surface of the moon", "background", "keep"),
        # a new thing beside the subject is painted into the rest of the picture
        ("a red apple on a table", "a red apple and a bird on a table", "background", "keep"),
        ("a duck swimming in a pond", "a duck swimming in a pond with a frog next to it",
         "background", "keep"),
        ("two dogs playing in the park", "three dogs playing in the park", "background", "keep"),
        # another thing, added, removed or changed, is not the subject
        ("a plant in front of a white wall", "a plant in front of a red wall", "background",
         "keep"),
        ("a woman leaning against a car", "a woman leaning against a wall", "background", "keep"),
        ("a man in a coat sitting at a desk with a lamp", "a man in a coat sitting at a desk",
         "background", "keep"),
        ("a puppy lying on a green towel", "a puppy lying on a yellow towel", "background",
         "keep"),
        # weather around an unchanged subject
        ("a fox sitting in the snow", "a fox sitting in the rain", "background", "keep"),
        # the subject itself: what it is, its colour and material, its pose, what it wears
        ("a fox sitting on a log", "a wolf sitting on a log", "foreground", "change"),
        ("a white car parked on a street", "a red car parked on a street", "foreground",
         "keep"),
        ("a wooden chair in a room", "a metal chair in a room", "foreground", "keep"),
        ("a whippet running across a field", "a whippet jumping across a field", "foreground",
         "change"),
        ("a man standing on a hill", "a man wearing a tall hat standing on a hill",
         "foreground", "change"),
        ("a round cake on a plate", "a square cake on a plate", "foreground", "change"),
        ("a woman with brown hair", "a woman with blonde hair", "foreground", "keep"),
        ("a smiling baby in a crib", "a crying baby in a crib", "foreground", "keep"),
        # removing the subject, or one of a group that is the subject
        ("a sailboat on a lake", "a lake", "foreground", "change"),
        ("a cup and a saucer", "a saucer", "foreground", "change"),
        ("a woman holding a coconut", "a woman", "foreground", "change"),
        # the whole picture: time of day, camera framing, medium
        ("a car on a mountain road", "a car on a mountain road at night", "unidentified",
         "keep"),
        ("a bee on a sunflower", "an aerial view of a bee on a sunflower", "unidentified",
         "keep"),
        ("a collie sitting on a bed", "a cat sitting on a sofa", "unidentified", "keep"),
    ],
)
def test_the_main_subject_or_everything_else(classifier, source, target, label, shape):
    result = classifier.classify(source, target)
    assert (result.label, result.shape) == (label, shape), result.reason


def test_the_answer_names_the_main_subject(classifier):
    assert classifier.classify("a black cat on a sofa", "a white cat on a sofa").subject == (
        "a black cat"
    )
    result = classifier.classify("a camera and a notebook on a bed",
                                 "a camera and a diary on a bed")
    assert result.subject == "a camera and a notebook"
    assert "a camera and a notebook" in result.reason
    assert classifier.classify("a dog on grass", "a dog on grass").subject == "a dog"

