"""Picking a candidate: it becomes the output file, and the one it replaces becomes a candidate.

An edit with ``candidates=N`` writes ``<stem><suffix>`` (candidate 0, the output) and
``<stem>.<i><suffix>`` for i = 1 .. N-1, and its sidecar lists ``candidate_seeds`` in that
order. Picking candidate i exchanges the two files, so no candidate is ever lost and every file
the sidecar and ``run.jsonl`` list stays in place, then rewrites the sidecar with the seeds in
their new order and a ``pick`` record. The sidecar keeps its ``batch`` record unchanged: a rerun
of the batch with the same settings finds every file it wrote, and the same key, and leaves the
picked output alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from ..errors import OutputError, SettingsError
from ..imageio import atomic_write_bytes

__all__ = ["exchange_files", "pick_candidate"]

#: renameat2's flag that swaps two names in one step (Linux 3.15+)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

# one pick at a time: two picks of one item at once would each read the other's half-done state
_PICK_LOCK = threading.Lock()


def pick_candidate(
    image: Path, candidate: Path, sidecar: Path, position: int
) -> dict[str, Any]:
    """Make the candidate at ``position`` (1 .. N-1), stored at ``candidate``, the output at
    ``image``; returns the sidecar as rewritten. Raises SettingsError for a position the edit
    does not have, OutputError when a file cannot be read or written."""
    with _PICK_LOCK:
        record = _read_sidecar(sidecar)
        seeds = list(record.get("candidate_seeds") or [])
        if not 1 <= position < len(seeds):
            raise SettingsError(
                f"candidate must be from 1 to {len(seeds) - 1} (0 is the current output), "
                f"not {position}."
            )
        for path in (image, candidate):
            if not path.is_file():
                raise OutputError(
                    f"{path.name} is missing from {path.parent}: re-run the item to write its "
                    "candidates again."
                )
        exchange_files(image, candidate)
        seeds[0], seeds[position] = seeds[position], seeds[0]
        record["candidate_seeds"] = seeds
        record["pick"] = {
            "seed": seeds[0],
            "from_candidate": position,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_bytes(sidecar, (json.dumps(record, indent=2) + "\n").encode())
        return record


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(
            f"Cannot read the sidecar {sidecar.name} ({exc}): re-run the item to write it again."
        ) from None
    if not isinstance(record, dict):
        raise OutputError(f"The sidecar {sidecar.name} is not a JSON object: re-run the item.")
    return record


def exchange_files(a: Path, b: Path) -> None:
    """Swap the contents of two files in one folder.

    Where the system can exchange two names in one step (Linux's ``renameat2`` with
    ``RENAME_EXCHANGE``), that is used: at every moment each name holds one whole image. Where
    it cannot, each file is rewritten atomically with the other's bytes, held in memory.
    """
    if _rename_exchange(a, b):
        return
    first, second = a.read_bytes(), b.read_bytes()
    atomic_write_bytes(a, second)
    atomic_write_bytes(b, first)


def _rename_exchange(a: Path, b: Path) -> bool:
    """True when the kernel swapped the two names; False when it cannot here."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP):
        return False  # a file system or kernel without the exchange: rewrite instead
    raise OutputError(
        f"Cannot swap {a.name} and {b.name}: {os.strerror(code)}. Check the folder's "
        "permissions."
    )


_libc: Optional[Any] = None


def _renameat2() -> Optional[Any]:
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    function = getattr(_libc, "renameat2", None)  # glibc 2.28+
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                             ctypes.c_uint]
        function.restype = ctypes.c_int
    return function
