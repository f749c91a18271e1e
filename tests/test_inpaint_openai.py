"""The OpenAI image-edit inpainter, through the real openai client against a fake HTTP server."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support.fake_llm import (
    FAKE_API_KEY,
    FakeOpenAIServer,
    FakeResponse,
    RecordedRequest,
    image_response_json,
)

from regionedit.errors import InpaintError, ModelLoadError
from regionedit.inpaint import Inpainter, get_inpainter
from regionedit.inpaint_openai import OpenAIImageInpainter, endpoint_size

EDITS = "/v1/images/edits"
PAINT = (0, 0, 255)


def paint_transparent_region(request: RecordedRequest) -> FakeResponse:
    """An endpoint that returns the uploaded image with the mask's transparent pixels painted."""
    parts = request.multipart()
    image = np.asarray(Image.open(io.BytesIO(parts["image"].data)).convert("RGB")).copy()
    alpha = np.asarray(Image.open(io.BytesIO(parts["mask"].data)))[..., 3]
    image[alpha == 0] = PAINT
    return FakeResponse(json=image_response_json(Image.fromarray(image)))


@pytest.fixture
def edits(llm_env: FakeOpenAIServer) -> FakeOpenAIServer:
    llm_env.add_route("POST", EDITS, paint_transparent_region)
    return llm_env


def fast_inpainter(**kwargs) -> OpenAIImageInpainter:
    options = dict(timeout=5.0, max_attempts=3, backoff_base=0.001, backoff_max=0.005)
    return OpenAIImageInpainter(**{**options, **kwargs})


