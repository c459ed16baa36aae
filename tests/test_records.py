"""Chunk CSVs: atomic writes, and every way an existing CSV can be not-done."""
from vlmbench.config import load_config
from vlmbench.records import (CSV_COLUMNS, chunk_csv_path, foreign_message, inspect_chunk, quarantine,
                              read_chunk_csv, write_chunk_csv, write_config_snapshot)


def _rows(ids, fingerprint="fp1"):
    return [{"image_id": i, "file_name": f"{i}.jpg", "variant": "fp16", "chunk_id": 0, "status": "ok", "error": "",
             "caption": "a cat, on a mat", "generated_tokens": 3, "micro_batch_index": 0, "micro_batch_size": 2,
             "micro_batch_s": 0.5, "latency_s": None, "config_fingerprint": fingerprint} for i in ids]


def test_round_trip_and_complete(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    write_chunk_csv(path, _rows([1, 2]))
    assert path.name == "fp16_batch_0.csv"
    rows = read_chunk_csv(path)
    assert list(rows[0]) == CSV_COLUMNS and rows[0]["caption"] == "a cat, on a mat" and rows[0]["latency_s"] == ""
    assert inspect_chunk(path, [2, 1], "fp1").status == "complete"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_missing_truncated_short_and_foreign(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    assert inspect_chunk(path, [1, 2], "fp1").status == "missing"
    write_chunk_csv(path, _rows([1, 2, 3]))
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # a torn last line
    state = inspect_chunk(path, [1, 2, 3], "fp1")
    assert state.status == "damaged" and "incomplete" in state.reason
    write_chunk_csv(path, _rows([1, 2]))
    state = inspect_chunk(path, [1, 2, 3], "fp1")
    assert state.status == "damaged" and "holds 2 rows, expected the chunk's 3 images" in state.reason
    path.write_text("image_id,caption\n1,x\n")
    assert "missing columns" in inspect_chunk(path, [1], "fp1").reason
    path.write_text("")
    assert inspect_chunk(path, [1], "fp1").status == "damaged"
    write_chunk_csv(path, _rows([1, 2], fingerprint="other"))
    state = inspect_chunk(path, [1, 2], "fp1")
    assert state.status == "foreign" and state.fingerprint == "other"


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
    state = inspect_chunk(path, [1, 2, 3, 4], "fp1")
    assert state.status == "complete" and state.failed == {"unavailable": 2, "undecodable": 1}
    assert state.unavailable_ids == [2, 4]
    assert state.failed_summary() == "3 failed rows (unavailable: 2, undecodable: 1)"
    write_chunk_csv(path, _rows([1]))
    assert inspect_chunk(path, [1], "fp1").failed_summary() == ""
