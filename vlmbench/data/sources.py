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
from typing import Optional

import pandas as pd

from vlmbench.config import ConfigError, DatasetConfig, ExperimentConfig, shown
from vlmbench.data.checks import (EXCERPT_CHARS, Problems, caption_problem, captions_of, file_name_problem, image_id_of,
                                is_missing, type_name)
from vlmbench.data.safenames import UnsafeFileName, confined_path

PARQUET_COLUMNS = ("image_id", "file_name", "coco_url", "captions")


@dataclass(frozen=True)
class ImageRow:
    image_id: int
    file_name: str
    source: str  # a local path or an http(s) URL
    captions: tuple[str, ...]
    folder: Optional[str] = None  # the image folder a local file_name must stay inside (None: source as given)

    def local_path(self) -> Path:
        """The local file to read; raises UnsafeFileName when file_name would lead out of `folder`."""
        if self.folder is None:
            return Path(self.source)
        return confined_path(self.folder, self.file_name)

    def is_present(self) -> bool:
        """A local file that exists inside its folder."""
        try:
            return self.local_path().is_file()
        except UnsafeFileName:
            return False


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def load_rows(cfg: ExperimentConfig) -> list[ImageRow]:
    """All rows the experiment uses: `limit` rows of the configured source, in a fixed order."""
    rows = _all_rows(cfg)
    if cfg.dataset.present_images_only:
        rows = [r for r in rows if is_url(r.source) or r.is_present()]
    if cfg.dataset.shuffle:
        random.Random(cfg.seed).shuffle(rows)
    if not rows:
        kept = " present on disk (dataset.present_images_only)" if cfg.dataset.present_images_only else ""
        raise ConfigError(f"the data source has no images{kept}; check the dataset keys of the config.")
    if cfg.dataset.limit > len(rows):
        raise ConfigError(f"config key 'dataset.limit' is {cfg.dataset.limit} but the data source has only "
                          f"{len(rows)} images; lower the limit to at most {len(rows)}.")
    return rows[: cfg.dataset.limit]


def make_chunks(rows: list[ImageRow], chunk_size: int) -> list[list[ImageRow]]:
    return [rows[i: i + chunk_size] for i in range(0, len(rows), chunk_size)]


def _all_rows(cfg: ExperimentConfig) -> list[ImageRow]:
    ds = cfg.dataset
    if ds.synthetic_images is not None:
        from vlmbench.data.sample import ensure_synthetic_sample
        return rows_from_coco_dir(ensure_synthetic_sample(ds.synthetic_images, cfg.seed))
    if ds.coco_dir is not None:
        return rows_from_coco_dir(Path(ds.coco_dir))
    if ds.parquet_path is not None:
        return rows_from_parquet(Path(ds.parquet_path), ds)
    from vlmbench.data.hub import download_parquet
    return rows_from_parquet(download_parquet(ds), ds)


def rows_from_coco_dir(root: Path) -> list[ImageRow]:
    """Rows of a standard COCO folder, ordered by image id; the annotation file is checked structurally
    (vlmbench.data.checks) and every problem is named with its field, e.g. `annotations[12].image_id`."""
    ann_path = root / "annotations" / "captions_val2017.json"
    if not ann_path.is_file():
        raise ConfigError(f"COCO folder {str(root)!r} has no annotations/captions_val2017.json; point "
                          "dataset.coco_dir at a folder holding val2017/ and annotations/.")
    doc = _read_coco_json(ann_path)
    problems = Problems(str(ann_path))
    images = _coco_images(doc["images"], problems)
    before = len(problems.found)
    captions = _coco_captions(doc["annotations"], images, problems)
    for image_id, (index, name) in images.items():
        if image_id not in captions and len(problems.found) == before:  # else the annotations' problems say why
            problems.add(f"images[{index}] (id {image_id}, file_name {name!r})", "has no caption in 'annotations'; "
                         "every image needs at least one reference caption")
    problems.raise_if_any("Fix the annotation file (the COCO captions schema: images[].id int, images[].file_name "
                          "str, annotations[].image_id int, annotations[].caption str).")
    folder = root / "val2017"
    return [ImageRow(image_id, name, str(folder / name), captions[image_id], folder=str(folder))
            for image_id, (_, name) in sorted(images.items())]


def _read_coco_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"COCO annotation file {str(path)!r} is not valid JSON: {exc}.") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"COCO annotation file {str(path)!r} holds {type_name(doc)}; expected an object with "
                          "'images' and 'annotations' lists.")
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            found = "no such key" if key not in doc else type_name(doc[key])
            raise ConfigError(f"COCO annotation file {str(path)!r}: field '{key}' is {found}; expected a list "
                              "(the COCO captions schema).")
    return doc


def _is_object(entry, where: str, keys: str, problems: Problems) -> bool:
    """True for a JSON object; else the problem (what `where` holds instead, and the `keys` expected) is added."""
    if isinstance(entry, dict):
        return True
    problems.add(where, f"is {type_name(entry)} {shown(entry, EXCERPT_CHARS)}; expected an object with {keys}")
    return False


