"""Plumbing shared by everything that calls an OpenAI-compatible server (classifier, image edits).

One place decides: where the endpoint is and which key it takes (:class:`Endpoint`), how often
and how long a failed call is retried (:class:`RetryPolicy`, :func:`call_with_retries`), and how a
failure is explained to the user (:func:`explain_failure`) without ever showing the API key.

The openai client is built with ``max_retries=0``: its own retries would multiply with ours.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import logging
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

if TYPE_CHECKING:  # pragma: no cover
    import openai

__all__ = [
    "DEFAULT_BASE_URL",
    "Endpoint",
    "LazyClient",
    "RetryPolicy",
    "CallFailed",
    "call_with_retries",
    "is_transient",
    "retry_after_seconds",
    "explain_failure",
    "refuses_the_model",
    "model_refused_advice",
]

logger = logging.getLogger("regionedit")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: sent to servers that need no key (Ollama, vLLM, LM Studio): the client insists on one
_PLACEHOLDER_KEY = "no-key-needed"
_MAX_CAUSE_CHARS = 300
#: shorter values are not redacted from messages: "***" for every "1" would garble them
_MIN_SECRET_CHARS = 4
#: request extension holding the monotonic time a request must be finished by
_DEADLINE = "regionedit.deadline"

T = TypeVar("T")


class Endpoint(BaseModel):
    """Where an OpenAI-compatible server is and the key it takes (``SecretStr``: never printed).

    A base URL may carry credentials of its own: a ``user:password@`` part, or a query such as
    ``?api-key=...`` (gateways and proxies that take the key in the URL). Every query value is
    treated as one: :attr:`display_url` shows ``***`` in its place and :meth:`redact` takes it
    out of any text, like the key.
    """

    model_config = ConfigDict(frozen=True)

    api_key: SecretStr | None = None
    base_url: str | None = None

    @classmethod
    def resolve(cls, api_key: str | None = None, base_url: str | None = None) -> Endpoint:
        """Arguments first, then ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``; empty counts as unset."""
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        return cls(api_key=SecretStr(key) if key else None, base_url=url)

    @property
    def configured(self) -> bool:
        """A key (for OpenAI) or a base URL (a local server may need no key) is known."""
        return self.api_key is not None or self.base_url is not None

    @property
    def url(self) -> str:
        """The base URL requests go to, without its query (sent as :attr:`query`)."""
        parts = urllib.parse.urlsplit(self.base_url or DEFAULT_BASE_URL)
        return urllib.parse.urlunsplit(parts._replace(query="", fragment=""))

    @property
    def query(self) -> dict[str, str]:
        """The base URL's query parameters: added to every request (the openai client would
        otherwise glue the request path onto the end of the query)."""
        query = urllib.parse.urlsplit(self.base_url or DEFAULT_BASE_URL).query
        return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))

    @property
    def display_url(self) -> str:
        """The base URL without a ``user:password@`` part and with every query value shown as
        ``***``: for messages and records."""
        parts = urllib.parse.urlsplit(self.base_url or DEFAULT_BASE_URL)
        host = parts.netloc.rpartition("@")[2]
        query = "&".join(f"{name}=***" for name in self.query)
        return urllib.parse.urlunsplit(parts._replace(netloc=host, query=query, fragment=""))

    @classmethod
    def of_client(cls, client: openai.OpenAI) -> Endpoint:
        """The endpoint an existing client talks to (its key kept only to redact messages)."""
        key = client.api_key
        return cls(api_key=SecretStr(key) if key else None, base_url=str(client.base_url))

    @property
    def secrets(self) -> list[str]:
        """Everything that must never be printed: the key, a URL password, the query values."""
        found = [self.api_key.get_secret_value()] if self.api_key else []
        password = urllib.parse.urlsplit(self.base_url or DEFAULT_BASE_URL).password
        found += [password] if password else []
        found += [value for value in self.query.values()]
        # longest first, so a secret that contains another is replaced whole
        return sorted({s for s in found if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with every secret of :attr:`secrets`, should it appear, replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class LazyClient:
    """The openai client for one endpoint, built on first use: importing openai takes ~1 s.

    A client passed in is used as given but with its own retries turned off. Thread-safe.
    """

    def __init__(
        self, endpoint: Endpoint, timeout: float, client: openai.OpenAI | None = None
    ) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._client = client.with_options(max_retries=0, timeout=timeout) if client else None
        self._lock = threading.Lock()

    def get(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                import openai

                endpoint = self._endpoint
                key = endpoint.api_key.get_secret_value() if endpoint.api_key else _PLACEHOLDER_KEY
                self._client = openai.OpenAI(
                    api_key=key,
                    base_url=endpoint.url,
                    default_query=endpoint.query or None,
                    timeout=self._timeout,
                    max_retries=0,
                    http_client=_http_client_with_deadline(self._timeout),
                )
                _redact_library_logs(endpoint)
            return self._client


class _RedactingFilter(logging.Filter):
    """Takes secrets out of the log records of the HTTP and openai libraries: httpx logs every
    request's URL at INFO, and a base URL's query can carry a key."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secrets: list[str]) -> None:
        with self._lock:
            self._secrets.update(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        if not secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_library_log_filter = _RedactingFilter()
#: the loggers (exact names: a filter does not see a child logger's records) that can show URLs
_URL_LOGGERS = ("httpx2", "httpx", "openai._base_client")


def _redact_library_logs(endpoint: Endpoint) -> None:
    """When ``endpoint``'s URL carries secrets, keep them out of the libraries' log records."""
    parts = urllib.parse.urlsplit(endpoint.base_url or DEFAULT_BASE_URL)
    if not parts.query and parts.password is None:
        return
    _library_log_filter.add(endpoint.secrets)
    for name in _URL_LOGGERS:
        library_logger = logging.getLogger(name)
        if _library_log_filter not in library_logger.filters:
            library_logger.addFilter(_library_log_filter)


def _http_client_with_deadline(seconds: float) -> Any:
    """openai's default HTTP client, plus a deadline of ``seconds`` on each whole request.

    The client's timeouts bound each socket operation, so a server that trickles its answer a
    byte at a time never trips them and holds the caller for as long as it likes. Past the
    deadline the request ends with the ReadTimeout a silent server gets, so it is retried and
    reported like any timeout.
    """
    import httpx2
    import openai

    class DeadlineStream(httpx2.SyncByteStream):
        """The response body, cut off when the deadline passes."""

        def __init__(self, stream: Any, request: Any) -> None:
            self._stream = stream
            self._request = request

        def __iter__(self) -> Any:
            for chunk in self._stream:
                check(self._request)
                yield chunk

        def close(self) -> None:
            self._stream.close()

    def check(request: Any) -> None:
        if time.monotonic() > request.extensions[_DEADLINE]:
            raise httpx2.ReadTimeout(
                f"the answer took more than {seconds:g} s in all", request=request
            )

    def start(request: Any) -> None:
        request.extensions[_DEADLINE] = time.monotonic() + seconds

    def bound(response: Any) -> None:
        try:
            check(response.request)  # the status line and headers may have trickled too
        except httpx2.ReadTimeout:
            response.close()
            raise
        response.stream = DeadlineStream(response.stream, response.request)

    class Client(openai.DefaultHttpxClient):  # type: ignore[misc, valid-type]
        def __del__(self) -> None:
            # like the client openai builds itself: its connections close with it
            with contextlib.suppress(Exception):
                self.close()

    return Client(event_hooks={"request": [start], "response": [bound]})


class RetryPolicy(BaseModel):
    """How transient failures are retried: bounded attempts, exponential backoff with jitter."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(4, ge=1, description="requests in all, the first one included")
    backoff_base: float = Field(0.5, ge=0, description="seconds: the first wait is up to this")
    backoff_max: float = Field(8.0, ge=0, description="seconds: no backoff wait is longer")
    retry_after_max: float = Field(
        60.0, ge=0, description="seconds: the longest server-requested (Retry-After) wait honoured"
    )


class CallFailed(Exception):
    """A call failed for good: ``cause`` is the last openai error, ``attempts`` requests made."""

    def __init__(self, cause: openai.OpenAIError, attempts: int) -> None:
        super().__init__(f"{type(cause).__name__} after {attempts} attempt(s)")
        self.cause = cause
        self.attempts = attempts


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection problems, timeouts, 408, 409, 429 and 5xx answers.

    A 429 that says the quota is used up is not transient: waiting does not refill it.
    """
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return exc.code != "insufficient_quota"
        return exc.status_code in (408, 409) or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a server asked for (``retry-after-ms``, else ``Retry-After`` seconds or date)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name, ""))
        except ValueError:
            continue
        if math.isfinite(value):
            return max(0.0, value * scale)
    date = headers.get("retry-after")
    parsed = email.utils.parsedate_tz(date) if date else None
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def call_with_retries(
    fn: Callable[[], T], policy: RetryPolicy, endpoint: Endpoint, *, what: str = "request"
) -> T:
    """Run ``fn``, retrying transient failures under ``policy``; retries are logged (redacted).

    An openai error that is not retried, or the last one, comes out as :class:`CallFailed`;
    any other exception ``fn`` raises passes through untouched, on the first attempt.

    The wait before a retry is the server's Retry-After when it sent one (capped at
    ``retry_after_max``), otherwise a random wait in a window that doubles each time ("full
    jitter", so concurrent callers do not retry in lockstep), capped at ``backoff_max``.
    """
    import openai
    import tenacity

    backoff = tenacity.wait_random_exponential(
        multiplier=policy.backoff_base, max=policy.backoff_max
    )

    def wait(state: tenacity.RetryCallState) -> float:
        assert state.outcome is not None
        hinted = retry_after_seconds(state.outcome.exception())
        if hinted is not None:
            return min(hinted, policy.retry_after_max)
        return backoff(state)

    def log_retry(state: tenacity.RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        logger.info(
            "%s failed (%s); retrying in %.2f s (attempt %d of %d)",
            what,
            endpoint.redact(_cause(state.outcome.exception())),
            state.next_action.sleep,
            state.attempt_number + 1,
            policy.max_attempts,
        )

    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return fn()

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=log_retry,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except openai.OpenAIError as exc:
        _redact_exception(exc, endpoint)
        raise CallFailed(exc, attempts) from exc


def _redact_exception(exc: BaseException | None, endpoint: Endpoint) -> None:
    """Take the API key, should a server have echoed it, out of the messages of ``exc`` and
    the exceptions behind it: callers chain it as the cause of their own error, and a
    traceback (CLI --verbose, a logged exception) prints every message in the chain."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.args = tuple(endpoint.redact(a) if isinstance(a, str) else a for a in exc.args)
        if isinstance(getattr(exc, "message", None), str):
            exc.message = endpoint.redact(exc.message)  # type: ignore[attr-defined]
        exc = exc.__cause__ or exc.__context__


def _cause(exc: BaseException | None, timeout: float | None = None) -> str:
    """One short line naming what went wrong in a request (``timeout``: seconds it was given)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        text = "the request timed out" + (f" after {timeout:g} s" if timeout else "")
    elif isinstance(exc, openai.APIConnectionError):
        text = f"could not connect ({exc.__cause__ or exc})"
    elif isinstance(exc, openai.APIStatusError):
        # the client's message is "Error code: <status> - <the server's error message>"
        detail = exc.message.removeprefix(f"Error code: {exc.status_code}").lstrip(" -")
        text = f"HTTP {exc.status_code}" + (f": {detail}" if detail else "")
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_CAUSE_CHARS else text[: _MAX_CAUSE_CHARS - 3] + "..."


#: what servers say when they do not know a model: OpenAI ("The model `x` does not exist or you
#: do not have access to it", code model_not_found), vLLM ("... does not exist"), Ollama
#: ("model \"x\" not found, try pulling it first"), providers that shut models down
#: ("has been decommissioned", "deprecated")
_MODEL_REFUSED = re.compile(
    r"does not exist|not found|decommissioned|deprecated|retired|no longer (available|supported)"
    r"|unknown model|invalid model|not a valid model",
    re.IGNORECASE,
)


def refuses_the_model(exc: BaseException, model: str) -> bool:
    """Whether ``exc`` is the server saying it does not know ``model`` (unknown or retired),
    as opposed to a wrong URL, which also answers 404."""
    import openai

    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 404, 410):
        return False
    if exc.code in ("model_not_found", "model_decommissioned", "model_deprecated"):
        return True
    message = exc.message or ""
    return bool(_MODEL_REFUSED.search(message)) and ("model" in message.lower() or model in message)


