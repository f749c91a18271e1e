"""Reliability, secrets and paths: the API key never shows up anywhere regionedit writes or
prints, and batch runs never read outside their folders nor overwrite their inputs.

The key checks scan everything: stdout and stderr of the real command (with --verbose, whose
tracebacks print every chained exception), every file under the test's folder, and formatted
tracebacks, while the fake server echoes the key back in its error messages. The path checks
go through the ``regionedit batch`` command line. Already covered: error messages and logs of
the classifier (test_classify.py), the image edit endpoint's description (test_inpaint_openai.py),
manifest paths at planning time and links out of a folder (test_batch.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from support.fake_llm import (
    CHAT_PATH,
    FAKE_API_KEY,
    FakeOpenAIServer,
    FakeResponse,
    RecordedRequest,
    descriptions_in,
    label_answer,
)

from regionedit.classify import LLMClassifier
from regionedit.errors import ClassifierError, InpaintError, ModelLoadError
from regionedit.inpaint_openai import OpenAIImageInpainter

ECHO = f"Incorrect API key provided: {FAKE_API_KEY}. You can find your API key at ..."
KEY = FAKE_API_KEY.encode()


def regionedit(*args: Any) -> subprocess.CompletedProcess:
    """The command line as a user runs it; the environment (fake server, key, U2NET_HOME) is
    inherited from the fixtures."""
    return subprocess.run(
        [sys.executable, "-m", "regionedit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Any]]:
    """Like :func:`regionedit` but in this process, which has the models' libraries imported
    already (seconds faster). main() configures the "regionedit" logger; that is undone after."""
    from regionedit.cli import main

    logger = logging.getLogger("regionedit")
    saved = (list(logger.handlers), logger.level, logger.propagate)

    def run(*args: Any) -> subprocess.CompletedProcess:
        argv = [str(a) for a in args]
        code = main(argv)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, captured.out, captured.err)

    yield run
    logger.handlers[:], logger.level, logger.propagate = saved


def files_containing_the_key(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and KEY in p.read_bytes()]


def echoing_server(server: FakeOpenAIServer) -> None:
    """Chat answers by target: "a fox" -> 401 and "a wolf" -> 500, both echoing the key (the
    500 with Retry-After 0, so its retries cost nothing); anything else -> background."""

    def answer(request: RecordedRequest) -> FakeResponse:
        _, target = descriptions_in(request)
        if "fox" in target:
            return FakeResponse.error(401, ECHO, type_="invalid_request_error")
        if "wolf" in target:
            return FakeResponse.error(500, ECHO, headers={"Retry-After": "0"})
        return label_answer("background", "the setting changes")

    server.add_route("POST", CHAT_PATH, answer)


@pytest.fixture
def model_flags(tiny_sd_path: Path, rembg_home: Path, tiny_rembg_model: str) -> list[Any]:
    return [
        "--model", tiny_sd_path, "--segment-model-path", tiny_rembg_model,
        "--steps", "2", "--max-side", "64", "--seed", "1",
    ]


# -- the key -----------------------------------------------------------------------------------


def test_key_is_nowhere_in_a_verbose_batch_with_failures(
    llm_env: FakeOpenAIServer, model_flags: list, small_photo_path: Path, tmp_path: Path
) -> None:
    echoing_server(llm_env)
    shutil.copy(small_photo_path, tmp_path / "cat.png")
    manifest = tmp_path / "edits.csv"
    manifest.write_text(
        "image,source,target\n"
        "cat.png,a cat indoors,a cat on a beach\n"
        "cat.png,a cat indoors,a fox\n"
        "cat.png,a cat indoors,a wolf\n"
    )
    out = tmp_path / "out"

    proc = regionedit(
        "--verbose", "batch", "--manifest", manifest, "-o", out, "--classifier", "llm",
        "--save-mask", *model_flags,
    )

    assert proc.returncode == 1, proc.stderr  # two items failed
    # the key was sent and echoed back, so there was something to leak
    assert all(r.headers["authorization"] == f"Bearer {FAKE_API_KEY}" for r in llm_env.requests)
    log = [json.loads(line) for line in (out / "run.jsonl").read_text().splitlines()]
    errors = [e["error"] for e in log if e.get("status") == "failed"]
    assert len(errors) == 2 and all("Incorrect API key provided: ***" in e for e in errors)
    assert "retrying" in proc.stderr  # --verbose shows the retries of the 500s
    assert FAKE_API_KEY not in proc.stdout + proc.stderr
    assert files_containing_the_key(tmp_path) == []


def test_key_is_not_in_the_verbose_traceback_of_a_failed_edit(
    llm_env: FakeOpenAIServer, model_flags: list, small_photo_path: Path, tmp_path: Path
) -> None:
    echoing_server(llm_env)
    proc = regionedit(
        "-v", "edit", small_photo_path, "--source", "a cat", "--target", "a fox",
        "--classifier", "llm", "-o", tmp_path / "out.png", *model_flags,
    )
    assert proc.returncode == 4  # ClassifierError
    assert "Traceback" in proc.stderr and "AuthenticationError" in proc.stderr  # the chain
    assert "Incorrect API key provided: ***" in proc.stderr
    assert FAKE_API_KEY not in proc.stdout + proc.stderr
    assert files_containing_the_key(tmp_path) == []


def test_key_is_not_in_any_exception_of_the_chain(
    llm_env: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """What a caller logging the error with its traceback (logger.exception) would print."""
    llm_env.enqueue(FakeResponse.error(401, ECHO), path=CHAT_PATH)
    llm_env.enqueue(FakeResponse.error(403, ECHO), path="/v1/images/edits")
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1.0

    with caplog.at_level(logging.DEBUG):  # every logger: openai's and httpx's too
        with pytest.raises(ClassifierError) as classifier_error:
            LLMClassifier(max_attempts=1).classify("a cat", "a fox")
        with pytest.raises(ModelLoadError) as image_error:
            OpenAIImageInpainter(max_attempts=1).inpaint(
                Image.new("RGB", (32, 32)), mask, "a fox", seed=0
            )
        logging.getLogger("regionedit").exception("failed", exc_info=classifier_error.value)

    for caught in (classifier_error, image_error):
        printed = "".join(traceback.format_exception(caught.value))
        assert "***" in printed and FAKE_API_KEY not in printed
        assert caught.value.__cause__ is not None  # the chain is kept, only redacted
    assert FAKE_API_KEY not in caplog.text
    assert not isinstance(image_error.value, InpaintError)


# -- paths ---------------------------------------------------------------------------------------


def tree(folder: Path, *, skip: Path | None = None) -> dict[str, str]:
    """Every file under ``folder`` (not under ``skip``) with the hash of its content."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and (skip is None or skip not in p.parents)
    }