def gradient(width: int, height: int) -> Image.Image:
    """A smooth test photo: compresses well and survives resampling nearly unchanged."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack(np.broadcast_arrays(x, y, np.full_like(x * y, 128)), axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def box_mask(width: int, height: int) -> np.ndarray:
    """1 in the middle third, a soft 0.3 ring around it, 0 elsewhere."""
    mask = np.zeros((height, width), dtype=np.float32)
    mask[height // 4 : height * 3 // 4, width // 4 : width * 3 // 4] = 0.3
    mask[height // 3 : height * 2 // 3, width // 3 : width * 2 // 3] = 1.0
    return mask


def test_request_carries_image_mask_prompt_and_size(edits: FakeOpenAIServer) -> None:
    image = gradient(1024, 1024)
    mask = box_mask(1024, 1024)

    result = fast_inpainter().inpaint(image, mask, "a sandy beach", seed=3)

    [request] = edits.requests_to(EDITS)
    parts = request.multipart()
    assert parts["model"].text == "gpt-image-1.5"
    assert parts["prompt"].text == "a sandy beach"
    assert parts["size"].text == "1024x1024"
    assert parts["n"].text == "1"
    assert "response_format" not in parts  # GPT image models always answer base64
    sent_image = Image.open(io.BytesIO(parts["image"].data))
    assert np.array_equal(np.asarray(sent_image.convert("RGB")), np.asarray(image))
    sent_mask = Image.open(io.BytesIO(parts["mask"].data))
    assert sent_mask.mode == "RGBA"
    assert sent_mask.size == (1024, 1024)
    # transparent (regenerate) exactly where our mask is > 0, soft ring included
    alpha = np.asarray(sent_mask)[..., 3]
    assert np.array_equal(alpha == 0, mask > 0)
    assert set(np.unique(alpha)) == {0, 255}

    assert result.mode == "RGB"
    assert result.size == image.size
    assert (np.asarray(result)[mask > 0] == PAINT).all()
    assert np.array_equal(np.asarray(result)[mask == 0], np.asarray(image)[mask == 0])


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [(320, 180, "1536x1024"), (180, 320, "1024x1536"), (500, 480, "1024x1024")],
)
def test_closest_endpoint_size_and_the_way_back(
    edits: FakeOpenAIServer, width: int, height: int, size: str
) -> None:
    image = gradient(width, height)
    mask = box_mask(width, height)

    result = fast_inpainter().inpaint(image, mask, "a beach", seed=0)

    parts = edits.requests_to(EDITS)[0].multipart()
    assert parts["size"].text == size
    sent_mask = Image.open(io.BytesIO(parts["mask"].data))
    assert sent_mask.size == tuple(int(side) for side in size.split("x"))
    # the padding added to reach the endpoint's aspect ratio is kept (opaque), never edited
    alpha = np.asarray(sent_mask)[..., 3]
    assert alpha[0, 0] == alpha[-1, -1] == 255

    assert result.size == (width, height)
    pixels = np.asarray(result).astype(int)
    core = np.zeros_like(mask, dtype=bool)
    core[height * 2 // 5 : height * 3 // 5, width * 2 // 5 : width * 3 // 5] = True
    assert (np.abs(pixels[core] - PAINT) <= 2).all()
    # away from the painted box, the padded round trip lands back on the original pixels
    outside = np.ones_like(mask, dtype=bool)
    outside[height // 5 : height * 4 // 5, width // 5 : width * 4 // 5] = False
    assert np.abs(pixels[outside] - np.asarray(image).astype(int)[outside]).max() <= 3


def test_explicit_size_is_used(edits: FakeOpenAIServer) -> None:
    result = fast_inpainter(size="1024x1024").inpaint(
        gradient(320, 180), box_mask(320, 180), "a beach", seed=0
    )

    assert edits.requests_to(EDITS)[0].multipart()["size"].text == "1024x1024"
    assert result.size == (320, 180)


def test_dall_e_2_gets_a_square_size_and_asks_for_base64(edits: FakeOpenAIServer) -> None:
    fast_inpainter(model="dall-e-2").inpaint(
        gradient(200, 100), box_mask(200, 100), "a beach", seed=0
    )

    parts = edits.requests_to(EDITS)[0].multipart()
    assert parts["size"].text == "256x256"
    assert parts["response_format"].text == "b64_json"


def test_negative_prompt_is_appended(edits: FakeOpenAIServer) -> None:
    fast_inpainter().inpaint(
        gradient(64, 64), box_mask(64, 64), "a beach", seed=0, negative_prompt="people"
    )

    assert edits.requests_to(EDITS)[0].multipart()["prompt"].text == "a beach\nAvoid: people"


def test_empty_mask_sends_nothing(edits: FakeOpenAIServer) -> None:
    image = gradient(64, 48)

    result = fast_inpainter().inpaint(image, np.zeros((48, 64), np.float32), "x", seed=0)

    assert edits.requests == []
    assert np.array_equal(np.asarray(result), np.asarray(image))


def test_mask_of_another_size_is_refused(edits: FakeOpenAIServer) -> None:
    with pytest.raises(InpaintError, match="mask"):
        fast_inpainter().inpaint(gradient(64, 48), np.ones((64, 48), np.float32), "x", seed=0)


def test_transient_failures_are_retried(edits: FakeOpenAIServer) -> None:
    edits.enqueue(FakeResponse.error(503), FakeResponse.error(429), path=EDITS)

    result = fast_inpainter().inpaint(gradient(64, 64), box_mask(64, 64), "a beach", seed=0)

    assert len(edits.requests_to(EDITS)) == 3
    assert result.size == (64, 64)


def test_persistent_failure_is_an_inpaint_error(edits: FakeOpenAIServer) -> None:
    edits.enqueue(*[FakeResponse.error(500, "overloaded")] * 5, path=EDITS)

    with pytest.raises(InpaintError) as caught:
        fast_inpainter(max_attempts=3).inpaint(gradient(64, 64), box_mask(64, 64), "x", seed=0)

    assert len(edits.requests_to(EDITS)) == 3
    assert "3 attempt(s)" in str(caught.value)
    assert "--inpainter diffusers" in str(caught.value)


@pytest.mark.parametrize(("status", "error"), [(401, ModelLoadError), (404, ModelLoadError)])
def test_key_or_model_refused_is_a_model_load_error(
    edits: FakeOpenAIServer, status: int, error: type
) -> None:
    echo = f"Incorrect API key provided: {FAKE_API_KEY}"
    edits.enqueue(FakeResponse.error(status, echo, type_="invalid_request_error"), path=EDITS)

    with pytest.raises(error) as caught:
        fast_inpainter().inpaint(gradient(64, 64), box_mask(64, 64), "x", seed=0)

    assert len(edits.requests_to(EDITS)) == 1
    assert FAKE_API_KEY not in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    if status == 404:  # e.g. a retired model: the message says where to choose another
        assert "--model or Editor(inpaint_model=...)" in str(caught.value)


def test_refused_edit_is_an_inpaint_error_and_not_retried(edits: FakeOpenAIServer) -> None:
    edits.enqueue(
        FakeResponse.error(
            400,
            "Your request was rejected by the safety system.",
            type_="invalid_request_error",
            code="moderation_blocked",
        ),
        path=EDITS,
    )

    with pytest.raises(InpaintError, match="safety system"):
        fast_inpainter().inpaint(gradient(64, 64), box_mask(64, 64), "x", seed=0)

    assert len(edits.requests_to(EDITS)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"created": 1, "data": [{"url": "https://images.example/result.png"}]},
        {"created": 1, "data": []},
        {"created": 1, "data": [{"b64_json": "bm90IGFuIGltYWdl"}]},
    ],
    ids=["url-only", "no-image", "not-an-image"],
)
def test_answer_without_usable_image_is_an_inpaint_error(
    llm_env: FakeOpenAIServer, body: dict
) -> None:
    llm_env.enqueue(FakeResponse(json=body), path=EDITS)

    with pytest.raises(InpaintError) as caught:
        fast_inpainter().inpaint(gradient(64, 64), box_mask(64, 64), "x", seed=0)

    assert "--inpainter diffusers" in str(caught.value)


def test_no_endpoint_is_a_model_load_error() -> None:
    with pytest.raises(ModelLoadError, match="OPENAI_API_KEY"):
        OpenAIImageInpainter()


def test_registered_and_described_without_the_key(llm_env: FakeOpenAIServer) -> None:
    inpainter = get_inpainter("openai", model="gpt-image-2")

    assert isinstance(inpainter, OpenAIImageInpainter)
    assert isinstance(inpainter, Inpainter)
    info = inpainter.describe()
    assert info["inpainter"] == "openai"
    assert info["model"] == "gpt-image-2"
    assert info["base_url"] == llm_env.base_url
    assert info["seed_honoured"] is False
    assert FAKE_API_KEY not in repr(info)


@pytest.mark.parametrize(
    ("width", "height", "model", "expected"),
    [
        (640, 480, "gpt-image-1.5", (1536, 1024)),
        (1000, 1000, "gpt-image-2", (1024, 1024)),
        (480, 900, "gpt-image-1.5", (1024, 1536)),
        (300, 200, "dall-e-2", (512, 512)),
        (3000, 2000, "dall-e-2", (1024, 1024)),
    ],
)
def test_endpoint_size(width: int, height: int, model: str, expected: tuple[int, int]) -> None:
    assert endpoint_size(width, height, model) == expected
