"""Chunk CSVs: atomic writes, and every way an existing CSV can be not-done."""
import pytest

from vlmbench.config import load_config
from vlmbench.results.records import (CSV_COLUMNS, chunk_csv_path, foreign_message, inspect_chunk, newest_first, quarantine,
                              read_chunk_csv, stamped_names, write_chunk_csv, write_config_snapshot)


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


LM4 = {"method": "nf4", "components": ["language_model"]}


def _defined(lm4=LM4, **more):
    """A config of fp16 and lm4 (and of the variants `more` defines)."""
    return load_config(overrides={"variants": ["fp16", "lm4", *more], "variant_definitions": {"lm4": lm4, **more}})


def test_foreign_message_names_a_changed_definition_and_spares_the_other_variants(tmp_path):
    old, new = _defined(), _defined({**LM4, "components": ["vision"]})
    write_config_snapshot(tmp_path, old, "20260101T000000", resolved={"images": 1})
    path = chunk_csv_path(tmp_path, "lm4", 0)
    write_chunk_csv(path, _rows([1], fingerprint=old.variant_fingerprint("lm4"), variant="lm4"))
    state = inspect_chunk(path, [1], new.variant_fingerprint("lm4"))
    message = foreign_message(tmp_path, path, state, new)
    assert state.status == "foreign" and f"made with another definition of variant 'lm4' (fingerprint " \
        f"{old.variant_fingerprint('lm4')}, this run's lm4 is {new.variant_fingerprint('lm4')})" in message
    assert "changed definition: variant_definitions.lm4.components: ['language_model'] -> ['vision']" in message
    assert "other variants' finished chunks are unaffected" in message and "move lm4_batch_*.csv out of" in message
    fp16 = chunk_csv_path(tmp_path, "fp16", 0)
    write_chunk_csv(fp16, _rows([1], fingerprint=old.variant_fingerprint("fp16")))
    assert inspect_chunk(fp16, [1], new.variant_fingerprint("fp16")).status == "complete"


def test_a_chunk_fingerprinted_with_every_definition_by_an_older_vlmbench_says_so(tmp_path):
    """Before per-variant fingerprints, every chunk carried a hash of all definitions; its snapshot has no
    variant_fingerprints. The fields match today's, so the message must explain why it is still foreign."""
    import yaml
    from vlmbench.config import fingerprint_of
    cfg = _defined(vit4={"method": "nf4", "components": ["vision"]})
    legacy = fingerprint_of(cfg.result_fields())  # what the experiment fingerprint hashed before
    snapshot = write_config_snapshot(tmp_path, cfg, "20260101T000000", resolved={"images": 1})
    data = yaml.safe_load(snapshot.read_text())
    del data["variant_fingerprints"]
    snapshot.write_text(yaml.safe_dump({**data, "fingerprint": legacy}))
    path = chunk_csv_path(tmp_path, "lm4", 0)
    write_chunk_csv(path, _rows([1], fingerprint=legacy, variant="lm4"))
    message = foreign_message(tmp_path, path, inspect_chunk(path, [1], cfg.variant_fingerprint("lm4")), cfg)
    assert f"fingerprint {legacy}, this run is {cfg.variant_fingerprint('lm4')}" in message
    assert "fingerprinted by a vlmbench before per-variant fingerprints" in message


def test_a_report_ignores_the_csvs_of_another_definition_only(tmp_path):
    from vlmbench.results.records import ignored_chunk_csvs, snapshots_by_fingerprint
    old, new = _defined(), _defined({**LM4, "options": {"double_quant": True}})
    snapshot = write_config_snapshot(tmp_path, old, "20260101T000000", resolved={"images": 1})
    for variant in old.variants:
        write_chunk_csv(chunk_csv_path(tmp_path, variant, 0),
                        _rows([1], fingerprint=old.variant_fingerprint(variant), variant=variant))
    assert ignored_chunk_csvs(tmp_path, new) == {old.variant_fingerprint("lm4"): ["lm4_batch_0.csv"]}
    assert ignored_chunk_csvs(tmp_path, old) == {}
    assert snapshots_by_fingerprint(tmp_path, variants=True)[old.variant_fingerprint("lm4")] == snapshot
    assert old.variant_fingerprint("lm4") not in snapshots_by_fingerprint(tmp_path)


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
    names = stamped_names(tmp_path, "summary_", "20260101T000000", ".json")
    assert [p.name for p in names[:2]] == ["summary_20260101T000000.json", "summary_20260101T000000_2.json"]


@pytest.mark.parametrize("column", ["generated_tokens", "config_fingerprint", "status"])
def test_a_huge_cell_gives_a_bounded_damage_reason(tmp_path, column):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    _write_edited(path, column, "9" * 100_000 + "end")
    reason = _damaged_reason(path)
    assert len(reason) < 300 and "end'" in reason, reason


