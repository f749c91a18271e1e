"""Edit settings are checked before any work: one line naming the setting (as the user wrote it:
the flag on the CLI, the argument in Python) and what it allows; exit code 2 on the CLI."""

from __future__ import annotations

import json
import math

import pytest

from regionedit import Editor
from regionedit.cli import main
from regionedit.errors import SettingsError
from regionedit.types import EditSettings

BAD_FLAGS = [
    (["--grow", "-3"], "--grow -3: must be a whole number from 0 to 512"),
    (["--feather", "-1"], "--feather -1: must be a whole number from 0 to 512"),
    (["--candidates", "0"], "--candidates 0: must be a whole number from 1 to 64"),
    (["--candidates", "65"], "--candidates 65: must be a whole number from 1 to 64"),
    (["--guidance", "nan"], "--guidance nan: must be a finite number from 0 to 100"),
    (["--strength", "inf"], "--strength inf: must be a finite number above 0, at most 1"),
    (["--steps", "lots"], "--steps lots: must be a whole number from 1 to 1000"),
    (["--seed", "7.5"], "--seed 7.5: must be a whole number from 0 to 4294967295"),
]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS)
def test_edit_refuses_a_bad_option_in_one_line_before_reading_the_image(
    capsys, tmp_path, flags, message
):
    # the image does not even exist: the option is refused first
    code, err = _run(capsys, "edit", tmp_path / "missing.jpg", "--source", "a", "--target", "b",
                     "-o", tmp_path / "out.png", *flags)
    assert code == 2
    assert err.strip() == f"error: Bad edit setting: {message}."
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS[:5])
def test_batch_refuses_a_bad_option_before_any_item_runs(capsys, tmp_path, flags, message):
    photos = tmp_path / "in"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"not looked at")
    out = tmp_path / "out"
    code, err = _run(capsys, "batch", photos, "-o", out, "--source", "a", "--target", "b",
                     *flags)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not out.exists()  # no run.jsonl, nothing planned


def test_other_bad_command_lines_are_one_line_too(capsys, tmp_path):
    code, err = _run(capsys, "edit", "x.jpg", "--source", "a", "--target", "b", "-o", "o.png",
                     "--extent", "wide")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--extent" in err and "'outline'" in err
    code, err = _run(capsys, "batch", tmp_path, "-o", tmp_path / "o", "--source", "a",
                     "--target", "b", "--batch-size", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--batch-size" in err


def test_python_names_the_argument_and_its_range(editor_without_models):
    with pytest.raises(SettingsError, match=r"^Bad edit setting: steps=0 must be a whole number "
                       r"from 1 to 1000\.$"):
        editor_without_models.edit("missing.jpg", "a", "b", steps=0)
    with pytest.raises(SettingsError, match=r"guidance_scale=nan must be a finite number"):
        editor_without_models.edit("missing.jpg", "a", "b", guidance_scale=math.nan)
    with pytest.raises(SettingsError, match="'colour' is not an edit setting"):
        editor_without_models.edit("missing.jpg", "a", "b", colour="red")


@pytest.fixture
def editor_without_models() -> Editor:
    return Editor(classifier="offline")


def test_a_sidecar_never_holds_a_non_finite_number():
    settings = EditSettings(source="a", target="b", guidance_scale=7.5, seed=1)
    json.loads(json.dumps(settings.model_dump(), allow_nan=False))
    with pytest.raises(ValueError):
        EditSettings(source="a", target="b", guidance_scale=float("inf"))
