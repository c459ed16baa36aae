"""Data sources and chunking: the generated sample, a local COCO folder, a local parquet."""
import pandas as pd
import pytest

from vlmbench.config import ConfigError, load_config
from vlmbench.data.sources import load_rows, make_chunks, rows_from_parquet
from vlmbench.data.sample import ensure_synthetic_sample


def test_chunks_are_deterministic_and_cover_all_rows():
    rows = list(range(10))
    chunks = make_chunks(rows, 4)
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert make_chunks(rows, 4) == chunks
    cfg = load_config(overrides={"dataset.limit": 10, "inference.batch_size": 4, "inference.micro_batch_size": 2})
    assert cfg.num_chunks == 3
    assert load_config().num_chunks == 5  # the seed: 5000 images in chunks of 1000


def test_synthetic_sample_is_deterministic_and_in_coco_layout(write_config):
    cfg = load_config(write_config({"dataset": {"synthetic_images": 6, "limit": 6}}))
    rows = load_rows(cfg)
    assert len(rows) == 6 and all(len(r.captions) == 5 for r in rows)
    root = ensure_synthetic_sample(6, cfg.seed)
    assert (root / "annotations" / "captions_val2017.json").is_file()
    assert sorted(p.name for p in (root / "val2017").iterdir()) == [r.file_name for r in rows]
    assert rows == load_rows(cfg)


def test_limit_larger_than_source_is_refused(write_config):
    cfg = load_config(write_config({"dataset": {"synthetic_images": 3, "limit": 5}}))
    with pytest.raises(ConfigError, match="'dataset.limit' is 5 but the data source has only 3 images"):
        load_rows(cfg)


def test_shuffle_is_seeded(write_config):
    base = {"dataset": {"synthetic_images": 8, "limit": 8, "shuffle": True}}
    a = [r.image_id for r in load_rows(load_config(write_config(base)))]
    b = [r.image_id for r in load_rows(load_config(write_config(base)))]
    c = [r.image_id for r in load_rows(load_config(write_config({**base, "seed": 1})))]
    assert a == b and sorted(a) == list(range(1, 9)) and a != c


def test_local_coco_folder(coco_sample, write_config):
    cfg = load_config(write_config({"dataset": {"synthetic_images": None, "coco_dir": str(coco_sample),
                                                "limit": 64, "present_images_only": True}}))
    rows = load_rows(cfg)
    assert len(rows) == 64
    assert rows[0].image_id == 139 and rows[0].file_name == "000000000139.jpg"
    assert all(len(r.captions) >= 5 for r in rows)
    assert all(r.source.endswith(r.file_name) for r in rows)


def test_local_coco_folder_without_annotations(tmp_path, write_config):
    cfg = load_config(write_config({"dataset": {"synthetic_images": None, "coco_dir": str(tmp_path)}}))
    with pytest.raises(ConfigError, match="has no annotations/captions_val2017.json"):
        load_rows(cfg)


def test_parquet_in_hub_schema_with_local_images(coco_sample, write_config):
    parquet = coco_sample / "phiyodr-coco2017-validation.derived.parquet"
    cfg = load_config(write_config({"dataset": {"synthetic_images": None, "parquet_path": str(parquet),
                                                "image_dir": str(coco_sample / "val2017"), "limit": 5000}}))
    rows = load_rows(cfg)
    assert len(rows) == 5000
    frame = pd.read_parquet(parquet)
    assert rows[0].image_id == int(frame.image_id[0]) and list(rows[0].captions) == list(frame.captions[0])
    assert rows[0].source == str(coco_sample / "val2017" / frame.file_name[0])


def test_parquet_urls_and_mirror(coco_sample):
    from vlmbench.config import DatasetConfig
    parquet = coco_sample / "phiyodr-coco2017-validation.derived.parquet"
    rows = rows_from_parquet(parquet, DatasetConfig())
    assert rows[0].source.startswith("http://images.cocodataset.org/val2017/")
    mirrored = rows_from_parquet(parquet, DatasetConfig(image_url_prefix="http://127.0.0.1:9/coco/"))
    assert mirrored[0].source == "http://127.0.0.1:9/coco/val2017/" + rows[0].file_name


def test_parquet_without_the_schema(tmp_path):
    from vlmbench.config import DatasetConfig
    path = tmp_path / "x.parquet"
    pd.DataFrame({"image_id": [1], "file_name": ["a.jpg"]}).to_parquet(path)
    with pytest.raises(ConfigError, match=r"lacks columns \['coco_url', 'captions'\]"):
        rows_from_parquet(path, DatasetConfig())
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="cannot read parquet"):
        rows_from_parquet(tmp_path / "junk.parquet", DatasetConfig())
