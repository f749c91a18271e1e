"""Loading images of any common kind into upright 8-bit RGB, and writing results atomically.

The editing stages only ever see RGB: :func:`load_image` converts whatever the user handed in
(a path, a PIL image or a numpy array, in any mode Pillow reads) and remembers what it needs to
give the result back in the input's own mode (:func:`restore_mode`). :func:`save_image` and
:func:`atomic_write_bytes` never leave a half-written file behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import secrets
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps

from .errors import ImageInputError, OutputError, option

__all__ = [
    "ImageLike",
    "LoadedImage",
    "load_image",
    "restore_mode",
    "fit_within",
    "save_image",
    "atomic_write_bytes",
    "is_temp_file",
    "MIN_SIDE",
    "MAX_PIXELS_ENV",
]

logger = logging.getLogger("regionedit")

#: images smaller than this on either side are refused: no segmenter or generator works there
MIN_SIDE = 8
#: environment variable that overrides Pillow's decompression-bomb limit (a pixel count)
MAX_PIXELS_ENV = "REGIONEDIT_MAX_PIXELS"

#: what :func:`load_image` accepts
ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

_GRAY_MODES = frozenset({"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# ICC profiles declare their colour space in header bytes 16..20; a profile is only written
# next to pixels of that space (a CMYK profile on RGB pixels would corrupt the colours).
_ICC_SPACE_OF_MODE = {
    "RGB": b"RGB ",
    "RGBA": b"RGB ",
    "P": b"RGB ",
    "L": b"GRAY",
    "LA": b"GRAY",
    "CMYK": b"CMYK",
}
_ICC_FORMATS = frozenset({"JPEG", "PNG", "TIFF", "WEBP"})
# Modes a format can store, for the formats where Pillow refuses others instead of converting.
_STORABLE_MODES = {
    "JPEG": frozenset({"L", "RGB", "CMYK"}),
    "PNG": frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}),
    "WEBP": frozenset({"RGB", "RGBA"}),
    "BMP": frozenset({"1", "L", "P", "RGB", "RGBA"}),
}
# File signatures, to tell "corrupt image" from "not an image at all".
_MAGIC_BYTES = {
    b"\x89PNG": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}
# Pillow's default JPEG/WebP quality (75) visibly degrades photos; a photo editor saves at 95.
_DEFAULT_QUALITY = 95

# ".<target name>.<8 hex digits>.tmp": hidden, next to the target, recognisable after a crash.
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")

# Pillow's bomb check reads a module global; it is swapped for the caller's limit while one
# image header is parsed, under this lock so concurrent loads do not see each other's limit.
_PILLOW_LIMIT_LOCK = threading.Lock()


@dataclass
class LoadedImage:
    """An input image made ready for editing, plus what is needed to give the result back."""

    #: upright (EXIF orientation applied) 8-bit RGB pixels
    rgb: Image.Image
    #: the input's own alpha channel (uint8 HxW, upright), None when it had none
    alpha: np.ndarray | None
    #: the input's original Pillow mode ("RGB", "L", "P", "CMYK", "I;16", ...)
    mode: str
    icc_profile: bytes | None = None
    #: the file it came from; None for in-memory input
    path: str | None = None
    #: hex SHA-256 of the file's bytes, or of the pixel bytes for in-memory input
    sha256: str | None = None
    #: Pillow's format name ("JPEG", "PNG", ...), None when unknown
    format: str | None = None
    n_frames: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright image."""
        return self.rgb.size


def load_image(
    image: ImageLike,
    *,
    max_pixels: int | None = None,
) -> LoadedImage:
    """Read ``image`` (a path, a PIL image or a numpy array) into upright 8-bit RGB.

    Every problem with the input raises :class:`~regionedit.errors.ImageInputError` naming the
    file and what to do, never a raw Pillow/numpy/OS error. ``max_pixels`` caps the pixel count
    of image files (decompression-bomb protection); without it the environment variable
    ``REGIONEDIT_MAX_PIXELS`` applies, else Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    High-bit-depth inputs are scaled (not clipped) to 8 bits; animated images give their
    first frame, with a logged warning.
    """
    if isinstance(image, np.ndarray):
        return _load_array(image)
    if isinstance(image, Image.Image):
        return _load_pil(image.copy(), path=None, sha256=None)
    if isinstance(image, (str, os.PathLike)):
        return _load_file(Path(image), _pixel_limit(max_pixels))
    raise ImageInputError(
        f"Cannot read an image from a {type(image).__name__}. Pass a file path, a PIL image or "
        "a numpy array (HxW, HxWx3 or HxWx4)."
    )


