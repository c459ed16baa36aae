"""Dataset rows and chunks: where the images and reference captions come from.

Why it exists: every source (the Hub parquet, a local parquet, a local COCO folder, the generated
offline sample) is reduced to the same `ImageRow`, so the runner and the scorer never care where
an image lives. Chunking is deterministic for a given config, which is what makes resuming safe.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
import pandas as pd

from vlmbench.config import ConfigError, DatasetConfig, ExperimentConfig

PARQUET_COLUMNS = ("image_id", "file_name", "coco_url", "captions")


@dataclass(frozen=True)
class ImageRow:
    image_id: int
    file_name: str
    source: str  # a local path or an http(s) URL
    captions: tuple[str, ...]


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def load_rows(cfg: ExperimentConfig) -> list[ImageRow]:
    """All rows the experiment uses: `limit` rows of the configured source, in a fixed order."""
    rows = _all_rows(cfg)
    if cfg.dataset.present_images_only:
        rows = [r for r in rows if is_url(r.source) or Path(r.source).is_file()]
    if cfg.dataset.shuffle:
        random.Random(cfg.seed).shuffle(rows)
    if cfg.dataset.limit > len(rows):
        raise ConfigError(f"config key 'dataset.limit' is {cfg.dataset.limit} but the data source has only "
                          f"{len(rows)} images; lower the limit to at most {len(rows)}.")
    return rows[: cfg.dataset.limit]


def make_chunks(rows: list[ImageRow], chunk_size: int) -> list[list[ImageRow]]:
    return [rows[i: i + chunk_size] for i in range(0, len(rows), chunk_size)]


def _all_rows(cfg: ExperimentConfig) -> list[ImageRow]:
    ds = cfg.dataset
    if ds.synthetic_images is not None:
        from vlmbench.sample import ensure_synthetic_sample
        return rows_from_coco_dir(ensure_synthetic_sample(ds.synthetic_images, cfg.seed))
    if ds.coco_dir is not None:
        return rows_from_coco_dir(Path(ds.coco_dir))
    if ds.parquet_path is not None:
        return rows_from_parquet(Path(ds.parquet_path), ds)
    from vlmbench.hub import download_parquet
    return rows_from_parquet(download_parquet(ds), ds)


def rows_from_coco_dir(root: Path) -> list[ImageRow]:
    """Rows of a standard COCO folder, ordered by image id."""
    ann_path = root / "annotations" / "captions_val2017.json"
    if not ann_path.is_file():
        raise ConfigError(f"COCO folder {str(root)!r} has no annotations/captions_val2017.json; point "
                          "dataset.coco_dir at a folder holding val2017/ and annotations/.")
    annotations = json.loads(ann_path.read_text())
    captions: dict[int, list[tuple[int, str]]] = {}
    for ann in annotations["annotations"]:
        captions.setdefault(ann["image_id"], []).append((ann["id"], ann["caption"]))
    images = sorted(annotations["images"], key=lambda im: im["id"])
    return [ImageRow(im["id"], im["file_name"], str(root / "val2017" / im["file_name"]),
                     tuple(c for _, c in sorted(captions.get(im["id"], []))))
            for im in images]


def rows_from_parquet(path: Path, ds: DatasetConfig) -> list[ImageRow]:
    """Rows of a parquet in the phiyodr/coco2017 schema; columns are selected by name."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise ConfigError(f"cannot read parquet {str(path)!r}: {exc}. Check dataset.parquet_path.") from exc
    missing = [c for c in PARQUET_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"parquet {str(path)!r} lacks columns {missing}; expected the phiyodr/coco2017 schema "
                          f"with {', '.join(PARQUET_COLUMNS)}. Found: {', '.join(map(str, frame.columns))}.")
    return [ImageRow(int(r.image_id), str(r.file_name), image_source(r.file_name, r.coco_url, ds),
                     tuple(str(c) for c in r.captions))
            for r in frame[list(PARQUET_COLUMNS)].itertuples(index=False)]


def image_source(file_name: str, coco_url: str, ds: DatasetConfig) -> str:
    """A local file when an image folder is configured, else the (optionally mirrored) URL."""
    if ds.image_dir:
        return str(Path(ds.image_dir) / file_name)
    if ds.image_url_prefix:
        return ds.image_url_prefix.rstrip("/") + "/" + coco_url.split("://", 1)[-1].split("/", 1)[-1]
    return str(coco_url)