def _coco_images(entries: list, problems: Problems) -> dict[int, tuple[int, str]]:
    """image id -> (its index in 'images', file_name); problems are added, bad entries left out."""
    images: dict[int, tuple[int, str]] = {}
    for index, entry in enumerate(entries):
        where = f"images[{index}]"
        if not _is_object(entry, where, "id and file_name", problems):
            continue
        image_id, id_problem = image_id_of(entry.get("id"))
        problems.add(where + ".id", id_problem)
        name_problem = file_name_problem(entry.get("file_name"))
        problems.add(where + ".file_name", name_problem)
        if image_id in images:
            problems.add(where + ".id", f"{image_id} repeats images[{images[image_id][0]}].id; ids must be unique")
        elif not (id_problem or name_problem):
            images[image_id] = (index, entry["file_name"])
    return images


def _coco_captions(entries: list, images: dict, problems: Problems) -> dict[int, tuple[str, ...]]:
    """image id -> its reference captions, ordered by annotation id; problems are added."""
    found: dict[int, list[tuple[tuple, str]]] = {}
    example = next(iter(images), None)
    for index, entry in enumerate(entries):
        where = f"annotations[{index}]"
        if not _is_object(entry, where, "image_id and caption", problems):
            continue
        raw_id = entry.get("image_id")
        image_id, id_problem = image_id_of(raw_id)
        if isinstance(raw_id, str) and example is not None:
            id_problem = (f"is a {type(raw_id).__name__} ({raw_id!r:.40}) while the images' ids are int (e.g. "
                          f"images[{images[example][0]}].id = {example}); they never match, so images would get no "
                          "references. Write image_id as an integer")
        if not id_problem and image_id not in images:
            id_problem = f"{image_id} names no entry of 'images' (or only one with a problem)"
        text_problem = caption_problem(entry.get("caption"))
        problems.add(where + ".image_id", id_problem)
        problems.add(where + ".caption", text_problem)
        if not (id_problem or text_problem):
            found.setdefault(image_id, []).append((_annotation_order(entry.get("id"), index), entry["caption"]))
    return {image_id: tuple(c for _, c in sorted(pairs)) for image_id, pairs in found.items()}


def _annotation_order(annotation_id, index: int) -> tuple:
    """References are ordered by annotation id (the file's order where ids are not integers)."""
    return (0, annotation_id, index) if isinstance(annotation_id, int) else (1, 0, index)


def rows_from_parquet(path: Path, ds: DatasetConfig) -> list[ImageRow]:
    """Rows of a parquet in the phiyodr/coco2017 schema; columns are selected by name and every cell is
    checked structurally (vlmbench.data.checks), each problem named by row (from 0) and column."""
    frame = _read_parquet(path, _needed_columns(ds))
    problems = Problems(str(path))
    rows, first_row_of = [], {}
    for index, record in enumerate(frame.to_dict("records")):
        row = _parquet_row(index, record, ds, problems)
        if row is not None and row.image_id in first_row_of:
            problems.add(f"row {index}, column 'image_id'", f"{row.image_id} repeats row {first_row_of[row.image_id]};"
                         " image ids must be unique")
        elif row is not None:
            first_row_of[row.image_id] = index
            rows.append(row)
    problems.raise_if_any("Fix the parquet (the phiyodr/coco2017 schema: image_id int, file_name str, coco_url "
                          "str, captions list of str) or point dataset.parquet_path at another file.")
    return rows


def _needed_columns(ds: DatasetConfig) -> tuple[str, ...]:
    """coco_url is needed only when images come by URL (no dataset.image_dir)."""
    return PARQUET_COLUMNS if not ds.image_dir else tuple(c for c in PARQUET_COLUMNS if c != "coco_url")


def _read_parquet(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise ConfigError(f"cannot read parquet {str(path)!r}: {exc}. Check dataset.parquet_path.") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"parquet {str(path)!r} lacks columns {missing}; expected the phiyodr/coco2017 schema "
                          f"with {', '.join(columns)}. Found: {', '.join(map(str, frame.columns))}.")
    return frame[[c for c in PARQUET_COLUMNS if c in frame.columns]]


def _parquet_row(index: int, record: dict, ds: DatasetConfig, problems: Problems) -> Optional[ImageRow]:
    where = f"row {index}, column"
    image_id, id_problem = image_id_of(record["image_id"])
    captions, captions_problem = captions_of(record["captions"])
    name_problem = file_name_problem(record["file_name"])
    url_problem = None if ds.image_dir else url_problem_of(record.get("coco_url"))
    label = f" (image_id {image_id})" if image_id is not None else ""
    for column, problem in (("image_id", id_problem), ("file_name", name_problem), ("coco_url", url_problem),
                            ("captions", captions_problem)):
        problems.add(f"{where} '{column}'{label if column != 'image_id' else ''}", problem)
    if id_problem or captions_problem or name_problem or url_problem:
        return None
    name = record["file_name"]
    folder = ds.image_dir or None
    return ImageRow(image_id, name, image_source(name, record.get("coco_url"), ds), captions, folder=folder)


def url_problem_of(value) -> Optional[str]:
    if isinstance(value, str) and is_url(value):
        return None
    if is_missing(value):
        return "missing; expected an http(s) URL (or set dataset.image_dir)"
    return f"is {type_name(value)} {shown(value, EXCERPT_CHARS)}; expected an http(s) URL (or set dataset.image_dir)"


def image_source(file_name: str, coco_url: str, ds: DatasetConfig) -> str:
    """A local file when an image folder is configured, else the (optionally mirrored) URL."""
    if ds.image_dir:
        return str(Path(ds.image_dir) / file_name)
    if ds.image_url_prefix:
        return ds.image_url_prefix.rstrip("/") + "/" + coco_url.split("://", 1)[-1].split("/", 1)[-1]
    return str(coco_url)

