"""File names from the data stay inside the image folder: every way a name can point elsewhere is a
failed row with the reason, never an opened file, and preflight does not count it as available."""
import json
import os

import pandas as pd
import pytest
from PIL import Image

from vlmbench.config import ConfigError, DatasetConfig, load_config
from vlmbench.data.sources import ImageRow, rows_from_coco_dir, rows_from_parquet
from vlmbench.data.fetch import ImageCache
from vlmbench.data.images import load_image
from vlmbench.data.preflight import classify, run_preflight
from vlmbench.data.safenames import CACHE_NAME_MAX_CHARS, UnsafeFileName, confined_path


@pytest.fixture
def layout(tmp_path):
    """tmp/images/{inside.jpg, sub/, link-out.jpg -> ../escape.jpg, dirlink -> tmp}, tmp/escape.jpg"""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for path in (folder / "inside.jpg", folder / "sub" / "inside.jpg", tmp_path / "escape.jpg",
                 folder / "%2e%2e%2fescape.jpg"):
        Image.new("RGB", (8, 8), (200, 0, 0)).save(path, format="JPEG")
    os.symlink(tmp_path / "escape.jpg", folder / "link-out.jpg")
    os.symlink(tmp_path, folder / "dirlink")
    os.symlink(folder / "inside.jpg", folder / "link-in.jpg")
    os.symlink("loop-b.jpg", folder / "loop-a.jpg")
    os.symlink("loop-a.jpg", folder / "loop-b.jpg")
    return folder


ESCAPING = {
    "../escape.jpg": "escapes the image folder",
    "../../etc/passwd": "escapes the image folder",
    "sub/../../escape.jpg": "escapes the image folder",
    "..\\escape.jpg": "escapes the image folder",
    "/etc/passwd": "is an absolute path",
    "\\\\server\\share\\x.jpg": "is an absolute path",
    "C:\\Windows\\x.jpg": "is an absolute path",
    "link-out.jpg": "escapes the image folder",
    "dirlink/escape.jpg": "escapes the image folder",
    "inside.jpg\x00.png": "holds a NUL byte",
    "": "is empty",
    "   ": "is empty",
    ".": "names the image folder",
    "sub/..": "names the image folder",
    "./": "names the image folder",
    "loop-a.jpg": "is a symlink loop",
    "x" * 300 + ".jpg": r"\[Errno 36\] File name too long",  # over the 255-byte name limit
    "/".join(["d" * 200] * 25): r"\[Errno 36\] File name too long",  # over PATH_MAX (4096)
}


@pytest.mark.parametrize("name, reason", ESCAPING.items())
def test_names_that_point_elsewhere_are_refused(layout, name, reason):
    with pytest.raises(UnsafeFileName, match=reason):
        confined_path(layout, name)


@pytest.mark.parametrize("name, expected", [
    ("inside.jpg", "inside.jpg"), ("sub/inside.jpg", "sub/inside.jpg"), ("sub/../inside.jpg", "inside.jpg"),
    ("sub\\inside.jpg", "sub/inside.jpg"), ("link-in.jpg", "inside.jpg"),
    ("%2e%2e%2fescape.jpg", "%2e%2e%2fescape.jpg"),  # not decoded: a literal name inside the folder
])
def test_names_inside_the_folder_resolve_there(layout, name, expected):
    assert confined_path(layout, name) == (layout / expected).resolve()


@pytest.mark.parametrize("name", ["../escape.jpg", "link-out.jpg", "dirlink/escape.jpg", "/etc/hostname"])
def test_an_escaping_row_fails_with_the_reason_and_nothing_is_opened(layout, name):
    row = ImageRow(1, name, str(layout / name), ("a",), folder=str(layout))
    loaded = load_image(row, 56)
    assert loaded.image is None and "UnsafeFileName" in loaded.error
    assert "escapes the image folder" in loaded.error or "absolute path" in loaded.error


@pytest.mark.parametrize("name, reason", [("loop-a.jpg", "is a symlink loop"),
                                          ("x" * 300 + ".jpg", "File name too long")])
