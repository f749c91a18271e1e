"""Stage 2 with rembg's real session code on a tiny ONNX model built by the test support."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regionedit.errors import ModelLoadError
from regionedit.imageio import load_image
from regionedit.models import (
    SEGMENT_MODEL_CPU,
    SEGMENT_MODEL_GPU,
    SEGMENT_MODELS,
    default_segment_model,
)
from regionedit.segment import RembgSegmenter, Segmenter, subject_alpha_from_input


def test_soft_alpha_at_image_size(rembg_segmenter: RembgSegmenter, chelsea_path: Path) -> None:
    photo = load_image(chelsea_path).rgb
    alpha = rembg_segmenter.subject_alpha(photo)
    assert isinstance(rembg_segmenter, Segmenter)
    assert alpha.dtype == np.float32 and alpha.shape == (300, 451)
    assert alpha.min() == 0.0 and alpha.max() == 1.0
    soft = (alpha > 0.05) & (alpha < 0.95)
    assert 0.05 < soft.mean() < 0.95  # a matte with soft edges, not a binary mask
    assert 0.1 < (alpha >= 0.5).mean() < 0.9  # it separates something


def test_alpha_follows_the_image(rembg_segmenter: RembgSegmenter) -> None:
    # the tiny model marks bright pixels: a bright square on a dark ground is the subject
    pixels = np.full((60, 90, 3), 30, np.uint8)
    pixels[20:40, 50:80] = 230
    alpha = rembg_segmenter.subject_alpha(Image.fromarray(pixels))
    assert alpha.shape == (60, 90)
    assert alpha[30, 65] > 0.9 and alpha[5, 5] < 0.1


def test_flat_image_gives_an_empty_matte(rembg_segmenter: RembgSegmenter) -> None:
    # no contrast, no subject: rembg's 0/0 normalisation must give zeros, not NaN or noise
    alpha = rembg_segmenter.subject_alpha(Image.new("RGB", (40, 30), (120, 130, 140)))
    assert alpha.shape == (30, 40) and (alpha == 0).all()


def test_session_is_created_once(
    rembg_segmenter: RembgSegmenter, small_photo_path: Path
) -> None:
    photo = load_image(small_photo_path).rgb
    first = rembg_segmenter.subject_alpha(photo)
    session = rembg_segmenter.session()
    second = rembg_segmenter.subject_alpha(photo)
    assert rembg_segmenter.session() is session
    np.testing.assert_array_equal(first, second)


def test_model_path_loads_through_u2net_custom(
    rembg_home: Path, tiny_rembg_model: str, small_photo_path: Path
) -> None:
    segmenter = RembgSegmenter(model_path=Path(tiny_rembg_model))
    alpha = segmenter.subject_alpha(load_image(small_photo_path).rgb)
    assert alpha.shape == (64, 96)
    assert type(segmenter.session()).__name__ == "U2netCustomSession"
    assert segmenter.describe()["model"] == "u2net_custom"
    assert segmenter.describe()["model_path"] == tiny_rembg_model


def test_stock_model_name_loads_a_file_already_in_u2net_home(
    rembg_home: Path, small_photo_path: Path
) -> None:
    segmenter = RembgSegmenter("u2net")  # rembg finds $U2NET_HOME/u2net.onnx, no download
    alpha = segmenter.subject_alpha(load_image(small_photo_path).rgb)
    assert alpha.shape == (64, 96) and alpha.max() == 1.0
    assert segmenter.describe() == {
        "segmenter": "rembg",
        "model": "u2net",
        "model_path": None,
        "rembg_version": segmenter.describe()["rembg_version"],
    }
    assert segmenter.describe()["rembg_version"]


# -- the default model -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        (["CPUExecutionProvider"], SEGMENT_MODEL_CPU),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], SEGMENT_MODEL_GPU),
        (["OpenVINOExecutionProvider", "CPUExecutionProvider"], SEGMENT_MODEL_CPU),
    ],
)
def test_default_model_follows_the_execution_providers(providers: list, expected: str) -> None:
    segmenter = RembgSegmenter(providers=providers)
    assert segmenter.model_name == expected
    assert segmenter.session_name == expected


def test_a_default_is_never_a_model_without_commercial_use() -> None:
    providers = ["CUDAExecutionProvider", "ROCMExecutionProvider", "OpenVINOExecutionProvider",
                 "CoreMLExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider"]
    chosen = {default_segment_model(providers[i:j]) for i in range(6) for j in range(i, 7)}
    assert chosen == {SEGMENT_MODEL_GPU, SEGMENT_MODEL_CPU}
    assert all(SEGMENT_MODELS[name].commercial_use for name in chosen)
    assert "bria-rmbg" not in chosen and not SEGMENT_MODELS["bria-rmbg"].commercial_use


def test_default_model_loads_offline_from_u2net_home(
    rembg_home: Path, small_photo_path: Path
) -> None:
    import onnxruntime

    segmenter = RembgSegmenter()  # rembg finds the tiny stand-in of the default, no download
    alpha = segmenter.subject_alpha(load_image(small_photo_path).rgb)
    # a matte from 0 to 1 (rembg resizes it to the image after normalising: near the ends)
    assert alpha.shape == (64, 96) and alpha.min() < 0.02 and alpha.max() > 0.98
    from rembg.sessions import sessions

    expected = default_segment_model(onnxruntime.get_available_providers())
    assert type(segmenter.session()) is sessions[expected]
    info = segmenter.describe()
    assert info["model"] == expected and info["chosen"].startswith("auto: ")
    assert segmenter.model_file() == str(rembg_home / f"{expected}.onnx")
    assert segmenter.pending_download() is None


def test_named_model_without_commercial_use_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_birefnet_model: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    (tmp_path / "bria-rmbg.onnx").write_bytes(Path(tiny_birefnet_model).read_bytes())
    with caplog.at_level("WARNING", logger="regionedit"):
        RembgSegmenter("bria-rmbg", providers=["CPUExecutionProvider"]).load()
    assert "may not be used commercially" in caplog.text


# -- local files of other architectures --------------------------------------------------------


def test_birefnet_file_through_model_path(
    rembg_home: Path, tiny_birefnet_model: str, small_photo_path: Path
) -> None:
    segmenter = RembgSegmenter("birefnet-general-lite", model_path=tiny_birefnet_model)
    alpha = segmenter.subject_alpha(load_image(small_photo_path).rgb)
    assert alpha.shape == (64, 96) and alpha.max() == 1.0
    assert type(segmenter.session()).__name__ == "BiRefNetCustomSession"
    assert segmenter.describe()["model"] == "birefnet_custom"


def test_file_of_another_input_size_names_the_fix(
    rembg_home: Path, tiny_birefnet_model: str
) -> None:
    # no model named: the file is taken for U^2-Net (320x320), but it takes 1024x1024
    with pytest.raises(ModelLoadError) as info:
        RembgSegmenter(model_path=tiny_birefnet_model).session()
    message = str(info.value)
    assert "1024x1024" in message and "segment_model=" in message and "\n" not in message


def test_local_file_of_a_model_without_custom_session_is_refused(
    rembg_home: Path, tiny_birefnet_model: str
) -> None:
    with pytest.raises(ModelLoadError, match="cannot load a local file as 'isnet-anime'"):
        RembgSegmenter("isnet-anime", model_path=tiny_birefnet_model).session()


# -- what the first use downloads --------------------------------------------------------------


def test_pending_download_says_what_where_and_how_big(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    segmenter = RembgSegmenter(providers=["CPUExecutionProvider"])
    download = segmenter.pending_download()
    assert segmenter.model_file() is None
    assert download is not None and download.model == SEGMENT_MODEL_CPU
    assert download.size_mb == SEGMENT_MODELS[SEGMENT_MODEL_CPU].download_mb
    assert download.url.startswith("https://") and download.url.endswith(".onnx")
    assert Path(download.path).name == f"{SEGMENT_MODEL_CPU}.onnx"
    assert Path(download.path).is_relative_to(tmp_path)
    assert f"~{download.size_mb:g} MB" in download.describe()
    assert list(tmp_path.iterdir()) == []  # asking downloaded nothing


def test_no_pending_download_for_a_local_file(rembg_home: Path, tiny_rembg_model: str) -> None:
    segmenter = RembgSegmenter(model_path=tiny_rembg_model)
    assert segmenter.pending_download() is None
    assert segmenter.model_file() == tiny_rembg_model


def test_rgba_and_exif_tagged_images_segment_like_their_rgb(
    rembg_segmenter: RembgSegmenter, small_photo_path: Path
) -> None:
    rgb = load_image(small_photo_path).rgb
    expected = rembg_segmenter.subject_alpha(rgb)
    tagged = rgb.copy()
    exif = Image.Exif()
    exif[0x0112] = 6  # must not rotate the mask: pixels handed in are already upright
    tagged.info["exif"] = exif.tobytes()
    np.testing.assert_array_equal(rembg_segmenter.subject_alpha(tagged), expected)
    rgba = rgb.convert("RGBA")
    np.testing.assert_array_equal(rembg_segmenter.subject_alpha(rgba), expected)


# -- loading failures ------------------------------------------------------------------------


def test_missing_model_file(rembg_home: Path) -> None:
    segmenter = RembgSegmenter(model_path=rembg_home / "nope.onnx")
    with pytest.raises(ModelLoadError, match="not found.*nope.onnx|nope.onnx.*not found"):
        segmenter.session()


def test_corrupt_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelLoadError, match="broken.onnx.*(incomplete|ONNX)"):
        RembgSegmenter(model_path=broken).session()


def test_corrupt_stock_model_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    (tmp_path / "u2net.onnx").write_bytes(b"\x00" * 100)  # an interrupted download
    with pytest.raises(ModelLoadError, match="u2net.onnx.*(corrupt|incomplete)"):
        RembgSegmenter("u2net").session()


def test_model_path_outside_rembg_home_is_explained(
    rembg_home: Path, tmp_path: Path, tiny_rembg_model: str
) -> None:
    elsewhere = tmp_path / "models" / "mine.onnx"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(Path(tiny_rembg_model).read_bytes())
    with pytest.raises(ModelLoadError, match="U2NET_HOME") as info:
        RembgSegmenter(model_path=elsewhere).session()
    assert str(elsewhere.parent) in str(info.value)


def test_unknown_model_name_fails_without_network() -> None:
    with pytest.raises(ModelLoadError, match="not a rembg model.*u2net"):
        RembgSegmenter("no-such-model").session()


def test_remote_rembg_backend_is_refused() -> None:
    # rembg also wraps paid web APIs; an edit must not send the photo away unasked
    with pytest.raises(ModelLoadError, match="remote service"):
        RembgSegmenter("atlascloud").session()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_model_that_needs_downloading_fails_fast_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty rembg home and every request routed to a closed local port: rembg's download
    # (pooch -> requests) fails at once, whatever network the machine running the tests has.
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, proxy)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    started = time.monotonic()
    segmenter = RembgSegmenter("u2netp")
    with pytest.raises(ModelLoadError, match="Could not download the rembg model 'u2netp'") as info:
        segmenter.session()
    message = str(info.value)
    download = segmenter.pending_download()
    assert "cannot reach github.com" in message and "To work offline" in message
    assert "~4.6 MB" in message and download.url in message and download.path in message
    assert "segment_model_path=FILE" in message and "\n" not in message
    assert time.monotonic() - started < 30  # a sanity bound against hanging, not a benchmark


# -- the input's own alpha -------------------------------------------------------------------


def test_alpha_from_an_rgba_input(rgba_subject_path: Path) -> None:
    loaded = load_image(rgba_subject_path)
    alpha = subject_alpha_from_input(loaded)
    assert alpha is not None
    assert alpha.dtype == np.float32 and alpha.shape == (85, 128)
    assert alpha.min() == 0.0 and alpha.max() == 1.0
    np.testing.assert_allclose(alpha * 255, loaded.alpha, atol=1e-3)


def test_opaque_or_missing_alpha_gives_none(small_photo_path: Path) -> None:
    assert subject_alpha_from_input(load_image(small_photo_path)) is None
    opaque = Image.open(small_photo_path).convert("RGBA")
    assert subject_alpha_from_input(load_image(opaque)) is None


def test_loading_rembg_leaves_torchs_thread_count_alone() -> None:
    # importing rembg starts numba, which resets the process's OpenMP threads to every core
    code = (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from regionedit.segment import RembgSegmenter\n"
        "RembgSegmenter('u2net').model_file()\n"
        "import rembg\n"
        "print(torch.get_num_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "NUMBA_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