# ---------------------------------------------------------------- issue 17: what vlmbench writes, it reads back
def test_a_caption_longer_than_the_csv_field_limit_reads_back_and_reports(tmp_path, capsys):
    """Python's csv refuses fields over 131,072 characters by default: such a caption, written by the real
    writer, made its chunk damaged on every rerun and vlmbench-report end in a traceback."""
    from tests.results_factory import tiny_config, write_results
    from vlmbench.cli import main
    long_caption = "a red circle " + "o" * 140_000  # over the limit in characters, few words to score (fast)
    path = chunk_csv_path(tmp_path, "fp16", 0)
    write_chunk_csv(path, [{**row, "caption": long_caption} for row in _rows([1, 2])])
    state = inspect_chunk(path, [1, 2], FP1)
    assert state.status == "complete", state.reason
    assert read_chunk_csv(path)[0]["caption"] == long_caption
    folder = tmp_path / "report"
    cfg = tiny_config(folder, 4, chunks=2)
    write_results(cfg, folder, image_cells={("int8", 3): {"caption": long_caption}})
    assert main([str(folder), "--tokenizer", "ptb-python"]) == 0, capsys.readouterr().err
    assert list(folder.glob("summary_*.json"))


class Killed(BaseException):
    """Stands for kill -9 in the middle of a write: nothing after it runs (no except OSError clean-up)."""


def test_a_write_killed_midway_leaves_no_file_under_a_final_name(tmp_path, monkeypatch):
    """The final name was reserved with an empty file before the write: a kill left an empty snapshot or summary."""
    from vlmbench.config import load_config
    from vlmbench.results.report import _write_summary

    def killed(fd):
        raise Killed()
    monkeypatch.setattr("vlmbench.paths.os.fsync", killed)
    with pytest.raises(Killed):
        write_config_snapshot(tmp_path, load_config(), "20260101T000000")
    with pytest.raises(Killed):
        _write_summary(tmp_path, {"variants": {}})
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
    monkeypatch.undo()
    first = write_config_snapshot(tmp_path, load_config(), "20260101T000000")
    assert first.name == "experiment_config_20260101T000000.yaml" and first.read_text().strip()


def test_a_set_aside_csv_keeps_its_bytes_and_leaves_no_placeholder(tmp_path):
    path = chunk_csv_path(tmp_path, "fp16", 0)
    path.write_text("torn")
    (tmp_path / f"{path.name}.damaged-20260101T000000").write_text("older")  # a name taken: the next one is used
    moved = quarantine(path)
    assert moved.read_text() == "torn" and not path.exists()
    assert all(p.stat().st_size > 0 for p in tmp_path.iterdir())


def _fifo(path):
    import os
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def test_a_fifo_under_a_chunk_csv_name_is_damaged_and_moved_aside_unopened(tmp_path, fifo_watchdog):
    import stat
    from vlmbench.paths import NotARegularFile
    from vlmbench.results.records import first_row_fingerprint
    path = _fifo(chunk_csv_path(tmp_path, "fp16", 0))
    state = inspect_chunk(path, [1, 2], FP1)
    assert state.status == "damaged" and "a FIFO (named pipe), not a regular file" in state.reason
    with pytest.raises(NotARegularFile, match="fp16_batch_0.csv"):
        read_chunk_csv(path)
    assert first_row_fingerprint(path) == "unreadable"
    moved = quarantine(path)
    assert stat.S_ISFIFO(moved.lstat().st_mode) and not path.exists()


# ---------------------------------------------------------------- issue 17: a finished chunk proves its rows
def _rewrite(path, edit):
    """Rewrites the CSV's text through `edit` (a hand edit: the digest is left as it was)."""
    path.write_bytes(edit(path.read_bytes()))


@pytest.mark.parametrize("edit", [
    lambda data: data.replace(b"a cat, on a mat", b"a dog, on a mat", 1),  # an edited caption
    lambda data: data.replace(b"\n1,1.jpg", b"\nX,1.jpg").replace(b"\n2,2.jpg", b"\n1,1.jpg").replace(
        b"\nX,1.jpg", b"\n2,2.jpg"),  # two rows' image ids (and file names) swapped
    lambda data: data.replace(b",0.5,", b",0.25,", 1),  # a measurement changed
])
def test_rows_that_do_not_match_their_digest_are_damaged_never_used(tmp_path, edit):
    from vlmbench.results.records import DamagedFile
    path = chunk_csv_path(tmp_path, "fp16", 0)
    rows = _rows([1, 2])
    rows[1]["caption"] = "two dogs"
    write_chunk_csv(path, rows)
    before = path.read_bytes()
    _rewrite(path, edit)
    assert path.read_bytes() != before
    assert "do not match their chunk_sha256" in _damaged_reason(path)
    with pytest.raises(DamagedFile, match="fp16_batch_0.csv: its rows do not match"):
        read_chunk_csv(path)


def test_a_csv_written_before_digests_is_complete_with_a_note(tmp_path):
    """No chunk_sha256 column (vlmbench before 2026-12-02): accepted, saying its rows are not proven."""
    import csv
    path = chunk_csv_path(tmp_path, "fp16", 0)
    write_chunk_csv(path, _rows([1, 2]))
    rows = read_chunk_csv(path)
    columns = [c for c in CSV_COLUMNS if c != "chunk_sha256"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    state = inspect_chunk(path, [1, 2], FP1)
    assert state.status == "complete" and "not proven unedited" in state.note
    assert read_chunk_csv(path)[0]["caption"] == "a cat, on a mat"
    write_chunk_csv(path, _rows([1, 2]))
    assert inspect_chunk(path, [1, 2], FP1).note == ""
