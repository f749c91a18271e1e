"""Stage 1: decide from the two descriptions which region an edit changes.

:class:`LLMClassifier` asks an OpenAI-compatible chat model (OpenAI, or a local Ollama / vLLM /
LM Studio server through ``OPENAI_BASE_URL``) with the versioned prompt
``prompts/classify_region.md`` and a structured-output schema, so the answer is always one of
the three labels. :func:`get_classifier` picks it or the offline classifier by name.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._openai_api import (
    DEFAULT_BASE_URL,
    CallFailed,
    Endpoint,
    LazyClient,
    RetryPolicy,
    call_with_retries,
    explain_failure,
)
from .errors import ClassifierError, option
from .models import DEFAULT_LLM_MODEL, retirement
from .prompts import Prompt, load_prompt
from .types import (
    MAX_DESCRIPTION_CHARS,
    Classification,
    Label,
    Shape,
    normalize_description,
)

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

_MAX_REASON_CHARS = 300
_MAX_SUBJECT_CHARS = 100
CLASSIFIER_NAMES = ("auto", "llm", "offline")
DEFAULT_TIMEOUT = 30.0
DEFAULT_ATTEMPTS = 4
#: room for the one-line answer and a short reasoning pass; it stops a model that runs on
_MAX_ANSWER_TOKENS = 2048
#: Reasoning efforts, lowest first. The openai SDK's ReasoningEffort lists none < minimal < low
#: < medium < ..., and notes that "not all reasoning models support every value"; it names no
#: value for gpt-6-luna. The answer is one line whose reason the model writes before its label,
#: so no reasoning pass is needed: "none" is asked first, and a server that refuses a value
#: gets the next one (the lowest of those it says it supports, when it lists them).
_REASONING_EFFORTS = ("none", "minimal", "low")

# Where the user changes each setting, named in error messages in the words of the interface
# in use (regionedit.errors.option); the environment variables work in both.


def _model_setting() -> str:
    return option("Editor(llm_model=...)", "--llm-model") + " or REGIONEDIT_LLM_MODEL"


def _timeout_setting() -> str:
    return option("Editor(llm_timeout=...)", "--llm-timeout") + " or REGIONEDIT_LLM_TIMEOUT"


def _attempts_setting() -> str:
    return option("Editor(llm_attempts=...)", "--llm-attempts") + " or REGIONEDIT_LLM_ATTEMPTS"


def _concurrency_setting() -> str:
    return option("edit_many(llm_concurrency=...)", "--llm-concurrency")


def _skip_the_llm() -> str:
    region = option("region='foreground' or region='background'", "--region")
    offline = option("classifier='offline'", "--classifier offline")
    return f"pass {region}, or use the offline classifier ({offline})"


def _no_llm_configured() -> str:
    return (
        "No LLM is configured for the region classifier. Set OPENAI_API_KEY (or "
        "OPENAI_BASE_URL for a local OpenAI-compatible server such as Ollama or vLLM), "
        f"{_skip_the_llm()}."
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

    # subject and reason come first so the model names the main subject and what changes
    # before it commits to a label
    subject: str = Field(description="The photo's main subject, a short noun phrase.")
    reason: str = Field(description="One short sentence naming what changes.")
    label: Label
    shape: Shape = Field(
        description='"change" when the edited subject needs room beyond its old outline, '
        'else "keep"; always "keep" for background and unidentified.'
    )


class _InvalidAnswer(Exception):
    """The model answered, but not with a valid RegionAnswer."""


# (base URL, model, prompt id, source, target) -> answer; shared by all instances in the process
_cache: dict[tuple[str, str, str, str, str], Classification] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every remembered LLM answer (tests, or after changing a local model in place)."""
    with _cache_lock:
        _cache.clear()