def test_manifest_rows_cannot_read_or_write_outside_their_folders(
    cli: Callable, model_flags: list, small_photo_path: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "imgs").mkdir(parents=True)
    shutil.copy(small_photo_path, project / "imgs" / "cat.png")
    shutil.copy(small_photo_path, tmp_path / "private.png")
    (project / "imgs" / "link.png").symlink_to(tmp_path / "private.png")
    (project / "imgs" / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    rows = [
        ("imgs/cat.png", None),  # the one good row
        ("../private.png", None),
        (str(tmp_path / "private.png"), None),
        ("imgs/link.png", None),
        ("imgs/linked-dir/private.png", None),
        ("imgs/../../private.png", None),
        ("imgs/cat.png", "../escaped"),
        ("imgs/cat.png", str(tmp_path / "absolute")),
        ("imgs/cat.png", "deep/../../escaped2"),
    ]
    manifest = project / "edits.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"image": image, "source": "a cat", "target": "a dog", "output": output})
            + "\n"
            for image, output in rows
        )
    )
    out = tmp_path / "out"
    before = tree(tmp_path)

    proc = cli(
        "batch", "--manifest", manifest, "-o", out, "--region", "foreground", "--dry-run",
        *model_flags,
    )

    assert proc.returncode == 1, proc.stderr
    log = [json.loads(line) for line in (out / "run.jsonl").read_text().splitlines()]
    status = {e["line"]: e["status"] for e in log if e["type"] == "item"}
    assert status == {1: "ok", **{line: "failed" for line in range(2, len(rows) + 1)}}
    assert tree(tmp_path, skip=out) == before  # nothing outside the output folder changed
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "absolute.png").exists()


