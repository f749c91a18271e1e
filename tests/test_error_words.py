"""Advice fits where the user is: the flag on the command line, the argument in Python; and every
error the command line prints is one line."""

from __future__ import annotations

import pytest
from PIL import Image

from regionedit import Editor
from regionedit.cli import main
from regionedit.errors import ImageInputError, UnidentifiedRegionError, option, speaking_cli


def test_option_names_the_argument_in_python_and_the_flag_on_the_cli():
    assert option("max_pixels=...", "--max-pixels") == "max_pixels=..."
    with speaking_cli():
        assert option("max_pixels=...", "--max-pixels") == "--max-pixels"
    assert option("max_pixels=...", "--max-pixels") == "max_pixels=..."


@pytest.fixture
def big_photo(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200), "white").save(path)
    return path


def test_the_pixel_limit_names_max_pixels_in_python(big_photo):
    with pytest.raises(ImageInputError) as caught:
        Editor(max_pixels=10_000).load(big_photo)
    assert "max_pixels=" in str(caught.value) and "--max-pixels" not in str(caught.value)


def test_the_pixel_limit_names_the_flag_on_the_cli(big_photo, tmp_path, capsys):
    code = main(["mask", str(big_photo), "--region", "foreground", "-o", str(tmp_path / "m.png"),
                 "--max-pixels", "10000"])
    err = capsys.readouterr().err
    assert code == 3
    assert "--max-pixels" in err and "max_pixels=" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_undecided_region_names_region_in_python_and_the_flags_on_the_cli():
    error = UnidentifiedRegionError("a photo", "a painting", "a style change")
    assert "region='foreground'" in str(error) and "--region" not in str(error)
    with speaking_cli():
        error = UnidentifiedRegionError("a photo", "a painting", "a style change")
    assert "--region" in str(error) and "--on-unidentified" in str(error)
    assert "region=" not in str(error)


def test_a_strict_manifest_refusal_is_one_line_listing_every_bad_row(tmp_path, capsys):
    (tmp_path / "cat.png").write_bytes(b"")
    manifest = tmp_path / "edits.csv"
    manifest.write_text("image,source,target,steps\ncat.png,a cat,,\ncat.png,a cat,a dog,0\n")
    code = main(["batch", "--manifest", str(manifest), "-o", str(tmp_path / "out"), "--strict"])
    err = capsys.readouterr().err
    assert code == 2
    (line,) = [text for text in err.splitlines() if text.startswith("error:")]
    assert "line 2: target is required" in line and "line 3: steps 0 must be" in line
    assert "--strict" in line and "strict=True" not in line
    assert not (tmp_path / "out").exists()

