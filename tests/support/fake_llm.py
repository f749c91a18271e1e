"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests (pytest plugin).

The real ``openai`` client talks to it over HTTP, so retries, timeouts, status codes, headers and
multipart uploads go through the same code as in production.

Fixtures:
    fake_llm  -- a started :class:`FakeOpenAIServer` (torn down after the test); the LLM
                 classifier's answer cache is cleared around it.
    llm_env   -- ``fake_llm`` with ``OPENAI_BASE_URL`` pointing at it and ``OPENAI_API_KEY`` set
                 to :data:`FAKE_API_KEY`, a recognisable secret to scan error messages for.

Scripting, in the order the server consults them for a request:
    server.enqueue(FakeResponse(...), ..., path=...)    one-shot answers, served first, in order
    server.add_route("POST", "/v1/images/edits", fn)    fn(RecordedRequest) -> FakeResponse
    default POST /v1/chat/completions                   refuses what a real server refuses:
        server.known_models = {"gpt-6-luna"}            404 model_not_found for any other model
        server.reject_json_schema = True                400 for response_format json_schema
        server.refuse_params["temperature"] = "..."     400 naming a parameter the request has
        server.efforts = ("low", "medium")              400 for another reasoning_effort value
        server.act_as_reasoning_model()                 all three, as OpenAI's reasoning models
    and otherwise answers {"subject", "reason", "label", "shape"} with
        server.answer("background")                     a fixed label, or
        server.answer_by(lambda source, target: ...)    a rule on the two descriptions.

Image endpoints have no default route: add one, answering e.g. ``image_response_json(image)``.
Everything received is in ``server.requests`` (:class:`RecordedRequest`: method, path, headers,
body, json, and ``multipart()`` for uploads).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import traceback
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

FAKE_API_KEY = "sk-test-SECRET-123"
CHAT_PATH = "/v1/chat/completions"


@dataclass
class FakeResponse:
    """One scripted HTTP answer: ``json`` (encoded) or raw ``body``, after ``delay`` seconds."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "fake server error",
        *,
        type_: str = "server_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> FakeResponse:
        """An OpenAI-style error answer: ``{"error": {"message", "type", "param", "code"}}``."""
        return cls(
            status=status,
            json=error_json(message, type_=type_, code=code),
            headers=headers or {},
            delay=delay,
        )


@dataclass
class FormPart:
    """One field of a multipart/form-data upload."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass
class RecordedRequest:
    """A request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    #: the query parameters of the request URL
    query: dict[str, str] = field(default_factory=dict)

    def multipart(self) -> dict[str, FormPart]:
        """The form fields of a multipart/form-data body, by name (the last one wins)."""
        content_type = self.headers.get("content-type", "")
        if "boundary=" not in content_type:
            raise ValueError(f"not a multipart request: {content_type!r}")
        boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
        parts: dict[str, FormPart] = {}
        for chunk in self.body.split(b"--" + boundary.encode())[1:]:
            if chunk.startswith(b"--"):  # the closing delimiter
                break
            head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            part_headers = _parse_part_headers(head.decode("utf-8"))
            disposition = part_headers.get("content-disposition", "")
            params = _disposition_params(disposition)
            part = FormPart(
                name=params.get("name", ""),
                data=data.removesuffix(b"\r\n"),
                filename=params.get("filename"),
                content_type=part_headers.get("content-type"),
            )
            parts[part.name] = part
        return parts


def _parse_part_headers(head: str) -> dict[str, str]:
    headers = {}
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _disposition_params(disposition: str) -> dict[str, str]:
    params = {}
    for item in disposition.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        params[key] = value.strip('"')
    return params


Handler = Callable[[RecordedRequest], FakeResponse]


def error_json(message: str, *, type_: str = "server_error", code: str | None = None) -> dict:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def chat_completion_json(
    content: str | None,
    *,
    refusal: str | None = None,
    finish_reason: str = "stop",
    model: str = "fake-model",
) -> dict:
    """A complete chat.completion response body whose single choice says ``content``."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def image_response_json(image: Any) -> dict:
    """An images.edit / images.generate response body carrying ``image`` (PIL) as base64 PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {
        "created": 1_700_000_000,
        "data": [{"b64_json": base64.b64encode(buffer.getvalue()).decode()}],
    }


def label_answer(
    label: str, reason: str = "fake answer", *, subject: str = "the subject", shape: str = "keep"
) -> FakeResponse:
    """A chat completion whose content is the classifier's answer JSON."""
    answer = {"subject": subject, "reason": reason, "label": label, "shape": shape}
    return FakeResponse(json=chat_completion_json(json.dumps(answer)))


