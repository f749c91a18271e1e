"""Stage 2: find the subject. A :class:`Segmenter` returns a soft alpha matte of the subject.

:class:`RembgSegmenter` runs one of rembg's local ONNX models: by default BiRefNet (MIT) where
onnxruntime has CUDA and IS-Net (Apache-2.0) on CPU (``regionedit.models``).
When the input image already carries a meaningful alpha channel the editor uses that instead
(:func:`subject_alpha_from_input`) and never loads a model.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import socket
import sys
import threading
import urllib.parse
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from . import masks
from .errors import ModelLoadError, SegmentationError, option
from .imageio import LoadedImage
from .masks import has_meaningful_alpha
from .models import (
    DEFAULT_SEGMENT_MODEL,
    SEGMENT_MODELS,
    ModelDownload,
    default_segment_model,
)

if TYPE_CHECKING:  # pragma: no cover
    from .types import Extent, Region

__all__ = [
    "Segmenter",
    "RembgSegmenter",
    "ModelDownload",
    "MaskResult",
    "subject_alpha_from_input",
]

logger = logging.getLogger("regionedit")

# Where rembg's own models come from, for advice when the exact file is not known.
_REMBG_RELEASES = "https://github.com/danielgatis/rembg/releases/tag/v0.0.0"
#: input side of each rembg session that loads a local file (``model_path``)
_CUSTOM_INPUT_SIDE = {"u2net_custom": 320, "dis_custom": 1024, "ben_custom": 1024,
                      "birefnet_custom": 1024}
#: the model whose interface a ``model_path`` file gets when no model is named
_CUSTOM_WITHOUT_MODEL = "u2net_custom"
# Two sessions downloading the same file at once would write it twice.
_DOWNLOAD_LOCK = threading.Lock()


@runtime_checkable
class Segmenter(Protocol):
    """Finds the subject of a photo.

    A ``load()`` method, if present, loads the model ahead of the first image
    (:meth:`regionedit.Editor.load_models` calls it).
    """

    name: str

    def subject_alpha(self, image: Image.Image) -> np.ndarray:
        """float32 HxW in [0, 1] at ``image``'s size: 1 = subject, soft at the edges."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identification of the model, for the sidecar."""
        ...


