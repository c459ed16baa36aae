"""Preflight: before any model loads, can every image of the pending chunks be had?

Why it exists: finding out after an hour of fp16 that the int8 images are offline wastes the GPU.
Local files are checked for existence; URLs are counted as cached or to be downloaded, and when the
Hub is offline (HF_HUB_OFFLINE / VLMBENCH_OFFLINE) the uncached ones are missing. Missing images stop
the run with a message naming them, unless `dataset.allow_missing_images` records them as failed.
"""
from __future__ import annotations

from vlmbench.config import ConfigError, ExperimentConfig
from vlmbench.data.sources import ImageRow, is_url
from vlmbench.data.safenames import UnsafeFileName
from vlmbench.offline import offline


def classify(rows: list[ImageRow], cache) -> dict[str, list[ImageRow]]:
    """Sorts rows into available (local or cached), to_download, and missing."""
    groups = {"available": [], "to_download": [], "missing": []}
    for row in rows:
        if not is_url(row.source):
            groups["available" if row.is_present() else "missing"].append(row)
        elif cache.has(row.source):
            groups["available"].append(row)
        else:
            groups["missing" if offline() else "to_download"].append(row)
    return groups


def run_preflight(cfg: ExperimentConfig, rows: list[ImageRow], cache=None) -> list[str]:
    """Downloads what is missing from the image cache (in parallel), then checks every image is there.

    Returns notes for the run; raises ConfigError when images are missing and that is not allowed.
    """
    from vlmbench.data.fetch import image_cache_for
    cache = cache or image_cache_for(cfg)
    groups = classify(rows, cache)
    notes = [f"preflight: {len(rows)} images in pending chunks: {len(groups['available'])} available, "
             f"{len(groups['to_download'])} to download, {len(groups['missing'])} missing"]
    errors = {r.source: missing_reason(r) for r in groups["missing"]}
    if groups["to_download"]:
        fetched = cache.prefetch([r.source for r in groups["to_download"]], cfg.dataset.download_workers)
        failed = {url: err for url, err in fetched.items() if err}
        errors.update(failed)
        notes.append(f"preflight: downloaded {len(fetched) - len(failed)} images into {cache.root}, "
                     f"{len(failed)} failed")
    if errors and not cfg.dataset.allow_missing_images:
        raise ConfigError(_missing_message(rows, errors))
    if errors:
        notes.append(f"preflight: {len(errors)} images unavailable; recorded as failed (allow_missing_images)")
    return notes


def now_available(cfg: ExperimentConfig, rows: list[ImageRow], cache=None) -> list[ImageRow]:
    """The rows whose image can be had now: an existing local file, a cached URL, or a URL that
    downloads now (into the image cache, where the run will find it)."""
    from vlmbench.data.fetch import image_cache_for
    cache = cache or image_cache_for(cfg)
    groups = classify(rows, cache)
    urls = [r.source for r in groups["to_download"]]
    fetched = cache.prefetch(urls, cfg.dataset.download_workers) if urls else {}
    return groups["available"] + [r for r in groups["to_download"] if fetched[r.source] is None]


def missing_reason(row: ImageRow) -> str:
    """Why preflight counts a row as missing: offline, absent, or a file name that escapes its folder."""
    if is_url(row.source):
        return "offline and not in the image cache"
    try:
        row.local_path()
    except UnsafeFileName as exc:
        return str(exc)
    return "file not found"


def _missing_message(rows: list[ImageRow], errors: dict[str, str]) -> str:
    missing = [r for r in rows if r.source in errors]
    names = ", ".join(r.file_name for r in missing[:5]) + (" ..." if len(missing) > 5 else "")
    first = errors[missing[0].source]
    return (f"{len(missing)} of {len(rows)} images cannot be had ({names}); first reason: {first}. Fix the image "
            "source (dataset.image_dir / dataset.coco_dir), go online, or set dataset.allow_missing_images: true "
            "to record them as failed images.")
