"""Helpers for the web app's tests: an editor on the tiny models, real batch folders, and the app
served by uvicorn on a free port for a real browser."""

from __future__ import annotations

import contextlib
import csv
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

#: the descriptions the fake classifier answers, by target
TARGETS = {"a dog": "foreground", "a beach": "background", "something else": "unidentified"}


def classify_by_target(source: str, target: str) -> str:
    return TARGETS.get(target, "background")


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def read_log(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "run.jsonl").read_text().splitlines()]


def photo_variants(photo: Path, folder: Path, count: int) -> list[Path]:
    """``count`` different photos made from one (flipped, rotated, tinted), as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    base = Image.open(photo).convert("RGB")
    paths = []
    for i in range(count):
        image = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else base
        if i % 4 >= 2:
            image = image.rotate(180)
        tint = np.asarray(image, dtype=np.int16) + (i // 4) * 9
        path = folder / f"photo{i:02d}.png"
        Image.fromarray(np.clip(tint, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def write_manifest(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """A CSV manifest next to the photos in ``folder``."""
    path = folder / "edits.csv"
    columns = sorted({name for row in rows for name in row})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
