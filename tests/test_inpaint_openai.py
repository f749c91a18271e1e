"""The OpenAI image-edit inpainter, through the real openai client against a fake HTTP server."""

from __future__ import annotations

import io
import typing

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
from regionedit.inpaint_openai import DEFAULT_IMAGE_MODEL, OpenAIImageInpainter, endpoint_size
from regionedit.models import RETIRED

EDITS = "/v1/images/edits"
PAINT = (0, 0, 255)

# What the image edit endpoint accepts, per the openai SDK's parameter notes (openai 3.57):
#: models that take any WIDTHxHEIGHT (sides divisible by 16, aspect ratio within 1:3 and 3:1)
ANY_RESOLUTION = {
    "gpt-image-2", "gpt-image-2-2026-04-21",
    "gpt-image-2.5-sunburst", "gpt-image-2.5-sunburst-2026-09-08",
    "gpt-image-2.5-flare", "gpt-image-2.5-flare-2026-09-08",
}
#: the sizes every GPT image model takes
STANDARD_SIZES = {"1024x1024", "1536x1024", "1024x1536"}
#: models this fake server serves
SERVED = ANY_RESOLUTION | {"gpt-image-2.6-sunburst", "gpt-image-2.6-flare"}
#: fields a GPT image edit request may carry (markup, streaming, GIF and SVG fields aside)
GPT_IMAGE_FIELDS = {
    "image", "mask", "prompt", "model", "n", "size", "quality", "background", "output_format",
    "output_compression", "complexity", "moderation", "safety_identifier", "user",
}


def refusal(status: int, message: str, code: str) -> FakeResponse:
    return FakeResponse.error(status, message, type_="invalid_request_error", code=code)


def image_edit_endpoint(request: RecordedRequest) -> FakeResponse:
    """An image edit endpoint speaking today's request shapes: it refuses what the model does
    not take (like the real one, with a 400 naming the parameter) and otherwise returns the
    uploaded image with the mask's transparent pixels painted."""
    parts = request.multipart()
    model = parts["model"].text
    if model not in SERVED:
        return refusal(404, f"The model `{model}` does not exist or you do not have access "
                       "to it.", "model_not_found")
    for name in sorted(set(parts) - GPT_IMAGE_FIELDS):  # response_format, input_fidelity...
        return refusal(400, f"Unknown parameter: '{name}'.", "unknown_parameter")
    width, height = (int(side) for side in parts["size"].text.split("x"))
    if model in ANY_RESOLUTION:
        if width % 16 or height % 16 or not 1 / 3 <= width / height <= 3:
            return refusal(400, f"Invalid size '{parts['size'].text}'.", "invalid_value")
    elif parts["size"].text not in STANDARD_SIZES:
        return refusal(400, f"Invalid size '{parts['size'].text}'.", "invalid_value")
    image = Image.open(io.BytesIO(parts["image"].data))
    mask = Image.open(io.BytesIO(parts["mask"].data))
    if mask.mode != "RGBA" or mask.size != image.size or image.size != (width, height):
        return refusal(400, "The mask must be an RGBA PNG of the image's size.", "invalid_value")
    pixels = np.asarray(image.convert("RGB")).copy()
    pixels[np.asarray(mask)[..., 3] == 0] = PAINT
    return FakeResponse(json=image_response_json(Image.fromarray(pixels)))


def legacy_square_endpoint(request: RecordedRequest) -> FakeResponse:
    """An OpenAI-compatible server still serving the DALL-E 2 request shape (square sizes,
    answers base64 only when asked with response_format)."""
    parts = request.multipart()
    assert parts["response_format"].text == "b64_json"
    assert parts["size"].text in {"256x256", "512x512", "1024x1024"}
    pixels = np.asarray(Image.open(io.BytesIO(parts["image"].data)).convert("RGB")).copy()
    pixels[np.asarray(Image.open(io.BytesIO(parts["mask"].data)))[..., 3] == 0] = PAINT
    return FakeResponse(json=image_response_json(Image.fromarray(pixels)))


