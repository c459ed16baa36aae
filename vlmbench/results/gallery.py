"""The images on which the variants' captions differ most from the baseline's, for report.html.

Why it exists: CIDEr-D and its interval say how much quality moved, not what changed. A reader
decides faster from a few images with each variant's caption beside the baseline's: this module
picks them (largest per-image CIDEr-D gap first, then most differing captions), marks the words
that differ (difflib, word level), flags degenerate captions (vlmbench.scoring.degenerate) and makes
small JPEG thumbnails from the run's data source. It reads images only from disk (a local folder,
the generated sample, the image cache); it never downloads, and a missing image is a reason.
"""
from __future__ import annotations

import base64
import difflib
import io
from dataclasses import dataclass, field
from typing import Callable, Optional

GALLERY_SIZE = 8
THUMBNAIL_PX = 192


@dataclass
class Caption:
    """One variant's output for one image: caption (None when the image failed), why it failed,
    its degenerate kinds and its per-image CIDEr-D (None when not scored)."""
    text: Optional[str]
    error: str = ""
    degenerate: list[str] = field(default_factory=list)
    cider: Optional[float] = None


@dataclass
class GalleryImage:
    image_id: int
    file_name: str
    references: list[str]
    captions: dict[str, Caption]  # variant -> Caption, the baseline first
    gap: float  # largest |CIDEr-D(variant) - CIDEr-D(baseline)| on this image, 0 when unscored
    differing: int  # variants whose caption differs from the baseline's


# ---------------------------------------------------------------- choosing
def captions_by_image(rows_by_variant: dict, summary: dict, max_new_tokens: int,
                      forced_length: bool) -> dict[int, dict[str, Caption]]:
    """image id -> variant -> Caption, from chunk-CSV rows and the summary's `cider_per_image`."""
    from vlmbench.scoring.degenerate import kinds_of
    out: dict[int, dict[str, Caption]] = {}
    for variant, rows in rows_by_variant.items():
        scores = summary["variants"].get(variant, {}).get("cider_per_image") or {}
        for row in rows:
            image_id = int(row["image_id"])
            if row["status"] != "ok":
                out.setdefault(image_id, {})[variant] = Caption(None, row.get("error") or "failed")
                continue
            kinds = kinds_of(row.get("caption") or "", row.get("generated_tokens"), max_new_tokens)
            kinds = [k for k in kinds if not (forced_length and k == "hit_max_new_tokens")]
            out.setdefault(image_id, {})[variant] = Caption(row.get("caption") or "", "", kinds,
                                                            scores.get(str(image_id)))
    return out


def _gap(captions: dict[str, Caption], baseline: str) -> float:
    base = captions.get(baseline)
    if base is None or base.cider is None:
        return 0.0
    return max((abs(c.cider - base.cider) for c in captions.values() if c.cider is not None), default=0.0)


def _differing(captions: dict[str, Caption], baseline: str) -> int:
    base = captions.get(baseline)
    base_text = None if base is None or base.text is None else base.text.strip()
    return sum((c.text.strip() if c.text is not None else None) != base_text
               for name, c in captions.items() if name != baseline)


def _baseline_cider(item: GalleryImage, baseline: str) -> float:
    caption = item.captions.get(baseline)
    return caption.cider if caption is not None and caption.cider is not None else float("inf")


def pick(by_image: dict[int, dict[str, Caption]], baseline: str, order: list[str], file_names: dict[int, str],
         references: dict[int, list[str]], size: int = GALLERY_SIZE) -> list[GalleryImage]:
    """The `size` images with the largest CIDEr-D gap to the baseline, then the most differing captions,
    then the baseline's lowest CIDEr-D (where the model struggles), then the lowest image id; captions
    in `order` (the baseline first)."""
    items = [GalleryImage(i, file_names.get(i, ""), list(references.get(i, [])),
                          {v: caps[v] for v in order if v in caps}, _gap(caps, baseline), _differing(caps, baseline))
             for i, caps in by_image.items()]
    items.sort(key=lambda g: (-g.gap, -g.differing, _baseline_cider(g, baseline), g.image_id))
    return items[:size]


# ---------------------------------------------------------------- marking differences
def word_diff(baseline: str, caption: str) -> list[tuple[str, str]]:
    """The caption as (kind, text) pieces against the baseline's words (difflib.SequenceMatcher):
    'same', 'new' (words the baseline lacks, or replacing its words) and 'gone' (baseline words
    this caption drops)."""
    old, new = baseline.split(), caption.split()
    pieces: list[tuple[str, str]] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            pieces.append(("gone", " ".join(old[a0:a1])))
        if op in ("insert", "replace"):
            pieces.append(("new", " ".join(new[b0:b1])))
        if op == "equal":
            pieces.append(("same", " ".join(new[b0:b1])))
    return pieces


# ---------------------------------------------------------------- thumbnails
def thumbnail_data_uri(data: bytes, px: int = THUMBNAIL_PX) -> str:
    """A JPEG thumbnail (longest side `px`) as a data: URI; raises what PIL raises on an undecodable file."""
    from PIL import Image, ImageOps

    from vlmbench.data.images import to_rgb
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image = to_rgb(ImageOps.exif_transpose(opened))
    image.thumbnail((px, px))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


ImageReader = Callable[[int], tuple[Optional[bytes], str]]


def _rows_on_disk(cfg) -> list:
    """The experiment's rows without generating or downloading anything new (LookupError when they
    cannot be had that way)."""
    from vlmbench.data.sources import load_rows
    ds = cfg.dataset
    if ds.synthetic_images is not None:
        from vlmbench.data.sample import SAMPLE_VERSION
        from vlmbench.paths import cache_dir
        folder = cache_dir("synthetic") / f"shapes-v{SAMPLE_VERSION}-{ds.synthetic_images}-seed{cfg.seed}"
        if not folder.is_dir():
            raise LookupError(f"the generated sample is not in the cache ({folder}); a run on this machine makes it")
    return load_rows(cfg)


def image_reader(cfg) -> ImageReader:
    """image id -> (bytes, '') or (None, why not), from the run's data source as it is on disk now."""
    try:
        rows = {r.image_id: r for r in _rows_on_disk(cfg)}
    except LookupError as exc:
        missing = str(exc)  # `exc` itself is unbound once the except block ends
        return lambda image_id: (None, missing)
    except Exception as exc:  # noqa: BLE001 - any source problem becomes the placeholder's reason
        reason = f"data source not readable here: {type(exc).__name__}: {exc}"
        return lambda image_id: (None, reason)
    return lambda image_id: _read(rows.get(image_id), cfg)


def _read(row, cfg) -> tuple[Optional[bytes], str]:
    from vlmbench.data.images import read_local
    from vlmbench.data.sources import is_url
    if row is None:
        return None, "not among the data source's rows"
    if is_url(row.source):
        from vlmbench.data.fetch import image_cache_for
        cache = image_cache_for(cfg)
        if not cache.has(row.source):
            return None, "not in the image cache (the report downloads nothing)"
        return cache.path_for(row.source).read_bytes(), ""
    try:
        return read_local(row.local_path()), ""
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}"


def thumbnail_or_reason(read: ImageReader, image_id: int) -> tuple[Optional[str], str]:
    """(data URI, '') or (None, why there is no picture)."""
    data, why = read(image_id)
    if data is None:
        return None, why
    try:
        return thumbnail_data_uri(data), ""
    except Exception as exc:  # noqa: BLE001 - an undecodable file is a placeholder, not a failed report
        return None, f"undecodable: {type(exc).__name__}: {exc}"
