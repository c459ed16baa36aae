"""Caption data in the shapes it takes in the wild: each is read correctly or refused when rows load,
with its row (or field) and column and what was expected, never turned into a plausible number."""
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmbench.config import ConfigError, DatasetConfig
from vlmbench.data.sources import rows_from_coco_dir, rows_from_parquet
from vlmbench.data.checks import captions_of, image_id_of

URL = "http://images.cocodataset.org/val2017/000000000139.jpg"


def _parquet(tmp_path, columns: dict, schema=None):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def _good(n=2):
    return {"image_id": list(range(1, n + 1)), "file_name": [f"{i}.jpg" for i in range(1, n + 1)],
            "coco_url": [URL] * n, "captions": [["a dog", "a cat"]] * n}


def _refused(path, ds=None) -> str:
    with pytest.raises(ConfigError) as info:
        rows_from_parquet(path, ds or DatasetConfig())
    return str(info.value)


def test_list_column_arrives_as_numpy_and_is_read(tmp_path):
    path = _parquet(tmp_path, _good())
    assert isinstance(pd.read_parquet(path).captions[0], np.ndarray)
    rows = rows_from_parquet(path, DatasetConfig())
    assert [r.captions for r in rows] == [("a dog", "a cat")] * 2 and rows[0].image_id == 1


@pytest.mark.parametrize("cell, expected", [
    ("A man is in a kitchen making pizzas.", "is a string 'A man is in a kitchen making pizzas.', not a list"),
    ('["A man in a kitchen.", "Pizza."]', "looks like a list stored as text"),
    ("['A man in a kitchen.', 'Pizza.']", "looks like a list stored as text"),
    (None, "missing; expected a non-empty list of reference captions"),
    ([], "is an empty list; every image needs at least one reference caption"),
    (["a dog", "   "], "element 1 is the blank string '   '"),
    (["a dog", None], "element 1 is a NoneType None; expected a caption string"),
])
def test_bad_caption_cells_are_named_with_row_and_column(tmp_path, cell, expected):
    data = _good()
    data["captions"] = [["fine"], cell]
    kind = pa.string() if isinstance(cell, str) else pa.list_(pa.string())
    if isinstance(cell, str):
        data["captions"] = [json.dumps(["fine"]), cell]
    message = _refused(_parquet(tmp_path, data, pa.schema([("image_id", pa.int64()), ("file_name", pa.string()),
                                                            ("coco_url", pa.string()), ("captions", kind)])))
    assert "row 1, column 'captions' (image_id 2)" in message and expected in message
    assert "rows were loaded (before any model)" in message


def test_a_string_column_never_becomes_one_reference_per_character(tmp_path):
    data = _good(3)
    data["captions"] = ["A man is in a kitchen making pizzas."] * 3
    message = _refused(_parquet(tmp_path, data))
    assert "3 structural problem(s)" in message and "row 0, column 'captions'" in message


@pytest.mark.parametrize("cell, expected", [
    (np.array([1, 2]), "element 0 is a int64 np.int64(1); expected a caption string"),
    (pd.Series([[["nested"]]]).to_numpy()[0], "element 0 is a list"),
    ({"raw": "a dog"}, "is a dict"),
])
def test_non_string_references_are_refused(cell, expected):
    captions, problem = captions_of(cell)
    assert captions is None and expected in problem


def test_references_of_every_list_shape_are_read():
    for cell in (["a", "b"], ("a", "b"), np.array(["a", "b"], dtype=object)):
        assert captions_of(cell) == (("a", "b"), None)
    assert "2-D array" in captions_of(np.array([["a"], ["b"]], dtype=object))[1]
    assert "not a list" in captions_of(b"a dog")[1]


@pytest.mark.parametrize("value, expected", [
    (139, 139), (np.int64(139), 139), (139.0, 139), (np.float64(7.0), 7),
    ("139", "is the string '139'; expected an integer image id"),
    ("abc", "is the string 'abc'"), (True, "is the boolean True"), (1.5, "is a float 1.5"),
    (float("nan"), "missing"), (None, "missing"), (pd.NA, "missing"), (np.float32("nan"), "missing"),
    (float("inf"), "is a float inf"),
])
def test_image_ids(value, expected):
    image_id, problem = image_id_of(value)
    assert image_id == expected if isinstance(expected, int) else expected in problem


@pytest.mark.parametrize("column, values, expected", [
    ("image_id", ["1", "2"], "row 0, column 'image_id': is the string '1'; expected an integer image id"),
    ("image_id", [1.0, None], "row 1, column 'image_id': missing"),
    ("image_id", [7, 7], "row 1, column 'image_id': 7 repeats row 0; image ids must be unique"),
    ("file_name", ["1.jpg", None], "row 1, column 'file_name' (image_id 2): missing"),
    ("file_name", ["1.jpg", " "], "row 1, column 'file_name' (image_id 2): is the blank string ' '"),
    ("coco_url", [URL, None], "row 1, column 'coco_url' (image_id 2): missing; expected an http(s) URL"),
    ("coco_url", [URL, "ftp://x/1.jpg"], "expected an http(s) URL"),
])
def test_other_cells_are_named_with_row_and_column(tmp_path, column, values, expected):
    data = _good()
    data[column] = values
    assert expected in _refused(_parquet(tmp_path, data))


