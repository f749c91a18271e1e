"""Inpainting through an OpenAI-compatible image edit endpoint (``POST /v1/images/edits``).

No local model: the image, a mask and the prompt go to the endpoint, which returns the edited
image. Each family of image models takes its own request shape (:data:`REQUEST_SHAPES`): the
gpt-image-2 line generates at any resolution of the image's aspect ratio, older models at a few
fixed sizes; the image is scaled (and padded where the aspect ratio differs) to the size sent
and the result cropped and scaled back. Like every inpainter it returns the generated image
uncomposited; the editor pastes the original pixels back outside the mask.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ._openai_api import (
    CallFailed,
    Endpoint,
    LazyClient,
    RetryPolicy,
    call_with_retries,
    explain_failure,
)
from .errors import InpaintError, ModelLoadError, option
from .inpaint import InpaintRequest
from .models import DEFAULT_IMAGE_EDIT_MODEL, retirement

if TYPE_CHECKING:  # pragma: no cover
    import openai

__all__ = ["DEFAULT_IMAGE_MODEL", "OpenAIImageInpainter", "RequestShape", "REQUEST_SHAPES",
           "request_shape", "endpoint_size"]

logger = logging.getLogger("regionedit")

DEFAULT_IMAGE_MODEL = DEFAULT_IMAGE_EDIT_MODEL



def _use_diffusers() -> str:
    local = option("Editor(inpainter='diffusers')", "--inpainter diffusers")
    return f"use the local inpainter instead: {local}"


def _choose_model() -> str:
    return option("Editor(inpaint_model=...) or OpenAIImageInpainter(model=...)", "--model")


@dataclass(frozen=True)
class RequestShape:
    """What one family of image models takes in an edit request, beyond image, mask, prompt."""

    #: the sizes (width, height) the family generates at; empty: any resolution (see below)
    sizes: tuple[tuple[int, int], ...] = ()
    #: dall-e-2: the smallest square that does not downscale the image, rather than the
    #: closest aspect ratio
    smallest_square: bool = False
    #: fields sent as they are
    fields: tuple[tuple[str, str], ...] = ()


#: the standard sizes every GPT image model generates at
_STANDARD = RequestShape(sizes=((1024, 1024), (1536, 1024), (1024, 1536)))
#: any WIDTHxHEIGHT: sides multiples of 16, aspect ratio within 1:3 and 3:1 (the SDK's notes)
_ANY_RESOLUTION = RequestShape()

#: model name prefix -> request shape; the first matching prefix wins, other names (models of
#: other OpenAI-compatible servers) get the standard sizes. From the openai SDK's parameter
#: notes: input_fidelity is accepted only by gpt-image-1.5 and -1-mini (never sent: the editor
#: keeps every pixel outside the mask itself), response_format only by the retired DALL-E
#: models (GPT image models always answer base64), arbitrary resolutions only by the models
#: listed for them (gpt-image-2 and gpt-image-2.5, with their snapshots).
REQUEST_SHAPES: tuple[tuple[str, RequestShape], ...] = (
    # named in the model list, not yet among the models that take arbitrary resolutions
    ("gpt-image-2.6-", _STANDARD),
    ("gpt-image-2", _ANY_RESOLUTION),
    ("gpt-image-1", _STANDARD),
    ("chatgpt-image-", _STANDARD),
    (
        "dall-e-2",
        RequestShape(
            sizes=((256, 256), (512, 512), (1024, 1024)),
            smallest_square=True,
            fields=(("response_format", "b64_json"),),
        ),
    ),
)

#: pixels generated with an arbitrary resolution: those of the largest standard size
_RESOLUTION_PIXELS = 1536 * 1024
_MULTIPLE = 16
_MAX_ASPECT = 3.0


def request_shape(model: str) -> RequestShape:
    """The request shape of ``model``'s family (:data:`REQUEST_SHAPES`)."""
    return next((shape for prefix, shape in REQUEST_SHAPES if model.startswith(prefix)), _STANDARD)


def endpoint_size(width: int, height: int, model: str) -> tuple[int, int]:
    """The generation size ``model`` is asked for, for an image of ``width x height``.

    Models that take any resolution get the image's aspect ratio (kept within 1:3 and 3:1) at
    about 1.5 megapixels, each side a multiple of 16; the others their fixed size closest in
    aspect ratio (dall-e-2: the smallest square that does not downscale the image, else 1024).
    """
    shape = request_shape(model)
    if shape.smallest_square:
        return next((size for size in shape.sizes if size[0] >= max(width, height)),
                    shape.sizes[-1])
    if shape.sizes:
        aspect = math.log(width / height)
        return min(shape.sizes, key=lambda size: abs(math.log(size[0] / size[1]) - aspect))
    aspect = min(max(width / height, 1 / _MAX_ASPECT), _MAX_ASPECT)
    gen_height = math.sqrt(_RESOLUTION_PIXELS / aspect)
    sides = (gen_height * aspect, gen_height)
    gen_width, gen_height = (max(_MULTIPLE, round(side / _MULTIPLE) * _MULTIPLE) for side in sides)
    # rounding must not carry a 3:1 image past 3:1 (the limit is the server's)
    gen_width = min(gen_width, int(gen_height * _MAX_ASPECT))
    gen_height = min(gen_height, int(gen_width * _MAX_ASPECT))
    return gen_width, gen_height


