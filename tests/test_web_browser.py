"""The web app in a real browser: headless Chromium from the system's packages, driven by
Playwright, against the app served by uvicorn on a free port.

The edit page: upload a photo, see the decision and the mask, flip the region, generate two
candidates, compare, pick one; the file on disk then holds the picked pixels. The review page:
a real batch of 20 items; a pick there replaces the item's output file, and the item the
classifier could not decide is edited once its question is answered. Each page is photographed
(into the test's temporary folder).
"""

from __future__ import annotations

import re
import shutil
from typing import Any, Iterator

import pytest

if shutil.which("chromium") is None:
    pytest.skip(
        "Chromium is not installed (apt-get install chromium); the browser tests drive the "
        "system's Chromium and never download one",
        allow_module_level=True,
    )

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from support.web import (  # noqa: E402
    classify_by_target,
    live_server,
    photo_variants,
    read_log,
    write_manifest,
)

from regionedit import Editor  # noqa: E402
from regionedit.batch import BatchOptions, plan_manifest, run_batch  # noqa: E402
from regionedit.web import create_app  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: the longest a step may take before the test fails (tiny models answer in well under this)
WAIT_MS = 20_000
# The pages' Content-Security-Policy forbids eval, and Playwright's wait_for_function and
# evaluate need it: the tests wait on locators only, and so also check that the pages run
# under that policy.


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
def editor(llm_env: Any, rembg_segmenter: Any, tiny_inpainter: Any) -> Editor:
    llm_env.answer_by(classify_by_target)
    return Editor(classifier="llm", segmenter=rembg_segmenter, inpainter=tiny_inpainter)


def test_edit_page_decides_masks_generates_and_picks(page, editor, rgba_subject_path, tmp_path):
    out = tmp_path / "out"
    with live_server(create_app(out, editor)) as url:
        page.goto(url + "/")
        page.set_input_files("#file", str(rgba_subject_path))
        expect(page.locator("#decide")).to_be_enabled()
        page.fill("#source", "a cat")
        page.fill("#target", "a beach")
        page.click("#decide")
        page.wait_for_selector("#overlay:not(.hidden)")
        assert "background" in page.inner_text("#facts")
        first_mask = page.get_attribute("#overlay", "data-mask")

        page.check("input[name=region][value=foreground]")  # the user flips the region
        expect(page.locator("#mask-facts")).to_contain_text("foreground")
        assert page.get_attribute("#overlay", "data-mask") != first_mask
        assert "your choice" in page.inner_text("#facts")

        page.fill("#candidates", "2")
        page.fill("#steps", "2")
        page.fill("#seed", "21")
        page.click("#go")
        page.wait_for_selector("#results:not(.hidden)")
        assert page.locator("#candidates-row figure").count() == 2
        page.screenshot(path=str(tmp_path / "web-edit.png"), full_page=True)

        (folder,) = (out / "edits").iterdir()
        output, other = folder / "subject_rgba.edited.png", folder / "subject_rgba.edited.1.png"
        picked = other.read_bytes()
        assert picked != output.read_bytes()
        page.click("#candidates-row figure:nth-child(2) img")  # compare candidate 1
        assert "candidate 1" in page.inner_text("#compare-box")
        page.click("#pick")
        expect(page.locator("#pick-text")).to_have_text(re.compile("^Picked: seed 22"))

    assert output.read_bytes() == picked
    sidecar = (folder / "subject_rgba.edited.json").read_text()
    assert '"from_candidate": 1' in sidecar and '"region": "foreground"' in sidecar


def test_review_page_shows_a_batch_and_a_pick_replaces_the_output(
    page, editor, small_photo_path, tmp_path
):
    photos = tmp_path / "in"
    names = [path.name for path in photo_variants(small_photo_path, photos, 20)]
    # two items with candidates, one the classifier cannot decide, the rest edited once
    rows = [{"image": name, "source": "a cat", "target": "a beach"} for name in names]
    rows[0]["candidates"] = rows[1]["candidates"] = 2
    rows[5]["target"] = "something else"
    out = tmp_path / "out"
    options = BatchOptions(out_dir=out, save_mask=True, edit={"steps": 1, "seed": 5})
    summary = run_batch(editor, plan_manifest(write_manifest(photos, rows), options), options)
    assert (summary.ok, summary.failed) == (19, 1)

    with live_server(create_app(out, editor)) as url:
        page.goto(url + "/review")
        page.wait_for_selector("article.item >> nth=19")
        assert page.locator("article.item").count() == 20
        assert "Done (19)" in page.inner_text("#filters")
        assert "Unidentified (1)" in page.inner_text("#filters")
        assert "Which part should change" in page.inner_text("article.item >> nth=5")
        page.wait_for_load_state("networkidle")  # the first thumbnails, made and cached
        assert len(list((out / ".thumbs").iterdir())) >= 4
        page.screenshot(path=str(tmp_path / "web-review.png"))

        first = page.locator("article.item >> nth=0")
        assert "photo00.png" in first.inner_text()
        output, candidate = out / "photo00.edited.png", out / "photo00.edited.1.png"
        picked = candidate.read_bytes()
        first.locator("button[data-pick='1']").click()
        page.wait_for_selector("article.item:first-child .badge.picked")

        # the undecided item answers its question: re-run with the region chosen
        undecided = page.locator("article.item >> nth=5")
        undecided.locator("button[data-answer='background']").click()
        expect(undecided.locator(".badge.done")).to_be_visible()
        expect(undecided).to_contain_text("output · seed")

    assert output.read_bytes() == picked
    picks = [line for line in read_log(out) if line["type"] == "pick"]
    assert [line["input"] for line in picks] == ["photo00.png"]
    rerun = read_log(out)[-1]
    assert (rerun["input"], rerun["status"], rerun["region"]) == ("photo05.png", "ok", "background")
    assert (out / rerun["outputs"]["image"]).is_file()