def _pixel_limit(max_pixels: int | None) -> int | None:
    if max_pixels is not None:
        if max_pixels <= 0:
            raise ImageInputError(f"max_pixels must be a positive pixel count, got {max_pixels}.")
        return max_pixels
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if env:
        try:
            limit = int(env)
        except ValueError:
            limit = 0
        if limit <= 0:
            raise ImageInputError(
                f"{MAX_PIXELS_ENV}={env!r} is not a positive pixel count. Set it to a whole "
                "number such as 200000000, or unset it to use Pillow's limit."
            )
        return limit
    return Image.MAX_IMAGE_PIXELS


def _load_file(path: Path, limit: int | None) -> LoadedImage:
    name = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageInputError(
            f"Image file not found: {name}. Check the path and the current folder.", path=name
        ) from None
    except IsADirectoryError:
        raise ImageInputError(
            f"{name} is a folder, not an image file. Pass the path of one image file.", path=name
        ) from None
    except PermissionError:
        raise ImageInputError(
            f"Cannot read {name}: permission denied. Fix the file's permissions or copy it "
            "somewhere readable.",
            path=name,
        ) from None
    except OSError as exc:
        raise ImageInputError(f"Cannot read {name}: {exc.strerror or exc}.", path=name) from None
    if not data:
        raise ImageInputError(
            f"{name} is empty (0 bytes): the download or export did not finish. "
            "Re-download or re-export the image.",
            path=name,
        )

    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        # Pillow warns above its limit and raises above twice the limit; both mean "too big".
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            im = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageInputError(
                f"{name} is too large: it declares more than {limit:,} pixels, which could "
                f"exhaust memory (a 'decompression bomb'). If you trust the file, raise the "
                f"limit with {option('max_pixels=...', '--max-pixels')} or "
                f"{MAX_PIXELS_ENV}=<pixels>.",
                path=name,
            ) from None
        except Image.UnidentifiedImageError:
            raise ImageInputError(_unreadable_message(name, data), path=name) from None
        except Exception as exc:  # Pillow plugins raise many types on malformed headers
            raise ImageInputError(
                f"{name} is truncated or corrupt: its header cannot be read ({exc}). "
                "Re-download or re-export it.",
                path=name,
            ) from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit
    return _load_pil(im, path=name, sha256=hashlib.sha256(data).hexdigest())


def _unreadable_message(name: str, data: bytes) -> str:
    kind = next((fmt for magic, fmt in _MAGIC_BYTES.items() if data.startswith(magic)), None)
    if kind is not None:
        return (
            f"{name} starts like a {kind} file but is corrupt (unreadable header or invalid "
            "size). Re-download or re-export it."
        )
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        content = f"unknown format, starts with bytes {data[:8].hex(' ')}"
    else:
        content = "it looks like a text file"
    return (
        f"{name} is not an image Pillow can read ({content}). Convert it to PNG or JPEG, or "
        "check that it is the file you meant."
    )


def _load_pil(im: Image.Image, *, path: str | None, sha256: str | None) -> LoadedImage:
    """Decode, validate and convert ``im`` (an image no caller holds: a caller's own is copied
    first, so that an edit never writes into it); ``sha256=None`` hashes the decoded pixels."""
    where = path or "The image"
    try:
        # Counting frames reads every frame header: a damaged later header fails here too.
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        im.load()  # decodes everything now, so truncation surfaces here and not mid-edit
    except Exception as exc:
        raise ImageInputError(
            f"{where} is truncated or corrupt ({exc}). Re-download or re-export it.", path=path
        ) from None
    if sha256 is None:
        sha256 = hashlib.sha256(im.tobytes()).hexdigest()
    width, height = im.size
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageInputError(
            f"{where} is {width}x{height} pixels; regionedit needs at least "
            f"{MIN_SIDE}x{MIN_SIDE}. Use a larger image.",
            path=path,
        )
    if n_frames > 1:
        logger.warning(
            "%s has %d frames (animation); only the first frame is edited.", where, n_frames
        )
    mode = im.mode
    icc_profile = im.info.get("icc_profile") or None
    try:
        if im.getexif().get(ExifTags.Base.Orientation, 1) not in (1, None):
            im = ImageOps.exif_transpose(im)
        rgb, alpha = _to_rgb(im)
    except Exception as exc:
        raise ImageInputError(
            f"{where} uses the image mode {mode!r}, which regionedit cannot convert to RGB "
            f"({exc}). Convert it to an RGB PNG or JPEG first.",
            path=path,
        ) from None
    rgb.info = {}  # colour profile and metadata live on LoadedImage, not on the working copy
    return LoadedImage(
        rgb=rgb,
        alpha=alpha,
        mode=mode,
        icc_profile=icc_profile,
        path=path,
        sha256=sha256,
        format=im.format,
        n_frames=n_frames,
    )


