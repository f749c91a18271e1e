"""A network fault :class:`support.fake_llm.FakeOpenAIServer` cannot script: an answer that
trickles in a byte at a time.

``FakeResponse(delay=...)`` holds the whole answer back and then sends it at once, which the
client's read timeout catches. A server that keeps sending a byte now and then never leaves the
socket idle for long, so a timeout per socket read never fires; only a deadline on the whole
request stops the client from waiting (nearly) for ever.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any


class TricklingServer:
    """An HTTP server on 127.0.0.1 that answers every request with ``payload`` (JSON), one byte
    every ``interval`` seconds. With ``trickle_headers`` the status line and headers trickle
    too; otherwise they arrive at once and only the body trickles.

    Use as a context manager; ``base_url`` is its ``/v1`` URL, ``requests`` how many requests
    arrived.
    """

    def __init__(
        self, payload: Any, *, interval: float = 0.05, trickle_headers: bool = False
    ) -> None:
        body = json.dumps(payload).encode()
        self._head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self._body = body
        self._interval = interval
        self._trickle_headers = trickle_headers
        self.requests = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def __enter__(self) -> TricklingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                _read_request(conn)
                self.requests += 1
                slow = self._body
                if self._trickle_headers:
                    slow = self._head + slow
                else:
                    conn.sendall(self._head)
                for byte in slow:
                    if self._stop.wait(self._interval):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up and closed the connection: what tests expect


def _read_request(conn: socket.socket) -> None:
    """Read one request (headers and a Content-Length body) and discard it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        rest += chunk
