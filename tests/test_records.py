"""Chunk CSVs: atomic writes, and every way an existing CSV can be not-done."""
import pytest

from vlmbench.config import load_config
from vlmbench.results.records import (CSV_COLUMNS, chunk_csv_path, foreign_message, inspect_chunk, newest_first, quarantine,
                              read_chunk_csv, unique_path, write_chunk_csv, write_config_snapshot)


FP1, OTHER = "0123456789abcdef", "fedcba9876543210"


def _rows(ids, fingerprint=FP1, variant="fp16", chunk_id=0):
    return [{"image_id": i, "file_name": f"{i}.jpg", "variant": variant, "chunk_id": chunk_id, "status": "ok",
             "error": "", "caption": "a cat, on a mat", "generated_tokens": 3, "micro_batch_index": 0,
             "micro_batch_size": 2, "micro_batch_s": 0.5, "latency_s": None, "chunk_wall_s": 1.0,
             "chunk_images_ok": len(ids), "measure_notes": "{}", "config_fingerprint": fingerprint} for i in ids]


def test_round_trip_and_complete(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    write_chunk_csv(path, _rows([1, 2]))
    assert path.name == "fp16_batch_0.csv"
    rows = read_chunk_csv(path)
    assert list(rows[0]) == CSV_COLUMNS and rows[0]["caption"] == "a cat, on a mat" and rows[0]["latency_s"] == ""
    assert inspect_chunk(path, [2, 1], FP1).status == "complete"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_missing_truncated_short_and_foreign(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    assert inspect_chunk(path, [1, 2], FP1).status == "missing"
    write_chunk_csv(path, _rows([1, 2, 3]))
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # a torn last line
    state = inspect_chunk(path, [1, 2, 3], FP1)
    assert state.status == "damaged" and "incomplete" in state.reason
    write_chunk_csv(path, _rows([1, 2]))
    state = inspect_chunk(path, [1, 2, 3], FP1)
    assert state.status == "damaged" and "holds 2 rows, expected the chunk's 3 images" in state.reason
    path.write_text("image_id,caption\n1,x\n")
    assert "missing columns" in inspect_chunk(path, [1], FP1).reason
    path.write_text("")
    assert inspect_chunk(path, [1], FP1).status == "damaged"
    write_chunk_csv(path, _rows([1, 2], fingerprint=OTHER))
    state = inspect_chunk(path, [1, 2], FP1)
    assert state.status == "foreign" and state.fingerprint == OTHER


def test_quarantine_keeps_the_file(tmp_path):
    path = chunk_csv_path(tmp_path, "int8", 3)
    path.write_text("half")
    moved = quarantine(path)
    assert not path.exists() and moved.read_text() == "half" and moved.name.startswith("int8_batch_3.csv.damaged-")


def test_foreign_message_names_the_differing_fields(tmp_path):
    old = load_config(overrides={"seed": 1})
    new = load_config()
    write_config_snapshot(tmp_path, old, "20260101T000000", resolved={"images": 1})
    path = chunk_csv_path(tmp_path, "fp16", 0)
    write_chunk_csv(path, _rows([1], fingerprint=old.fingerprint))
    message = foreign_message(tmp_path, path, inspect_chunk(path, [1], new.fingerprint), new)
    assert "seed: 1 -> 42" in message and "--vlm-results" in message and old.fingerprint in message


def test_complete_chunk_counts_its_failed_rows_by_kind(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    rows = _rows([1, 2, 3, 4])
    errors = {2: "unavailable: FileNotFoundError: image file not found: 2.jpg",
              3: "undecodable: OSError: Truncated File Read",
              4: "DownloadError: download failed: http://h/4.jpg: HTTP 503"}  # written before the kind prefix
    for row in rows:
        if row["image_id"] in errors:
            row.update(status="failed", error=errors[row["image_id"]], caption="")
    write_chunk_csv(path, rows)
    state = inspect_chunk(path, [1, 2, 3, 4], FP1)
    assert state.status == "complete" and state.failed == {"unavailable": 2, "undecodable": 1}
    assert state.unavailable_ids == [2, 4]
    assert state.failed_summary() == "3 failed rows (unavailable: 2, undecodable: 1)"
    write_chunk_csv(path, _rows([1]))
    assert inspect_chunk(path, [1], "fp1").failed_summary() == ""


def _damaged_reason(path, expected=(1, 2), fingerprint=FP1):
    state = inspect_chunk(path, list(expected), fingerprint)
    assert state.status == "damaged", state
    return state.reason


def _write_edited(path, column, value, row=0):
    rows = _rows([1, 2])
    rows[row][column] = value
    write_chunk_csv(path, rows)


@pytest.mark.parametrize("column, value", [
    ("generated_tokens", "many"), ("latency_s", "fast"), ("chunk_wall_s", "1.0s"), ("chunk_wall_s", None),
    ("chunk_images_ok", "two"), ("image_id", "x1"), ("micro_batch_s", "nan"), ("chunk_energy_j", "inf"),
    ("measure_notes", "[not json"), ("generated_tokens", None)])
def test_text_in_a_numeric_column_is_damaged_not_complete(tmp_path, column, value):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    _write_edited(path, column, value)
    assert "row 1" in _damaged_reason(path)


def test_empty_where_allowed_is_complete(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    rows = _rows([1, 2])
    rows[1].update(status="failed", generated_tokens=None, micro_batch_s=None, caption="")
    rows[0]["chunk_energy_j"] = None
    write_chunk_csv(path, rows)
    assert inspect_chunk(path, [1, 2], FP1).status == "complete"


def test_variant_or_chunk_id_disagreeing_with_the_file_name_is_damaged(tmp_path):
    path = chunk_csv_path(tmp_path, "int8_vit", 1)
    write_chunk_csv(path, _rows([1, 2], variant="int8_vit", chunk_id=1))
    assert inspect_chunk(path, [1, 2], FP1).status == "complete"
    write_chunk_csv(path, _rows([1, 2], variant="int8", chunk_id=1))
    assert "do not match the file name" in _damaged_reason(path)
    write_chunk_csv(path, _rows([1, 2], variant="int8_vit", chunk_id=0))
    assert "do not match the file name" in _damaged_reason(path)


def test_other_images_with_the_right_count_are_damaged(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    write_chunk_csv(path, _rows([1, 3]))
    assert "other than the chunk's 2 images" in _damaged_reason(path)


@pytest.mark.parametrize("cut", [1, 5, 15])
def test_a_row_torn_inside_its_fingerprint_is_damaged_not_foreign(tmp_path, cut):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    write_chunk_csv(path, _rows([1]))
    data = path.read_bytes()
    assert data.endswith(FP1.encode() + b"\r\n")
    path.write_bytes(data[: len(data) - 2 - cut])  # drop the line end and `cut` fingerprint characters
    _damaged_reason(path, expected=[1])
    path.write_bytes(data[: len(data) - 2])  # only the line end is missing
    _damaged_reason(path, expected=[1])


def test_a_damaged_file_of_another_experiment_is_damaged_not_foreign(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    rows = _rows([1, 2], fingerprint=OTHER)
    rows[0]["latency_s"] = "oops"
    write_chunk_csv(path, rows)
    _damaged_reason(path)


def test_names_of_one_second_do_not_collide_and_sort_in_order(tmp_path):
    cfg = load_config()
    paths = [write_config_snapshot(tmp_path, cfg, "20260101T000000") for _ in range(3)]
    assert [p.name for p in paths] == ["experiment_config_20260101T000000.yaml",
                                       "experiment_config_20260101T000000_2.yaml",
                                       "experiment_config_20260101T000000_3.yaml"]
    later = write_config_snapshot(tmp_path, cfg, "20260101T000001")
    assert newest_first(tmp_path.glob("*.yaml")) == [later] + paths[::-1]
    assert unique_path(tmp_path, "summary_", "20260101T000000", ".json").name == "summary_20260101T000000.json"


@pytest.mark.parametrize("column", ["generated_tokens", "config_fingerprint", "status"])
def test_a_huge_cell_gives_a_bounded_damage_reason(tmp_path, column):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    _write_edited(path, column, "9" * 100_000 + "end")
    reason = _damaged_reason(path)
    assert len(reason) < 300 and "end'" in reason, reason