class LLMClassifier:
    """Classify an edit with a chat model through the ``openai`` client.

    ``model`` defaults to ``$REGIONEDIT_LLM_MODEL``, else :data:`DEFAULT_LLM_MODEL`;
    ``api_key`` and ``base_url`` default to ``$OPENAI_API_KEY`` and ``$OPENAI_BASE_URL``. A base
    URL without a key is fine (local servers). ``timeout`` bounds each request as a whole, in
    seconds (not for a ``client`` passed in): ``$REGIONEDIT_LLM_TIMEOUT``, else 30. Transient
    failures (connection, timeout, 429, 5xx) are retried up to ``max_attempts`` requests in all
    (``$REGIONEDIT_LLM_ATTEMPTS``, else 4) with jittered exponential backoff between
    ``backoff_base`` and ``backoff_max`` seconds, honouring Retry-After; an invalid answer is
    asked once more. Identical questions are answered from a process-wide cache. Safe to share
    between threads.

    Raises ClassifierError when nothing is configured, a setting is not usable, or no valid
    answer could be had.
    """

    name = "llm"

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        client: openai.OpenAI | None = None,
        prompt: str = "classify_region",
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        self.model: str = model or os.environ.get("REGIONEDIT_LLM_MODEL") or DEFAULT_LLM_MODEL
        self.prompt: Prompt = load_prompt(prompt)
        self.timeout = _setting(timeout, "timeout", "REGIONEDIT_LLM_TIMEOUT", DEFAULT_TIMEOUT)
        attempts = _setting(max_attempts, "max_attempts", "REGIONEDIT_LLM_ATTEMPTS", DEFAULT_ATTEMPTS)
        self.policy = RetryPolicy(
            max_attempts=int(attempts), backoff_base=backoff_base, backoff_max=backoff_max
        )
        if client is not None:
            self._endpoint = Endpoint.of_client(client)
        else:
            self._endpoint = Endpoint.resolve(api_key, base_url)
            if not self._endpoint.configured:
                raise ClassifierError(_no_llm_configured(), attempts=0)
        self._client = LazyClient(self._endpoint, self.timeout, client)
        self._shape = _RequestShape()
        _warn_if_retired(self.model, self._endpoint)

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
            subject=_one_printable_line(answer.subject)[:_MAX_SUBJECT_CHARS],
            # the outline matters only where the subject is regenerated
            shape=answer.shape if answer.label == "foreground" else "keep",
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
            while True:  # ends: each refusal drops a feature or raises the effort, a few at most
                sent += 1
                options = self._shape.options()
                try:
                    return self._send(messages, options)
                except openai.APIStatusError as exc:
                    change = self._shape.adapt(exc, options)
                    if change is None:
                        raise
                    logger.info(
                        "%s (%s) refused %s",
                        self._endpoint.display_url,
                        self.model,
                        self._endpoint.redact(change),
                    )

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
                    f"attempt(s): {exc}. Next: try another model ({_model_setting()}), "
                    f"or {_skip_the_llm()}."
                )
                raise ClassifierError(self._endpoint.redact(message), attempts=sent) from None
            except CallFailed as failure:
                message = explain_failure(
                    failure.cause,
                    sent,
                    self._endpoint,
                    model=self.model,
                    what=f"The LLM region classifier ({self.model})",
                    model_setting=_model_setting(),
                    timeout=self.timeout,
                    timeout_setting=_timeout_setting(),
                    attempts_setting=_attempts_setting(),
                    concurrency_setting=_concurrency_setting(),
                )
                raise ClassifierError(
                    f"{message} Or {_skip_the_llm()}.", attempts=sent
                ) from failure.cause
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, messages: list[dict[str, str]], options: dict[str, Any]) -> RegionAnswer:
        """One request, with the features this server accepts."""
        options = dict(options)
        if options.pop("json_schema"):
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
            answer = json.loads(content[start : end + 1])
        except ValueError as exc:
            raise _InvalidAnswer(f"the answer is not JSON ({exc})") from None
        if isinstance(answer, dict):
            # No schema holds a model to the form in JSON mode, and small local models often
            # leave out the fields that are not the decision itself: "keep" is the extent an
            # edit had before the shape was asked for. The label stays required.
            answer = {"subject": "", "shape": "keep", **answer}
        try:
            return RegionAnswer.model_validate(answer)
        except ValidationError as exc:
            raise _InvalidAnswer(_short_validation_error(exc)) from None