def refusal(status: int, message: str, *, param: str | None, code: str) -> FakeResponse:
    """An OpenAI-style refusal of a request parameter (``param`` names it, as OpenAI does)."""
    body = error_json(message, type_="invalid_request_error", code=code)
    body["error"]["param"] = param
    return FakeResponse(status=status, json=body)


def descriptions_in(request: RecordedRequest) -> tuple[str, str]:
    """The (source, target) of a classifier request: the JSON object in its last user message."""
    user = [m for m in request.json["messages"] if m["role"] == "user"][-1]["content"]
    data = json.loads(user[user.index("{") : user.rindex("}") + 1])
    return data["source"], data["target"]


def closed_port_url() -> str:
    """A ``/v1`` base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog is 5: of eight clients connecting at once, one now and
    # then found it full and retried a second later (TCP's first SYN retransmission), as no
    # real API server makes them
    request_queue_size = 64
    fake: FakeOpenAIServer


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real API server
    # headers and body go out as two writes; with Nagle on, each reply waits ~40 ms for an ACK
    disable_nagle_algorithm = True
    server: _HTTPServer

    def _dispatch(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean


class FakeOpenAIServer:
    """An OpenAI-compatible server on a random 127.0.0.1 port, scripted by the test."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        #: tracebacks of handlers that raised; the fixture fails the test if any
        self.handler_errors: list[str] = []
        self.reject_json_schema = False
        #: chat requests carrying one of these parameters get a 400 with the message given
        self.refuse_params: dict[str, str] = {}
        #: when set, the reasoning_effort values accepted (another value gets a 400)
        self.efforts: tuple[str, ...] | None = None
        #: when set, the models served (another model gets OpenAI's 404 model_not_found)
        self.known_models: set[str] | None = None
        self._rule: Callable[[str, str], str] = lambda source, target: "foreground"
        self._reason = "fake answer"
        self._subject = "the subject"
        self._shape = "keep"
        self._routes: dict[tuple[str, str], Handler] = {("POST", CHAT_PATH): self._chat}
        self._queues: dict[str, deque[FakeResponse]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._httpd.fake = self
        # a short poll interval makes shutdown() (teardown) return in ~50 ms instead of 0.5 s
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, what OPENAI_BASE_URL is set to."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping through a scripted delay
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------------
    def enqueue(self, *responses: FakeResponse, path: str = CHAT_PATH) -> None:
        """Serve these answers, in order, to the next requests to ``path`` (any method)."""
        with self._lock:
            self._queues.setdefault(path, deque()).extend(responses)

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Answer ``method path`` (path includes /v1) with ``handler(request)``."""
        self._routes[(method.upper(), path)] = handler

    def answer(
        self,
        label: str,
        reason: str = "fake answer",
        *,
        subject: str = "the subject",
        shape: str = "keep",
    ) -> None:
        """Chat completions answer ``label`` (with that reason, subject and shape) from now on."""
        self._rule = lambda source, target: label
        self._reason = reason
        self._subject = subject
        self._shape = shape

    def act_as_reasoning_model(self, efforts: tuple[str, ...] | None = None) -> None:
        """Refuse what OpenAI's reasoning models refuse: a temperature other than the default,
        and ``max_tokens`` (they take ``max_completion_tokens``); ``efforts``: as
        :attr:`efforts`."""
        self.refuse_params["temperature"] = (
            "Unsupported value: 'temperature' does not support 0 with this model. Only the "
            "default (1) value is supported."
        )
        self.refuse_params["max_tokens"] = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead."
        )
        self.efforts = efforts

    def answer_by(self, rule: Callable[[str, str], str]) -> None:
        """Chat completions answer ``rule(source, target)`` (see :func:`descriptions_in`)."""
        self._rule = rule

    def requests_to(self, path: str = CHAT_PATH) -> list[RecordedRequest]:
        """The requests received for ``path`` so far."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- serving -----------------------------------------------------------------------------
    def _chat(self, request: RecordedRequest) -> FakeResponse:
        body = request.json or {}
        model = body.get("model")
        if self.known_models is not None and model not in self.known_models:
            return refusal(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                param=None,
                code="model_not_found",
            )
        for param, message in self.refuse_params.items():
            if param in body:
                code = "unsupported_value" if "value" in message else "unsupported_parameter"
                return refusal(400, message, param=param, code=code)
        effort = body.get("reasoning_effort")
        if self.efforts is not None and effort is not None and effort not in self.efforts:
            listed = ", ".join(f"'{e}'" for e in self.efforts)
            return refusal(
                400,
                f"Unsupported value: 'reasoning_effort' does not support '{effort}' with this "
                f"model. Supported values are: {listed}.",
                param="reasoning_effort",
                code="unsupported_value",
            )
        response_format = body.get("response_format") or {}
        if self.reject_json_schema and response_format.get("type") == "json_schema":
            return FakeResponse.error(
                400,
                "response_format of type 'json_schema' is not supported by this model",
                type_="invalid_request_error",
            )
        label = self._rule(*descriptions_in(request))
        shape = self._shape if label == "foreground" else "keep"
        return label_answer(label, self._reason, subject=self._subject, shape=shape)

    def _route(self, request: RecordedRequest) -> FakeResponse:
        with self._lock:
            queue = self._queues.get(request.path)
            if queue:
                return queue.popleft()
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return FakeResponse.error(
                404, f"no route {request.method} {request.path}", type_="invalid_request_error"
            )
        return handler(request)

    def _handle(self, http: _RequestHandler) -> None:
        headers = {name.lower(): value for name, value in http.headers.items()}
        body = _read_body(http, headers)
        parsed = None
        if headers.get("content-type", "").startswith("application/json") and body:
            parsed = json.loads(body)
        path, _, query = http.path.partition("?")
        request = RecordedRequest(
            method=http.command,
            path=path,
            headers=headers,
            body=body,
            json=parsed,
            query=dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
        )
        with self._lock:
            self.requests.append(request)
        try:
            response = self._route(request)
        except Exception:
            self.handler_errors.append(traceback.format_exc())
            response = FakeResponse.error(500, "fake server handler crashed (see handler_errors)")
        if response.delay and self._stopping.wait(response.delay):
            return
        payload = json.dumps(response.json).encode() if response.json is not None else response.body
        try:
            http.send_response(response.status)
            http.send_header("Content-Type", response.content_type)
            http.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                http.send_header(name, value)
            http.end_headers()
            http.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (its timeout): nothing left to answer


def _read_body(http: BaseHTTPRequestHandler, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", ""):
        chunks = []
        while True:
            size = int(http.rfile.readline().split(b";")[0], 16)
            chunks.append(http.rfile.read(size))
            http.rfile.readline()  # the CRLF after each chunk
            if size == 0:
                return b"".join(chunks)
    return http.rfile.read(int(headers.get("content-length") or 0))


@pytest.fixture
def fake_llm():
    """A started FakeOpenAIServer, stopped after the test; the classifier cache starts empty."""
    from regionedit.classify import clear_cache

    clear_cache()
    with FakeOpenAIServer() as server:
        yield server
    clear_cache()
    assert not server.handler_errors, "fake server handler raised:\n" + "\n".join(
        server.handler_errors
    )


@pytest.fixture
def llm_env(fake_llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAIServer:
    """``fake_llm`` with OPENAI_BASE_URL pointing at it and OPENAI_API_KEY = FAKE_API_KEY."""
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_API_KEY)
    return fake_llm
