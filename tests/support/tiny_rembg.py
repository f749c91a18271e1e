"""Tiny ONNX models with rembg's model interfaces, built at test time, loaded by rembg's real code.

Neither model has trained weights; both mark the brighter regions of a photo as the subject:
brightness is smoothed over about a tenth of the frame, so the matte is made of solid blobs
with soft edges, like a real subject matte, rather than per-pixel texture or a constant.

* U^2-Net's interface (1x1 convolution -> 31x31 average pool -> sigmoid, a few hundred bytes):
  input float32 [1,3,320,320]; rembg min-max normalises output channel 0 and resizes it back.
* BiRefNet's and IS-Net's interface (the default models "birefnet-general" with CUDA and
  "isnet-general-use" on CPU): input float32 [1,3,1024,1024]; rembg min-max normalises output
  channel 0 (after a sigmoid for BiRefNet, whose output is logits). The tiny graph averages
  8x8 blocks first and answers at 128x128 (rembg resizes any output size back to the image),
  so a call stays fast.

Fixtures:
* ``tiny_rembg_home`` (session): a folder usable as ``U2NET_HOME`` holding the U^2-Net model
  as ``tiny_u2net.onnx`` (for ``model_path=``) and as ``u2net.onnx``, and the 1024 px model as
  ``tiny_birefnet.onnx``, ``birefnet-general.onnx``, ``birefnet-general-lite.onnx`` and
  ``isnet-general-use.onnx``: the files rembg's stock sessions look for, so
  ``RembgSegmenter()`` (either default) and ``RembgSegmenter("u2net")`` load without
  downloading.
* ``tiny_rembg_model`` (session): the path (str) of ``tiny_u2net.onnx`` in that folder; rembg
  loads it only while ``U2NET_HOME`` names the folder (use ``rembg_home``, or pass
  ``U2NET_HOME=os.path.dirname(tiny_rembg_model)`` to a subprocess).
* ``tiny_birefnet_model`` (session): the path (str) of ``tiny_birefnet.onnx`` in that folder.
* ``rembg_home``: sets ``U2NET_HOME`` to that folder for one test and returns it.
* ``rembg_segmenter``: a ``RembgSegmenter`` on ``tiny_rembg_model``, CPU only, with
  ``U2NET_HOME`` set for the test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: steepness of the subject/background transition (sigmoid gain on the smoothed brightness)
_GAIN = 12.0
#: smoothed brightness (in ImageNet-normalised units) above which a region counts as subject
_THRESHOLD = 0.3
#: side of the smoothing window, in pixels of the 320x320 model input
_SMOOTHING = 31


def build_tiny_u2net(path: Path) -> Path:
    """Write a U^2-Net-compatible ONNX model (input float32 [1,3,320,320]) to ``path``."""
    import onnx
    from onnx import TensorProto, helper

    # brightness = mean of the three normalised channels, scaled and shifted for the sigmoid
    weight = helper.make_tensor("weight", TensorProto.FLOAT, [1, 3, 1, 1], [_GAIN / 3] * 3)
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [1], [-_GAIN * _THRESHOLD])
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input.1", "weight", "bias"], ["score"]),
            helper.make_node(
                "AveragePool",
                ["score"],
                ["smooth"],
                kernel_shape=[_SMOOTHING, _SMOOTHING],
                pads=[_SMOOTHING // 2] * 4,
                count_include_pad=0,
            ),
            helper.make_node("Sigmoid", ["smooth"], ["d0"]),
        ],
        "tiny_u2net",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, 320, 320])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by any onnxruntime of the last years
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_tiny_birefnet(path: Path) -> Path:
    """Write a BiRefNet-compatible ONNX model (input float32 [1,3,1024,1024], logits) to ``path``."""
    import onnx
    from onnx import TensorProto, helper

    block = 8  # 1024 / 8 = 128: the side of the answer
    smoothing = 13  # about a tenth of the 128-pixel answer, odd so the window is centred
    weight = helper.make_tensor("weight", TensorProto.FLOAT, [1, 3, 1, 1], [_GAIN / 3] * 3)
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [1], [-_GAIN * _THRESHOLD])
    graph = helper.make_graph(
        [
            helper.make_node(
                "AveragePool", ["input_image"], ["blocks"], kernel_shape=[block, block],
                strides=[block, block],
            ),
            helper.make_node("Conv", ["blocks", "weight", "bias"], ["score"]),
            helper.make_node(
                "AveragePool",
                ["score"],
                ["output_image"],
                kernel_shape=[smoothing, smoothing],
                pads=[smoothing // 2] * 4,
                count_include_pad=0,
            ),
        ],
        "tiny_birefnet",
        [helper.make_tensor_value_info("input_image", TensorProto.FLOAT, [1, 3, 1024, 1024])],
        [helper.make_tensor_value_info("output_image", TensorProto.FLOAT, [1, 1, 128, 128])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_rembg_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("u2net_home")
    model = build_tiny_u2net(home / "tiny_u2net.onnx")
    shutil.copyfile(model, home / "u2net.onnx")
    birefnet = build_tiny_birefnet(home / "tiny_birefnet.onnx")
    for name in ("birefnet-general", "birefnet-general-lite", "isnet-general-use"):
        shutil.copyfile(birefnet, home / f"{name}.onnx")
    return home


@pytest.fixture(scope="session")
def tiny_rembg_model(tiny_rembg_home: Path) -> str:
    return str(tiny_rembg_home / "tiny_u2net.onnx")


@pytest.fixture(scope="session")
def tiny_birefnet_model(tiny_rembg_home: Path) -> str:
    return str(tiny_rembg_home / "tiny_birefnet.onnx")


@pytest.fixture
def rembg_home(tiny_rembg_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("U2NET_HOME", str(tiny_rembg_home))
    return tiny_rembg_home


@pytest.fixture
def rembg_segmenter(rembg_home: Path, tiny_rembg_model: str):
    from regionedit.segment import RembgSegmenter

    return RembgSegmenter(model_path=tiny_rembg_model, providers=["CPUExecutionProvider"])