def _to_rgb(im: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """Upright image of any mode -> (8-bit RGB, alpha or None); an RGB image without
    transparency is returned as it is, not copied."""
    if im.mode in _HIGH_DEPTH_MODES:
        gray = _high_depth_to_uint8(np.asarray(im), im.mode)
        return Image.fromarray(gray).convert("RGB"), None
    # "transparency" covers palette and colour-key transparency (P, L, RGB with tRNS).
    if "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return rgba.convert("RGB"), np.asarray(rgba.getchannel("A")).copy()
    if im.mode == "RGB":
        return im, None
    # CMYK goes through Pillow's plain formula, without colour management.
    return im.convert("RGB"), None


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit integer and float single-channel pixels to 8 bits."""
    # float64: the span of float32 values (up to 2 * 3.4e38) overflows float32 itself.
    # Converting a signalling NaN warns "invalid value"; NaNs are zeroed just after.
    with np.errstate(invalid="ignore"):
        data = values.astype(np.float64)
    np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(data.min()), float(data.max())
    if mode == "F" and low >= 0.0 and high <= 1.0:
        data *= 255.0
    elif mode != "F" and low >= 0 and high <= 65535:
        # 16-bit data (Pillow opens 16-bit PNG/TIFF as "I;16" or "I"): 65535 / 257 == 255.
        data /= 257.0
    else:
        logger.warning(
            "Pixel values of mode %s span %g..%g, outside the usual range; stretching them "
            "to 0..255.",
            mode,
            low,
            high,
        )
        data -= low
        data *= 255.0 / max(high - low, 1e-12)
    np.rint(data, out=data)
    return data.astype(np.uint8)


def _load_array(array: np.ndarray) -> LoadedImage:
    shape = array.shape
    if array.ndim == 3 and shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageInputError(
            f"Expected an image array of shape HxW, HxWx1, HxWx3 or HxWx4, got {shape}. "
            "Rearrange the axes (channels last) or pass a file path."
        )
    if array.shape[0] < MIN_SIDE or array.shape[1] < MIN_SIDE:
        raise ImageInputError(
            f"The image array is {array.shape[1]}x{array.shape[0]} pixels; regionedit needs "
            f"at least {MIN_SIDE}x{MIN_SIDE}. Use a larger image."
        )
    sha256 = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    if array.dtype == np.uint8:
        pixels = np.ascontiguousarray(array)
    elif array.dtype == np.uint16:
        pixels = np.rint(array / np.float32(257.0)).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageInputError(
                "The float image array holds NaN or infinite values; it must hold finite "
                "values in [0, 1]. Replace them (np.nan_to_num) or convert it to uint8."
            )
        if array.min() < 0.0 or array.max() > 1.0:
            raise ImageInputError(
                f"Float image arrays must hold values in [0, 1], got {array.min():g}.."
                f"{array.max():g}. Scale the array to [0, 1] or convert it to uint8."
            )
        pixels = np.rint(array.astype(np.float32) * np.float32(255.0)).astype(np.uint8)
    else:
        raise ImageInputError(
            f"Image arrays of dtype {array.dtype} are not supported. Use uint8 (0..255), "
            "uint16 (0..65535) or float in [0, 1]."
        )
    return _load_pil(Image.fromarray(pixels), path=None, sha256=sha256)


def restore_mode(rgb: Image.Image, loaded: LoadedImage) -> Image.Image:
    """Give the edited RGB image back in the input's mode, with its alpha and ICC profile.

    Grayscale inputs (1-bit, 8-bit, 16-bit, float) come back as 8-bit "L": the edit is
    written at 8 bits, so high-bit-depth inputs lose their extra precision. Palette inputs come
    back as RGB (RGBA when the palette had transparency): re-quantising to the old palette
    would band the newly generated content, and every format that stores P also stores RGB.
    Alpha-bearing inputs get their original alpha back; CMYK comes back as CMYK. The result
    carries no EXIF orientation (pixels are already upright). ``rgb`` itself may be returned
    (with its ``info`` replaced): pass an image nothing else uses.
    """
    if rgb.size != loaded.size:
        raise ValueError(f"edited image is {rgb.size}, the input was {loaded.size}")
    if rgb.mode != "RGB":
        rgb = rgb.convert("RGB")
    rgb.info = {}
    mode = loaded.mode
    gray = mode in _GRAY_MODES or mode in ("LA", "La")
    if loaded.alpha is not None:
        out = rgb.convert("L") if gray else rgb
        out.putalpha(Image.fromarray(loaded.alpha))  # "L" -> "LA", "RGB" -> "RGBA"
    elif gray:
        out = rgb.convert("L")
    elif mode == "CMYK":
        out = rgb.convert("CMYK")
    else:
        out = rgb
    profile = loaded.icc_profile
    if profile and _icc_fits(profile, out.mode):
        out.info["icc_profile"] = profile
    return out


def fit_within(image: Image.Image, long_side: int) -> Image.Image:
    """``image`` (RGB or L) scaled down so that its longer side is ``long_side`` px, aspect ratio
    kept; ``image`` itself when it is no larger.

    OpenCV's area average: free of aliasing like LANCZOS, and several times faster on a
    24-megapixel photo.
    """
    width, height = image.size
    scale = long_side / max(width, height)
    if scale >= 1:
        return image
    import cv2

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return Image.fromarray(cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA))


def _icc_fits(profile: bytes, mode: str) -> bool:
    return profile[16:20] == _ICC_SPACE_OF_MODE.get(mode)


def save_image(img: Image.Image, path: str | os.PathLike[str], **save_kwargs: Any) -> Path:
    """Write ``img`` atomically to ``path``, the format chosen by the file suffix.

    Modes the format cannot store are converted (RGBA -> RGB for JPEG, LA -> L, ...), the ICC
    profile in ``img.info`` is embedded where the format supports it, JPEG/WebP default to
    quality 95, and missing parent folders are created. Raises
    :class:`~regionedit.errors.OutputError`; on failure no partial or temporary file remains
    and an existing file at ``path`` is left untouched.
    """
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"Cannot tell the image format from the file name {path.name!r}. "
            "Use a suffix such as .png, .jpg, .webp or .tif."
        )
    out = _storable(img, fmt)
    profile = img.info.get("icc_profile")
    if fmt in _ICC_FORMATS and profile and _icc_fits(profile, out.mode):
        save_kwargs.setdefault("icc_profile", profile)
    if fmt in ("JPEG", "WEBP"):
        save_kwargs.setdefault("quality", _DEFAULT_QUALITY)
    return _atomic_write(path, lambda f: out.save(f, format=fmt, **save_kwargs))


def _storable(img: Image.Image, fmt: str) -> Image.Image:
    """``img`` in a mode ``fmt`` can store, keeping alpha and grayscale where it can."""
    allowed = _STORABLE_MODES.get(fmt)
    if allowed is None or img.mode in allowed:
        return img
    has_alpha = "A" in img.getbands() or "transparency" in img.info
    candidates = ["RGBA", "RGB"] if has_alpha else ["RGB"]
    if img.mode in _GRAY_MODES or img.mode in ("LA", "La"):
        candidates = (["LA", "L"] if has_alpha else ["L"]) + candidates
    target = next(m for m in candidates if m in allowed)
    if has_alpha and "A" not in target:
        logger.info("%s cannot store transparency; saving without the alpha channel.", fmt)
    return img.convert(target)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (same guarantees as :func:`save_image`)."""
    return _atomic_write(Path(path), lambda f: f.write(data))


def _atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write through a hidden temp file in the target folder, fsync, then rename over ``path``.

    Readers see either the old file or the complete new one, never a partial write.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(exc, path, creating_folder=True) from exc
    tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"  # matches _TEMP_NAME
    try:
        # os.open (unlike tempfile.mkstemp) lets the umask decide the permissions, as for any
        # normally created file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _output_error(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _output_error(exc, path) from exc
        if isinstance(exc, (ValueError, TypeError, KeyError)):  # Pillow's encoder refusals
            raise OutputError(
                f"Could not encode {path.name}: {exc}. Check the save options or choose "
                "another format."
            ) from exc
        raise
    _fsync_folder(folder)
    return path


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is one of the temporary files :func:`save_image` and
    :func:`atomic_write_bytes` write before renaming (left behind only by a killed process)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself (POSIX); not possible, and not needed, everywhere."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _output_error(exc: OSError, path: Path, *, creating_folder: bool = False) -> OutputError:
    code = exc.errno
    folder = path.parent
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        advice = "the disk is full (or over quota). Free some space or write to another disk"
    elif code == errno.EFBIG:
        advice = (
            "the file is larger than this file system (or a file size limit) allows. Write to "
            "another disk, or choose a format that compresses more (.jpg, .webp)"
        )
    elif code == errno.EROFS:
        advice = f"{folder} is on a read-only file system. Choose another output folder"
    elif code in (errno.EACCES, errno.EPERM):
        advice = (
            f"permission denied in {folder}. Choose an output folder you can write to, or fix "
            "its permissions"
        )
    elif creating_folder and code in (errno.EEXIST, errno.ENOTDIR):
        advice = f"a file is in the way of the folder {folder}. Choose another output path"
    elif code == errno.EISDIR:
        advice = f"{path} is a folder. Give a file name for the output"
    else:
        advice = f"{exc.strerror or exc}. Check the output path and the disk"
    return OutputError(
        f"Cannot write {path}: {advice}. Nothing was written; an existing file there is unchanged."
    )
