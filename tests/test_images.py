"""Real-world image trouble: each file is either read correctly or reported with a reason."""

import pytest
from PIL import Image

from vlmbench.data import ImageRow
from vlmbench.images import load_image


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
