"""Loading every common kind of input, giving results back in the input's mode, atomic saving."""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from regionedit.errors import ImageInputError, OutputError
from regionedit.imageio import (
    MAX_PIXELS_ENV,
    LoadedImage,
    atomic_write_bytes,
    is_temp_file,
    load_image,
    restore_mode,
    save_image,
)


def _gradient(width: int = 40, height: int = 30) -> np.ndarray:
    """uint8 HxWx3 with distinct values everywhere, so conversions and rotations show."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1).astype(np.uint8)


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_temp_files_are_recognisable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_bytes(tmp_path / "result.json", b"{}")
    assert len(seen) == 1 and seen[0].startswith(".result.json.") and is_temp_file(seen[0])
    assert not is_temp_file("result.json") and not is_temp_file(".result.json")
    assert not is_temp_file("notes.tmp")


# -- refusing unusable files -----------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageInputError, match="not found") as info:
        load_image(missing)
    assert info.value.path == str(missing)
    assert str(missing) in str(info.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="is a folder"):
        load_image(tmp_path)


def test_zero_byte_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageInputError, match=r"empty \(0 bytes\)") as info:
        load_image(empty)
    assert info.value.path == str(empty)


def test_text_file_named_jpg_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(ImageInputError, match="looks like a text file"):
        load_image(fake)


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    whole = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(whole, "JPEG")  # big scan data: the cut lands in the pixels
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(ImageInputError, match="truncated or corrupt") as info:
        load_image(cut)
    assert str(cut) in str(info.value)


def test_zero_area_png_is_refused(tmp_path: Path) -> None:
    # A PNG whose header declares 0x16 pixels (Pillow cannot write one, so craft the chunks).
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 0, 16, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + b"".join(
        [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(b"")), chunk(b"IEND", b"")]
    )
    path = tmp_path / "zero.png"
    path.write_bytes(png)
    with pytest.raises(ImageInputError, match="starts like a PNG file but is corrupt") as info:
        load_image(path)
    assert info.value.path == str(path)


def test_tiny_image_is_refused_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (5, 40)).save(path)
    with pytest.raises(ImageInputError, match="5x40 pixels.*at least 8x8"):
        load_image(path)


def test_decompression_bomb_is_refused_with_the_setting_to_raise(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(ImageInputError, match="max_pixels") as info:
        load_image(path, max_pixels=5_000)
    assert MAX_PIXELS_ENV in str(info.value)
    # more than twice the limit: Pillow raises instead of warning; same answer
    with pytest.raises(ImageInputError, match="too large"):
        load_image(path, max_pixels=1_000)
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS not in (5_000, 1_000, 10_000)  # Pillow's global restored


def test_pixel_limit_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    with pytest.raises(ImageInputError, match="too large"):
        load_image(path)
    assert load_image(path, max_pixels=20_000).size == (100, 100)  # the argument wins
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ImageInputError, match="not a positive pixel count"):
        load_image(path)


def test_unsupported_input_type() -> None:
    with pytest.raises(ImageInputError, match="file path, a PIL image or a numpy array"):
        load_image(b"\x89PNG")  # type: ignore[arg-type]


# -- converting every mode to upright RGB ----------------------------------------------------


def test_rgb_jpeg_from_a_non_ascii_path_with_spaces(tmp_path: Path, chelsea_path: Path) -> None:
    folder = tmp_path / "fotos ünïcødé"
    folder.mkdir()
    path = folder / "ç 猫 photo.jpg"
    path.write_bytes(chelsea_path.read_bytes())
    loaded = load_image(path)
    assert isinstance(loaded, LoadedImage)
    assert loaded.rgb.mode == "RGB" and loaded.size == (451, 300)
    assert (loaded.mode, loaded.format, loaded.n_frames, loaded.alpha) == ("RGB", "JPEG", 1, None)
    assert loaded.path == str(path)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_exif_rotated_jpeg_loads_upright(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # stored left half red
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)

    loaded = load_image(path)
    assert loaded.size == (20, 40)  # portrait once upright
    upright = np.asarray(loaded.rgb).astype(int)
    assert upright[5, 10, 0] > 200 and upright[5, 10, 2] < 60  # the stored left is now the top
    assert upright[35, 10, 2] > 200 and upright[35, 10, 0] < 60
    assert loaded.rgb.getexif().get(0x0112) is None


def test_grayscale_png(tmp_path: Path) -> None:
    gray = _gradient()[:, :, 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    loaded = load_image(path)
    assert loaded.mode == "L"
    rgb = np.asarray(loaded.rgb)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], gray)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 32 * 16).reshape(16, 32).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    loaded = load_image(path)
    assert loaded.mode in ("I;16", "I")
    red = np.asarray(loaded.rgb)[:, :, 0].astype(int)
    np.testing.assert_allclose(red, values / 257.0, atol=0.51)
    assert red.min() == 0 and red.max() == 255 and len(np.unique(red)) > 200


def test_float_tiff_is_scaled_to_eight_bits(tmp_path: Path) -> None:
    values = np.linspace(0.0, 1.0, 32 * 16, dtype=np.float32).reshape(16, 32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    loaded = load_image(path)
    assert loaded.mode == "F"
    np.testing.assert_allclose(np.asarray(loaded.rgb)[:, :, 1], values * 255, atol=0.51)


def test_float_tiff_outside_unit_range_is_stretched_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values = np.linspace(-50.0, 950.0, 32 * 16, dtype=np.float32).reshape(16, 32)
    path = tmp_path / "hdr.tif"
    Image.fromarray(values).save(path)
    with caplog.at_level(logging.WARNING, logger="regionedit"):
        loaded = load_image(path)
    gray = np.asarray(loaded.rgb)[:, :, 0]
    assert gray.min() == 0 and gray.max() == 255
    assert "stretching" in caplog.text


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    loaded = load_image(path)
    assert loaded.mode == "CMYK" and loaded.alpha is None
    red, green, blue = np.asarray(loaded.rgb)[12, 16].astype(int)
    assert red > 230 and green < 30 and blue < 30


def test_palette_with_transparency_keeps_the_alpha(tmp_path: Path) -> None:
    indices = np.zeros((24, 32), np.uint8)
    indices[:, 16:] = 1
    im = Image.fromarray(indices, mode="L").convert("P")
    im.putpalette([0, 200, 0, 250, 10, 10] + [0] * (256 * 3 - 6))
    path = tmp_path / "palette.png"
    im.save(path, transparency=0)  # index 0 (the left half) transparent
    loaded = load_image(path)
    assert loaded.mode == "P"
    assert loaded.alpha is not None
    assert (loaded.alpha[:, :16] == 0).all() and (loaded.alpha[:, 16:] == 255).all()
    assert tuple(np.asarray(loaded.rgb)[5, 20]) == (250, 10, 10)


def test_palette_without_transparency(tmp_path: Path) -> None:
    path = tmp_path / "palette.gif"
    Image.fromarray(_gradient()).convert("P").save(path)
    loaded = load_image(path)
    assert loaded.mode == "P" and loaded.alpha is None and loaded.rgb.mode == "RGB"


def test_la_png_keeps_gray_and_alpha(tmp_path: Path) -> None:
    gray = _gradient()[:, :, 1]
    alpha = np.zeros_like(gray)
    alpha[10:20, 10:30] = 255
    path = tmp_path / "la.png"
    Image.merge("LA", [Image.fromarray(gray), Image.fromarray(alpha)]).save(path)
    loaded = load_image(path)
    assert loaded.mode == "LA"
    np.testing.assert_array_equal(loaded.alpha, alpha)
    np.testing.assert_array_equal(np.asarray(loaded.rgb)[:, :, 2], gray)


def test_rgba_png_alpha_is_kept_and_rgb_is_unpremultiplied(tmp_path: Path) -> None:
    rgba = np.dstack([_gradient(), np.full((30, 40), 255, np.uint8)])
    rgba[:5, :, 3] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGBA"
    np.testing.assert_array_equal(loaded.alpha, rgba[:, :, 3])
    np.testing.assert_array_equal(np.asarray(loaded.rgb), rgba[:, :, :3])


def test_one_bit_image(tmp_path: Path) -> None:
    bits = np.zeros((16, 24), bool)
    bits[:, 12:] = True
    path = tmp_path / "bits.png"
    Image.fromarray(bits).save(path)
    loaded = load_image(path)
    assert loaded.mode == "1"
    assert tuple(np.asarray(loaded.rgb)[0, 0]) == (0, 0, 0)
    assert tuple(np.asarray(loaded.rgb)[0, 20]) == (255, 255, 255)


def test_animated_gif_gives_first_frame_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue", "green")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with caplog.at_level(logging.WARNING, logger="regionedit"):
        loaded = load_image(path)
    assert loaded.n_frames == 3
    red, green, blue = np.asarray(loaded.rgb)[16, 16].astype(int)
    assert red > 200 and blue < 50
    assert "3 frames" in caplog.text and "first frame" in caplog.text


def test_pil_image_input_is_not_modified() -> None:
    original = Image.fromarray(_gradient()).convert("RGBA")
    before = original.tobytes()
    loaded = load_image(original)
    assert loaded.path is None and loaded.mode == "RGBA"
    assert loaded.sha256 == hashlib.sha256(before).hexdigest()
    assert original.tobytes() == before and original.mode == "RGBA"


# -- numpy input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "mode", "expected_red"),
    [
        (np.full((10, 12), 7, np.uint8), "L", 7),
        (np.full((10, 12, 1), 7, np.uint8), "L", 7),
        (np.full((10, 12, 3), (7, 8, 9), np.uint8), "RGB", 7),
        (np.full((10, 12, 4), (7, 8, 9, 255), np.uint8), "RGBA", 7),
        (np.full((10, 12, 3), 65535, np.uint16), "RGB", 255),
        (np.full((10, 12), 257 * 40, np.uint16), "L", 40),
        (np.full((10, 12, 3), 0.5, np.float32), "RGB", 128),
        (np.full((10, 12), 1.0, np.float64), "L", 255),
    ],
)
def test_numpy_input(array: np.ndarray, mode: str, expected_red: int) -> None:
    loaded = load_image(array)
    assert loaded.size == (12, 10) and loaded.mode == mode and loaded.rgb.mode == "RGB"
    assert int(np.asarray(loaded.rgb)[3, 3, 0]) == expected_red
    assert loaded.sha256 == hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_numpy_rgba_alpha() -> None:
    array = np.zeros((10, 12, 4), np.uint8)
    array[:, 6:, 3] = 255
    loaded = load_image(array)
    np.testing.assert_array_equal(loaded.alpha, array[:, :, 3])


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((10, 12, 2), np.uint8), "shape"),
        (np.zeros((2, 10, 12, 3), np.uint8), "shape"),
        (np.zeros((0, 12, 3), np.uint8), "0 pixels|12x0"),
        (np.full((10, 12), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((10, 12), np.nan, np.float32), "finite"),
        (np.zeros((10, 12), np.int64), "dtype int64"),
        (np.zeros((10, 12), bool), "dtype bool"),
    ],
)
def test_numpy_input_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageInputError, match=message):
        load_image(array)


# -- restore_mode: the result in the input's mode --------------------------------------------


def _edited(loaded: LoadedImage) -> Image.Image:
    """Stand-in for an edit: the loaded RGB with its colours inverted."""
    return Image.fromarray(255 - np.asarray(loaded.rgb))


def test_restore_rgba_puts_the_original_alpha_back() -> None:
    array = np.dstack([_gradient(), np.full((30, 40), 255, np.uint8)])
    array[:, :10, 3] = 0
    loaded = load_image(array)
    out = restore_mode(_edited(loaded), loaded)
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], array[:, :, 3])
    np.testing.assert_array_equal(np.asarray(out)[:, :, :3], 255 - array[:, :, :3])


def test_restore_gray_and_gray_alpha(tmp_path: Path) -> None:
    gray = load_image(np.full((10, 12), 40, np.uint8))
    out = restore_mode(_edited(gray), gray)
    assert out.mode == "L" and int(np.asarray(out)[0, 0]) == 215

    alpha = np.zeros((10, 12), np.uint8)
    alpha[:, 6:] = 255
    path = tmp_path / "la.png"
    Image.merge("LA", [Image.new("L", (12, 10), 40), Image.fromarray(alpha)]).save(path)
    la = load_image(path)
    out = restore_mode(_edited(la), la)
    assert out.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out)[:, :, 1], alpha)


def test_restore_sixteen_bit_gives_eight_bit_gray(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(path)
    loaded = load_image(path)
    assert restore_mode(loaded.rgb, loaded).mode == "L"


def test_restore_palette_gives_rgb_or_rgba(tmp_path: Path) -> None:
    path = tmp_path / "palette.gif"
    Image.fromarray(_gradient()).convert("P").save(path)
    loaded = load_image(path)
    assert restore_mode(_edited(loaded), loaded).mode == "RGB"

    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(0, (0, 0, 8, 16))
    path = tmp_path / "transparent.png"
    im.save(path, transparency=0)
    loaded = load_image(path)
    out = restore_mode(_edited(loaded), loaded)
    assert out.mode == "RGBA"
    assert (np.asarray(out)[:, :8, 3] == 0).all() and (np.asarray(out)[:, 8:, 3] == 255).all()


def test_restore_cmyk(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)
    loaded = load_image(path)
    out = restore_mode(loaded.rgb, loaded)
    assert out.mode == "CMYK"
    cyan, magenta, yellow, black = np.asarray(out)[8, 8].astype(int)
    assert cyan < 30 and magenta > 220 and yellow > 220


def test_restore_keeps_a_matching_icc_profile_only(tmp_path: Path) -> None:
    profile = _srgb_profile()
    path = tmp_path / "tagged.png"
    Image.fromarray(_gradient()).save(path, icc_profile=profile)
    loaded = load_image(path)
    assert loaded.icc_profile == profile
    assert "icc_profile" not in loaded.rgb.info
    assert restore_mode(_edited(loaded), loaded).info["icc_profile"] == profile

    # an RGB profile must not be attached to the grayscale result of a grayscale input
    gray = LoadedImage(rgb=loaded.rgb, alpha=None, mode="L", icc_profile=profile)
    assert "icc_profile" not in restore_mode(loaded.rgb, gray).info


def test_restored_exif_rotated_image_saves_upright(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(_gradient(40, 20)).save(path, exif=exif.tobytes())
    loaded = load_image(path)
    saved = save_image(restore_mode(loaded.rgb, loaded), tmp_path / "out.jpg")
    with Image.open(saved) as reread:
        assert reread.size == (20, 40)
        assert reread.getexif().get(0x0112) in (None, 1)


def test_restore_refuses_a_different_size() -> None:
    loaded = load_image(np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(ValueError, match="size|12"):
        restore_mode(Image.new("RGB", (11, 10)), loaded)


# -- saving ----------------------------------------------------------------------------------


def test_save_round_trip_png_creates_folders(tmp_path: Path) -> None:
    pixels = _gradient()
    target = tmp_path / "new" / "deeper" / "out.png"
    assert save_image(Image.fromarray(pixels), target) == target
    np.testing.assert_array_equal(np.asarray(Image.open(target)), pixels)
    assert _temp_files(target.parent) == []


def test_save_rgba_as_jpeg_drops_alpha(tmp_path: Path) -> None:
    rgba = Image.fromarray(np.dstack([_gradient(), np.full((30, 40), 128, np.uint8)]))
    target = save_image(rgba, tmp_path / "out.jpg")
    with Image.open(target) as reread:
        assert reread.format == "JPEG" and reread.mode == "RGB"


def test_save_la_as_jpeg_stays_gray(tmp_path: Path) -> None:
    la = Image.merge("LA", [Image.new("L", (16, 16), 90), Image.new("L", (16, 16), 255)])
    with Image.open(save_image(la, tmp_path / "out.jpeg")) as reread:
        assert reread.mode == "L"


def test_save_keeps_the_icc_profile(tmp_path: Path) -> None:
    profile = _srgb_profile()
    img = Image.fromarray(_gradient())
    img.info["icc_profile"] = profile
    for name in ("out.jpg", "out.png", "out.webp", "out.tif"):
        with Image.open(save_image(img, tmp_path / name)) as reread:
            assert reread.info.get("icc_profile") == profile, name


def test_save_uses_high_jpeg_quality_unless_told(tmp_path: Path, chelsea_path: Path) -> None:
    photo = Image.open(chelsea_path)
    good = save_image(photo, tmp_path / "good.jpg").stat().st_size
    small = save_image(photo, tmp_path / "small.jpg", quality=30).stat().st_size
    assert good > small * 2


def test_save_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"\.png"):
        save_image(Image.new("RGB", (8, 8)), tmp_path / "out.xyz")


def test_save_bad_option_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with pytest.raises(OutputError, match="Could not encode"):
        save_image(Image.new("RGB", (8, 8)), target, compress_level="high")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders"
)
def test_save_into_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            save_image(Image.new("RGB", (8, 8)), folder / "out.png")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_save_where_the_folder_refuses_new_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same failure as a read-only folder, in a way that also holds when tests run as root.
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(OutputError, match="permission denied") as info:
        save_image(Image.new("RGB", (8, 8)), tmp_path / "out.png")
    monkeypatch.undo()
    assert isinstance(info.value, OSError)
    assert list(tmp_path.iterdir()) == []


def test_save_when_a_file_blocks_the_folder(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("not a folder")
    with pytest.raises(OutputError, match="in the way"):
        save_image(Image.new("RGB", (8, 8)), tmp_path / "blocker" / "out.png")


@pytest.mark.parametrize("writer", ["image", "bytes"])
def test_disk_full_removes_the_temp_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def disk_full(fd: int) -> None:  # fsync is where a full disk often reports itself
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputError, match="disk is full"):
        if writer == "image":
            save_image(Image.new("RGB", (8, 8)), target)
        else:
            atomic_write_bytes(target, b"{}")
    assert target.read_bytes() == b"previous result"
    assert _temp_files(tmp_path) == []


def test_atomic_write_bytes_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "side" / "car.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert _temp_files(target.parent) == []
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
