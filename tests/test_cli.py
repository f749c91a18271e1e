"""The command line, run as a user runs it: a subprocess, files on disk, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def run_cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "regionedit", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def test_import_is_light():
    code = (
        "import sys, regionedit, regionedit.cli;"
        "heavy = {'torch', 'diffusers', 'rembg', 'openai', 'transformers', 'onnxruntime'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_does_not_import_torch():
    code = (
        "import sys; from regionedit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "edit" in out.stdout and out.stderr.strip() == "False"


@pytest.fixture
def model_flags(tiny_sd_path, tiny_rembg_model):
    return ["--model", tiny_sd_path, "--segment-model-path", tiny_rembg_model,
            "--steps", "2", "--max-side", "64"]


@pytest.fixture
def rembg_env(tiny_rembg_model):
    return {"U2NET_HOME": os.path.dirname(tiny_rembg_model)}


def test_edit_writes_image_mask_and_sidecar(tmp_path, small_photo_path, model_flags, rembg_env):
    out = tmp_path / "edited.png"
    proc = run_cli("edit", small_photo_path, "--source", "a cat", "--target", "a cat on the moon",
                   "--region", "background", "--seed", "4", "-o", out, "--save-mask",
                   *model_flags, env=rembg_env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["region"] == "background" and summary["seed"] == 4
    edited = np.asarray(Image.open(out).convert("RGB")).astype(int)
    original = np.asarray(Image.open(small_photo_path).convert("RGB")).astype(int)
    mask = np.asarray(Image.open(tmp_path / "edited.mask.png"))
    assert edited.shape == original.shape
    assert np.array_equal(edited[mask == 0], original[mask == 0])
    sidecar = json.loads((tmp_path / "edited.json").read_text())
    assert sidecar["settings"]["seed"] == 4 and sidecar["classification"]["source"] == "override"


def test_edit_classifies_through_the_llm(tmp_path, small_photo_path, model_flags, rembg_env, fake_llm):
    fake_llm.answer("foreground", "the subject changes")
    env = {**rembg_env, "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "sk-test-cli"}
    out = tmp_path / "o.png"
    proc = run_cli("edit", small_photo_path, "--source", "a cat", "--target", "a dog",
                   "--classifier", "llm", "-o", out, *model_flags, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["region"] == "foreground"
    assert "sk-test-cli" not in proc.stdout + proc.stderr + (tmp_path / "o.json").read_text()


def test_classify_prints_json(fake_llm):
    fake_llm.answer("background", "the place changes")
    env = {"OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "sk-test"}
    proc = run_cli("classify", "--source", "a dog on grass", "--target", "a dog on a beach",
                   "--classifier", "llm", env=env)
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["label"] == "background" and decision["source"] == "llm"


def test_mask_command_writes_a_mask(tmp_path, small_photo_path, tiny_rembg_model, rembg_env):
    out = tmp_path / "m.png"
    proc = run_cli("mask", small_photo_path, "--region", "background", "-o", out,
                   "--segment-model-path", tiny_rembg_model, env=rembg_env)
    assert proc.returncode == 0, proc.stderr
    mask = Image.open(out)
    assert mask.mode == "L" and mask.size == Image.open(small_photo_path).size
    values = np.asarray(mask)
    assert values.min() == 0 and values.max() == 255


def test_errors_are_one_line_with_their_exit_code(tmp_path, model_flags, rembg_env):
    bad = tmp_path / "bad.jpg"
    bad.write_text("hello")
    proc = run_cli("edit", bad, "--source", "a", "--target", "b", "--region", "foreground",
                   "-o", tmp_path / "o.png", *model_flags, env=rembg_env)
    assert proc.returncode == 3
    assert proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.png").exists()


def test_missing_model_offline_exits_with_model_load_error(tmp_path, small_photo_path, tiny_rembg_model, rembg_env):
    proc = run_cli("edit", small_photo_path, "--source", "a", "--target", "b", "--region",
                   "foreground", "-o", tmp_path / "o.png", "--segment-model-path",
                   tiny_rembg_model, "--model", tmp_path / "no-such-model", env=rembg_env)
    assert proc.returncode == 8, proc.stderr
    assert "no-such-model" in proc.stderr
    (line,) = [text for text in proc.stderr.splitlines() if "no-such-model" in text]
    assert line.startswith("error: ") and "save_pretrained" in line  # cause and fix, one line


def test_refuses_to_overwrite_the_input(tmp_path, small_photo_path, model_flags, rembg_env):
    target = tmp_path / "in.png"
    Image.open(small_photo_path).save(target)
    before = target.read_bytes()
    proc = run_cli("edit", target, "--source", "a", "--target", "b", "--region", "foreground",
                   "-o", target, *model_flags, env=rembg_env)
    assert proc.returncode == 9
    assert target.read_bytes() == before


def test_unidentified_exit_code(fake_llm, tmp_path, small_photo_path, model_flags, rembg_env):
    fake_llm.answer("unidentified", "style change")
    env = {**rembg_env, "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "sk-test"}
    proc = run_cli("edit", small_photo_path, "--source", "a photo", "--target", "a painting",
                   "--classifier", "llm", "-o", tmp_path / "o.png", *model_flags, env=env)
    assert proc.returncode == 5
    assert "--region" in proc.stderr


def test_every_command_parses_its_documented_flags():
    from regionedit.cli import build_parser

    parser = build_parser()
    edit = parser.parse_args(["edit", "in.jpg", "--source", "a", "--target", "b", "-o", "o.png",
                              "--on-unidentified", "background"])
    assert (edit.image, edit.on_unidentified) == ("in.jpg", "background")
    batch = parser.parse_args(["batch", "photos", "-o", "out", "--source", "a", "--target", "b",
                               "--on-unidentified", "skip"])
    assert (batch.input_dir, batch.on_unidentified) == ("photos", "skip")
    with pytest.raises(SystemExit):
        parser.parse_args(["edit", "in.jpg", "--source", "a", "--target", "b", "-o", "o.png",
                           "--on-unidentified", "skip"])


def test_a_lossy_output_says_that_kept_pixels_will_not_be_exact(tmp_path, small_photo_path,
                                                                model_flags, rembg_env):
    proc = run_cli("edit", small_photo_path, "--source", "a cat", "--target", "a cat on the moon",
                   "--region", "background", "-o", tmp_path / "out.jpg", *model_flags,
                   env=rembg_env)
    assert proc.returncode == 0, proc.stderr
    notices = [line for line in proc.stderr.splitlines() if "lossy" in line]
    assert len(notices) == 1 and "PNG" in notices[0]
    png = run_cli("edit", small_photo_path, "--source", "a cat", "--target", "a cat on the moon",
                  "--region", "background", "-o", tmp_path / "out.png", *model_flags,
                  env=rembg_env)
    assert "lossy" not in png.stderr


def test_help_names_the_current_default_models():
    from regionedit.models import DEFAULT_IMAGE_EDIT_MODEL, DEFAULT_LLM_MODEL, RETIRED

    proc = run_cli("edit", "--help", env={"COLUMNS": "1000"})  # no line breaks inside names
    text = " ".join(proc.stdout.split())
    assert DEFAULT_IMAGE_EDIT_MODEL in text and DEFAULT_LLM_MODEL in text
    assert not any(f"{model} " in text or f"{model})" in text for model in RETIRED)


def test_a_batch_says_a_notice_once_not_once_per_image(tmp_path, small_photo_path, model_flags,
                                                       rembg_env):
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(3):
        Image.open(small_photo_path).rotate(90 * i, expand=True).save(photos / f"p{i}.png")
    proc = run_cli("batch", photos, "-o", tmp_path / "out", "--source", "a cat",
                   "--target", "a cat on the moon", "--region", "background", "--format", "jpg",
                   *model_flags, env=rembg_env)
    assert proc.returncode == 0, proc.stderr
    notices = [line for line in proc.stderr.splitlines() if "regionedit:" in line]
    # the random test model never redraws the kept pixels, so colour matching is skipped for
    # every image; that, and the lossy format, are each said once
    assert sum("Colour matching skipped" in line for line in notices) == 1
    assert sum("lossy format" in line for line in notices) == 1