def test_coco_url_is_not_needed_with_an_image_folder(tmp_path):
    data = _good()
    del data["coco_url"]
    path = _parquet(tmp_path, data)
    rows = rows_from_parquet(path, DatasetConfig(image_dir=str(tmp_path)))
    assert rows[0].source == str(tmp_path / "1.jpg") and rows[0].folder == str(tmp_path)
    assert "lacks columns ['coco_url']" in _refused(path)


def test_many_problems_give_a_bounded_message(tmp_path):
    data = _good(500)
    data["captions"] = ["x" * 10_000] * 500
    message = _refused(_parquet(tmp_path, data))
    assert "500 structural problem(s)" in message and "... and 495 more" in message and len(message) < 2500


# ------------------------------------------------------------------ COCO annotation files
def _coco(tmp_path, images, annotations):
    (tmp_path / "annotations").mkdir(exist_ok=True)
    path = tmp_path / "annotations" / "captions_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def _coco_refused(tmp_path, images, annotations) -> str:
    path = _coco(tmp_path, images, annotations)
    with pytest.raises(ConfigError) as info:
        rows_from_coco_dir(tmp_path)
    assert str(path) in str(info.value)
    return str(info.value)


IMAGES = [{"id": 139, "file_name": "139.jpg"}, {"id": 285, "file_name": "285.jpg"}]
ANNOTATIONS = [{"id": 2, "image_id": 139, "caption": "b"}, {"id": 1, "image_id": 139, "caption": "a"},
               {"id": 3, "image_id": 285, "caption": "c"}]


def test_clean_coco_file_is_read_in_id_order(tmp_path):
    _coco(tmp_path, IMAGES[::-1], ANNOTATIONS)
    rows = rows_from_coco_dir(tmp_path)
    assert [(r.image_id, r.captions) for r in rows] == [(139, ("a", "b")), (285, ("c",))]
    assert rows[0].folder == str(tmp_path / "val2017")


def test_string_image_id_against_integer_image_ids_names_field_and_both_types(tmp_path):
    annotations = [{**a, "image_id": str(a["image_id"])} for a in ANNOTATIONS]
    message = _coco_refused(tmp_path, IMAGES, annotations)
    assert "annotations[0].image_id: is a str ('139') while the images' ids are int" in message
    assert "images[0].id = 139" in message and "3 structural problem(s)" in message


@pytest.mark.parametrize("images, annotations, expected", [
    ([{"id": "abc", "file_name": "a.jpg"}], [{"id": 1, "image_id": "abc", "caption": "a"}],
     "images[0].id: is the string 'abc'; expected an integer image id"),
    (IMAGES + [{"id": 139, "file_name": "x.jpg"}], ANNOTATIONS,
     "images[2].id: 139 repeats images[0].id; ids must be unique"),
    (IMAGES, ANNOTATIONS + [{"id": 9, "image_id": 999, "caption": "x"}],
     "annotations[3].image_id: 999 names no entry of 'images'"),
    (IMAGES + [{"id": 7, "file_name": "7.jpg"}], ANNOTATIONS,
     "images[2] (id 7, file_name '7.jpg'): has no caption in 'annotations'"),
    ([{"id": 139}], ANNOTATIONS[:2], "images[0].file_name: missing; expected the image's file name"),
    ([{"id": 139, "file_name": ""}], ANNOTATIONS[:2], "images[0].file_name: is the blank string ''"),
    (IMAGES, ANNOTATIONS + [{"id": 4, "image_id": 285, "caption": ["a", "b"]}],
     "annotations[3].caption: is a list ['a', 'b']; expected a caption string"),
    (IMAGES, ANNOTATIONS + [{"id": 4, "image_id": 285}], "annotations[3].caption: is a NoneType"),
    (IMAGES, ANNOTATIONS + ["a caption"], "annotations[3]: is a string 'a caption'; expected an object"),
])
def test_coco_structural_problems_are_named(tmp_path, images, annotations, expected):
    assert expected in _coco_refused(tmp_path, images, annotations)


def test_coco_file_that_is_not_the_schema(tmp_path):
    path = _coco(tmp_path, [], [])
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        rows_from_coco_dir(tmp_path)
    path.write_text(json.dumps({"images": {}, "annotations": []}))
    with pytest.raises(ConfigError, match="field 'images' is a dict; expected a list"):
        rows_from_coco_dir(tmp_path)
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ConfigError, match="field 'annotations' is no such key"):
        rows_from_coco_dir(tmp_path)



def test_a_huge_cell_is_shown_bounded_with_both_ends():
    """Cells are shown through config.shown: bounded, both ends of a long string kept."""
    assert captions_of(["x" * 100_000] * 3 + [7])[1] == "element 3 is a int 7; expected a caption string"
    for cell in ("y" * 100_000 + "end", b"y" * 100_000 + b"end", ["a dog", " " * 100_000 + "\t"]):
        problem = captions_of(cell)[1]
        assert len(problem) < 400 and ("end'" in problem or "\\t'" in problem), problem