class RembgSegmenter:
    """Subject segmentation with a local rembg model.

    ``model`` is a rembg model name ("birefnet-general", "birefnet-general-lite", "u2net",
    "isnet-general-use", ...) or "auto" (the default): "birefnet-general" where onnxruntime
    offers CUDA (``CUDAExecutionProvider`` among ``providers``, or among those installed), else
    "isnet-general-use" (:func:`regionedit.models.default_segment_model`; rembg's own
    default, BRIA's non-commercial RMBG, is never picked). rembg downloads the model on first
    use into its model folder (``$U2NET_HOME``, else ``~/.rembg``); :meth:`pending_download`
    says beforehand what that will be.

    ``model_path`` instead loads a local ONNX file through the rembg session for its
    architecture: that of ``model`` when it names one ("birefnet-*" files through a BiRefNet
    session, "isnet-general-use" through "dis_custom", the U^2-Net family through
    "u2net_custom"), U^2-Net's when ``model`` is "auto", or a ``*_custom`` session named as
    ``model``. rembg only accepts such files from inside its model folder, so a file elsewhere
    is refused with instructions (move it there, or set ``U2NET_HOME`` to the folder holding
    it) rather than rembg's safety check being worked around. ``providers`` are onnxruntime
    execution providers; None lets rembg pick (GPU when available).

    The rembg session is created once, on the first :meth:`subject_alpha` call, and reused.
    """

    name = "rembg"

    def __init__(
        self,
        model: str = DEFAULT_SEGMENT_MODEL,
        *,
        model_path: str | os.PathLike[str] | None = None,
        providers: list[str] | None = None,
    ) -> None:
        self.model = model
        self.model_path = str(Path(model_path).expanduser()) if model_path is not None else None
        self.providers = list(providers) if providers is not None else None
        self._session: Any = None
        self._lock = threading.Lock()

    @functools.cached_property
    def model_name(self) -> str:
        """The rembg model used: ``model``, or for "auto" the one chosen for the providers."""
        if self.model != DEFAULT_SEGMENT_MODEL:
            return self.model
        return default_segment_model(self._available_providers())

    @property
    def session_name(self) -> str:
        """The rembg session type used: the model's, or a ``*_custom`` one for ``model_path``."""
        if self.model_path is None:
            return self.model_name
        if self.model.endswith("_custom"):
            return self.model
        if self.model == DEFAULT_SEGMENT_MODEL:
            return _CUSTOM_WITHOUT_MODEL
        known = SEGMENT_MODELS.get(self.model)
        if known is None or known.custom_session is None:
            choices = ", ".join(sorted(n for n, m in SEGMENT_MODELS.items() if m.custom_session))
            raise ModelLoadError(
                f"regionedit cannot load a local file as {self.model!r}: name the model it was "
                f"exported from with {_model_option()}, one of {choices}."
            )
        return known.custom_session

    def subject_alpha(self, image: Image.Image) -> np.ndarray:
        """rembg's soft subject matte (no post-processing) as float32 HxW in [0, 1]."""
        session = self.session()  # first, so a missing onnxruntime gets its ModelLoadError
        import rembg

        rgb = image.convert("RGB")
        # rembg.remove() re-applies EXIF orientation; pixels handed in are already upright.
        rgb.info.pop("exif", None)
        try:
            # rembg min-max normalises the model output; a flat image makes that 0/0, which
            # rembg turns into an all-zero mask ("no subject") after a numpy warning.
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                mask = rembg.remove(rgb, session=session, only_mask=True, post_process_mask=False)
        except Exception as exc:
            raise SegmentationError(
                f"The rembg model {self._label()} failed on this image: {exc}. If it is a "
                f"custom model, name the model it was exported from with {_model_option()}; "
                "otherwise try another model, e.g. 'u2net'."
            ) from exc
        if mask.size != image.size:
            raise SegmentationError(
                f"The rembg model {self._label()} returned a {mask.size[0]}x{mask.size[1]} mask "
                f"for a {image.size[0]}x{image.size[1]} image (models such as u2net_cloth_seg "
                "return several masks). Use a single-subject model such as 'u2net'."
            )
        alpha = np.asarray(mask.convert("L"), dtype=np.float32)
        alpha /= 255.0
        return alpha

    def describe(self) -> dict[str, Any]:
        """Model identification for the sidecar: the model used and how it was chosen."""
        try:
            session_name = self.session_name
        except ModelLoadError:
            session_name = self.model
        info: dict[str, Any] = {
            "segmenter": self.name,
            "model": session_name,
            "model_path": self.model_path,
            "rembg_version": _rembg_version(),
        }
        if self.model == DEFAULT_SEGMENT_MODEL and self.model_path is None:
            cuda = "CUDAExecutionProvider" in self._available_providers()
            info["chosen"] = "auto: " + ("CUDA available" if cuda else "no CUDA, CPU model")
        return info

    def load(self) -> Any:
        """Load the model now rather than at the first image; returns :meth:`session`."""
        return self.session()

    def session(self) -> Any:
        """The rembg session, created on first use (thread-safe) and then reused."""
        with self._lock:
            if self._session is None:
                self._session = self._new_session()
            return self._session

    # -- what the first use downloads -------------------------------------------------------

    def model_file(self) -> str | None:
        """The local file the model loads from, or None while it still has to be downloaded."""
        if self.model_path is not None:
            return self.model_path
        session_class = self._session_class()
        if session_class is None:
            return None
        return session_class.resolve_existing(f"{self.model_name}.onnx")

    def pending_download(self) -> ModelDownload | None:
        """What the first use will download (model, URL, approximate size, destination), or
        None when the file is already here, a local file is given, or the name is not a
        downloadable rembg model (loading then fails with a ModelLoadError)."""
        if self.model_path is not None:
            return None
        session_class = self._session_class()
        if session_class is None or session_class.resolve_existing(
            f"{self.model_name}.onnx"
        ) is not None:
            return None
        known = SEGMENT_MODELS.get(self.model_name)
        file_name = f"{self.model_name}.onnx"
        url = known.url if known else None
        path = os.path.join(session_class.model_dir(), file_name)
        size = f"~{known.download_mb:g} MB" if known else "size unknown"
        local_file = _local_file_option()
        return ModelDownload(
            kind="rembg model", model=self.model_name, url=url,
            size_mb=known.download_mb if known else None, path=path,
            offline_advice=(
                f"on a machine with internet access download {url or _REMBG_RELEASES} ({size}) "
                f"and save it here as {path} (or in the folder named by U2NET_HOME, as "
                f"{file_name}), or pass a local file with {local_file}"
            ),
        )

    # -- loading ------------------------------------------------------------------------------

    def _label(self) -> str:
        return repr(self.model_path or self.model_name)

    def _available_providers(self) -> list[str]:
        if self.providers is not None:
            return self.providers
        if importlib.util.find_spec("onnxruntime") is None:
            return []
        import onnxruntime

        return list(onnxruntime.get_available_providers())

    def _session_class(self) -> Any:
        """rembg's session class for ``model_name`` when it is a local, downloadable model."""
        if importlib.util.find_spec("onnxruntime") is None:
            return None
        sessions, sessions_names_downloadable = _rembg_sessions()
        if self.model_name not in sessions_names_downloadable or "_custom" in self.model_name:
            return None
        return sessions[self.model_name]

    def _new_session(self) -> Any:
        if importlib.util.find_spec("onnxruntime") is None:
            # Checked first because rembg calls sys.exit() when onnxruntime is missing.
            raise ModelLoadError(
                "rembg needs onnxruntime, which is not installed. Install it with "
                "pip install 'rembg[cpu]' (or 'rembg[gpu]' for CUDA)."
            )
        try:
            sessions, sessions_names_downloadable = _rembg_sessions()
        except ImportError as exc:
            raise ModelLoadError(
                f"rembg could not be imported ({exc}). Install it with pip install 'rembg[cpu]'."
            ) from exc

        name = self.session_name
        session_class = (
            _birefnet_custom_session() if name == "birefnet_custom" else sessions.get(name)
        )
        if session_class is None or (
            name not in sessions_names_downloadable and name != "birefnet_custom"
        ):
            # *_custom sessions need model_path, so they are not offered as plain names
            local = ", ".join(sorted(n for n in sessions_names_downloadable if "_custom" not in n))
            problem = (
                "is not a rembg model"
                if session_class is None
                else "is a remote service (the photo would leave this machine)"
            )
            raise ModelLoadError(
                f"{name!r} {problem}. Choose one of rembg's local models with "
                f"{_model_option()}: {local}."
            )
        if name.endswith("_custom") and self.model_path is None:
            raise ModelLoadError(
                f"{name!r} loads a local file: give it with {_local_file_option()}."
            )
        known = SEGMENT_MODELS.get(name)
        if known is not None and not known.commercial_use:
            logger.warning(
                "The segmentation model %r is licensed %s: it may not be used commercially.",
                name, known.licence,
            )

        kwargs: dict[str, Any] = {}
        if self.providers is not None:
            kwargs["providers"] = self.providers
        if self.model_path is not None:
            kwargs["model_path"] = self._checked_model_path(session_class)
            session = self._create(session_class, name, kwargs)
            self._check_input_side(session, name)
            return session
        download = self.pending_download()
        if download is not None:
            logger.info(
                "Downloading %s from %s to %s (first use only).",
                download.describe(), download.url or _REMBG_RELEASES, download.path,
            )
        with _DOWNLOAD_LOCK:
            return self._create(session_class, name, kwargs)

    def _create(self, session_class: Any, name: str, kwargs: dict[str, Any]) -> Any:
        try:
            return session_class(name, _session_options(), **kwargs)
        except Exception as exc:
            raise self._load_error(exc, session_class) from exc

    def _checked_model_path(self, session_class: Any) -> str:
        path = Path(self.model_path or "")
        if not path.is_file():
            raise ModelLoadError(
                f"Segmentation model file not found: {path}. Check the path, or download "
                f"a rembg model from {_REMBG_RELEASES} and point {_local_file_option()} at it."
            )
        try:
            return str(session_class.validate_model_path(model_path=str(path)))
        except ValueError:
            home = session_class.rembg_home()
            raise ModelLoadError(
                f"rembg only loads custom models from inside its model folder ({home}); "
                f"{path} is outside it. Move the file into {home}, or set the environment "
                f"variable U2NET_HOME={path.resolve().parent} before running."
            ) from None

    def _check_input_side(self, session: Any, name: str) -> None:
        """A local file whose input size is not its session's would fail on every image."""
        shape = session.inner_session.get_inputs()[0].shape
        side = _CUSTOM_INPUT_SIDE.get(name)
        if side is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            return
        if tuple(shape[2:]) != (side, side):
            raise ModelLoadError(
                f"{self.model_path} takes {shape[2]}x{shape[3]} input, but {name!r} feeds "
                f"{side}x{side}: name the model the file was exported from with "
                f"{_model_option()}, e.g. 'birefnet-general-lite' or 'isnet-general-use' for "
                "1024x1024 files, 'u2net' for 320x320 ones."
            )

    def _load_error(self, exc: Exception, session_class: Any) -> ModelLoadError:
        """Turn a failed rembg session creation into advice: download, or a broken file."""
        if self.model_path is not None:
            return ModelLoadError(
                f"Could not load the segmentation model {self.model_path}: {_short(exc)}. The "
                f"file is incomplete or not an ONNX model for the {self.session_name!r} "
                f"session; download it again (rembg's models: {_REMBG_RELEASES}) or point "
                f"{_local_file_option()} at a working file."
            )
        file_name = f"{self.model_name}.onnx"
        existing = session_class.resolve_existing(file_name)
        if existing is not None:
            return ModelLoadError(
                f"Could not load the rembg model {self.model_name!r} from {existing}: "
                f"{_short(exc)}. The file is probably incomplete or corrupt: delete it so rembg "
                "downloads it again, or replace it with a good copy."
            )
        download = self.pending_download()
        assert download is not None  # a downloadable model whose file is missing
        if _network_unreachable(exc):
            host = urllib.parse.urlsplit(download.url or _REMBG_RELEASES).hostname
            problem = (
                f"this machine cannot reach {host} (no network, name resolution or proxy "
                f"failed: {type(exc).__name__})"
            )
        else:
            problem = f"the download failed ({type(exc).__name__}: {_short(exc)})"
        return ModelLoadError(
            f"Could not download {download.describe()}: {problem}. To work offline, "
            f"{download.offline_advice}."
        )


