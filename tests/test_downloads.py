"""What the first use downloads: said up front; without a network, every missing model named in
one message, at once, instead of one model per run after a dozen retries."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from regionedit import Editor
from regionedit.cli import main
from regionedit.errors import ModelLoadError
from regionedit.inpaint_diffusers import DiffusersInpainter
from regionedit.segment import RembgSegmenter

HUB_ID = "example-org/inpainting-model"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a network: no connection can be opened, no proxy is configured."""

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def empty_rembg_home(tmp_path, monkeypatch):
    home = tmp_path / "rembg-home"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    return home


@pytest.fixture
def hub_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE unset (the test suite sets it), as on a user's machine."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_offline_every_missing_model_is_named_in_one_message(
    no_network, empty_rembg_home, small_photo_path
):
    editor = Editor(classifier="offline", segment_model="u2netp", inpaint_model=HUB_ID,
                    device="cpu")
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as caught:
        editor.edit(small_photo_path, "a cat", "a cat on a beach", region="background")
    message = str(caught.value)
    assert message.startswith("2 model(s) must be downloaded first")
    assert "the rembg model 'u2netp' (~4.6 MB)" in message and "github.com" in message
    assert f"the inpainting model '{HUB_ID}'" in message and f"hf download {HUB_ID}" in message
    assert "inpaint_model=FOLDER" in message and "segment_model_path=FILE" in message
    assert "\n" not in message
    assert time.monotonic() - started < 10  # at once, not after the hub's retries


def test_the_cli_names_them_with_its_flags_on_one_line(
    no_network, empty_rembg_home, small_photo_path, tmp_path, capsys
):
    code = main(["edit", str(small_photo_path), "--source", "a cat", "--target", "a cat on a beach",
                 "--region", "background", "-o", str(tmp_path / "out.png"), "--segment-model",
                 "u2netp", "--model", HUB_ID, "--classifier", "offline", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 8
    (line,) = [text for text in err if text.startswith("error:")]
    assert "--model FOLDER" in line and "--segment-model-path FILE" in line
    assert "inpaint_model=" not in line


def test_without_a_network_the_hub_is_not_retried(no_network, hub_allowed):
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as caught:
        DiffusersInpainter(HUB_ID, device="cpu").load()
    message = str(caught.value)
    assert "cannot reach https://huggingface.co" in message and "To work offline" in message
    assert "model_index.json" not in message
    assert time.monotonic() - started < 10


def test_hub_offline_says_so(no_network):
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        DiffusersInpainter(HUB_ID, device="cpu").load()


def test_what_will_be_downloaded_is_said_before_it_is(
    empty_rembg_home, small_photo_path, tmp_path, monkeypatch, caplog
):
    # a proxy that refuses: the check trusts a configured proxy, the download then fails there
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{closed}")
    editor = Editor(segmenter=RembgSegmenter("u2netp"))

    with caplog.at_level(logging.INFO, logger="regionedit"), pytest.raises(ModelLoadError):
        editor.mask(small_photo_path, "background")

    (notice,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("First use")]
    assert "the rembg model 'u2netp' (~4.6 MB)" in notice
    assert str(empty_rembg_home) in notice


def test_models_already_here_need_no_check(rembg_segmenter, tiny_inpainter, small_photo_path,
                                           no_network):
    editor = Editor(classifier="offline", segmenter=rembg_segmenter, inpainter=tiny_inpainter)
    result = editor.edit(small_photo_path, "a cat", "a cat on a beach", region="background",
                         steps=2, seed=1)
    assert result.image.size == (96, 64)


def test_a_batch_names_every_missing_model_in_one_message_too(
    no_network, empty_rembg_home, small_photo_path
):
    editor = Editor(classifier="offline", segment_model="u2netp", inpaint_model=HUB_ID,
                    device="cpu")
    items = [(small_photo_path, "a cat", f"a cat on a beach {i}") for i in range(3)]
    with pytest.raises(ModelLoadError) as caught:
        list(editor.edit_many(items, region="background"))
    message = str(caught.value)
    assert message.startswith("2 model(s) must be downloaded first")
    assert "'u2netp'" in message and HUB_ID in message
