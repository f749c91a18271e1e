"""The web app: the edit page, the review page and the HTTP API under ``/api/``.

A thin layer: each route checks its input, calls the library through :class:`EditStore`
(uploads and single edits) or :class:`BatchFolder` (a batch output folder), and answers JSON or
an image. Long edits run on the :class:`JobQueue`'s single worker; one :class:`Editor` serves
every request. FastAPI writes the OpenAPI description (``/openapi.json``) from these routes.
"""

from __future__ import annotations

import contextlib
import secrets
from urllib.parse import urlencode
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from .. import __version__
from ..batch import RUN_LOG
from ..editor import Editor
from ..errors import (
    ClassifierError,
    InpaintError,
    ModelLoadError,
    RegionEditError,
    SegmentationError,
    UnidentifiedRegionError,
)
from ..types import EditSettings, Extent, Region, Shape
from .edits import MAX_UPLOAD_BYTES, EditStore, UploadTooLargeError
from .jobs import Job, JobQueue
from .previews import PreviewSize, preview
from .review import STATUSES, BatchFolder, NotFound

__all__ = ["create_app", "TOKEN_COOKIE", "LOOPBACK_HOSTS"]

STATIC = Path(__file__).with_name("static")
TOKEN_COOKIE = "regionedit_token"
#: Host headers accepted without a token: a page on another site that resolves its own name to
#: 127.0.0.1 (DNS rebinding) sends its own name, and is refused
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# HTTP status of each error family; anything else is a 500
_STATUS = (
    (UploadTooLargeError, 413),
    (UnidentifiedRegionError, 409),
    (SegmentationError, 422),
    (ClassifierError, 502),
    (InpaintError, 502),
    (ModelLoadError, 503),
)
_USER_ERRORS = ("ImageInputError", "DescriptionError", "SettingsError", "ManifestError")


# -- request bodies ----------------------------------------------------------------------------


class Descriptions(BaseModel):
    source: str = Field(description="what the photo shows now", examples=["a cat on a sofa"])
    target: str = Field(description="what it should show", examples=["a cat on a beach"])


class MaskRequest(BaseModel):
    upload: str = Field(description="id returned by POST /api/uploads")
    region: Region
    extent: Extent = "auto"
    grow: int = EditSettings.model_fields["grow"].default
    feather: int = EditSettings.model_fields["feather"].default
    shape: Shape = Field("keep", description="the classifier's shape answer (for extent=auto)")


class EditRequest(Descriptions):
    upload: str = Field(description="id returned by POST /api/uploads")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="edit settings, by the names of regionedit.EditSettings: "
        + ", ".join(name for name in EditSettings.model_fields if name not in ("source", "target")),
        examples=[{"candidates": 2, "seed": 7, "steps": 30, "region": "background"}],
    )


class PickRequest(BaseModel):
    candidate: int = Field(ge=1, description="position of the candidate to make the output "
                           "(1 .. N-1; 0 is the current output)")


class RerunRequest(BaseModel):
    seed: Optional[int] = Field(None, ge=0, le=2**32 - 1, description="None: a new random seed")
    region: Optional[Region] = Field(None, description="None: as the batch asked")


# -- the app -----------------------------------------------------------------------------------