def _session_options() -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # onnxruntime's idle threads spin-wait for the next operator by default, which takes
    # a core from whatever runs beside segmentation (batch runs generate meanwhile).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if "OMP_NUM_THREADS" in os.environ:  # as rembg.new_session does
        options.intra_op_num_threads = options.inter_op_num_threads = int(
            os.environ["OMP_NUM_THREADS"]
        )
    return options


@functools.lru_cache(maxsize=1)
def _birefnet_custom_session() -> type:
    """rembg's BiRefNet session loading a local file, as its u2net_custom and dis_custom
    sessions do for theirs (rembg has none for BiRefNet): same pre- and post-processing,
    same check that the file lies in rembg's model folder."""
    from rembg.sessions.birefnet_general import BiRefNetSessionGeneral

    class BiRefNetCustomSession(BiRefNetSessionGeneral):
        def __init__(self, model_name: str, sess_opts: Any, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("model_path") is None:
                raise ValueError("model_path is required")
            super().__init__(model_name, sess_opts, *args, **kwargs)

        @classmethod
        def download_models(cls, *args: Any, **kwargs: Any) -> str:
            return cls.validate_model_path(*args, **kwargs)

        @classmethod
        def name(cls, *args: Any, **kwargs: Any) -> str:
            return "birefnet_custom"

    return BiRefNetCustomSession


def _rembg_sessions() -> tuple[dict[str, Any], list[str]]:
    """rembg's session classes by name, and the names it can download; imported without
    changing torch's CPU threads (importing rembg starts numba, which sets the process's
    OpenMP thread count to every core, overriding a ``torch.set_num_threads``)."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    from rembg.sessions import sessions, sessions_names_downloadable

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return sessions, sessions_names_downloadable


def _model_option() -> str:
    return option("segment_model=", "--segment-model")


def _local_file_option() -> str:
    return option("segment_model_path=FILE", "--segment-model-path FILE")


def _network_unreachable(exc: BaseException) -> bool:
    """Whether a failed download failed for want of a connection (DNS, refused, unreachable,
    proxy), not because of what the server answered."""
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (requests.ConnectionError, requests.Timeout, socket.gaierror,
                                ConnectionError, TimeoutError)):
            return True
        current = current.__cause__ or current.__context__
    return False


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.lru_cache(maxsize=1)
def _rembg_version() -> str | None:
    """rembg's installed version, read once (a metadata lookup costs milliseconds)."""
    try:
        return metadata.version("rembg")
    except metadata.PackageNotFoundError:
        return None


def subject_alpha_from_input(loaded: LoadedImage) -> np.ndarray | None:
    """The input's own alpha as float32 HxW in [0, 1] when it separates a subject, else None."""
    if loaded.alpha is None or not has_meaningful_alpha(loaded.alpha):
        return None
    alpha = loaded.alpha.astype(np.float32)
    alpha /= 255.0
    return alpha


class MaskResult:
    """What :meth:`Editor.mask` returns: the regenerated-region mask and what it was built from.

    Masks are built on a working copy of the image no larger than ``Editor.work_side`` (every
    segmentation and inpainting model works below that size); :attr:`mask` and
    :attr:`subject_alpha` give them at the image's own size, scaled up on first use.
    """

    def __init__(
        self,
        work_mask: np.ndarray,
        work_alpha: np.ndarray,
        region: "Region",
        source: str,
        *,
        work_image: Image.Image,
        size: tuple[int, int],
        extent: "Extent" = "outline",
        input_alpha: Optional[np.ndarray] = None,
    ):
        self.work_mask = work_mask  #: float32, working size, 1 = would be regenerated
        self.work_alpha = work_alpha  #: float32, working size, soft alpha of the subject
        self.work_image = work_image  #: the RGB working copy the masks were built on
        self.region = region
        self.source = source  #: "input-alpha" or the segmenter's name
        self.size = size  #: (width, height) of the image
        #: "outline" or "box": how far the mask reaches past a foreground subject
        self.extent = extent
        # the input's own alpha at full size: an exact cut-out edge worth keeping as it is
        self._input_alpha = input_alpha

    @property
    def scaled(self) -> bool:
        """Whether the working copy is smaller than the image."""
        return self.work_image.size != self.size

    @functools.cached_property
    def mask(self) -> np.ndarray:
        """float32 HxW at the image's size, 1 = would be regenerated."""
        return masks.resize(self.work_mask, self.size) if self.scaled else self.work_mask

    @functools.cached_property
    def subject_alpha(self) -> np.ndarray:
        """float32 HxW at the image's size: the subject's soft alpha."""
        if self._input_alpha is not None:
            return self._input_alpha
        return masks.resize(self.work_alpha, self.size) if self.scaled else self.work_alpha

    def image(self) -> Image.Image:
        """The mask at the image's size as an 8-bit grayscale image (white = regenerated)."""
        return masks.to_image(self.mask)
