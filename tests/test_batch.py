"""``regionedit batch`` and ``edit_many``: folders and manifests, outputs and run.jsonl, resume,
failures, dry runs, candidates, and the classifier asked once per distinct pair.

Every stage is real: the fake OpenAI server answers the classifier over HTTP, the tiny rembg
model segments, the tiny random diffusers pipeline generates (2 steps on 96x64 photos).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from support.fake_llm import CHAT_PATH, FakeResponse, descriptions_in, label_answer

from regionedit import Editor
from regionedit.batch import RUN_LOG, BatchOptions, plan_folder, plan_manifest, run_batch
from regionedit.contact_sheet import LABEL_HEIGHT, PADDING
from regionedit.errors import ClassifierError

GOOD = ["cat.png", "cat_rot.jpg", "sub/cat_flipped.png"]
BAD = ["corrupt.jpg", "empty.png", "fake.jpg"]


@pytest.fixture
def photos(tmp_path: Path, small_photo_path: Path) -> Path:
    """An input folder: three photos (one in a sub-folder), three broken images, two other
    files."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    cat = Image.open(small_photo_path).convert("RGB")
    cat.save(folder / "cat.png")
    cat.rotate(180).save(folder / "cat_rot.jpg", quality=95)
    cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "sub" / "cat_flipped.png")
    jpeg = (folder / "cat_rot.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # truncated mid-scan
    (folder / "empty.png").write_bytes(b"")
    (folder / "fake.jpg").write_text("this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return folder


@pytest.fixture
def good_photos(photos: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "good"
    for name in GOOD:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / name, folder / name)
    return folder


@pytest.fixture
def editor(llm_env: Any, rembg_segmenter: Any, tiny_inpainter: Any) -> Editor:
    """Real stages: the LLM classifier on the fake server, tiny rembg, tiny diffusers."""
    return Editor(classifier="llm", segmenter=rembg_segmenter, inpainter=tiny_inpainter)


@pytest.fixture
def model_flags(llm_env: Any, tiny_sd_path: Path, rembg_home: Path, tiny_rembg_model: str) -> list:
    return [
        "--classifier", "llm", "--model", tiny_sd_path,
        "--segment-model-path", tiny_rembg_model, "--steps", "2", "--seed", "3",
    ]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``regionedit`` in this process: returns (exit code, stdout, stderr)."""
    from regionedit.cli import main

    logger = logging.getLogger("regionedit")
    handlers = list(logger.handlers)

    def run(*args: Any) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse refusals
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    for handler in logger.handlers[:]:  # main() adds a stderr handler per call
        if handler not in handlers:
            logger.removeHandler(handler)


def options(out: Path, **kwargs: Any) -> BatchOptions:
    edit = {"steps": 2, "seed": 3, **kwargs.pop("edit", {})}
    return BatchOptions(out_dir=out, edit=edit, **kwargs)


def read_log(out: Path) -> list[dict[str, Any]]:
    """run.jsonl, asserting that it is whole: every line a JSON object, newline-terminated."""
    text = (out / RUN_LOG).read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def items_by_input(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["input"]: e for e in lines if e["type"] == "item"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# -- folders -----------------------------------------------------------------------------------


def test_folder_run_edits_images_and_records_bad_files(cli, photos, tmp_path, model_flags, llm_env):
    llm_env.answer("background", "the setting changes")
    out = tmp_path / "out"
    code, stdout, _ = cli(
        "batch", photos, "-o", out, "--recursive", "--source", "a cat indoors",
        "--target", "a cat on a beach", "--save-mask", *model_flags,
    )

    assert code == 1  # some items failed
    lines = read_log(out)
    items = items_by_input(lines)
    assert sorted(items) == sorted(GOOD + BAD)
    for name in BAD:
        assert (items[name]["status"], items[name]["stage"], items[name]["error_type"]) == (
            "failed", "load", "ImageInputError"
        )
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert (summary["ok"], summary["failed"], summary["ignored_files"]) == (3, 3, 2)
    for name in GOOD:
        assert items[name]["status"] == "ok" and items[name]["region"] == "background"
        stem = Path(name).with_suffix("")
        original, edited = rgb(photos / name), rgb(out / f"{stem}.edited.png")
        mask = np.asarray(Image.open(out / f"{stem}.edited.mask.png"))
        assert edited.shape == original.shape
        assert (mask == 0).any() and (mask == 255).any()
        assert np.array_equal(edited[mask == 0], original[mask == 0])
        assert not np.array_equal(edited[mask == 255], original[mask == 255])
        sidecar = json.loads((out / f"{stem}.edited.json").read_text())
        assert sidecar["batch"]["input_sha256"] == sha256(photos / name)
        assert sidecar["batch"]["settings_sha256"] == items[name]["settings_sha256"]
        assert sidecar["classification"]["reason"] == "the setting changes"
        assert sidecar["settings"]["seed"] == 3 and sidecar["settings"]["steps"] == 2
    assert "3 ok" in stdout and "3 failed" in stdout and "2 non-image file(s)" in stdout
    assert "failed: empty.png: ImageInputError" in stdout


def test_folder_planning_skips_other_files_links_out_and_the_output_folder(photos, tmp_path):
    secret = tmp_path / "secret.png"
    shutil.copy(photos / "cat.png", secret)
    (photos / "escape.png").symlink_to(secret)  # leads out of the input folder: not followed
    (photos / "alias.png").symlink_to(photos / "cat.png")  # stays inside: an ordinary input
    (photos / "edited").mkdir()
    shutil.copy(photos / "cat.png", photos / "edited" / "old.png")
    opts = options(photos / "edited", name="{index}-{stem}", image_format="jpg")

    flat = plan_folder(photos, "a cat", "a dog", opts)
    deep = plan_folder(photos, "a cat", "a dog", opts, recursive=True)

    flat_images = ["alias.png", "cat.png", "cat_rot.jpg", "corrupt.jpg", "empty.png", "fake.jpg"]
    assert [p.label for p in flat.items] == flat_images
    assert flat.ignored_files == 2  # notes.txt, escape.png
    assert [p.label for p in deep.items] == flat_images + ["sub/cat_flipped.png"]
    assert deep.ignored_files == 3  # + sub/data.csv; nothing from the output folder
    assert deep.items[1].output == photos / "edited" / "2-cat.jpg"
    assert deep.items[-1].output == photos / "edited" / "sub" / "7-cat_flipped.jpg"


def test_output_folder_must_not_be_the_input_folder(cli, photos):
    code, _, stderr = cli("batch", photos, "-o", photos, "--source", "a", "--target", "b")
    assert code == 9
    assert "is the input folder" in stderr


def test_bad_name_patterns_are_refused(cli, photos, tmp_path):
    for pattern in ("{nope}", "a/{stem}", ""):
        with pytest.raises(ValidationError):
            BatchOptions(out_dir=tmp_path, name=pattern)
    code, _, stderr = cli(
        "batch", photos, "-o", tmp_path / "o", "--source", "a", "--target", "b", "--name", "{x}"
    )
    assert code == 2 and "name pattern" in stderr


# -- manifests ---------------------------------------------------------------------------------

MANIFEST = """\
image,source,target,steps,region
cat.png,a cat indoors,a cat on a beach,,
cat.png,a cat,,2,
cat.png,a cat,a fox,zero,
../outside.png,a cat,a dog,,
cat.png,a cat,a dog,,middle
missing.png,a cat,a dog,,
"""


@pytest.fixture
def bad_manifest(photos: Path, tmp_path: Path) -> Path:
    shutil.copy(photos / "cat.png", tmp_path / "outside.png")
    path = photos / "edits.csv"
    path.write_text(MANIFEST)
    return path


def test_manifest_bad_rows_are_reported_by_line_and_good_rows_run(
    cli, bad_manifest, tmp_path, model_flags
):
    out = tmp_path / "out"
    code, stdout, stderr = cli("batch", "--manifest", bad_manifest, "-o", out, *model_flags)

    assert code == 1
    for line, words in [
        (3, "target is required"), (4, "steps zero must be a whole number from 1 to 1000"),
        (5, "outside the manifest's folder"), (6, "region middle must be one of"),
        (7, "not found"),
    ]:
        assert any(f"line {line}: " in text and words in text for text in stderr.splitlines())
    items = sorted((e for e in read_log(out) if e["type"] == "item"), key=lambda e: e["line"])
    assert [(e["line"], e["status"]) for e in items] == [
        (2, "ok"), (3, "failed"), (4, "failed"), (5, "failed"), (6, "failed"), (7, "failed")
    ]
    assert {e["error_type"] for e in items[1:]} == {"ManifestError"}
    assert (out / "cat.edited.png").is_file()
    assert "failed: line 4 " in stdout


def test_strict_manifest_is_refused_before_any_model_loads(cli, bad_manifest, tmp_path, llm_env):
    out = tmp_path / "out"
    code, _, stderr = cli(
        "batch", "--manifest", bad_manifest, "-o", out, "--strict", "--classifier", "llm",
        "--model", tmp_path / "no-such-model", "--segment-model-path", tmp_path / "none.onnx",
    )
    assert code == 2
    assert "5 row(s)" in stderr and "line 3: target" in stderr and "line 7: image" in stderr
    assert llm_env.requests == []  # the classifier was never asked
    assert not out.exists()


def test_manifest_image_paths_must_stay_in_its_folder(tmp_path, small_photo_path):
    root = tmp_path / "project"
    (root / "imgs").mkdir(parents=True)
    shutil.copy(small_photo_path, root / "imgs" / "cat.png")
    shutil.copy(small_photo_path, tmp_path / "secret.png")
    (root / "imgs" / "link.png").symlink_to(tmp_path / "secret.png")
    rows = [
        {"image": "imgs/cat.png"},
        {"image": "../secret.png"},
        {"image": str(tmp_path / "secret.png")},
        {"image": "imgs/link.png"},
        {"image": "imgs/cat.png", "output": "../escaped"},
        {"image": "imgs/../imgs/cat.png", "output": "b/c"},
    ]
    manifest = root / "edits.jsonl"
    manifest.write_text(
        "".join(json.dumps({**r, "source": "a cat", "target": "a dog"}) + "\n" for r in rows)
    )

    plan = plan_manifest(manifest, options(tmp_path / "out"))

    assert [r.line for r in plan.rejected] == [2, 3, 4, 5]
    assert all("outside the manifest's folder" in r.error for r in plan.rejected[:3])
    assert plan.rejected[3].error.startswith("output:")
    assert [(p.line, p.output) for p in plan.items] == [
        (1, tmp_path / "out" / "imgs" / "cat.edited.png"),
        (6, tmp_path / "out" / "b" / "c.png"),
    ]


def test_manifest_rows_carry_their_own_settings_and_outputs(editor, photos, tmp_path):
    rows = [
        {"image": "cat.png", "source": "a cat", "target": "a cat on a beach", "seed": 7,
         "steps": 3, "guidance": 5.0, "strength": 0.9, "negative_prompt": "blurry",
         "region": "background", "candidates": 2},
        {"image": "cat.png", "source": "a cat", "target": "a fox"},
        {"image": "cat.png", "source": "a cat", "target": "a lion", "output": "lions/big.webp"},
        {"image": "cat.png", "source": "a cat", "target": "a tiger", "output": "tigers/big"},
    ]
    manifest = photos / "edits.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"

    summary = run_batch(editor, plan_manifest(manifest, options(out)), options(out))

    assert (summary.ok, summary.failed) == (4, 0)
    first = json.loads((out / "cat.edited.json").read_text())
    expected = {
        "region": "background", "seed": 7, "steps": 3, "guidance_scale": 5.0, "strength": 0.9,
        "negative_prompt": "blurry", "candidates": 2,
    }
    assert {key: first["settings"][key] for key in expected} == expected
    assert first["classification"]["source"] == "override"
    assert first["candidate_seeds"] == [7, 8]
    second = json.loads((out / "cat.edited.2.json").read_text())  # same name: suffixed
    assert second["settings"]["target"] == "a fox" and second["settings"]["steps"] == 2
    assert second["classification"]["source"] == "llm"
    assert Image.open(out / "lions" / "big.webp").format == "WEBP"
    assert (out / "lions" / "big.json").is_file()
    assert Image.open(out / "tigers" / "big.png").format == "PNG"  # --format's suffix added
    assert [e["line"] for e in read_log(out) if e["type"] == "item"] == [1, 2, 3, 4]


def test_the_log_lists_items_in_input_order_and_every_file_is_written(editor, small_photo_path, tmp_path):
    _photos_in_two_shapes(small_photo_path, tmp_path / "in", "wtwtw")
    out = tmp_path / "out"
    opts = options(out, batch_size=2, edit={"region": "background", "max_side": 64})
    summary = run_batch(editor, plan_folder(tmp_path / "in", "a cat", "a cat on a beach", opts), opts)

    assert summary.ok == 5
    names = [f"photo-{i}" for i in range(5)]
    assert sorted(p.name for p in out.glob("*.png")) == [f"{n}.edited.png" for n in names]
    assert [e["input"] for e in read_log(out) if e["type"] == "item"] == [f"{n}.png" for n in names]


# -- outputs -----------------------------------------------------------------------------------


def test_candidates_are_saved_with_consecutive_seeds_and_a_contact_sheet(
    editor, good_photos, tmp_path
):
    out = tmp_path / "out"
    opts = options(out, save_mask=True, edit={"candidates": 3, "seed": 11, "region": "background"})
    summary = run_batch(editor, plan_folder(good_photos, "a cat", "a cat on grass", opts), opts)

    assert summary.ok == 2  # the top folder only
    entry = items_by_input(read_log(out))["cat.png"]
    assert entry["seeds"] == [11, 12, 13]
    assert entry["outputs"]["sheet"] == "cat.edited.sheet.png"
    variants = [out / name for name in ("cat.edited.png", "cat.edited.1.png", "cat.edited.2.png")]
    assert json.loads((out / "cat.edited.json").read_text())["candidate_seeds"] == [11, 12, 13]
    sheet = np.asarray(Image.open(out / "cat.edited.sheet.png"))
    original = rgb(good_photos / "cat.png")
    height, width = original.shape[:2]
    assert sheet.shape == (
        PADDING + height + LABEL_HEIGHT + PADDING, PADDING + 5 * (width + PADDING), 3
    )
    tiles = [original, rgb(out / "cat.edited.mask.png")] + [rgb(path) for path in variants]
    for i, expected in enumerate(tiles):  # input, mask, variants: left to right, unscaled
        left = PADDING + i * (width + PADDING)
        tile = sheet[PADDING : PADDING + height, left : left + width]
        assert np.array_equal(tile, expected), f"tile {i}"
    assert len({rgb(path).tobytes() for path in variants}) == 3  # three different variants


def test_dry_run_writes_decisions_and_masks_and_loads_no_inpainting_model(
    cli, good_photos, tmp_path, llm_env, rembg_home, tiny_rembg_model
):
    llm_env.answer("foreground", "the animal changes")
    out = tmp_path / "out"
    args = [
        "batch", good_photos, "-o", out, "--recursive", "--source", "a cat", "--target", "a dog",
        "--dry-run", "--classifier", "llm", "--segment-model-path", tiny_rembg_model,
        "--model", tmp_path / "no-such-model",  # loading it would fail the run
    ]
    code, stdout, _ = cli(*args)

    assert code == 0, stdout
    assert not list(out.rglob("*.edited.png"))
    for name in GOOD:
        stem = Path(name).with_suffix("")
        decision = json.loads((out / f"{stem}.edited.json").read_text())
        assert decision["schema"] == "regionedit.dry-run/1"
        assert decision["region"] == "foreground"
        assert decision["classification"]["reason"] == "the animal changes"
        mask = Image.open(out / f"{stem}.edited.mask.png")
        assert mask.size == Image.open(good_photos / name).size
    assert read_log(out)[-1]["dry_run"] is True

    code, _, _ = cli(*args)  # the same dry run again: nothing left to do
    assert code == 0 and read_log(out)[-1]["already_done"] == 3


# -- failures and policies ---------------------------------------------------------------------


def test_unidentified_region_is_skipped_or_failed_by_policy(editor, good_photos, tmp_path, llm_env):
    llm_env.answer("unidentified", "cannot tell")
    for policy, status, code in [("skip", "skipped", 0), ("error", "failed", 1)]:
        out = tmp_path / policy
        opts = options(out, dry_run=True, on_unidentified=policy)
        summary = run_batch(editor, plan_folder(good_photos, "a cat", "a thing", opts), opts)
        entry = items_by_input(read_log(out))["cat.png"]
        assert entry["status"] == status and summary.exit_code == code
        if policy == "skip":
            assert entry["reason"] == "cannot tell"
        else:
            assert entry["error_type"] == "UnidentifiedRegionError"
            assert "on_unidentified=" in entry["error"]  # Python words: run from Python


def test_classifier_down_fails_only_its_items(llm_env, rembg_segmenter, small_photo_path):
    from regionedit.classify import LLMClassifier

    def chat(request: Any) -> FakeResponse:
        source, target = descriptions_in(request)
        if target == "a dog on the moon":
            return FakeResponse.error(503, "overloaded")
        return label_answer("foreground")

    llm_env.add_route("POST", CHAT_PATH, chat)
    classifier = LLMClassifier(max_attempts=2, backoff_base=0, backoff_max=0)
    editor = Editor(classifier=classifier, segmenter=rembg_segmenter)
    items = [
        (small_photo_path, "a dog", "a dog on the moon"),
        (small_photo_path, "a dog", "a cat"),
    ]

    results = list(editor.edit_many(items, dry_run=True))

    assert [r.status for r in results] == ["failed", "ok"]
    assert isinstance(results[0].error, ClassifierError) and results[0].stage == "classify"
    assert results[1].region == "foreground" and results[1].mask is not None
    moon = [r for r in llm_env.requests_to() if descriptions_in(r)[1] == "a dog on the moon"]
    assert len(moon) == 2  # retried, then given up


def test_identical_description_pairs_are_asked_once(editor, llm_env, rgba_subject_path):
    llm_env.answer_by(lambda source, target: "background" if "beach" in target else "foreground")
    pairs = [("a cat", "a cat on a beach"), ("a cat", "a dog")] * 3
    items = [{"image": rgba_subject_path, "source": s, "target": t} for s, t in pairs]
    items.append({"image": rgba_subject_path, "source": "a cat", "target": "a dog",
                  "region": "background"})

    results = list(editor.edit_many(items, dry_run=True, llm_concurrency=4))

    assert len(llm_env.requests_to()) == 2
    assert [r.index for r in results] == list(range(7))
    assert [r.region for r in results] == ["background", "foreground"] * 3 + ["background"]
    assert [r.classification.source for r in results] == ["llm"] * 6 + ["override"]
    assert all(r.status == "ok" and r.result is None for r in results)  # dry run: no edit


def test_unloadable_model_stops_the_run_with_its_exit_code(cli, good_photos, tmp_path, model_flags):
    out = tmp_path / "out"
    code, _, stderr = cli(
        "batch", good_photos, "-o", out, "--source", "a cat", "--target", "a dog",
        *model_flags, "--model", tmp_path / "no-such-model",
    )
    assert code == 8 and "error:" in stderr
    lines = read_log(out)
    assert lines[-1]["type"] == "summary" and "ModelLoadError" in lines[-1]["stopped"]
    assert not [e for e in lines if e.get("status") == "ok"]


# -- resume ------------------------------------------------------------------------------------


def test_rerun_skips_finished_items_and_redoes_failed_and_changed_ones(editor, photos, tmp_path):
    out = tmp_path / "out"
    opts = options(out, edit={"region": "background"})
    plan = plan_folder(photos, "a cat", "a cat on grass", opts, recursive=True)

    first = run_batch(editor, plan, opts)
    again = run_batch(editor, plan, opts)
    (out / "cat.edited.png").unlink()
    after_delete = run_batch(editor, plan, opts)
    changed = options(out, edit={"region": "background", "steps": 3})
    changed_plan = plan_folder(photos, "a cat", "a cat on grass", changed, recursive=True)
    after_change = run_batch(editor, changed_plan, changed)
    steps_now = json.loads((out / "cat.edited.json").read_text())["settings"]["steps"]
    # The first settings again: their log lines are there, but their files were overwritten.
    back = run_batch(editor, plan, opts)

    runs = (first, again, after_delete, after_change, back)
    assert [(s.ok, s.failed, s.already_done) for s in runs] == [
        (3, 3, 0), (0, 3, 3), (1, 3, 2), (3, 3, 0), (3, 3, 0)
    ]
    assert steps_now == 3
    assert json.loads((out / "cat.edited.json").read_text())["settings"]["steps"] == 2
    ok = [e for e in read_log(out) if e.get("status") == "ok"]
    assert sorted(e["input"] for e in ok) == sorted(GOOD * 3 + ["cat.png"])
    assert len({(e["input"], e["settings_sha256"]) for e in ok}) == 6  # two settings x 3 inputs


def test_stale_temp_files_and_a_torn_log_line_are_cleaned_at_start(editor, good_photos, tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / ".cat.edited.png.0123abcd.tmp").write_bytes(b"half an image")
    (out / "sub" / ".cat_flipped.edited.json.deadbeef.tmp").write_bytes(b"{")
    (out / "keep.tmp").write_text("not ours")
    (out / RUN_LOG).write_text('{"type": "item", "status": "failed"}\n{"type": "item", "inp')
    opts = options(out, dry_run=True, edit={"region": "foreground"})

    summary = run_batch(editor, plan_folder(good_photos, "a", "b", opts, recursive=True), opts)

    assert summary.stale_temp_files_removed == 2
    assert sorted(p.name for p in out.rglob("*.tmp")) == ["keep.tmp"]
    lines = read_log(out)
    assert lines[0] == {"type": "item", "status": "failed"}
    assert [e["status"] for e in lines[1:-1]] == ["ok"] * 3


def test_score_option_writes_preservation_and_seam_figures_into_sidecars(editor, good_photos, tmp_path):
    out = tmp_path / "out"
    opts = options(out, score=True, edit={"seed": 3, "region": "background"})
    summary = run_batch(editor, plan_folder(good_photos, "a cat", "a cat on grass", opts), opts)

    assert summary.ok == 2
    for sidecar in out.glob("*.edited.json"):
        scores = json.loads(sidecar.read_text())["score"]
        # the edit keeps every pixel outside its mask: infinite PSNR, SSIM 1, no difference
        assert scores["preserved"]["max_abs_diff"] == 0
        assert scores["preserved"]["ssim"] == pytest.approx(1.0)
        assert scores["seam"]["delta_e"] is not None
        assert scores["clip"] is None


class _LosesItsModel:
    """A segmenter that segments the first two images, then finds its model file gone."""

    name = "flaky"

    def __init__(self, segmenter: Any) -> None:
        self.segmenter = segmenter
        self.calls = 0

    def subject_alpha(self, image: Image.Image) -> np.ndarray:
        from regionedit.errors import ModelLoadError

        self.calls += 1
        if self.calls > 2:
            raise ModelLoadError("the segmentation model file disappeared")
        return self.segmenter.subject_alpha(image)

    def describe(self) -> dict[str, Any]:
        return {"segmenter": self.name}


def test_a_model_that_fails_to_load_mid_run_still_hands_over_the_finished_items(
    rembg_segmenter, tiny_inpainter, small_photo_path
):
    from regionedit.errors import ModelLoadError

    segmenter = _LosesItsModel(rembg_segmenter)
    editor = Editor(classifier="offline", segmenter=segmenter, inpainter=tiny_inpainter)
    items = [(small_photo_path, "a cat", f"a cat on a beach {i}") for i in range(4)]
    seen = []
    with pytest.raises(ModelLoadError, match="disappeared"):
        for outcome in editor.edit_many(items, region="background", seed=1, steps=2,
                                        max_side=64, batch_size=2):
            seen.append(outcome)
    # the first batch of two was generated before the failure: both come out, then the error
    assert [o.status for o in seen] == ["ok", "ok"]
    assert [o.index for o in seen] == [0, 1]


def test_a_run_stopped_by_a_model_writes_and_logs_the_items_finished_before(
    rembg_segmenter, tiny_inpainter, small_photo_path, tmp_path
):
    from regionedit.errors import ModelLoadError

    _photos_in_two_shapes(small_photo_path, tmp_path / "in", "wwww")
    segmenter = _LosesItsModel(rembg_segmenter)
    editor = Editor(classifier="offline", segmenter=segmenter, inpainter=tiny_inpainter)
    out = tmp_path / "out"
    opts = options(out, batch_size=2, edit={"region": "background", "max_side": 64})
    plan = plan_folder(tmp_path / "in", "a cat", "a cat on a beach", opts)

    with pytest.raises(ModelLoadError, match="disappeared"):
        run_batch(editor, plan, opts)

    lines = read_log(out)
    items = [e for e in lines if e["type"] == "item"]
    assert [(e["input"], e["status"]) for e in items] == [("photo-0.png", "ok"), ("photo-1.png", "ok")]
    assert sorted(p.name for p in out.glob("*.png")) == ["photo-0.edited.png", "photo-1.edited.png"]
    assert lines[-1]["type"] == "summary" and "disappeared" in lines[-1]["stopped"]


def _photos_in_two_shapes(small_photo_path: Path, folder: Path, shapes: str) -> list[Path]:
    """One photo per letter of ``shapes``: "w" wide (96x64), "t" tall (64x96); each one
    different (flipped or turned), so that a result handed to the wrong item shows."""
    wide = Image.open(small_photo_path).convert("RGB")
    variants = {
        "w": [wide, wide.transpose(Image.Transpose.FLIP_LEFT_RIGHT), wide.rotate(180)],
        "t": [wide.transpose(Image.Transpose.ROTATE_90), wide.transpose(Image.Transpose.ROTATE_270)],
    }
    folder.mkdir()
    paths = []
    for index, shape in enumerate(shapes):
        path = folder / f"photo-{index}.png"
        variants[shape][index % len(variants[shape])].save(path)
        paths.append(path)
    return paths


class CallRecorder:
    """The real inpainter, noting the generation size of every request of every call."""

    name = "recorder"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[list[tuple[int, int]]] = []

    @property
    def native_size(self) -> int:
        return self.inner.native_size

    def load(self) -> Any:
        return self.inner.load()

    def batch_key(self, request: Any) -> Any:
        return self.inner.batch_key(request)

    def inpaint_many(self, requests: list, *, batch_size: int = 1) -> list:
        self.calls.append([self.inner.batch_key(r)[:2] for r in requests])
        return self.inner.inpaint_many(requests, batch_size=batch_size)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def test_a_batch_gives_each_image_exactly_the_pixels_of_a_single_edit(
    editor, small_photo_path, tmp_path
):
    paths = _photos_in_two_shapes(small_photo_path, tmp_path / "in", "wtwwtt")
    Image.open(paths[0]).resize((120, 70)).save(paths[0])  # a third size
    items = [(path, "a cat", "a cat on a beach") for path in paths]
    settings = dict(region="background", seed=1, steps=2, max_side=64, candidates=2)
    alone = [editor.edit(*item, **settings) for item in items]

    results = list(editor.edit_many(items, **settings))

    assert [r.index for r in results] == list(range(6))
    assert [r.status for r in results] == ["ok"] * 6
    for result, expected in zip(results, alone):
        for got, want in zip(result.result.candidates, expected.candidates):
            assert got.seed == want.seed
            assert np.array_equal(np.asarray(got.image), np.asarray(want.image))


def test_each_model_call_holds_one_shape_and_at_most_batch_size_images(
    llm_env, rembg_segmenter, tiny_inpainter, small_photo_path, tmp_path
):
    recorder = CallRecorder(tiny_inpainter)
    editor = Editor(classifier="llm", segmenter=rembg_segmenter, inpainter=recorder)
    paths = _photos_in_two_shapes(small_photo_path, tmp_path / "in", "wtwtwtwww")
    items = [(path, "a cat", "a cat on a beach") for path in paths]
    settings = dict(region="background", seed=1, steps=2, max_side=64)
    alone = [editor.edit(*item, **settings).image for item in items]
    recorder.calls.clear()

    results = list(editor.edit_many(items, batch_size=3, **settings))

    assert recorder.calls and all(len(set(call)) == 1 and len(call) <= 3 for call in recorder.calls)
    assert sum(len(call) for call in recorder.calls) == 9  # every item generated once
    assert any(len(call) > 1 for call in recorder.calls)  # and several per call
    assert [r.index for r in results] == list(range(9))
    assert [r.result.image.size for r in results] == [
        (96, 64) if shape == "w" else (64, 96) for shape in "wtwtwtwww"
    ]
    for result, expected in zip(results, alone):
        # several images per call: the same image up to the float rounding of a batched call
        difference = np.abs(np.asarray(result.result.image, dtype=np.int16) - np.asarray(expected))
        assert difference.max() <= 2


def test_a_batch_of_cut_outs_never_loads_the_segmentation_model(
    llm_env, rembg_segmenter, tiny_inpainter, rgba_subject_path
):
    class Watched:
        """The real segmenter, noting every call that would load or run it."""

        name = "watched"

        def __init__(self) -> None:
            self.calls: list[str] = []

        def load(self) -> Any:
            self.calls.append("load")
            return rembg_segmenter.load()

        def subject_alpha(self, image: Image.Image) -> np.ndarray:
            self.calls.append("subject_alpha")
            return rembg_segmenter.subject_alpha(image)

        def describe(self) -> dict[str, Any]:
            return {"segmenter": self.name}

    segmenter = Watched()
    editor = Editor(classifier="llm", segmenter=segmenter, inpainter=tiny_inpainter)
    items = [(rgba_subject_path, "a cat", f"a cat on a beach {i}") for i in range(3)]

    results = list(editor.edit_many(items, region="background", seed=1, steps=2, max_side=64))

    assert [r.status for r in results] == ["ok"] * 3
    assert [r.result.mask_result.source for r in results] == ["input-alpha"] * 3
    # the images carry their own alpha: the model (a download, for rembg's named models) is
    # neither loaded ahead of time nor run
    assert segmenter.calls == []
