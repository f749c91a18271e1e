"""The edit page's work: uploaded photos, their masks, edits as background jobs, and picks.

Uploads are kept in ``OUT_DIR/uploads/<id>/`` (the id is the start of the content hash, so the
same photo uploaded twice is stored once) and edits in ``OUT_DIR/edits/<id>/``, written by
:meth:`EditResult.save <regionedit.types.EditResult.save>` with the mask and the sidecar.
Every model call goes through the one :class:`~regionedit.editor.Editor` the server holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import secrets
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .. import masks
from ..errors import ClassifierError, ImageInputError, SettingsError
from ..imageio import LoadedImage, load_image, save_image
from ..types import Classification, Extent, Region, Shape, output_paths
from .jobs import Job, JobQueue, Progress
from .picks import pick_candidate
from .review import NotFound

if TYPE_CHECKING:  # pragma: no cover
    from ..editor import Decision, Editor

__all__ = ["EditStore", "UploadTooLargeError", "MAX_UPLOAD_BYTES", "UNIDENTIFIED_QUESTION"]

#: default upload size limit
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
#: what the page asks when the classifier cannot tell which region changes
UNIDENTIFIED_QUESTION = (
    "Which part should change: the foreground (the main subject) or the background?"
)

# Image types an upload may be, told by their first bytes before any decoder sees the file (a
# decoder is only as safe as the formats it is given), with the suffix the upload is stored as.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG", ".png"),
    (b"\xff\xd8\xff", "JPEG", ".jpg"),
    (b"GIF87a", "GIF", ".gif"),
    (b"GIF89a", "GIF", ".gif"),
    (b"II*\x00", "TIFF", ".tif"),
    (b"MM\x00*", "TIFF", ".tif"),
    (b"BM", "BMP", ".bmp"),
)
#: suffix of edited images by input format: the input's own where it is lossless or a photo
#: format, else PNG
_OUTPUT_SUFFIX = {"JPEG": ".jpg", "WEBP": ".webp"}
_ID = re.compile(r"[0-9a-f]{16}")


class UploadTooLargeError(ImageInputError):
    """An upload is over the server's size limit (the API answers 413)."""


def _image_type(data: bytes) -> Optional[tuple[str, str]]:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP", ".webp"
    for signature, fmt, suffix in _SIGNATURES:
        if data.startswith(signature):
            return fmt, suffix
    return None


