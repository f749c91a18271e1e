"""Stage 1: decide from the two descriptions which region an edit changes.

:class:`LLMClassifier` asks an OpenAI-compatible chat model (OpenAI, or a local Ollama / vLLM /
LM Studio server through ``OPENAI_BASE_URL``) with the versioned prompt
``prompts/classify_region.md`` and a structured-output schema, so the answer is always one of
the three labels. :func:`get_classifier` picks it or the offline classifier by name.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._openai_api import (
    CallFailed,
    Endpoint,
    LazyClient,
    RetryPolicy,
    call_with_retries,
    explain_failure,
)
from .errors import ClassifierError, DescriptionError
from .models import DEFAULT_LLM_MODEL
from .prompts import Prompt, load_prompt
from .types import Classification, Label

if TYPE_CHECKING:  # pragma: no cover
    import openai

__all__ = [
    "Classifier",
    "LLMClassifier",
    "RegionAnswer",
    "get_classifier",
    "normalize_description",
    "clear_cache",
    "CLASSIFIER_NAMES",
    "DEFAULT_LLM_MODEL",
    "MAX_DESCRIPTION_CHARS",
]

logger = logging.getLogger("regionedit")

#: longer descriptions are cut here: a caption never needs more, and it bounds the request cost
MAX_DESCRIPTION_CHARS = 1000
_MAX_REASON_CHARS = 300
CLASSIFIER_NAMES = ("auto", "llm", "offline")

_SKIP_THE_LLM = (
    "pass region='foreground' or region='background' (CLI: --region), or use the offline "
    "classifier (classifier='offline', CLI: --classifier offline)"
)
NO_LLM_CONFIGURED = (
    "No LLM is configured for the region classifier. Set OPENAI_API_KEY (or OPENAI_BASE_URL for "
    f"a local OpenAI-compatible server such as Ollama or vLLM), {_SKIP_THE_LLM}."
)


@runtime_checkable
class Classifier(Protocol):
    """Anything that labels an edit from its source and target descriptions."""

    name: str

    def classify(self, source: str, target: str) -> Classification: ...


class RegionAnswer(BaseModel):
    """Which region of the photo the edit changes, and why."""

    # This model is sent to the LLM as a strict JSON schema, docstring and descriptions included.
    # Extra keys are refused too: an answer that does not fit the schema exactly is not trusted.
    model_config = ConfigDict(extra="forbid")

    # reason comes first so the model writes what changes before it commits to a label
    reason: str = Field(description="One short sentence naming what changes.")
    label: Label


class _InvalidAnswer(Exception):
    """The model answered, but not with a valid RegionAnswer."""


# (base URL, model, prompt id, source, target) -> answer; shared by all instances in the process
_cache: dict[tuple[str, str, str, str, str], Classification] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every remembered LLM answer (tests, or after changing a local model in place)."""
    with _cache_lock:
        _cache.clear()


def normalize_description(text: str, which: str) -> str:
    """``text`` stripped and cut to :data:`MAX_DESCRIPTION_CHARS`; DescriptionError if empty.

    ``which`` ("source" or "target") names the description in messages.
    """
    if not isinstance(text, str):
        raise DescriptionError(f"The {which} description must be text, not {type(text).__name__}.")
    if not text.strip():
        raise DescriptionError(
            f"The {which} description is empty. Give a short caption of what the photo shows "
            f"{'now' if which == 'source' else 'after the edit'}, e.g. 'a dog sitting on grass'."
        )
    text = text.strip()
    if len(text) > MAX_DESCRIPTION_CHARS:
        logger.warning(
            "The %s description is %d characters long; only the first %d are used.",
            which,
            len(text),
            MAX_DESCRIPTION_CHARS,
        )
        text = text[:MAX_DESCRIPTION_CHARS]
    return text


