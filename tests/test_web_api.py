"""``regionedit serve``'s HTTP API through FastAPI's TestClient: single edits (upload, decide,
mask, generate candidates as a job, pick, download), a batch folder's review (items, previews,
picks that survive a rerun of the batch, re-runs of one item), and the safety rules (uploads,
files outside the folder, token and host checks, the API key).

Every stage is real: the fake OpenAI server answers the classifier, the tiny rembg model
segments, the tiny diffusers pipeline generates (2 steps on 96x64 photos).
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.fake_llm import FAKE_API_KEY
from support.web import (
    classify_by_target,
    photo_variants,
    read_log,
    rgb,
    write_manifest,
)

from regionedit import Editor
from regionedit.batch import BatchOptions, BatchSummary, plan_manifest, run_batch
from regionedit.errors import SettingsError
from regionedit.web import check_binding, create_app

BASE = "http://127.0.0.1"


@pytest.fixture
def editor(llm_env: Any, rembg_segmenter: Any, tiny_inpainter: Any) -> Editor:
    llm_env.answer_by(classify_by_target)
    return Editor(classifier="llm", segmenter=rembg_segmenter, inpainter=tiny_inpainter)


@pytest.fixture
def client(editor: Editor, tmp_path: Path):
    with TestClient(create_app(tmp_path / "out", editor), base_url=BASE) as client:
        yield client


def upload(client: TestClient, path: Path, name: str = "cat.png") -> dict[str, Any]:
    response = client.post("/api/uploads", files={"file": (name, path.read_bytes())})
    assert response.status_code == 201, response.text
    return response.json()


def finish(client: TestClient, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job


def error_of(response: Any) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["type"], error["message"]


# -- one photo ---------------------------------------------------------------------------------


def test_a_photo_is_decided_masked_edited_picked_and_downloaded(
    client, editor, rgba_subject_path, tmp_path
):
    photo = upload(client, rgba_subject_path, "cat.png")
    assert (photo["width"], photo["height"]) == (128, 85)

    decision = client.post("/api/classify", json={"source": "a cat", "target": "a beach"}).json()
    assert (decision["label"], decision["source"], decision["question"]) == (
        "background", "llm", None
    )
    masks = {}
    for region, extent in (("background", "auto"), ("foreground", "outline"),
                           ("foreground", "box")):
        made = client.post("/api/mask", json={"upload": photo["id"], "region": region,
                                              "extent": extent})
        assert made.status_code == 200, made.text
        made = made.json()
        picture = client.get(made["url"])
        assert picture.headers["content-type"] == "image/png"
        masks[region, extent] = np.asarray(Image.open(io.BytesIO(picture.content)))
        assert made["extent"] == ("box" if extent == "box" else "outline")
        assert 0 < made["coverage"] < 1
    # flipping the region or the extent changes the mask the page shows
    assert masks["background", "auto"].shape == (85, 128)
    background = masks["background", "auto"]
    outline, box = masks["foreground", "outline"], masks["foreground", "box"]
    assert not np.array_equal(background, outline) and not np.array_equal(outline, box)
    assert (box >= outline).all()  # the box adds room around the outline

    response = client.post("/api/edits", json={
        "upload": photo["id"], "source": "a cat", "target": "a beach",
        "settings": {"candidates": 2, "seed": 5, "steps": 2},
    })
    assert response.status_code == 202
    job = finish(client, response.json())
    assert job["status"] == "done", job
    edit = job["result"]
    assert [c["seed"] for c in edit["candidates"]] == [5, 6]
    folder = tmp_path / "out" / "edits" / edit["id"]
    output, other = folder / "cat.edited.png", folder / "cat.edited.1.png"
    # the web edit gives exactly the pixels of the library's edit with the same settings
    expected = editor.edit(rgba_subject_path, "a cat", "a beach", candidates=2, seed=5, steps=2)
    expected.save(tmp_path / "expected.png")
    assert output.read_bytes() == (tmp_path / "expected.png").read_bytes()
    assert output.read_bytes() != other.read_bytes()
    before = {path: path.read_bytes() for path in (output, other)}

    picked = client.post(f"/api/edits/{edit['id']}/pick", json={"candidate": 1}).json()

    assert output.read_bytes() == before[other] and other.read_bytes() == before[output]
    assert [c["seed"] for c in picked["candidates"]] == [6, 5]
    sidecar = json.loads((folder / "cat.edited.json").read_text())
    assert sidecar["candidate_seeds"] == [6, 5]
    assert (sidecar["pick"]["seed"], sidecar["pick"]["from_candidate"]) == (6, 1)
    archive = zipfile.ZipFile(io.BytesIO(client.get(edit["download"]).content))
    assert sorted(archive.namelist()) == ["cat.edited.json", "cat.edited.mask.png",
                                          "cat.edited.png"]
    assert archive.read("cat.edited.png") == before[other]
    assert client.get(picked["candidates"][0]["file"]).content == before[other]


def test_an_undecidable_edit_is_a_question_then_edits_the_region_chosen(client, small_photo_path):
    photo = upload(client, small_photo_path)
    said = client.post("/api/classify", json={"source": "a cat",
                                              "target": "something else"}).json()
    assert said["label"] == "unidentified"
    assert said["question"].startswith("Which part should change")

    asked = {"upload": photo["id"], "source": "a cat", "target": "something else",
             "settings": {"steps": 2}}
    job = finish(client, client.post("/api/edits", json=asked).json())
    assert (job["status"], job["error"]["type"]) == ("failed", "UnidentifiedRegionError")

    asked["settings"]["region"] = "foreground"
    job = finish(client, client.post("/api/edits", json=asked).json())
    assert job["status"] == "done", job
    classification = job["result"]["classification"]
    assert (job["result"]["region"], classification["source"]) == ("foreground", "override")
    assert "the classifier said unidentified" in classification["reason"]


def test_bad_settings_and_descriptions_are_refused_before_any_job(client, small_photo_path):
    photo = upload(client, small_photo_path)
    bad = client.post("/api/edits", json={"upload": photo["id"], "source": "a cat",
                                          "target": "a dog", "settings": {"steps": 0}})
    assert error_of(bad)[:2] == (400, "SettingsError")
    assert "steps=0" in error_of(bad)[2]
    empty = client.post("/api/classify", json={"source": " ", "target": "a dog"})
    assert error_of(empty)[:2] == (400, "DescriptionError")
    grow = client.post("/api/mask", json={"upload": photo["id"], "region": "foreground",
                                          "grow": -1})
    assert error_of(grow)[:2] == (400, "SettingsError")
    missing = client.post("/api/mask", json={"upload": "0123456789abcdef",
                                             "region": "foreground"})
    assert missing.status_code == 404


def test_one_editor_runs_the_jobs_one_at_a_time_in_order(client, editor, small_photo_path):
    photo = upload(client, small_photo_path)
    inpainter = editor.inpainter
    submitted = [
        client.post("/api/edits", json={"upload": photo["id"], "source": "a cat",
                                        "target": "a beach",
                                        "settings": {"steps": 2, "seed": seed}}).json()
        for seed in (1, 2, 3)
    ]
    assert submitted[2]["ahead"] >= 1  # it waits for the ones before it
    jobs = [finish(client, job) for job in submitted]

    assert [job["status"] for job in jobs] == ["done"] * 3
    for earlier, later in zip(jobs, jobs[1:]):
        assert earlier["finished_at"] <= later["started_at"]
    assert editor.inpainter is inpainter  # one model, loaded once, served every job
    assert client.app.state.editor is editor


# -- uploads -----------------------------------------------------------------------------------


def test_uploads_are_checked_like_any_input(editor, small_photo_path, tmp_path):
    out = tmp_path / "out"
    small = create_app(out, Editor(classifier="offline", max_pixels=5000),
                       max_upload_bytes=20_000)
    png = small_photo_path.read_bytes()
    with TestClient(small, base_url=BASE) as client:
        def send(name: str, data: bytes) -> Any:
            return client.post("/api/uploads", files={"file": (name, data)})

        text = send("notes.png", b"just some text, not a picture")
        assert error_of(text)[:2] == (400, "ImageInputError")
        assert "notes.png is not a PNG, JPEG" in error_of(text)[2]
        truncated = send("cut.png", png[: len(png) // 2])
        assert error_of(truncated)[:2] == (400, "ImageInputError")
        assert "cut.png" in error_of(truncated)[2] and ".tmp" not in error_of(truncated)[2]
        # the CLI's decoder limit: 96x64 is over 5000 pixels
        bomb = send("big.png", png)
        assert error_of(bomb)[:2] == (400, "ImageInputError")
        assert "too large" in error_of(bomb)[2]
        huge = send("huge.png", png + b"\0" * 30_000)
        assert error_of(huge)[:2] == (413, "UploadTooLargeError")
    assert not [p for p in (out / "uploads").rglob("*") if p.is_file()]  # nothing kept


# -- a batch folder ----------------------------------------------------------------------------


@pytest.fixture
def batch(tmp_path, small_photo_path, editor):
    """A real batch run from a manifest: 3 edited items with 2 candidates, one the classifier
    cannot decide, one unreadable; returns (out folder, a function that runs it again)."""
    photos = tmp_path / "in"
    names = [p.name for p in photo_variants(small_photo_path, photos, 4)]
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows = [{"image": names[0], "source": "a cat", "target": "a dog"},
            {"image": names[1], "source": "a cat", "target": "a beach"},
            {"image": names[2], "source": "a cat", "target": "a beach"},
            {"image": names[3], "source": "a cat", "target": "something else"},
            {"image": "broken.png", "source": "a cat", "target": "a beach"}]
    manifest = write_manifest(photos, rows)
    options = BatchOptions(out_dir=tmp_path / "out", save_mask=True,
                           edit={"candidates": 2, "steps": 1, "seed": 3})

    def run() -> BatchSummary:
        return run_batch(editor, plan_manifest(manifest, options), options)

    assert run().failed == 2
    return options.out_dir, run


def test_review_lists_every_item_with_its_status_and_files(client_for, batch):
    out, _ = batch
    client = client_for(out)
    page = client.get("/api/items").json()
    assert page["counts"] == {"all": 5, "done": 3, "decided": 0, "failed": 1,
                              "unidentified": 1, "picked": 0}
    items = {item["input"]: item for item in page["items"]}
    assert [item["status"] for item in page["items"]] == [
        "done", "done", "done", "unidentified", "failed"]
    broken = items["broken.png"]
    assert (broken["error_type"], broken["stage"]) == ("ImageInputError", "load")
    assert "\n" not in broken["error"] and broken["can_rerun"]
    done = items["photo00.png"]
    assert [c["seed"] for c in done["candidates"]] == [3, 4]
    assert done["region"] == "foreground" and done["source"] == "a cat"
    only_failed = client.get("/api/items", params={"status": "unidentified"}).json()
    assert [item["input"] for item in only_failed["items"]] == ["photo03.png"]

    thumbs = out / ".thumbs"
    for url in (done["original"]["thumb"], done["mask"]["thumb"], done["candidates"][1]["thumb"]):
        response = client.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(response.content)).size) <= 256
    made = {path: path.stat().st_mtime_ns for path in thumbs.iterdir()}
    assert len(made) == 3
    client.get(done["candidates"][1]["thumb"])
    assert {path: path.stat().st_mtime_ns for path in thumbs.iterdir()} == made  # cached
    assert client.get(done["candidates"][1]["file"]).content == (
        out / "photo00.edited.1.png").read_bytes()


@pytest.fixture
def client_for(editor):
    clients = []

    def make(out: Path, **kwargs: Any) -> TestClient:
        client = TestClient(create_app(out, editor, **kwargs), base_url=BASE)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_a_pick_in_review_survives_a_rerun_of_the_batch(client_for, batch):
    out, rerun_batch = batch
    client = client_for(out)
    item = next(i for i in client.get("/api/items").json()["items"] if i["input"] == "photo01.png")
    output, candidate = out / "photo01.edited.png", out / "photo01.edited.1.png"
    picked_pixels, first_pixels = rgb(candidate), rgb(output)
    assert not np.array_equal(picked_pixels, first_pixels)

    answer = client.post(f"/api/items/{item['key']}/pick", json={"candidate": 1}).json()

    assert np.array_equal(rgb(output), picked_pixels)
    assert np.array_equal(rgb(candidate), first_pixels)  # no candidate is lost
    assert answer["pick"]["seed"] == 4 and [c["seed"] for c in answer["candidates"]] == [4, 3]
    assert read_log(out)[-1]["type"] == "pick"
    assert client.get("/api/items", params={"status": "picked"}).json()["total"] == 1

    summary = rerun_batch()  # the two failed items fail again; the others are kept
    assert (summary.already_done, summary.ok, summary.failed) == (3, 0, 2)
    assert np.array_equal(rgb(output), picked_pixels)
    assert json.loads((out / "photo01.edited.json").read_text())["pick"]["seed"] == 4


def test_an_item_rerun_from_the_page_is_kept_by_a_rerun_of_the_batch(client_for, batch):
    out, rerun_batch = batch
    client = client_for(out)
    items = {i["input"]: i for i in client.get("/api/items").json()["items"]}

    job = client.post(f"/api/items/{items['photo03.png']['key']}/rerun",
                      json={"region": "background", "seed": 40}).json()
    job = finish(client, job)
    assert job["status"] == "done", job
    answered = job["result"]
    assert (answered["status"], answered["region"]) == ("done", "background")
    assert [c["seed"] for c in answered["candidates"]] == [40, 41]
    assert answered["rerun"]["region"] == "background"
    again = finish(client, client.post(f"/api/items/{items['photo02.png']['key']}/rerun",
                                       json={"seed": 77}).json())
    assert [c["seed"] for c in again["result"]["candidates"]] == [77, 78]
    reran = rgb(out / "photo03.edited.png")

    summary = rerun_batch()  # broken.png still fails
    assert (summary.already_done, summary.ok, summary.failed) == (4, 0, 1)
    assert np.array_equal(rgb(out / "photo03.edited.png"), reran)
    seeds = json.loads((out / "photo02.edited.json").read_text())["candidate_seeds"]
    assert seeds == [77, 78]


def test_review_answers_a_page_of_a_2000_item_folder_quickly(client_for, batch):
    out, _ = batch
    lines = read_log(out)
    items = [line for line in lines if line["type"] == "item"]
    with open(out / "run.jsonl", "a") as f:
        for i in range(2000):
            entry = dict(items[i % len(items)], input=f"many/{i:04d}.png")
            f.write(json.dumps(entry) + "\n")
    client = client_for(out)

    started = time.perf_counter()
    page = client.get("/api/items", params={"offset": 1000, "limit": 50}).json()
    elapsed = time.perf_counter() - started
    assert page["counts"]["all"] == 2005 and len(page["items"]) == 50
    assert page["items"][0]["input"] == "many/0995.png"
    assert elapsed < 2.0, elapsed
    failed = client.get("/api/items", params={"status": "failed", "limit": 10}).json()
    assert failed["total"] == 401 and len(failed["items"]) == 10


# -- safety ------------------------------------------------------------------------------------


def test_files_are_served_only_from_inside_the_folder(client_for, batch, tmp_path):
    out, _ = batch
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), "red").save(secret)
    (out / "link.png").symlink_to(secret)
    forged = {"type": "item", "input": "forged.png", "status": "ok",
              "input_sha256": "0" * 64, "settings_sha256": "1" * 64, "image": str(secret),
              "outputs": {"image": "../secret.png", "mask": "link.png",
                          "sidecar": "/etc/passwd", "candidate1": "%2e%2e/secret.png"}}
    with open(out / "run.jsonl", "a") as f:
        f.write(json.dumps(forged) + "\n")
    client = client_for(out)
    key = next(i["key"] for i in client.get("/api/items").json()["items"]
               if i["input"] == "forged.png")

    for kind in ("image", "mask", "sidecar", "candidate1"):
        assert client.get(f"/api/items/{key}/files/{kind}").status_code == 404
        assert client.get(f"/api/items/{key}/images/{kind}").status_code == 404
    # the original is shown only while it has the content hash the run recorded
    original = client.get(f"/api/items/{key}/images/original")
    assert error_of(original)[:2] == (400, "ImageInputError")
    moved = next(i for i in client.get("/api/items").json()["items"]
                 if i["input"] == "photo00.png")
    (tmp_path / "in" / "photo00.png").unlink()  # an original moved away after the run
    assert error_of(client.get(moved["original"]["thumb"]))[:2] == (400, "ImageInputError")
    for path in ("/static/../run.jsonl", "/static/%2e%2e/%2e%2e/pyproject.toml",
                 "/api/items/..%2F..%2Fsecret.png/files/image",
                 "/api/edits/..%2F..%2Frun/files/image", "/api/uploads/..%2F..%2F/image",
                 "/api/edits/0123456789abcdef/files/..%2Fsidecar"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"red" not in response.content and b"item" not in response.content


def test_other_hosts_need_the_token_and_every_request_carries_it(editor, tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match="--token"):
        check_binding("0.0.0.0", None)
    check_binding("::1", None)
    check_binding("0.0.0.0", "s3cret")

    app = create_app(tmp_path / "out", editor, token="s3cret")
    with TestClient(app, base_url="http://192.168.1.20:7860") as client:
        assert error_of(client.get("/api/info"))[:2] == (401, "Unauthorized")
        assert client.get("/").status_code == 401
        assert client.get("/api/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        opened = client.get("/review?token=s3cret&status=failed", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/review?status=failed"
        assert "HttpOnly" in opened.headers["set-cookie"]
        assert client.get("/api/info").status_code == 200  # the cookie carries it now


def test_without_a_token_only_loopback_names_and_same_origin_writes_are_answered(
    client, small_photo_path
):
    assert client.get("/api/info").status_code == 200
    rebound = client.get("/api/info", headers={"Host": "evil.example:7860"})
    assert error_of(rebound)[:2] == (403, "Forbidden")
    cross = client.post("/api/classify", json={"source": "a", "target": "b"},
                        headers={"Origin": "http://evil.example"})
    assert error_of(cross)[:2] == (403, "Forbidden")
    same = client.post("/api/classify", json={"source": "a cat", "target": "a dog"},
                       headers={"Origin": BASE})
    assert same.status_code == 200
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_api_key_is_never_shown(client, llm_env, small_photo_path):
    assert os.environ["OPENAI_API_KEY"] == FAKE_API_KEY
    photo = upload(client, small_photo_path)
    seen = [client.get(path).text for path in ("/api/info", "/openapi.json", "/", "/review",
                                               "/api/docs")]
    seen.append(client.post("/api/classify", json={"source": "a cat", "target": "a dog"}).text)
    llm_env.answer_by(lambda source, target: "no such label")  # the classifier fails
    seen.append(client.post("/api/classify", json={"source": "a cat", "target": "a cow"}).text)
    job = finish(client, client.post("/api/edits", json={
        "upload": photo["id"], "source": "a cat", "target": "a horse",
        "settings": {"steps": 2}}).json())
    assert job["status"] == "failed"
    seen.append(json.dumps(job))
    assert all(FAKE_API_KEY not in text for text in seen)
    assert "ClassifierError" in seen[-2]


def test_the_api_is_described_by_openapi(client):
    spec = client.get("/openapi.json").json()
    for path, method in (("/api/classify", "post"), ("/api/mask", "post"),
                         ("/api/edits", "post"), ("/api/jobs/{job_id}", "get"),
                         ("/api/items", "get"), ("/api/items/{key}/pick", "post"),
                         ("/api/items/{key}/rerun", "post"), ("/api/uploads", "post")):
        assert method in spec["paths"][path], path
        assert spec["paths"][path][method].get("description"), path
    assert client.get("/api/docs").status_code == 200


# -- picks and the command -----------------------------------------------------------------


@pytest.mark.parametrize("kernel_exchange", [True, False])
def test_exchanging_two_files_keeps_both(tmp_path, monkeypatch, kernel_exchange):
    from regionedit.web import picks

    if not kernel_exchange:  # a system without renameat2: two atomic rewrites instead
        monkeypatch.setattr(picks, "_renameat2", lambda: None)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    picks.exchange_files(a, b)
    assert (a.read_bytes(), b.read_bytes()) == (b"second", b"first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # nothing left


def test_regionedit_serve_answers_until_interrupted(tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = subprocess.run(
        [sys.executable, "-m", "regionedit", "serve", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 2 and "--token" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    server = subprocess.Popen(
        [sys.executable, "-m", "regionedit", "serve", str(tmp_path / "out"), "--port", str(port),
         "--classifier", "offline"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info") as response:
                    info = json.load(response)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.2)
        assert info["out_dir"] == str((tmp_path / "out").resolve())
        assert info["editor"]["classifier"] == "offline"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/review") as response:
            assert b"Review a batch" in response.read()
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output