@pytest.fixture
def edits(llm_env: FakeOpenAIServer) -> FakeOpenAIServer:
    llm_env.add_route("POST", EDITS, image_edit_endpoint)
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
    image = gradient(1536, 1024)  # already the default model's resolution for its aspect
    mask = box_mask(1536, 1024)

    result = fast_inpainter().inpaint(image, mask, "a sandy beach", seed=3)

    [request] = edits.requests_to(EDITS)
    parts = request.multipart()
    assert set(parts) == {"model", "image", "mask", "prompt", "size", "n"}
    assert parts["model"].text == DEFAULT_IMAGE_MODEL
    assert parts["prompt"].text == "a sandy beach"
    assert parts["size"].text == "1536x1024"
    assert parts["n"].text == "1"
    sent_image = Image.open(io.BytesIO(parts["image"].data))
    assert np.array_equal(np.asarray(sent_image.convert("RGB")), np.asarray(image))
    sent_mask = Image.open(io.BytesIO(parts["mask"].data))
    assert sent_mask.mode == "RGBA"
    assert sent_mask.size == (1536, 1024)
    # transparent (regenerate) exactly where our mask is > 0, soft ring included
    alpha = np.asarray(sent_mask)[..., 3]
    assert np.array_equal(alpha == 0, mask > 0)
    assert set(np.unique(alpha)) == {0, 255}

    assert result.mode == "RGB"
    assert result.size == image.size
    assert (np.asarray(result)[mask > 0] == PAINT).all()
    assert np.array_equal(np.asarray(result)[mask == 0], np.asarray(image)[mask == 0])


def test_default_model_is_current() -> None:
    import openai.types

    assert DEFAULT_IMAGE_MODEL not in RETIRED
    assert DEFAULT_IMAGE_MODEL in typing.get_args(openai.types.ImageModel)
    assert OpenAIImageInpainter(api_key="k").model == DEFAULT_IMAGE_MODEL


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("gpt-image-2.5-sunburst", "1680x944"),
        ("gpt-image-2.5-flare-2026-09-08", "1680x944"),
        ("gpt-image-2", "1680x944"),
        ("gpt-image-2.6-sunburst", "1536x1024"),
        ("gpt-image-2.6-flare", "1536x1024"),
    ],
)
def test_each_model_gets_only_what_it_takes(
    edits: FakeOpenAIServer, model: str, size: str
) -> None:
    # the server refuses any field or size its model does not take (image_edit_endpoint)
    result = fast_inpainter(model=model).inpaint(
        gradient(320, 180), box_mask(320, 180), "a beach", seed=0
    )

    parts = edits.requests_to(EDITS)[0].multipart()
    assert set(parts) == {"model", "image", "mask", "prompt", "size", "n"}
    assert parts["size"].text == size
    assert result.size == (320, 180)
    assert (np.asarray(result)[90, 160] == PAINT).all()


@pytest.mark.parametrize(
    ("model", "width", "height", "size"),
    [
        ("gpt-image-2.6-sunburst", 320, 180, "1536x1024"),
        ("gpt-image-2.6-sunburst", 180, 320, "1024x1536"),
        ("gpt-image-2.6-sunburst", 500, 480, "1024x1024"),
        ("gpt-image-2.5-sunburst", 600, 100, "2160x720"),  # past 3:1: padded to 3:1
        ("gpt-image-2.5-sunburst", 500, 480, "1280x1232"),
    ],
)
def test_generation_size_and_the_way_back(
    edits: FakeOpenAIServer, model: str, width: int, height: int, size: str
) -> None:
    image = gradient(width, height)
    mask = box_mask(width, height)

    result = fast_inpainter(model=model).inpaint(image, mask, "a beach", seed=0)

    parts = edits.requests_to(EDITS)[0].multipart()
    assert parts["size"].text == size
    sent_mask = Image.open(io.BytesIO(parts["mask"].data))
    assert sent_mask.size == tuple(int(side) for side in size.split("x"))
    # the padding added to reach the generation size's aspect ratio is kept (opaque)
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