def _parse_size(size: str) -> tuple[int, int]:
    try:
        width, height = (int(side) for side in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like '1024x1024', got {size!r}") from None
    return width, height


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _model_refused(exc: BaseException) -> bool:
    """Whether the server refused the request for its model (unknown, retired, no such)."""
    status = getattr(exc, "status_code", None)
    if status == 404:
        return True
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return status == 400 and code in ("model_not_found", "invalid_model", "model_deprecated")


class OpenAIImageInpainter:
    """Inpaint with an OpenAI-compatible image edit endpoint (``client.images.edit``).

    ``model`` defaults to :data:`regionedit.models.DEFAULT_IMAGE_EDIT_MODEL`; the request sends
    only what its family takes (:data:`REQUEST_SHAPES`). ``api_key`` and ``base_url`` default
    to ``$OPENAI_API_KEY`` and ``$OPENAI_BASE_URL``. ``size`` ("WIDTHxHEIGHT") forces the
    generation size; by default it follows the image (:func:`endpoint_size`). Transient failures
    are retried with the same policy as the LLM classifier (``max_attempts`` requests in all);
    ``timeout`` bounds each request as a whole, in seconds.

    The endpoint has no seed, step count, guidance or strength: ``seed`` is accepted (the editor
    records it) but the result is not reproducible, and the other knobs are ignored.
    ``negative_prompt`` is appended to the prompt as "Avoid: ...". ``max_side`` has no effect:
    the endpoint decides the resolution.

    Raises ModelLoadError when no endpoint is configured or the endpoint refuses the key or the
    model (naming its retirement date where :data:`regionedit.models.RETIRED` knows it),
    InpaintError when an edit fails.
    """

    name = "openai"

    def __init__(
        self,
        model: str = DEFAULT_IMAGE_MODEL,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        size: str | None = None,
        timeout: float = 120,
        max_attempts: int = 4,
        client: openai.OpenAI | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        self.model = model
        self.size = _parse_size(size) if size else None
        self.policy = RetryPolicy(
            max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max
        )
        if client is not None:
            self._endpoint = Endpoint.of_client(client)
        else:
            self._endpoint = Endpoint.resolve(api_key, base_url)
            if not self._endpoint.configured:
                raise ModelLoadError(
                    "The OpenAI image inpainter needs an endpoint: set OPENAI_API_KEY (or "
                    f"OPENAI_BASE_URL for an OpenAI-compatible server), or {_use_diffusers()}."
                )
        self._client = LazyClient(self._endpoint, timeout, client)

    # -- the Inpainter contract: one request per call, sizes chosen by the endpoint --------------

    #: the endpoint decides the resolution
    native_size = None

    def load(self) -> None:
        """Nothing to load: the model runs at the endpoint."""

    def batch_key(self, request: InpaintRequest) -> None:
        """The endpoint takes one image per request."""
        return None

    def inpaint_many(
        self, requests: Sequence[InpaintRequest], *, batch_size: int = 1
    ) -> list[Image.Image | InpaintError]:
        """One request to the endpoint per image; a failed one does not stop the others
        (:class:`~regionedit.errors.ModelLoadError`, a refused key or model, is raised)."""
        results: list[Image.Image | InpaintError] = []
        for request in requests:
            try:
                results.append(self.inpaint(
                    request.image, request.mask, request.prompt, seed=request.seed,
                    negative_prompt=request.negative_prompt,
                ))
            except InpaintError as exc:
                results.append(exc)
        return results

    def inpaint(
        self,
        image: Image.Image,
        mask: np.ndarray,
        prompt: str,
        *,
        seed: int,
        negative_prompt: str | None = None,
        steps: int = 30,
        guidance_scale: float = 7.5,
        strength: float = 1.0,
        max_side: int | None = None,
    ) -> Image.Image:
        """Regenerate the region where ``mask`` > 0; returns an RGB image at ``image.size``."""
        image = image.convert("RGB")
        width, height = image.size
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (height, width):
            raise InpaintError(
                f"The mask is {mask.shape} but the image is {height}x{width} (height x width); "
                "pass a mask of the image's size."
            )
        if not (mask > 0).any():
            logger.debug("Empty mask: nothing to regenerate, no request sent")
            return image.copy()

        gen_width, gen_height = self.size or endpoint_size(width, height, self.model)
        # scale to fit inside the generation size, then pad: the aspect ratio is kept
        scale = min(gen_width / width, gen_height / height)
        fit_width = max(1, round(width * scale))
        fit_height = max(1, round(height * scale))
        left, top = (gen_width - fit_width) // 2, (gen_height - fit_height) // 2
        fitted = (left, top, left + fit_width, top + fit_height)

        canvas = Image.new("RGB", (gen_width, gen_height))
        canvas.paste(image.resize((fit_width, fit_height), Image.Resampling.LANCZOS), fitted[:2])
        mask_image = Image.fromarray(mask).resize(
            (fit_width, fit_height), Image.Resampling.BILINEAR
        )
        # The endpoint edits where the mask PNG is fully transparent; the padding stays opaque
        # (kept). Any weight > 0 is regenerated, so the editor's soft seam blends into new pixels.
        alpha = np.full((gen_height, gen_width), 255, dtype=np.uint8)
        alpha[top : top + fit_height, left : left + fit_width][np.asarray(mask_image) > 0] = 0
        mask_rgba = np.zeros((gen_height, gen_width, 4), dtype=np.uint8)
        mask_rgba[..., 3] = alpha

        if negative_prompt:
            prompt = f"{prompt}\nAvoid: {negative_prompt}"
        request: dict[str, Any] = dict(
            model=self.model,
            image=("image.png", _png(canvas), "image/png"),
            mask=("mask.png", _png(Image.fromarray(mask_rgba)), "image/png"),
            prompt=prompt,
            size=f"{gen_width}x{gen_height}",
            n=1,
            **dict(request_shape(self.model).fields),
        )

        try:
            response = call_with_retries(
                lambda: self._client.get().images.edit(**request),
                self.policy,
                self._endpoint,
                what="Image edit",
            )
        except CallFailed as failure:
            raise self._error(failure) from failure.cause
        except ValueError as exc:  # a 200 whose body is not JSON (an HTML page, nothing)
            raise self._not_an_image(f"an answer that is not JSON ({exc})") from None

        generated = self._decode(response)
        if generated.size != (gen_width, gen_height):
            generated = generated.resize((gen_width, gen_height), Image.Resampling.LANCZOS)
        return generated.crop(fitted).resize((width, height), Image.Resampling.LANCZOS)

    def _error(self, failure: CallFailed) -> InpaintError | ModelLoadError:
        if _model_refused(failure.cause):
            return ModelLoadError(self._endpoint.redact(self._refused_model(failure.cause)))
        message = explain_failure(
            failure.cause,
            failure.attempts,
            self._endpoint,
            model=self.model,
            what=f"The image edit ({self.model})",
            model_setting=_choose_model(),
        )
        status = getattr(failure.cause, "status_code", None)
        cls = ModelLoadError if status in (401, 403) else InpaintError
        return cls(f"{message} Or {_use_diffusers()}.")

    def _refused_model(self, exc: BaseException) -> str:
        """One line: the model, its retirement where known, where to choose another."""
        detail = " ".join(str(getattr(exc, "message", exc)).split())[:200]
        retired = retirement(self.model)
        if retired is not None:
            successor = f"; its successor is {retired.replacement}" if retired.replacement else ""
            why = f"it was shut down on {retired.date}{successor}"
        else:
            why = "the server does not know it (misspelt, retired, or not served there)"
        return (
            f"The image edit model {self.model!r} was refused by {self._endpoint.display_url} "
            f"({detail}): {why}. Choose another with {_choose_model()}, e.g. the default "
            f"{DEFAULT_IMAGE_MODEL!r}; if the model is right, check the base URL "
            f"(OpenAI-compatible servers usually end in /v1). Or {_use_diffusers()}."
        )

    def _decode(self, response: Any) -> Image.Image:
        """The first image of an ImagesResponse, as RGB; InpaintError if there is none."""
        # The client builds the response without validating it: a server may have sent any JSON.
        data = getattr(response, "data", None)
        first = data[0] if isinstance(data, list) and data else None
        encoded = getattr(first, "b64_json", None)
        if not isinstance(encoded, str) or not encoded:
            got = "a URL" if isinstance(getattr(first, "url", None), str) else "no image"
            raise self._not_an_image(f"{got}, not base64 image data (b64_json)")
        try:
            with Image.open(io.BytesIO(base64.b64decode(encoded))) as generated:
                return generated.convert("RGB")
        except (OSError, ValueError) as exc:
            raise InpaintError(
                f"The image edit endpoint returned data that is not an image ({exc}); retry, "
                f"or {_use_diffusers()}."
            ) from exc

    def _not_an_image(self, got: str) -> InpaintError:
        return InpaintError(
            f"The image edit endpoint at {self._endpoint.display_url} returned {got}; "
            "regionedit needs the image in the answer. Use a GPT image model, "
            f"or {_use_diffusers()}."
        )

    def describe(self) -> dict[str, Any]:
        """Backend, model and endpoint (never the key), for the sidecar."""
        return {
            "inpainter": self.name,
            "model": self.model,
            "base_url": self._endpoint.display_url,
            "size": f"{self.size[0]}x{self.size[1]}" if self.size else "closest to the image",
            # the endpoint takes no seed: the same settings give a different image each time
            "seed_honoured": False,
        }