class _RequestShape:
    """What a request carries besides the messages, adapted to what the server accepts.

    Everything is sent at first: structured output (json_schema), temperature 0 (the same
    answer every time), the lowest reasoning effort, and a cap on the answer's tokens. Servers
    differ: local ones often lack json_schema (JSON mode, with the form given in the prompt,
    replaces it), reasoning models accept only their default temperature, models that do not
    reason refuse ``reasoning_effort``, and some servers know no token cap. A 400/422 naming one
    of them drops it, or raises the effort one step, for every later request of the classifier.
    Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.json_schema = True
        self.temperature = True
        self.token_cap = True
        self.effort: str | None = _REASONING_EFFORTS[0]

    def options(self) -> dict[str, Any]:
        """The keyword arguments of the next request (``json_schema``: which kind to send)."""
        with self._lock:
            options: dict[str, Any] = {"json_schema": self.json_schema}
            if self.temperature:
                options["temperature"] = 0
            if self.effort is not None:
                options["reasoning_effort"] = self.effort
            if self.token_cap:
                options["max_completion_tokens"] = _MAX_ANSWER_TOKENS
            return options

    def adapt(self, exc: openai.APIStatusError, sent: dict[str, Any]) -> str | None:
        """Stop sending what the refusal ``exc`` of the request ``sent`` names; returns what
        changed, or None when the refusal is about nothing we can leave out."""
        if exc.status_code not in (400, 422):
            return None
        param = (exc.param or "").lower()
        text = f"{exc.message} {json.dumps(exc.body, default=str)}".lower()

        def about(*names: str) -> bool:
            return param in names or any(name in text for name in names)

        with self._lock:
            if "reasoning_effort" in sent and about("reasoning_effort", "reasoning.effort"):
                return self._raise_effort(sent["reasoning_effort"], text)
            if "max_completion_tokens" in sent and about("max_completion_tokens", "max_tokens"):
                self.token_cap = False
                return "a cap on the answer's tokens (max_completion_tokens); leaving it out"
            if "temperature" in sent and about("temperature"):
                self.temperature = False
                return "temperature 0; using the model's default instead"
            if sent["json_schema"] and about("response_format", "json_schema"):
                self.json_schema = False
                return "structured output (json_schema); using JSON mode instead"
        return None

    def _raise_effort(self, refused: str, text: str) -> str:
        if self.effort != refused:  # another thread has adapted already
            return f"reasoning effort {refused!r}; now sending {self.effort!r}"
        higher = list(_REASONING_EFFORTS[_REASONING_EFFORTS.index(refused) + 1 :])
        if "value" not in text or not higher:
            # the parameter itself is unknown: a model that does not reason
            self.effort = None
            return "the reasoning_effort parameter; leaving it out"
        # "Supported values are: 'low', 'medium' and 'high'": the lowest of ours it lists
        listed = text.partition("supported values")[2]
        self.effort = next((e for e in higher if f"'{e}'" in listed), higher[0])
        return f"reasoning effort {refused!r}; now sending {self.effort!r}"


def _setting(value: float | None, argument: str, variable: str, default: float) -> float:
    """``value``, else the environment variable ``variable``, else ``default``: a positive
    number (an integer for the attempts), or ClassifierError naming where it came from."""
    integer = argument == "max_attempts"
    where = f"LLMClassifier({argument}={value!r})"
    if value is None:
        raw = os.environ.get(variable, "").strip()
        if not raw:
            return default
        where = f"{variable}={raw!r}"
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            value = math.nan
    usable = isinstance(value, (int, float)) and not isinstance(value, bool)
    if usable and integer:
        usable = float(value).is_integer() and value >= 1
    elif usable:
        usable = math.isfinite(value) and value > 0
    if not usable:
        what = "a whole number of requests, 1 or more" if integer else "a number of seconds above 0"
        raise ClassifierError(f"{where} is not usable: give {what}.", attempts=0)
    return float(value)


def _warn_if_retired(model: str, endpoint: Endpoint) -> None:
    """A notice, before any request, when OpenAI has retired ``model`` or announced it will."""
    known = retirement(model)
    if known is None or endpoint.url != DEFAULT_BASE_URL:
        return  # another server may serve a model of that name for as long as it likes
    successor = f" Its successor: {known.replacement}." if known.replacement else ""
    shut = "shut down" if known.date <= datetime.date.today().isoformat() else "shuts down"
    logger.warning(
        "OpenAI %s the LLM %r on %s.%s Choose another with %s.",
        shut,
        model,
        known.date,
        successor,
        _model_setting(),
    )


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