def _safe_stem(filename: str) -> str:
    """A file name stem safe to store: letters, digits, ``.-_`` only, at most 60 characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "").stem).strip("._-")[:60]
    return stem or "photo"


def _checked_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise NotFound(f"No {what} {value!r}.")
    return value


class EditStore:
    """Uploads, masks and edits in one output folder, done with one editor.

    ``model_lock`` serialises the quick model calls (classify, mask, an edit's preparation):
    they answer at once, even while a generation runs on the job worker, but never two at a
    time.
    """

    def __init__(
        self, out_dir: Path, editor: "Editor", jobs: JobQueue, *,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.out_dir = out_dir.resolve()
        self.uploads = self.out_dir / "uploads"
        self.edits = self.out_dir / "edits"
        self.editor = editor
        self.jobs = jobs
        self.max_upload_bytes = max_upload_bytes
        self.model_lock = threading.Lock()
        self._loaded: OrderedDict[Path, LoadedImage] = OrderedDict()
        self._loaded_lock = threading.Lock()

    # -- uploads -----------------------------------------------------------------------------

    def add_upload(self, data: bytes, filename: str) -> dict[str, Any]:
        """Check and store an uploaded photo: its type by its first bytes, then a full decode
        with the CLI's pixel limit. Raises ImageInputError (UploadTooLargeError) with the
        user's file name in the message."""
        name = Path(filename or "photo").name
        if len(data) > self.max_upload_bytes:
            raise UploadTooLargeError(
                f"{name} is {len(data) / 2**20:.1f} MB; this server takes photos up to "
                f"{self.max_upload_bytes / 2**20:.0f} MB (serve --max-upload-mb)."
            )
        kind = _image_type(data)
        if kind is None:
            raise ImageInputError(
                f"{name} is not a PNG, JPEG, WebP, TIFF, BMP or GIF image. Convert it to PNG or "
                "JPEG and upload it again."
            )
        upload_id = hashlib.sha256(data).hexdigest()[:16]
        folder = self.uploads / upload_id
        existing = self._upload_file(folder)
        if existing is not None:
            return self._upload_info(upload_id, existing, self.load(existing))
        folder.mkdir(parents=True, exist_ok=True)
        # hidden and named like every temporary file regionedit writes, so a crash leaves
        # nothing a later run mistakes for a photo
        staging = folder / f".{name[:40]}.{secrets.token_hex(4)}.tmp"
        staging.write_bytes(data)
        try:
            loaded = load_image(staging, max_pixels=self.editor.max_pixels)
            if loaded.format != kind[0]:
                raise ImageInputError(
                    f"{name} starts like a {kind[0]} file but decodes as {loaded.format}: "
                    "upload the photo itself."
                )
            final = folder / (_safe_stem(name) + kind[1])
            os.replace(staging, final)
        except ImageInputError as exc:
            raise ImageInputError(str(exc).replace(str(staging), name), path=name) from None
        finally:
            staging.unlink(missing_ok=True)
        loaded.path = str(final)
        self._remember(final, loaded)
        return self._upload_info(upload_id, final, loaded)

    def _upload_info(self, upload_id: str, path: Path, loaded: LoadedImage) -> dict[str, Any]:
        width, height = loaded.size
        return {
            "id": upload_id, "name": path.name, "width": width, "height": height,
            "view": f"/api/uploads/{upload_id}/image?size=view",
        }

    @staticmethod
    def _upload_file(folder: Path) -> Optional[Path]:
        if not folder.is_dir():
            return None
        files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        return files[0] if files else None

    def upload_path(self, upload_id: str) -> Path:
        path = self._upload_file(self.uploads / _checked_id(upload_id, "upload"))
        if path is None:
            raise NotFound(f"No upload {upload_id}: upload the photo again.")
        return path

    def load(self, path: Path) -> LoadedImage:
        """The decoded photo, kept for the next few calls: flipping the region or the extent
        asks for a new mask of the same photo."""
        with self._loaded_lock:
            loaded = self._loaded.get(path)
        return loaded if loaded is not None else self._remember(path, self.editor.load(path))

    def _remember(self, path: Path, loaded: LoadedImage) -> LoadedImage:
        with self._loaded_lock:
            self._loaded[path] = loaded
            while len(self._loaded) > 4:
                self._loaded.popitem(last=False)
        return loaded

    # -- deciding and masking (quick, answered at once) --------------------------------------

    def classify(self, source: str, target: str) -> dict[str, Any]:
        with self.model_lock:
            decision = self.editor.classify(source, target)
        answer = decision.model_dump()
        answer["question"] = UNIDENTIFIED_QUESTION if decision.label == "unidentified" else None
        return answer

    def mask(
        self, upload_id: str, region: Region, *, extent: Extent = "auto", grow: int = 6,
        feather: int = 4, shape: Shape = "keep",
    ) -> dict[str, Any]:
        """The mask an edit of ``region`` would regenerate, saved as a PNG at the working size
        (for display over the photo)."""
        self.editor.settings("-", "-", region=region, extent=extent, grow=grow, feather=feather)
        path = self.upload_path(upload_id)
        with self.model_lock:
            made = self.editor.mask(
                self.load(path), region, grow=grow, feather=feather, extent=extent, shape=shape
            )
        name = hashlib.sha256(
            f"{region}-{extent}-{grow}-{feather}-{shape}".encode()
        ).hexdigest()[:16]
        save_image(masks.to_image(made.work_mask), path.parent / "masks" / f"{name}.png")
        return {
            "region": region, "extent": made.extent, "from": made.source,
            "coverage": round(float(made.work_mask.mean()), 4),
            "url": f"/api/uploads/{upload_id}/masks/{name}",
        }

    def mask_file(self, upload_id: str, name: str) -> Path:
        path = self.upload_path(upload_id).parent / "masks" / f"{_checked_id(name, 'mask')}.png"
        if not path.is_file():
            raise NotFound(f"No mask {name} for upload {upload_id}.")
        return path

    # -- edits (background jobs) -------------------------------------------------------------

    def start_edit(
        self, upload_id: str, source: str, target: str, settings: dict[str, Any]
    ) -> Job:
        """Queue an edit of an upload; every setting is checked now, before it waits."""
        path = self.upload_path(upload_id)
        checked = self.editor.settings(source, target, **settings)
        edit_id = secrets.token_hex(8)

        def run(progress: Progress) -> dict[str, Any]:
            return self._edit(edit_id, path, checked, progress)

        return self.jobs.submit("edit", run)

    def _decision(self, source: str, target: str, region: Optional[Region]) -> Optional["Decision"]:
        """The user's region with the classifier's reading of the edit kept (subject, shape):
        the mask then matches the one the page showed. None: the classifier decides."""
        if region is None:
            return None
        try:
            said = self.editor.classify(source, target)
        except ClassifierError:
            return self.editor.decide(source, target, region=region)
        if said.label == region:
            return region, said
        return region, Classification(
            label=region, source="override", subject=said.subject, shape=said.shape,
            classifier=said.classifier,
            reason=f"chosen in the web app; the classifier said {said.label}: {said.reason}",
        )

    def _edit(self, edit_id: str, path: Path, settings: Any, progress: Progress) -> dict[str, Any]:
        editor = self.editor
        progress(0.02, "deciding the region and making the mask")
        with self.model_lock:
            decision = self._decision(settings.source, settings.target, settings.region)
            prepared = editor.prepare(self.load(path), settings, decision=decision)
        progress(0.08, "loading the inpainting model")
        editor.inpainter.load()
        count = prepared.settings.candidates
        images: list[Any] = []
        # one candidate per model call, so the page can count them: the same pixels as one
        # call for all, since each candidate is its own seeded generation
        for i in range(count):
            progress(0.1 + 0.8 * i / count, f"generating candidate {i + 1} of {count}")
            one = dataclasses.replace(prepared, settings=prepared.settings.model_copy(
                update={"candidates": 1, "seed": prepared.settings.seed + i}
            ))
            (generated,) = editor.generate([one])
            if isinstance(generated, Exception):
                raise generated
            images.extend(generated)
        progress(0.92, "compositing and saving")
        result = editor.composite(prepared, images)
        suffix = _OUTPUT_SUFFIX.get(prepared.loaded.format or "", ".png")
        result.save(self.edits / edit_id / f"{path.stem}.edited{suffix}", mask=True, sidecar=True)
        return self.state(edit_id)

    # -- an edit's files ---------------------------------------------------------------------

    def _record(self, edit_id: str) -> tuple[Path, dict[str, Any]]:
        folder = self.edits / _checked_id(edit_id, "edit")
        sidecars = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if not sidecars:
            raise NotFound(f"No edit {edit_id}.")
        try:
            return sidecars[0], json.loads(sidecars[0].read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NotFound(f"The sidecar of edit {edit_id} cannot be read: {exc}.") from None

    def files(self, edit_id: str) -> dict[str, Path]:
        """The edit's files by kind: image, candidate1.., mask, sidecar."""
        sidecar, record = self._record(edit_id)
        image = sidecar.parent / Path(str(record.get("output", {}).get("image", ""))).name
        paths = output_paths(image, candidates=len(record.get("candidate_seeds") or [1]))
        return {kind: path for kind, path in paths.items() if path.is_file()}

    def file(self, edit_id: str, kind: str) -> Path:
        path = self.files(edit_id).get(kind)
        if path is None:
            raise NotFound(f"Edit {edit_id} has no {kind} file.")
        return path

    def state(self, edit_id: str) -> dict[str, Any]:
        """The edit as the API shows it: decision, settings, and its candidates in the order
        the files now hold them (the output first)."""
        _, record = self._record(edit_id)
        files = self.files(edit_id)
        base = f"/api/edits/{edit_id}"
        candidates = []
        for position, seed in enumerate(record.get("candidate_seeds") or []):
            kind = "image" if position == 0 else f"candidate{position}"
            if kind in files:
                version = files[kind].stat().st_mtime_ns
                candidates.append({
                    "position": position, "seed": seed, "kind": kind,
                    "thumb": f"{base}/images/{kind}?size=thumb&v={version}",
                    "view": f"{base}/images/{kind}?size=view&v={version}",
                    "file": f"{base}/files/{kind}?v={version}",
                })
        upload = Path(str(record.get("input", {}).get("path", "")))
        return {
            "id": edit_id,
            "input": upload.name,
            "original": f"/api/uploads/{upload.parent.name}/image?size=view",
            "region": record.get("region"),
            "classification": record.get("classification"),
            "mask": {**record.get("mask", {}), "view": f"{base}/images/mask?size=view"},
            "settings": record.get("settings"),
            "candidates": candidates,
            "pick": record.get("pick"),
            "sidecar": f"{base}/files/sidecar",
            "download": f"{base}/download",
        }

    def pick(self, edit_id: str, position: int) -> dict[str, Any]:
        files = self.files(edit_id)
        candidate = files.get(f"candidate{position}")
        if candidate is None or "image" not in files:
            count = sum(1 for kind in files if kind.startswith("candidate"))
            raise SettingsError(
                f"candidate must be from 1 to {count} (0 is the current output), not {position}."
            )
        pick_candidate(files["image"], candidate, files["sidecar"], position)
        return self.state(edit_id)

    def download(self, edit_id: str) -> tuple[str, bytes]:
        """A zip of the output, its sidecar and its mask: (file name, bytes)."""
        files = self.files(edit_id)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for kind in ("image", "sidecar", "mask"):
                if kind in files:
                    archive.write(files[kind], files[kind].name)
        return f"{files['image'].stem}.zip", buffer.getvalue()