def test_a_name_the_os_cannot_open_is_one_failed_row_not_a_stopped_run(layout, name, reason):
    """A symlink loop (RuntimeError from Path.resolve) and an over-long name (ENAMETOOLONG) stopped
    the whole run; each is now one unavailable row with its reason, and preflight counts it missing."""
    rows = [ImageRow(i, n, str(layout / n), ("a",), folder=str(layout)) for i, n in enumerate(["inside.jpg", name])]
    loaded = load_image(rows[1], 56)
    assert loaded.image is None and loaded.error.startswith("unavailable: UnsafeFileName") and reason in loaded.error
    assert [r.is_present() for r in rows] == [True, False]
    with pytest.raises(ConfigError, match=f"1 of 2 images cannot be had .*{reason}"):
        run_preflight(load_config(overrides={"dataset.limit": 2}), rows, cache=object())
    allowed = load_config(overrides={"dataset.limit": 2, "dataset.allow_missing_images": True})
    assert "1 images unavailable; recorded as failed" in run_preflight(allowed, rows, cache=object())[-1]


def test_preflight_does_not_count_escaping_names_as_available(layout):
    rows = [ImageRow(i, name, str(layout / name), ("a",), folder=str(layout))
            for i, name in enumerate(["inside.jpg", "../escape.jpg", "link-out.jpg"])]
    groups = classify(rows, cache=None)
    assert [r.file_name for r in groups["available"]] == ["inside.jpg"]
    assert [r.file_name for r in groups["missing"]] == ["../escape.jpg", "link-out.jpg"]
    cfg = load_config(overrides={"dataset.limit": 3})
    with pytest.raises(ConfigError, match="2 of 3 images cannot be had .*escapes the image folder"):
        run_preflight(cfg, rows, cache=object())
    allowed = load_config(overrides={"dataset.limit": 3, "dataset.allow_missing_images": True})
    assert "2 images unavailable" in run_preflight(allowed, rows, cache=object())[-1]


def test_parquet_and_coco_rows_carry_their_folder(layout, tmp_path):
    parquet = tmp_path / "rows.parquet"
    pd.DataFrame({"image_id": [1, 2], "file_name": ["inside.jpg", "../escape.jpg"],
                  "captions": [["a"], ["b"]]}).to_parquet(parquet)
    rows = rows_from_parquet(parquet, DatasetConfig(image_dir=str(layout)))
    assert [r.is_present() for r in rows] == [True, False]
    (tmp_path / "val2017").symlink_to(layout)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "inside.jpg"}, {"id": 2, "file_name": "../escape.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "caption": "a"}, {"id": 2, "image_id": 2, "caption": "b"}]}))
    rows = rows_from_coco_dir(tmp_path)
    assert [r.is_present() for r in rows] == [True, False]
    assert "escapes the image folder" in load_image(rows[1], 56).error


def test_present_images_only_drops_escaping_names(layout, tmp_path, write_config):
    parquet = tmp_path / "rows.parquet"
    pd.DataFrame({"image_id": [1, 2, 3], "file_name": ["inside.jpg", "../escape.jpg", "link-out.jpg"],
                  "captions": [["a"], ["b"], ["c"]]}).to_parquet(parquet)
    from vlmbench.data.sources import load_rows
    cfg = load_config(write_config({"dataset": {"synthetic_images": None, "parquet_path": str(parquet),
                                                "image_dir": str(layout), "limit": 1, "present_images_only": True}}))
    assert [r.file_name for r in load_rows(cfg)] == ["inside.jpg"]


@pytest.mark.parametrize("url", [
    "http://h/a/..", "http://h/..%2f..%2fescape.jpg", "http://h/a/" + "x" * 1000 + ".jpg",
    "http://h/a\\..\\..\\b.jpg", "http://h/x\x00.jpg", "http://h/", "http://h/.hidden", "http://h/a b?.jpg",
])
def test_cache_file_names_from_urls_stay_inside_the_cache(tmp_path, url):
    path = ImageCache(tmp_path).path_for(url)
    assert path.is_relative_to(tmp_path.resolve()) and path.parent.parent == tmp_path.resolve()
    tail = path.name.split("-", 1)[1]
    assert len(tail) <= CACHE_NAME_MAX_CHARS and not tail.startswith(".") and "\x00" not in path.name
    assert set(tail) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def test_cache_file_names_of_ordinary_urls_keep_their_name(tmp_path):
    cache = ImageCache(tmp_path)
    url = "http://images.cocodataset.org/val2017/000000000139.jpg"
    assert cache.path_for(url).name.endswith("-000000000139.jpg")
    assert cache.path_for(url) != cache.path_for(url + "?v=2")


def test_a_long_unsafe_name_gives_a_bounded_message_that_keeps_its_end(tmp_path):
    with pytest.raises(UnsafeFileName) as info:
        confined_path(tmp_path, "../" + "x" * 5000 + ".jpg")
    message = str(info.value)
    assert "escapes the image folder" in message and message.count("x.jpg'") == 2 and len(message) < 600
