"""Stage 2: find the subject. A :class:`Segmenter` returns a soft alpha matte of the subject.

:class:`RembgSegmenter` runs one of rembg's local ONNX models (U^2-Net by default, Apache-2.0).
When the input image already carries a meaningful alpha channel the editor uses that instead
(:func:`subject_alpha_from_input`) and never loads a model.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from .errors import ModelLoadError, SegmentationError
from .imageio import LoadedImage
from . import masks
from .masks import has_meaningful_alpha
from .models import DEFAULT_SEGMENT_MODEL

if TYPE_CHECKING:  # pragma: no cover
    from .types import Extent, Region

__all__ = ["Segmenter", "RembgSegmenter", "MaskResult", "subject_alpha_from_input"]

# Where rembg's own models come from, for the "download it yourself" advice.
_REMBG_RELEASES = "https://github.com/danielgatis/rembg/releases/tag/v0.0.0"


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

    ``model`` is a rembg model name ("u2net", "u2netp", "isnet-general-use", "birefnet-general",
    ...); rembg downloads it on first use into its model folder (``$U2NET_HOME``, else
    ``~/.rembg``). ``model_path`` instead loads an ONNX file with the U^2-Net interface
    through rembg's "u2net_custom" session (or the ``*_custom`` session named by ``model``).
    rembg only accepts such files from inside its model folder, so a file elsewhere is refused
    with instructions (move it there, or set ``U2NET_HOME`` to the folder holding it) rather
    than rembg's safety check being worked around. ``providers`` are onnxruntime execution
    providers; None lets rembg pick (GPU when available).

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

    @property
    def session_name(self) -> str:
        """The rembg session type used: ``model``, or a ``*_custom`` one for ``model_path``."""
        if self.model_path is not None and not self.model.endswith("_custom"):
            return "u2net_custom"
        return self.model

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
            with np.errstate(invalid="ignore", divide="ignore"):
                mask = rembg.remove(rgb, session=session, only_mask=True, post_process_mask=False)
        except Exception as exc:
            raise SegmentationError(
                f"The rembg model {self._label()} failed on this image: {exc}. If it is a "
                "custom model, check that it takes float32 [1, 3, 320, 320] input like U^2-Net; "
                "otherwise try the default model 'u2net'."
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
        """Model identification for the sidecar."""
        return {
            "segmenter": self.name,
            "model": self.session_name,
            "model_path": self.model_path,
            "rembg_version": _rembg_version(),
        }

    def load(self) -> Any:
        """Load the model now rather than at the first image; returns :meth:`session`."""
        return self.session()

    def session(self) -> Any:
        """The rembg session, created on first use (thread-safe) and then reused."""
        with self._lock:
            if self._session is None:
                self._session = self._new_session()
            return self._session

    def _label(self) -> str:
        return repr(self.model_path or self.model)

    def _new_session(self) -> Any:
        if importlib.util.find_spec("onnxruntime") is None:
            # Checked first because rembg calls sys.exit() when onnxruntime is missing.
            raise ModelLoadError(
                "rembg needs onnxruntime, which is not installed. Install it with "
                "pip install 'rembg[cpu]' (or 'rembg[gpu]' for CUDA)."
            )
        try:
            import rembg
            from rembg.sessions import sessions, sessions_names_downloadable
        except ImportError as exc:
            raise ModelLoadError(
                f"rembg could not be imported ({exc}). Install it with pip install 'rembg[cpu]'."
            ) from exc

        name = self.session_name
        session_class = sessions.get(name)
        if session_class is None or name not in sessions_names_downloadable:
            # *_custom sessions need model_path, so they are not offered as plain names
            local = ", ".join(sorted(n for n in sessions_names_downloadable if "_custom" not in n))
            problem = (
                "is not a rembg model"
                if session_class is None
                else "is a remote service (the photo would leave this machine)"
            )
            raise ModelLoadError(
                f"{name!r} {problem}. Choose one of rembg's local models (CLI: --segment-model): "
                f"{local}."
            )

        import onnxruntime

        options = onnxruntime.SessionOptions()
        # onnxruntime's idle threads spin-wait for the next operator by default, which takes
        # a core from whatever runs beside segmentation (batch runs generate meanwhile): with
        # it on, generation in a batch here ran ~2x slower.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        kwargs: dict[str, Any] = {"sess_opts": options}
        if self.providers is not None:
            kwargs["providers"] = self.providers
        if self.model_path is not None:
            kwargs["model_path"] = self._checked_model_path(session_class)
        try:
            return rembg.new_session(name, **kwargs)
        except Exception as exc:
            raise self._load_error(exc, session_class) from exc

    def _checked_model_path(self, session_class: Any) -> str:
        path = Path(self.model_path or "")
        if not path.is_file():
            raise ModelLoadError(
                f"Segmentation model file not found: {path}. Check the path, or download "
                f"u2net.onnx from {_REMBG_RELEASES} and point model_path at it."
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

    def _load_error(self, exc: Exception, session_class: Any) -> ModelLoadError:
        """Turn a failed rembg session creation into advice: download, or a broken file."""
        if self.model_path is not None:
            return ModelLoadError(
                f"Could not load the segmentation model {self.model_path}: {exc}. The file is "
                "incomplete or not an ONNX model with the U^2-Net interface; download it again "
                f"(rembg's models: {_REMBG_RELEASES}) or point model_path at a working file."
            )
        file_name = f"{self.model}.onnx"
        existing = session_class.resolve_existing(file_name)
        if existing is not None:
            return ModelLoadError(
                f"Could not load the rembg model {self.model!r} from {existing}: {exc}. The file "
                "is probably incomplete or corrupt: delete it so rembg downloads it again, or "
                "replace it with a good copy."
            )
        return ModelLoadError(
            f"Could not download the rembg model {self.model!r} ({type(exc).__name__}: {exc}). "
            "rembg fetches it from GitHub on first use. Without internet access, download "
            f"{file_name} from {_REMBG_RELEASES} on another machine and save it as "
            f"{os.path.join(session_class.model_dir(), file_name)} (or set U2NET_HOME to a "
            f"folder holding {file_name}), or pass model_path=... (CLI: --segment-model-path) "
            "with a local U^2-Net ONNX file."
        )


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
