"""Reliability, images: every kind of input either edits correctly or is refused with an
ImageInputError naming the file and the problem, and results are written whole or not at all.

Kinds of input are edited end to end through ``Editor.edit`` with the tiny real models
(rembg on a tiny ONNX model, a tiny random diffusers pipeline), since what matters is the
output: its mode, colour profile and orientation. The refusals themselves are unit-tested in
test_imageio.py; here they go through the editor, which must refuse before loading any model.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageOps

from regionedit import Editor
from regionedit.errors import ImageInputError, OutputError
from regionedit.imageio import LoadedImage, is_temp_file, load_image, restore_mode, save_image

FAST = dict(steps=2, max_side=64, seed=1)


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter(tiny_rembg_home: Path, tiny_rembg_model: str) -> Any:
    """One rembg segmenter on the tiny model for the whole module (its session loads once)."""
    from regionedit.segment import RembgSegmenter

    with pytest.MonkeyPatch.context() as patch:
        # rembg accepts the model file only while U2NET_HOME names its folder
        patch.setenv("U2NET_HOME", str(tiny_rembg_home))
        segmenter = RembgSegmenter(model_path=tiny_rembg_model, providers=["CPUExecutionProvider"])
        segmenter.session()
    return segmenter


@pytest.fixture
def editor(segmenter: Any, tiny_inpainter: Any) -> Editor:
    return Editor(classifier="offline", segmenter=segmenter, inpainter=tiny_inpainter)


@pytest.fixture(scope="module")
def cat(small_photo_path: Path) -> Image.Image:
    """The 96x64 photo of the cat, RGB."""
    return Image.open(small_photo_path).convert("RGB")


def _profile(space: bytes) -> bytes:
    """An ICC profile whose header declares the colour space ``space`` (b"RGB ", b"GRAY",
    b"CMYK"). Only sRGB can be generated; for the others the header is what regionedit reads
    (and all a test can check), the profile body is carried along unread."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return srgb[:16] + space + srgb[20:]


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def assert_edited_in_place(result: Any, loaded: LoadedImage) -> None:
    """Outside the mask the result shows the (upright) input exactly; inside, new pixels."""
    kept = result.mask == 0
    assert kept.any() and (~kept).any()
    before, after = _rgb(loaded.rgb), _rgb(result.image)
    assert after.shape == before.shape
    assert np.array_equal(after[kept], before[kept])
    assert not np.array_equal(after[result.mask == 1], before[result.mask == 1])


# -- the kinds of input, end to end ----------------------------------------------------------------