def test_dall_e_2_shape_gets_a_square_size_and_asks_for_base64(
    llm_env: FakeOpenAIServer,
) -> None:
    # retired at OpenAI, still the request shape of some OpenAI-compatible servers
    llm_env.add_route("POST", EDITS, legacy_square_endpoint)

    result = fast_inpainter(model="dall-e-2").inpaint(
        gradient(200, 100), box_mask(200, 100), "a beach", seed=0
    )

    parts = llm_env.requests_to(EDITS)[0].multipart()
    assert parts["size"].text == "256x256"
    assert parts["response_format"].text == "b64_json"
    assert result.size == (200, 100)


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

    message = str(caught.value)
    assert len(edits.requests_to(EDITS)) == 3
    assert "3 attempt(s)" in message
    assert "Or use the local inpainter" in message and "Or or" not in message
    assert "Editor(inpainter='diffusers')" in message


def test_refused_key_is_a_model_load_error(edits: FakeOpenAIServer) -> None:
    echo = f"Incorrect API key provided: {FAKE_API_KEY}"
    edits.enqueue(FakeResponse.error(401, echo, type_="invalid_request_error"), path=EDITS)

    with pytest.raises(ModelLoadError) as caught:
        fast_inpainter().inpaint(gradient(64, 64), box_mask(64, 64), "x", seed=0)

    assert len(edits.requests_to(EDITS)) == 1
    assert FAKE_API_KEY not in str(caught.value)
    assert "HTTP 401" in str(caught.value)


@pytest.mark.parametrize("model", ["gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"])
def test_retired_model_refused_names_its_date_and_where_to_choose(
    edits: FakeOpenAIServer, model: str
) -> None:
    with pytest.raises(ModelLoadError) as caught:
        fast_inpainter(model=model).inpaint(gradient(64, 64), box_mask(64, 64), "x", seed=0)

    message = str(caught.value)
    assert len(edits.requests_to(EDITS)) == 1  # a refusal is not retried
    assert "\n" not in message
    assert f"{model!r}" in message and "shut down on 2026-12-01" in message
    assert "Editor(inpaint_model=...)" in message and "OpenAIImageInpainter(model=...)" in message
    assert "OpenAIImageInpainter(model=...)" in message and repr(DEFAULT_IMAGE_MODEL) in message
    assert "Or or" not in message


def test_unknown_model_refused_says_so(edits: FakeOpenAIServer) -> None:
    with pytest.raises(ModelLoadError) as caught:
        fast_inpainter(model="gpt-image-9").inpaint(
            gradient(64, 64), box_mask(64, 64), "x", seed=0
        )

    message = str(caught.value)
    assert "'gpt-image-9'" in message and "does not know it" in message
    assert "OpenAIImageInpainter(model=...)" in message and "/v1" in message


def test_model_refused_with_400_model_not_found(edits: FakeOpenAIServer) -> None:
    edits.enqueue(refusal(400, "The model `gpt-image-1` has been shut down.", "model_not_found"),
                  path=EDITS)

    with pytest.raises(ModelLoadError, match="'gpt-image-1' .* shut down on 2026-10-23"):
        fast_inpainter(model="gpt-image-1").inpaint(
            gradient(64, 64), box_mask(64, 64), "x", seed=0
        )


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

    assert "Editor(inpainter='diffusers')" in str(caught.value)


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
        (640, 480, "gpt-image-2.6-flare", (1536, 1024)),
        (480, 900, "gpt-image-2.6-sunburst", (1024, 1536)),
        (640, 480, "some-other-server-model", (1536, 1024)),
        (300, 200, "dall-e-2", (512, 512)),
        (3000, 2000, "dall-e-2", (1024, 1024)),
    ],
)
def test_fixed_endpoint_sizes(
    width: int, height: int, model: str, expected: tuple[int, int]
) -> None:
    assert endpoint_size(width, height, model) == expected


@pytest.mark.parametrize(
    ("width", "height"), [(640, 480), (1000, 1000), (480, 900), (64, 48), (6000, 4000),
                          (3000, 500), (100, 2000)],
)
def test_any_resolution_follows_the_image(width: int, height: int) -> None:
    gen_width, gen_height = endpoint_size(width, height, "gpt-image-2.5-sunburst")
    assert gen_width % 16 == 0 and gen_height % 16 == 0
    assert 1 / 3 <= gen_width / gen_height <= 3
    aspect = min(max(width / height, 1 / 3), 3)
    assert abs(gen_width / gen_height / aspect - 1) < 0.03
    assert abs(gen_width * gen_height / (1536 * 1024) - 1) < 0.06
