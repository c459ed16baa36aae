"""Real-world image trouble: each file is either read correctly or reported with a reason."""

import numpy as np
import pytest
from PIL import Image

from vlmbench.data.sources import ImageRow
from vlmbench.data.images import failure_kind, load_image


def _row(path):
    return ImageRow(1, path.name, str(path), ("a",))


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_colour_modes_become_rgb(tmp_path, mode):
    path = _save(tmp_path / f"{mode}.jpg" if mode in ("L", "CMYK") else tmp_path / f"{mode}.png",
                 Image.new(mode, (40, 30)))
    loaded = load_image(_row(path), 56)
    assert loaded.error is None and loaded.image.mode == "RGB" and loaded.image.size == (56, 56)


def test_png_named_jpg_is_read(tmp_path):
    path = _save(tmp_path / "really_png.jpg", Image.new("RGB", (20, 20), (255, 0, 0)), format="PNG")
    loaded = load_image(_row(path), 56)
    assert loaded.error is None and loaded.image.getpixel((10, 10)) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 30, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = _save(tmp_path / "rotated.jpg", image, exif=exif, quality=95)
    loaded = load_image(_row(path), 60)
    # displayed upright, the white half is on top
    assert loaded.image.getpixel((30, 5))[0] > 200 and loaded.image.getpixel((30, 55))[0] < 50


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: None, "image file not found"),
    (lambda p: p.write_bytes(b"this is not an image"), "cannot identify image file"),
])
def test_broken_files_are_reported(tmp_path, make, reason):
    path = tmp_path / "bad.jpg"
    make(path)
    loaded = load_image(_row(path), 56)
    assert loaded.image is None and reason in loaded.error


def test_truncated_jpeg_is_reported(tmp_path, coco_sample):
    data = (coco_sample / "val2017" / "000000000139.jpg").read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    loaded = load_image(_row(path), 56)
    assert loaded.image is None and "truncated" in loaded.error.lower()


def test_real_coco_image(coco_sample):
    path = coco_sample / "val2017" / "000000000139.jpg"
    loaded = load_image(_row(path), 1024)
    assert loaded.error is None and loaded.image.size == (1024, 1024)


# ---------------------------------------------------------------- transparency and wide modes
def _half_transparent(mode):
    """A 40x20 red image whose left half is fully transparent, in `mode`."""
    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 20, 20))
    if mode == "RGBA":
        return rgba, {}
    if mode == "LA":
        return rgba.convert("LA"), {}
    if mode == "P":  # palette with a transparent index, as GIFs and small PNGs store it
        pal = Image.new("P", (40, 20), 1)
        pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        pal.paste(0, (0, 0, 20, 20))
        return pal, {"transparency": 0}
    if mode == "RGB":  # a tRNS colour key
        rgb = Image.new("RGB", (40, 20), (255, 0, 0))
        rgb.paste((0, 0, 0), (0, 0, 20, 20))
        return rgb, {"transparency": (0, 0, 0)}
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "RGB"])
def test_transparency_is_composited_on_white(tmp_path, mode):
    image, extra = _half_transparent(mode)
    path = _save(tmp_path / f"{mode}.png", image, **extra)
    loaded = load_image(_row(path), 40)
    assert loaded.error is None and loaded.image.mode == "RGB"
    assert loaded.image.getpixel((5, 10)) == (255, 255, 255)  # transparent half: white, not black
    opaque = loaded.image.getpixel((35, 10))
    assert opaque == ((76, 76, 76) if mode == "LA" else (255, 0, 0))  # LA: red's luma, kept


def test_partial_alpha_blends_with_white(tmp_path):
    path = _save(tmp_path / "half_alpha.png", Image.new("RGBA", (8, 8), (0, 0, 0, 128)))
    pixel = load_image(_row(path), 8).image.getpixel((4, 4))
    assert all(abs(channel - 127) <= 1 for channel in pixel)  # 0 * 128/255 + 255 * 127/255


@pytest.mark.parametrize("dtype, suffix", [("<u2", "png"), (">u2", "tif"), ("<u2", "tif")])
def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path, dtype, suffix):
    values = np.array([[0, 257, 32896, 65535]] * 4, dtype=dtype)
    image = Image.fromarray(values)
    assert image.mode in ("I;16", "I;16B")
    path = _save(tmp_path / f"gray16.{suffix}", image)
    loaded = load_image(_row(path), 4)
    assert loaded.error is None
    # NEAREST-free check: resize to the same size keeps the pixels; 65535/257 = 255, 32896/257 = 128
    assert [loaded.image.getpixel((x, 1)) for x in range(4)] == [(0, 0, 0), (1, 1, 1), (128, 128, 128),
                                                                   (255, 255, 255)]


def test_thirty_two_bit_integer_mode_i(tmp_path):
    image = Image.fromarray(np.array([[0, 32896, 65535, 65535]] * 4, dtype=np.uint16)).convert("I")
    assert image.mode == "I"
    path = _save(tmp_path / "gray32.tif", image)
    loaded = load_image(_row(path), 4)
    assert [loaded.image.getpixel((x, 1))[0] for x in range(3)] == [0, 128, 255]


@pytest.mark.parametrize("values, message", [
    (np.array([[-5, 70000]] * 2, dtype=np.int32), "outside 16-bit 0..65535"),
    (np.array([[0.0, 3.5]] * 2, dtype=np.float32), "outside 0..1"),
])
def test_a_mode_that_cannot_be_converted_is_a_failed_row(tmp_path, values, message):
    path = _save(tmp_path / "wide.tif", Image.fromarray(values))
    loaded = load_image(_row(path), 4)
    assert loaded.image is None and loaded.error.startswith("undecodable: UnsupportedImageMode:")
    assert message in loaded.error


def test_float_image_in_unit_range(tmp_path):
    path = _save(tmp_path / "float.tif", Image.fromarray(np.array([[0.0, 0.5, 1.0]] * 3, dtype=np.float32)))
    assert [load_image(_row(path), 3).image.getpixel((x, 1))[0] for x in range(3)] == [0, 128, 255]


# ---------------------------------------------------------------- failure kinds
def test_failure_kind_prefixes(tmp_path):
    missing = load_image(_row(tmp_path / "gone.jpg"), 8)
    assert missing.error.startswith("unavailable: FileNotFoundError: image file not found")
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    junk = load_image(_row(tmp_path / "junk.jpg"), 8)
    assert junk.error.startswith("undecodable: UnidentifiedImageError:")
    assert failure_kind(missing.error) == "unavailable" and failure_kind(junk.error) == "undecodable"


@pytest.mark.parametrize("legacy, kind", [
    ("FileNotFoundError: image file not found: /x.jpg", "unavailable"),
    ("DownloadError: download failed: http://h/x.jpg: HTTP 404", "unavailable"),
    ("OSError: Truncated File Read", "undecodable"),
    ("", ""),
])
def test_failure_kind_of_rows_written_before_the_prefix(legacy, kind):
    assert failure_kind(legacy) == kind