def model_refused_advice(model: str, model_setting: str) -> str:
    """Why ``model`` may be refused (its retirement, when :mod:`regionedit.models` knows it)
    and where to choose another."""
    from .models import retirement

    known = retirement(model)
    why = f"the server does not know the model {model!r}"
    if known is not None:
        shut = "was shut down" if known.date <= datetime.date.today().isoformat() else "shuts down"
        why += f", which {shut} on {known.date}"
        if known.replacement:
            why += f" (its successor: {known.replacement})"
    return f"{why}; choose another model with {model_setting}"


def explain_failure(
    exc: openai.OpenAIError,
    attempts: int,
    endpoint: Endpoint,
    *,
    model: str,
    what: str,
    model_setting: str,
    timeout: float | None = None,
    timeout_setting: str | None = None,
    attempts_setting: str | None = None,
    concurrency_setting: str | None = None,
) -> str:
    """A redacted one-line message: what failed, after how many attempts, what to do next.

    ``what`` names the call for the user ("the LLM region classifier", "the image edit");
    ``model_setting`` where the user chooses the model ("--llm-model or ..."), named when the
    server does not know the model: OpenAI retires models, and a default can be one of them.
    ``timeout`` is the seconds each request was given; ``timeout_setting``,
    ``attempts_setting`` and ``concurrency_setting`` name where the user changes the timeout,
    the attempts and how many requests go out at once: the advice for a slow or rate-limiting
    server.
    """
    import openai

    cause = _cause(exc, timeout)
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    more_attempts = f", or allow more attempts ({attempts_setting})" if attempts_setting else ""
    if refuses_the_model(exc, model):
        advice = model_refused_advice(model, model_setting)
    elif status == 401:
        advice = (
            f"check that OPENAI_API_KEY (or api_key=) is a valid key for {endpoint.display_url}"
        )
    elif status == 403:
        advice = f"check that the key may use model {model!r} (project and organisation access)"
    elif status == 404:
        advice = (
            f"check the model name {model!r}, which may be misspelt or retired (choose another "
            f"with {model_setting}), and the base URL {endpoint.display_url} "
            "(OpenAI-compatible servers usually end in /v1)"
        )
    elif status == 429 and not is_transient(exc):
        advice = "the account's quota is used up: check the plan and billing of the key"
    elif status is not None and not is_transient(exc):
        advice = (
            f"check the model name {model!r} (choose another with {model_setting}) and that "
            "the server supports this request"
        )
    elif isinstance(exc, openai.APITimeoutError):
        where = f" ({timeout_setting})" if timeout_setting else ""
        advice = (
            f"the server at {endpoint.display_url} answers too slowly: raise the timeout{where}"
            f"{more_attempts}"
        )
    elif status == 429:
        fewer = f" ({concurrency_setting})" if concurrency_setting else ""
        advice = (
            "the server kept rate-limiting the requests: wait a minute and retry, or send "
            f"fewer requests at a time{fewer}{more_attempts}"
        )
    elif status is not None:
        advice = (
            f"the server at {endpoint.display_url} is reachable but kept failing: retry later"
            f"{more_attempts}"
        )
    else:
        advice = (
            f"check that the server at {endpoint.display_url} is running and reachable, then retry"
        )
    message = f"{what} failed after {attempts} attempt(s): {cause}. Next: {advice}."
    return endpoint.redact(message)