def _with_palette_transparency(cat: Image.Image) -> Image.Image:
    """The cat in 15 colours, its left third painted with a 16th, transparent, palette entry."""
    palette = cat.quantize(15)
    pixels = np.asarray(palette).copy()
    pixels[:, : cat.width // 3] = 15
    image = Image.fromarray(pixels, "P")
    image.putpalette(palette.getpalette()[: 15 * 3] + [0, 0, 0])
    image.info["transparency"] = 15
    return image


# name -> (make the input from the cat photo, file name, save options, expected output mode)
KINDS: dict[str, tuple[Callable[[Image.Image], Image.Image], str, dict, str]] = {
    "rgb-jpeg-with-srgb-profile": (
        lambda c: c, "in.jpg", {"icc_profile": _profile(b"RGB "), "quality": 95}, "RGB"
    ),
    "cmyk-jpeg-with-cmyk-profile": (
        lambda c: c.convert("CMYK"), "in.jpg", {"icc_profile": _profile(b"CMYK")}, "CMYK"
    ),
    "gray-png-with-gray-profile": (
        lambda c: c.convert("L"), "in.png", {"icc_profile": _profile(b"GRAY")}, "L"
    ),
    "gray-alpha-png": (
        lambda c: Image.merge("LA", [c.convert("L"), c.convert("L").point(lambda v: 255 - v)]),
        "in.png", {}, "LA",
    ),
    "palette-png": (lambda c: c.quantize(32), "in.png", {}, "RGB"),
    "palette-png-with-transparency": (_with_palette_transparency, "in.png", {}, "RGBA"),
    "palette-alpha-tiff": (lambda c: c.convert("RGBA").convert("PA"), "in.tif", {}, "RGBA"),
    "one-bit-png": (lambda c: c.convert("1"), "in.png", {}, "L"),
    "sixteen-bit-png": (
        lambda c: Image.fromarray(np.asarray(c.convert("L"), np.uint16) * 257), "in.png", {}, "L"
    ),
    "thirty-two-bit-tiff": (
        lambda c: Image.fromarray(np.asarray(c.convert("L"), np.int32) * 1000), "in.tif", {}, "L"
    ),
    "float-tiff": (
        lambda c: Image.fromarray(np.asarray(c.convert("L"), np.float32) / 255), "in.tif", {}, "L"
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_mode_is_edited_and_given_back_in_its_mode_with_its_profile(
    editor: Editor, cat: Image.Image, tmp_path: Path, kind: str
) -> None:
    make, name, options, expected_mode = KINDS[kind]
    path = tmp_path / name
    make(cat).save(path, **options)
    loaded = load_image(path)

    result = editor.edit(path, "a cat", "a tiger", region="foreground", **FAST)

    assert result.image.mode == expected_mode
    assert_edited_in_place(result, loaded)
    if loaded.alpha is not None:
        assert np.array_equal(np.asarray(result.image.getchannel("A")), loaded.alpha)
    profile = options.get("icc_profile")
    assert result.image.info.get("icc_profile") == profile
    # and the file written keeps both, in the input's own format
    saved = result.save(tmp_path / f"out{path.suffix}")["image"]
    with Image.open(saved) as reread:
        assert reread.mode == expected_mode
        assert reread.info.get("icc_profile") == profile


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photo_is_edited_upright_and_saved_upright(
    editor: Editor, cat: Image.Image, tmp_path: Path, orientation: int
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # what a camera held sideways writes
    path = tmp_path / "sideways.jpg"
    cat.save(path, exif=exif.tobytes(), quality=95)
    upright = ImageOps.exif_transpose(Image.open(path))

    result = editor.edit(path, "a cat", "a tiger", region="foreground", **FAST)

    assert result.image.size == upright.size
    assert result.mask.shape == (upright.height, upright.width)
    assert_edited_in_place(result, load_image(path))
    with Image.open(result.save(tmp_path / "out.jpg")["image"]) as reread:
        assert reread.size == upright.size
        assert reread.getexif().get(0x0112) in (None, 1)  # no viewer rotates it again


def _animation(cat: Image.Image) -> list[Image.Image]:
    return [cat, ImageOps.invert(cat), cat.rotate(180)]


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animated_image_gives_its_first_frame_with_a_warning(
    editor: Editor,
    cat: Image.Image,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    suffix: str,
) -> None:
    first, *rest = _animation(cat)
    path = tmp_path / f"anim{suffix}"
    first.save(path, save_all=True, append_images=rest, duration=100, loop=0, lossless=True)
    with Image.open(path) as check:
        assert getattr(check, "n_frames", 1) == 3

    with caplog.at_level(logging.WARNING, logger="regionedit"):
        result = editor.edit(path, "a cat", "a tiger", region="foreground", **FAST)

    assert "has 3 frames" in caplog.text and "only the first frame" in caplog.text
    with Image.open(path) as frames:
        frames.seek(0)
        frame0 = frames.convert("RGB")
    kept = result.mask == 0
    assert np.array_equal(_rgb(result.image)[kept], _rgb(frame0)[kept])


def test_avif_input_is_edited_and_can_be_saved_as_avif(
    editor: Editor, cat: Image.Image, tmp_path: Path
) -> None:
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF support")
    path = tmp_path / "photo.avif"
    cat.save(path, quality=90)

    result = editor.edit(path, "a cat", "a tiger", region="foreground", **FAST)

    assert_edited_in_place(result, load_image(path))
    with Image.open(result.save(tmp_path / "out.avif")["image"]) as reread:
        assert reread.format == "AVIF" and reread.size == cat.size


@pytest.mark.skipif(
    ".heic" not in Image.registered_extensions(),
    reason="Pillow reads HEIC only with the pillow-heif plugin, which is not installed",
)
def test_heic_input_is_edited(editor: Editor, cat: Image.Image, tmp_path: Path) -> None:
    path = tmp_path / "photo.heic"
    cat.save(path)
    result = editor.edit(path, "a cat", "a tiger", region="foreground", **FAST)
    assert_edited_in_place(result, load_image(path))


def test_paths_with_spaces_and_non_ascii_names(
    editor: Editor, cat: Image.Image, tmp_path: Path
) -> None:
    folder = tmp_path / "my photos" / "été 猫 ü"
    folder.mkdir(parents=True)
    path = folder / "chat noir – 猫 1.png"
    cat.save(path)
    out = tmp_path / "résultats" / "édité 猫.jpg"

    result = editor.edit(path, "a cat", "a tiger", region="foreground", **FAST)
    written = result.save(out, mask=True, sidecar=True)

    assert set(written) == {"image", "mask", "sidecar"}
    with Image.open(out) as reread:
        assert reread.size == cat.size
    assert (out.parent / "édité 猫.mask.png").is_file()
    sidecar = json.loads(written["sidecar"].read_text(encoding="utf-8"))
    assert sidecar["input"]["path"] == str(path)


# -- refused inputs, through the editor ------------------------------------------------------------


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (Pillow cannot write a 0-area one)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))


def _encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _tiff_with_a_broken_second_page(cat: Image.Image) -> bytes:
    """A two-page TIFF whose second page has no width tag: the first page reads, counting the
    pages fails (Pillow raised TypeError there, past regionedit's checks)."""
    data = bytearray(_encoded(cat, "TIFF", save_all=True, append_images=[cat]))
    # little-endian TIFF: the first page's directory offset at byte 4; a directory is a count,
    # 12-byte entries (tag id first), then the next directory's offset
    first = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * entries)[0]
    for i in range(struct.unpack_from("<H", data, second)[0]):
        entry = second + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 256:  # ImageWidth
            struct.pack_into("<H", data, entry, 0xFEFE)  # now an unknown private tag
    return bytes(data)


# name -> (file name, bytes, words the message must contain)
BAD_FILES: dict[str, tuple[str, Callable[[Image.Image], bytes], str]] = {
    "zero-bytes": ("empty.jpg", lambda c: b"", "empty (0 bytes)"),
    "text-named-jpg": ("notes.jpg", lambda c: b"shopping list: milk, eggs\n", "text file"),
    "truncated-jpeg": (
        "cut.jpg", lambda c: _encoded(c, "JPEG")[: len(_encoded(c, "JPEG")) // 2], "truncated"
    ),
    "truncated-png": ("cut.png", lambda c: _encoded(c, "PNG")[:300], "truncated"),
    "corrupt-png-header": ("bad.png", lambda c: _encoded(c, "PNG")[:20] + b"\0" * 60, "corrupt"),
    "one-by-one": ("dot.png", lambda c: _encoded(Image.new("RGB", (1, 1)), "PNG"), "1x1 pixels"),
    "zero-area": ("zero.png", lambda c: _png_declaring(0, 16), "corrupt"),
    "broken-tiff-page": ("pages.tif", _tiff_with_a_broken_second_page, "corrupt"),
    "decompression-bomb": ("huge.png", lambda c: _png_declaring(100_000, 100_000), "too large"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_is_refused_before_any_model_loads(
    cat: Image.Image, tmp_path: Path, case: str
) -> None:
    name, make, words = BAD_FILES[case]
    path = tmp_path / name
    path.write_bytes(make(cat))
    # Both models point nowhere: touching either would raise ModelLoadError instead.
    editor = Editor(
        classifier="offline",
        segment_model_path=str(tmp_path / "no-such-model.onnx"),
        inpaint_model=str(tmp_path / "no-such-model"),
    )

    with pytest.raises(ImageInputError) as caught:
        editor.edit(path, "a cat", "a tiger", region="foreground", **FAST)

    message = str(caught.value)
    assert str(path) in message and caught.value.path == str(path)
    assert words in message


def test_pixel_limit_is_a_setting_of_the_editor(editor: Editor, cat: Image.Image, tmp_path):
    path = tmp_path / "photo.png"
    cat.save(path)  # 96 x 64 = 6144 pixels
    editor.max_pixels = 2_000
    with pytest.raises(ImageInputError, match="max_pixels=") as caught:
        editor.edit(path, "a cat", "a tiger", region="foreground", **FAST)
    assert "REGIONEDIT_MAX_PIXELS" in str(caught.value)

    editor.max_pixels = 10_000  # the user trusts the file and raises the limit
    assert editor.edit(path, "a cat", "a tiger", region="foreground", **FAST).image.size == (96, 64)


# -- writing results -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result(segmenter: Any, tiny_inpainter: Any, small_photo_path: Path) -> Any:
    editor = Editor(classifier="offline", segmenter=segmenter, inpainter=tiny_inpainter)
    return editor.edit(small_photo_path, "a cat", "a tiger", region="foreground", **FAST)


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder no file can be created in: permission bits, and for root (whom they do not
    stop) the immutable attribute. Skips where neither works."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if _can_create_in(folder) and shutil.which("chattr"):
        chattr = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        immutable = chattr.returncode == 0
    try:
        if _can_create_in(folder):
            pytest.skip("cannot make a read-only folder here (root without chattr)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def _can_create_in(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


def test_read_only_output_folder(result: Any, read_only_folder: Path) -> None:
    with pytest.raises(OutputError) as caught:
        result.save(read_only_folder / "out.png", mask=True, sidecar=True)

    message = str(caught.value)
    assert "permission denied" in message and str(read_only_folder) in message
    assert "Nothing was written" in message
    assert list(read_only_folder.iterdir()) == []


@contextlib.contextmanager
def _file_size_limit(max_bytes: int) -> Iterator[None]:
    """Writes that would make a file larger than ``max_bytes`` fail (EFBIG) partway through,
    like a disk that fills up mid-write, but only for this process and only for a moment."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # the kernel signals SIGXFSZ, which kills by default; ignored, the write fails instead
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX resource limits")
def test_running_out_of_room_mid_write_leaves_no_partial_or_temporary_file(
    result: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    encoded = len(_encoded(result.image, "PNG"))

    with _file_size_limit(encoded // 2), pytest.raises(OutputError) as caught:
        result.save(out, sidecar=True)

    message = str(caught.value)
    assert str(out) in message and "larger than this file system" in message
    assert "Nothing was written; an existing file there is unchanged" in message
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.EFBIG
    assert out.read_bytes() == b"the previous result"
    assert not [p for p in tmp_path.iterdir() if is_temp_file(p.name)]
    assert not (tmp_path / "out.json").exists()  # the sidecar comes after the image


# -- properties: any mode, any size, any damage ---------------------------------------------------

# Every Pillow mode, with the formats that store it (as Pillow reads it back, the mode may
# differ: that is part of what is tested).
FORMATS_OF_MODE = {
    "1": ["PNG", "TIFF", "BMP"],
    "L": ["PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"],
    "LA": ["PNG", "TIFF"],
    "P": ["PNG", "TIFF", "GIF"],
    "PA": ["TIFF"],
    "RGB": ["PNG", "JPEG", "TIFF", "BMP", "WEBP"],
    "RGBA": ["PNG", "TIFF", "WEBP"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF"],
    "I": ["TIFF"],
    "F": ["TIFF"],
}
SUFFIX = {
    "PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp"
}
_BYTES_PER_PIXEL = {"1": 1 / 8, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "RGB": 3}

properties = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def any_image(draw: st.DrawFn) -> tuple[Image.Image, str]:
    """An image of any mode and a small size (some below the 8-pixel minimum), random pixels
    (for F and I, any bit pattern: NaN, infinities, negatives), and a format that stores it."""
    mode = draw(st.sampled_from(sorted(FORMATS_OF_MODE)))
    fmt = draw(st.sampled_from(FORMATS_OF_MODE[mode]))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    per_pixel = _BYTES_PER_PIXEL.get(mode, 4)
    row = int(np.ceil(width * per_pixel))
    data = np.random.default_rng(seed).integers(0, 256, row * height, dtype=np.uint8).tobytes()
    return Image.frombytes(mode, (width, height), data), fmt


@properties
@given(any_image())
def test_any_mode_and_size_loads_or_is_refused(case: tuple[Image.Image, str]) -> None:
    image, fmt = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"in{SUFFIX[fmt]}"
        image.save(path, format=fmt)
        try:
            loaded = load_image(path)
        except ImageInputError as exc:
            assert min(image.size) < 8 and "at least 8x8" in str(exc)
            return
        assert min(image.size) >= 8
        assert loaded.rgb.mode == "RGB" and loaded.rgb.size == image.size
        assert loaded.alpha is None or loaded.alpha.shape == (image.height, image.width)
        # and the result goes back into the input's format
        restored = restore_mode(loaded.rgb, loaded)
        saved = save_image(restored, Path(folder) / f"out{SUFFIX[fmt]}")
        with Image.open(saved) as reread:
            assert reread.size == image.size


_SAMPLES = {
    fmt: _encoded(
        Image.fromarray(np.random.default_rng(7).integers(0, 256, (12, 16, 3), np.uint8)), fmt
    )
    for fmt in ("PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP")
}


@st.composite
def damaged_file(draw: st.DrawFn) -> bytes:
    """A valid image file of some format, cut short and/or with a few bytes overwritten."""
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP"]))
    data = bytearray(_SAMPLES[fmt])
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data) - 1))]
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)



@properties
@given(damaged_file())
def test_damaged_file_loads_or_is_refused_with_an_image_input_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.img"
        path.write_bytes(data)
        try:
            loaded = load_image(path)
        except ImageInputError as exc:
            assert str(path) in str(exc)
            return
        restore_mode(loaded.rgb, loaded)  # whatever loads can be given back
        assert loaded.rgb.mode == "RGB"