class LLMClassifier:
    """Classify an edit with a chat model through the ``openai`` client.

    ``model`` defaults to ``$REGIONEDIT_LLM_MODEL``, else ``gpt-4o-mini``; ``api_key`` and
    ``base_url`` default to ``$OPENAI_API_KEY`` and ``$OPENAI_BASE_URL``. A base URL without a
    key is fine (local servers). ``timeout`` bounds each request as a whole, in seconds (not
    for a ``client`` passed in). Transient failures (connection, timeout, 429, 5xx) are retried
    up to ``max_attempts`` requests with jittered exponential backoff between ``backoff_base``
    and ``backoff_max`` seconds, honouring Retry-After; an invalid answer is asked once more.
    Identical questions are answered from a process-wide cache. Safe to share between threads.

    Raises ClassifierError when nothing is configured, or when no valid answer could be had.
    """

    name = "llm"

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 4,
        client: openai.OpenAI | None = None,
        prompt: str = "classify_region",
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        self.model: str = model or os.environ.get("REGIONEDIT_LLM_MODEL") or DEFAULT_LLM_MODEL
        self.prompt: Prompt = load_prompt(prompt)
        self.policy = RetryPolicy(
            max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max
        )
        if client is not None:
            self._endpoint = Endpoint.of_client(client)
        else:
            self._endpoint = Endpoint.resolve(api_key, base_url)
            if not self._endpoint.configured:
                raise ClassifierError(NO_LLM_CONFIGURED, attempts=0)
        self._client = LazyClient(self._endpoint, timeout, client)
        # Request features some servers refuse with a 400, each dropped for this instance on its
        # first refusal (see _drop_refused_feature): structured output, and temperature 0
        # (reasoning models accept only their default temperature).
        self._use_json_schema = True
        self._send_temperature = True

    @property
    def id(self) -> str:
        """``<model>@<prompt>-v<version>``: recorded as ``Classification.classifier``."""
        return f"{self.model}@{self.prompt.id}"

    def classify(self, source: str, target: str) -> Classification:
        """Label the edit ``source`` -> ``target``; "unidentified" is returned, not raised."""
        source = normalize_description(source, "source")
        target = normalize_description(target, "target")
        if _same_words(source, target):
            # The prompt's own answer for this case, without spending a request on it.
            return Classification(
                label="unidentified",
                reason="the source and target descriptions are the same: nothing to change",
                source="llm",
                classifier=self.id,
            )
        key = (self._endpoint.url, self.model, self.prompt.id, source, target)
        with _cache_lock:
            cached = _cache.get(key)
        if cached is not None:
            return cached
        answer = self._ask(source, target)
        result = Classification(
            label=answer.label,
            reason=_one_printable_line(answer.reason)[:_MAX_REASON_CHARS],
            source="llm",
            classifier=self.id,
        )
        logger.debug("LLM classified %r -> %r as %s", source, target, result.label)
        with _cache_lock:
            _cache[key] = result
        return result

    def _messages(self, source: str, target: str) -> list[dict[str, str]]:
        # JSON-encoding keeps the user's text inside string literals: quotes and newlines in it
        # cannot pose as more of the prompt.
        descriptions = json.dumps(
            {"source": source, "target": target}, ensure_ascii=False, indent=2
        )
        return [
            {"role": "system", "content": self.prompt.system},
            {"role": "user", "content": self.prompt.render_user(descriptions=descriptions)},
        ]

    def _ask(self, source: str, target: str) -> RegionAnswer:
        import openai

        messages = self._messages(source, target)
        sent = 0

        def send() -> RegionAnswer:
            nonlocal sent
            while True:  # ends: each refused feature is dropped once, then errors propagate
                sent += 1
                try:
                    return self._send(messages)
                except openai.APIStatusError as exc:
                    if not self._drop_refused_feature(exc):
                        raise

        for round_ in (1, 2):
            try:
                return call_with_retries(send, self.policy, self._endpoint, what="LLM request")
            except _InvalidAnswer as exc:
                if round_ == 1:
                    logger.info(
                        "The LLM gave an invalid answer (%s); asking once more",
                        self._endpoint.redact(str(exc)),
                    )
                    continue
                where = f"{self.model} at {self._endpoint.display_url}"
                message = (
                    f"The LLM region classifier ({where}) gave no valid answer after {sent} "
                    f"attempt(s): {exc}. Next: try another model "
                    f"(REGIONEDIT_LLM_MODEL, CLI --llm-model), or {_SKIP_THE_LLM}."
                )
                raise ClassifierError(self._endpoint.redact(message), attempts=sent) from None
            except CallFailed as failure:
                message = explain_failure(
                    failure.cause,
                    sent,
                    self._endpoint,
                    model=self.model,
                    what=f"The LLM region classifier ({self.model})",
                    model_setting="--llm-model, REGIONEDIT_LLM_MODEL or Editor(llm_model=...)",
                )
                raise ClassifierError(
                    f"{message} Or {_SKIP_THE_LLM}.", attempts=sent
                ) from failure.cause
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop_refused_feature(self, exc: openai.APIStatusError) -> bool:
        """Stop sending what a 400/422 says the server refuses; False when it is nothing we send.

        Local servers often lack structured outputs (json_schema): JSON mode, with the form
        given in the prompt, replaces it. Reasoning models refuse temperature 0.
        """
        if exc.status_code not in (400, 422):
            return False
        text = f"{exc.message} {json.dumps(exc.body, default=str)}".lower()
        if self._use_json_schema and ("response_format" in text or "json_schema" in text):
            self._use_json_schema = False
            change = "structured output (json_schema); using JSON mode instead"
        elif self._send_temperature and "temperature" in text:
            self._send_temperature = False
            change = "temperature 0; using the model's default instead"
        else:
            return False
        logger.info("%s (%s) refused %s", self._endpoint.display_url, self.model, change)
        return True

    def _send(self, messages: list[dict[str, str]]) -> RegionAnswer:
        """One request, with the features this server accepts."""
        options: dict[str, Any] = {"temperature": 0} if self._send_temperature else {}
        if self._use_json_schema:
            return self._send_json_schema(messages, options)
        return self._send_json_object(messages, options)

    def _send_json_schema(
        self, messages: list[dict[str, str]], options: dict[str, Any]
    ) -> RegionAnswer:
        """One request with a strict JSON schema (structured outputs)."""
        import openai

        try:
            message = _first_message(
                lambda: self._client.get().chat.completions.parse(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    response_format=RegionAnswer,
                    **options,
                )
            )
        except ValidationError as exc:
            raise _InvalidAnswer(_short_validation_error(exc)) from None
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
            raise _InvalidAnswer(str(exc)) from None
        if message.parsed is not None:
            return message.parsed
        if message.refusal:
            raise _InvalidAnswer(f"the model refused: {message.refusal}")
        raise _InvalidAnswer("the answer was empty")

    def _send_json_object(
        self, messages: list[dict[str, str]], options: dict[str, Any]
    ) -> RegionAnswer:
        """One request in JSON mode, for servers without json_schema; the prompt gives the form."""
        message = _first_message(
            lambda: self._client.get().chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                response_format={"type": "json_object"},
                **options,
            )
        )
        content = message.content if isinstance(message.content, str) else ""
        # Some local models wrap the object in prose or a ``` fence even in JSON mode.
        start, end = content.find("{"), content.rfind("}")
        if start < 0 or end < start:
            raise _InvalidAnswer(f"the answer is not JSON: {content[:100]!r}")
        try:
            return RegionAnswer.model_validate_json(content[start : end + 1])
        except ValidationError as exc:
            raise _InvalidAnswer(_short_validation_error(exc)) from None


