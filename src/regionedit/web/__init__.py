"""``regionedit serve``: a local web app to edit a photo, review a batch, and an HTTP API.

The edit page shows the decision and the mask before anything is generated, generates
candidates with a progress bar, compares each with the original and keeps the one picked. The
review page lists a batch output folder's items with their status, original, result, mask and
candidates; a pick there replaces the item's output, and a rerun of the batch keeps it. The same
actions are an HTTP API under ``/api/`` (OpenAPI at ``/openapi.json``, read at ``/api/docs``).

Needs the ``web`` extra: ``pip install "regionedit[web]"``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..errors import SettingsError

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from ..editor import Editor

__all__ = ["serve", "create_app", "check_binding", "TOKEN_ENV", "DEFAULT_PORT"]

log = logging.getLogger("regionedit")

#: environment variable holding the access token, when --token is not given
TOKEN_ENV = "REGIONEDIT_TOKEN"
DEFAULT_PORT = 7860


def create_app(out_dir: str | os.PathLike[str], editor: "Optional[Editor]" = None,
               **kwargs: Any) -> "FastAPI":
    """The ASGI app (see :func:`regionedit.web.app.create_app`)."""
    from .app import create_app as create

    return create(out_dir, editor, **kwargs)


def check_binding(host: str, token: Optional[str]) -> None:
    """Refuse to serve a host other than this machine's loopback without a token."""
    if token is not None and not token.strip():
        raise SettingsError(f"The token is empty: pass --token TEXT (or set {TOKEN_ENV}).")
    if token is None and not _is_loopback(host):
        raise SettingsError(
            f"Serving on {host} lets other machines reach the editor and its files: pass "
            f"--token TEXT (or set {TOKEN_ENV}) so that every request must carry it, or serve "
            "on 127.0.0.1."
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    out_dir: str | os.PathLike[str] = ".",
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: Optional[str] = None,
    editor: "Optional[Editor]" = None,
    max_upload_bytes: Optional[int] = None,
    log_level: str = "info",
) -> None:
    """Serve the web app over ``out_dir`` until interrupted (Ctrl-C).

    ``token`` (default: ``$REGIONEDIT_TOKEN``) is required for any ``host`` other than
    127.0.0.1 / localhost / ::1; every request must then carry it. ``editor`` (default:
    ``Editor()``) serves all requests: one copy of each model, generations one at a time.
    Raises :class:`~regionedit.errors.SettingsError` for a binding refused.
    """
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    check_binding(host, token)
    try:
        import uvicorn
    except ImportError:
        raise SettingsError(
            'The web app needs its extra packages: pip install "regionedit[web]".'
        ) from None
    from .app import create_app as create
    from .edits import MAX_UPLOAD_BYTES

    app = create(Path(out_dir), editor, token=token,
                 max_upload_bytes=max_upload_bytes or MAX_UPLOAD_BYTES)
    shown = f"[{host}]" if ":" in host else host
    log.info("serving %s on http://%s:%d/ (review: /review, API: /api/docs)",
             Path(out_dir).resolve(), shown, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