def test_links_out_of_the_input_folder_are_not_followed(
    cli: Callable, model_flags: list, small_photo_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(small_photo_path, folder / "cat.png")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(small_photo_path, outside / "private.png")
    (folder / "private.png").symlink_to(outside / "private.png")
    (folder / "more").symlink_to(outside, target_is_directory=True)
    out = tmp_path / "out"

    proc = cli(
        "batch", folder, "-o", out, "--recursive", "--source", "a cat", "--target", "a dog",
        "--region", "foreground", "--dry-run", *model_flags,
    )

    assert proc.returncode == 0, proc.stderr
    items = [json.loads(line) for line in (out / "run.jsonl").read_text().splitlines()][:-1]
    assert [e["input"] for e in items] == ["cat.png"]
    assert "1 non-image file(s) ignored" in proc.stdout  # the link to a file; the linked folder
    assert not list(out.rglob("private*"))  # is not entered at all


def test_links_in_the_output_folder_are_replaced_not_written_through(
    cli: Callable, model_flags: list, small_photo_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(small_photo_path, folder / "cat.png")
    Image.open(small_photo_path).rotate(90).save(folder / "dog.png")
    (tmp_path / "notes.txt").write_text("the user's own file")
    out = tmp_path / "out"
    out.mkdir()
    # earlier "results" that are links: to an input, and to another file of the user's
    (out / "cat.edited.png").symlink_to(folder / "cat.png")
    command = ["batch", folder, "-o", out, "--source", "a cat", "--target", "a dog",
               "--region", "foreground", *model_flags]
    before = tree(tmp_path, skip=out)

    refused = cli(*command)  # writing there would write the input: refused up front

    assert refused.returncode == 9 and "would overwrite an input image" in refused.stderr
    (out / "cat.edited.png").unlink()
    (out / "dog.edited.png").symlink_to(tmp_path / "notes.txt")

    done = cli(*command)  # a link elsewhere is replaced by the result, not followed

    assert done.returncode == 0, done.stderr
    assert tree(tmp_path, skip=out) == before
    assert not (out / "dog.edited.png").is_symlink() and (out / "dog.edited.png").is_file()


def test_a_manifest_output_named_like_an_input_is_refused(
    cli: Callable, model_flags: list, small_photo_path: Path, tmp_path: Path
) -> None:
    shutil.copy(small_photo_path, tmp_path / "a.png")
    Image.open(small_photo_path).rotate(90).save(tmp_path / "b.png")
    manifest = tmp_path / "edits.csv"
    manifest.write_text("image,source,target,output\na.png,a cat,a dog,b\nb.png,a cat,a fox,c\n")
    before = tree(tmp_path)

    # the output folder is the manifest's own: row 1 would write b.png, row 2's input
    proc = cli("batch", "--manifest", manifest, "-o", tmp_path, "--region", "foreground",
                      *model_flags)

    assert proc.returncode == 9
    assert "would overwrite an input image" in proc.stderr
    assert tree(tmp_path) == before


def test_a_manifest_mask_named_like_an_input_is_refused(
    cli: Callable, small_photo_path: Path, tmp_path: Path
) -> None:
    shutil.copy(small_photo_path, tmp_path / "a.png")
    Image.open(small_photo_path).rotate(90).save(tmp_path / "c.mask.png")
    manifest = tmp_path / "edits.csv"
    manifest.write_text("image,source,target,output\na.png,a cat,a dog,c\nc.mask.png,a,b,d\n")
    before = tree(tmp_path)

    # row 1 writes c.png and, with --save-mask, c.mask.png: row 2's input. The refusal comes
    # before any model loads; the missing model keeps this test fast while it is not refused.
    proc = cli("batch", "--manifest", manifest, "-o", tmp_path, "--region", "foreground",
                      "--save-mask", "--model", tmp_path / "no-such-model")

    assert proc.returncode == 9, proc.stdout
    assert tree(tmp_path) == before


def test_edit_refuses_a_mask_or_candidate_path_that_is_the_input(
    cli: Callable, small_photo_path: Path, tmp_path: Path
) -> None:
    for name, extra in (("x.mask.png", ["--save-mask"]), ("x.1.png", ["--candidates", "2"])):
        image = tmp_path / name
        shutil.copy(small_photo_path, image)
        before = image.read_bytes()
        # refused before any model loads (the missing model keeps the unfixed case fast)
        proc = cli("edit", image, "--source", "a cat", "--target", "a dog", "--region",
                          "foreground", "-o", tmp_path / "x.png", *extra,
                          "--model", tmp_path / "no-such-model")
        assert proc.returncode == 9, proc.stderr
        assert image.read_bytes() == before


def test_edit_refuses_an_output_that_is_a_link_to_the_input(
    cli: Callable, model_flags: list, small_photo_path: Path, tmp_path: Path
) -> None:
    image = tmp_path / "in.png"
    shutil.copy(small_photo_path, image)
    (tmp_path / "out.png").symlink_to(image)
    before = image.read_bytes()

    proc = cli("edit", image, "--source", "a cat", "--target", "a dog", "--region",
                      "foreground", "-o", tmp_path / "out.png", *model_flags)

    assert proc.returncode == 9 and "Refusing to overwrite the input" in proc.stderr
    assert image.read_bytes() == before