def _first_message(request: Callable[[], Any]) -> Any:
    """The first choice's message of the chat completion ``request()`` returns.

    A server (or a proxy in front of it) can answer 200 with a body that is no chat completion:
    an HTML page, an empty body, JSON without choices. The client then fails while decoding,
    with whatever error that happens to raise; all of them mean "not a usable answer".
    """
    try:
        message = request().choices[0].message
    except ValidationError:
        raise  # the content does not fit RegionAnswer: reported as such by the caller
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:100]}"
    else:
        if message is not None:
            return message
        problem = "its choice has no message"
    raise _InvalidAnswer(
        f"the server answered 200 with a body that is not a chat completion ({problem})"
    )


def _one_printable_line(text: str) -> str:
    """``text`` on one line without control characters: a model's reason ends up in error
    messages and logs, where an escape sequence would act on the user's terminal."""
    return "".join(ch for ch in " ".join(text.split()) if ch.isprintable())


def _same_words(source: str, target: str) -> bool:
    """Whether two descriptions differ only in case and spacing."""
    return source.casefold().split() == target.casefold().split()


def _short_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "answer"
    return f"invalid answer ({where}: {first['msg']})"


def get_classifier(name: str = "auto", **kwargs: Any) -> Classifier:
    """The classifier called ``name``: "llm", "offline", or "auto".

    ``kwargs`` go to the chosen class. "auto" picks the LLM when ``OPENAI_API_KEY`` or
    ``OPENAI_BASE_URL`` is set (or ``api_key``/``base_url``/``client`` is passed), passing it
    ``kwargs``; otherwise it logs a one-line notice and returns the offline classifier with its
    defaults. Raises ValueError for an unknown name.
    """
    if name not in CLASSIFIER_NAMES:
        raise ValueError(
            f"unknown classifier {name!r}; choose one of: {', '.join(CLASSIFIER_NAMES)}"
        )
    if name == "auto":
        explicit = any(kwargs.get(k) for k in ("api_key", "base_url", "client"))
        if explicit or Endpoint.resolve().configured:
            name = "llm"
        else:
            logger.warning(
                "No OPENAI_API_KEY or OPENAI_BASE_URL set: using the offline region classifier. "
                "Set one of them (or use --classifier llm) to classify with an LLM."
            )
            name, kwargs = "offline", {}
    if name == "llm":
        return LLMClassifier(**kwargs)
    from .offline_classifier import OfflineClassifier

    return OfflineClassifier(**kwargs)
