"""The library's logger, and notices worth saying once per process rather than once per image."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("regionedit")

_said: set[str] = set()
_lock = threading.Lock()


def once(key: str, message: str, *args: object, level: int = logging.INFO) -> None:
    """Log ``message`` the first time ``key`` comes up in this process (a batch of thousands
    would otherwise repeat it for every image); later times go to the debug log."""
    with _lock:
        first = key not in _said
        _said.add(key)
    log.log(level if first else logging.DEBUG, message, *args)