def create_app(
    out_dir: str | Path,
    editor: Optional[Editor] = None,
    *,
    token: Optional[str] = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The web app over ``out_dir`` (a batch output folder, or any folder for single edits),
    with ``editor`` serving every request (default: ``Editor()``).

    With a ``token``, every request must carry it (``Authorization: Bearer``, or the cookie a
    page opened with ``?token=`` sets); without one, only requests addressed to a loopback
    host name are answered.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    editor = editor or Editor()
    jobs = JobQueue()
    store = EditStore(out, editor, jobs, max_upload_bytes=max_upload_bytes)
    folder = BatchFolder(out)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        jobs.close()

    app = FastAPI(
        title="regionedit",
        version=__version__,
        summary="Text-driven photo editing: regenerate only the region that must change.",
        # the interactive docs pages load their scripts from a CDN; /api/docs is served here
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.editor, app.state.jobs, app.state.store, app.state.folder = editor, jobs, store, folder
    _add_guards(app, token, max_upload_bytes)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def edit_page() -> FileResponse:
        return page("edit.html")

    @app.get("/review", include_in_schema=False)
    def review_page() -> FileResponse:
        return page("review.html")

    @app.get("/api/docs", include_in_schema=False)
    def api_page() -> FileResponse:
        return page("api.html")

    @app.get("/api/info", tags=["server"])
    def info() -> dict[str, Any]:
        """The server's version, folder and editor configuration."""
        return {
            "version": __version__,
            "out_dir": str(out),
            "batch": (out / RUN_LOG).is_file(),
            "editor": editor.config(),
            "max_upload_bytes": max_upload_bytes,
            "statuses": list(STATUSES),
            "defaults": {name: field.default for name, field in EditSettings.model_fields.items()
                         if name not in ("source", "target")},
        }

    # -- single photos -----------------------------------------------------------------------

    @app.post("/api/uploads", tags=["edit"], status_code=201)
    def upload(file: UploadFile = File(description="a PNG, JPEG, WebP, TIFF, BMP or GIF photo")
               ) -> dict[str, Any]:
        """Store a photo for editing; returns its ``id``. Checked like any input: its type by
        its first bytes, its size, and a full decode within the pixel limit."""
        data = file.file.read(max_upload_bytes + 1)
        return store.add_upload(data, file.filename or "photo")

    @app.get("/api/uploads/{upload_id}/image", tags=["edit"])
    def upload_image(upload_id: str, size: PreviewSize = "view") -> FileResponse:
        """A preview of an uploaded photo (JPEG, at most 256 or 1280 px)."""
        return _image(preview(store.upload_path(upload_id), out, size,
                              max_pixels=editor.max_pixels), versioned=True)

    @app.get("/api/uploads/{upload_id}/masks/{name}", tags=["edit"])
    def upload_mask(upload_id: str, name: str) -> FileResponse:
        """A mask made by POST /api/mask (white = regenerated)."""
        return _image(store.mask_file(upload_id, name), versioned=True)

    @app.post("/api/classify", tags=["edit"])
    def classify(body: Descriptions) -> dict[str, Any]:
        """Which region the edit changes: ``label`` foreground, background or unidentified
        (then ``question`` asks the user), with ``reason``, ``subject`` and ``shape``."""
        return store.classify(body.source, body.target)

    @app.post("/api/mask", tags=["edit"])
    def mask(body: MaskRequest) -> dict[str, Any]:
        """The mask an edit of ``region`` would regenerate on an upload: ``url`` of the PNG,
        the ``extent`` applied, ``coverage`` (fraction of the photo)."""
        return store.mask(body.upload, body.region, extent=body.extent, grow=body.grow,
                          feather=body.feather, shape=body.shape)

    @app.post("/api/edits", tags=["edit"], status_code=202)
    def start_edit(body: EditRequest) -> dict[str, Any]:
        """Start an edit of an upload as a background job (``settings.candidates`` variants);
        poll GET /api/jobs/{id}. When done, its ``result`` is the edit (GET /api/edits/{id})."""
        return _job(jobs, store.start_edit(body.upload, body.source, body.target, body.settings))

    @app.get("/api/edits/{edit_id}", tags=["edit"])
    def get_edit(edit_id: str) -> dict[str, Any]:
        """An edit: its decision, settings, and candidates (the output first)."""
        return store.state(edit_id)

    @app.post("/api/edits/{edit_id}/pick", tags=["edit"])
    def pick_edit(edit_id: str, body: PickRequest) -> dict[str, Any]:
        """Make a candidate the output (the files are exchanged; the sidecar records it)."""
        return store.pick(edit_id, body.candidate)

    @app.get("/api/edits/{edit_id}/images/{kind}", tags=["edit"])
    def edit_image(edit_id: str, kind: str, size: PreviewSize = "view") -> FileResponse:
        """A preview of one of an edit's images: ``image``, ``candidate1``.., ``mask``."""
        return _image(preview(store.file(edit_id, kind), out, size), versioned=True)

    @app.get("/api/edits/{edit_id}/files/{kind}", tags=["edit"])
    def edit_file(edit_id: str, kind: str) -> FileResponse:
        """One of an edit's files as written: ``image``, ``candidate1``.., ``mask``,
        ``sidecar``."""
        path = store.file(edit_id, kind)
        return FileResponse(path, filename=path.name, headers={"Cache-Control": "no-cache"})

    @app.get("/api/edits/{edit_id}/download", tags=["edit"])
    def download_edit(edit_id: str) -> Response:
        """The output, its sidecar and its mask in one zip."""
        name, data = store.download(edit_id)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str) -> dict[str, Any]:
        """A background job: ``status`` queued, running, done or failed; ``progress`` 0..1 and
        a ``message``; ``ahead``: jobs that run before it; ``result`` or ``error``."""
        job = jobs.get(job_id)
        if job is None:
            raise NotFound(f"No job {job_id} (finished jobs are forgotten after a while).")
        return _job(jobs, job)

    # -- a batch output folder ---------------------------------------------------------------

    @app.get("/api/items", tags=["review"])
    def list_items(
        status: Optional[Literal["done", "decided", "failed", "unidentified", "picked"]] = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        """The batch's items from ``run.jsonl``, a page at a time, with the count of each
        status; ``status`` filters."""
        return folder.page(status, offset, limit)

    @app.get("/api/items/{key}", tags=["review"])
    def get_item(key: str) -> dict[str, Any]:
        """One item: status, decision, error, and its candidates (the output first)."""
        return folder.describe(folder.item(key))

    @app.get("/api/items/{key}/images/{kind}", tags=["review"])
    def item_image(key: str, kind: str, size: PreviewSize = "thumb") -> FileResponse:
        """A preview (JPEG, cached in OUT_DIR/.thumbs) of the item's ``original``, ``image``,
        ``candidate1``.. or ``mask``. The original is shown only while its content is the one
        the run edited."""
        item = folder.item(key)
        if kind == "original":
            source, sha256 = folder.original(item)
            made = preview(source, out, size, sha256=sha256, max_pixels=editor.max_pixels)
            return _image(made, versioned=False)
        return _image(preview(folder.output_file(item, kind), out, size), versioned=True)

    @app.get("/api/items/{key}/files/{kind}", tags=["review"])
    def item_file(key: str, kind: str) -> FileResponse:
        """One of the item's output files as written (``image``, ``candidate1``.., ``mask``,
        ``sidecar``, ``sheet``)."""
        path = folder.output_file(folder.item(key), kind)
        return FileResponse(path, filename=path.name, headers={"Cache-Control": "no-cache"})

    @app.post("/api/items/{key}/pick", tags=["review"])
    def pick_item(key: str, body: PickRequest) -> dict[str, Any]:
        """Make a candidate the item's output: the files are exchanged, the sidecar and
        ``run.jsonl`` record it, and a rerun of the batch keeps it."""
        return folder.pick(folder.item(key), body.candidate)

    @app.post("/api/items/{key}/rerun", tags=["review"], status_code=202)
    def rerun_item(key: str, body: RerunRequest) -> dict[str, Any]:
        """Edit the item again with another seed and/or a region chosen here, as a background
        job; the result replaces the item's files and a rerun of the batch keeps it."""
        item = folder.item(key)

        def run(progress: Any) -> dict[str, Any]:
            return folder.rerun(editor, item, seed=body.seed, region=body.region,
                                progress=progress)

        return _job(jobs, jobs.submit("rerun", run))

    return app


def _job(jobs: JobQueue, job: Job) -> dict[str, Any]:
    return job.public(ahead=jobs.ahead_of(job))


def _image(path: Path, *, versioned: bool) -> FileResponse:
    # versioned URLs change when the file does, so the browser may keep them
    cache = "private, max-age=86400" if versioned else "no-cache"
    return FileResponse(path, headers={"Cache-Control": cache})


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal is ``{"error": {"type", "message"}}`` with a one-line message."""

    @app.exception_handler(RegionEditError)
    async def library_error(request: Request, exc: RegionEditError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), None)
        if status is None:
            status = 400 if type(exc).__name__ in _USER_ERRORS or isinstance(exc, ValueError) else 500
        return _error(status, type(exc).__name__, str(exc).strip().splitlines()[0])

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, "NotFound", str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where}: {error.get('msg')}")
        return _error(400, "SettingsError", "Bad request: " + "; ".join(problems) + ".")


def _add_guards(app: FastAPI, token: Optional[str], max_upload_bytes: int) -> None:
    """Who may talk to the server, and how much they may send."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if token is not None:
            given = _token_of(request)
            if given is None or not secrets.compare_digest(given.encode(), token.encode()):
                return _error(401, "Unauthorized", "This server needs its token: open "
                              "http://HOST:PORT/?token=TOKEN, or send 'Authorization: Bearer "
                              "TOKEN'.")
            if "token" in request.query_params and request.method == "GET":
                # the token leaves the address bar (and the history) for a cookie
                query = urlencode([(k, v) for k, v in request.query_params.multi_items()
                                   if k != "token"])
                url = request.url.path + (f"?{query}" if query else "")
                response: Response = RedirectResponse(url, status_code=303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return response
        elif _host_name(request.headers.get("host", "")) not in LOOPBACK_HOSTS:
            return _error(403, "Forbidden", "This server answers only requests to 127.0.0.1 "
                          "or localhost; start it with --token to serve other hosts.")
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None:
            if origin.split("://", 1)[-1] != request.headers.get("host"):
                return _error(403, "Forbidden", "Requests from other sites are refused.")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_upload_bytes + 2**20:
            return _error(413, "UploadTooLargeError", f"The request is over the upload limit "
                          f"of {max_upload_bytes / 2**20:.0f} MB.")
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
}


def _token_of(request: Request) -> Optional[str]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)


def _host_name(host: str) -> str:
    """``host`` without its port: ``127.0.0.1:7860`` -> ``127.0.0.1``, ``[::1]:80`` -> ``[::1]``."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
