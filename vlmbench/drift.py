"""Caption drift: how far a variant's captions move away from the baseline variant's.

Why it exists: CIDEr against human references can stay flat while a quantized model says something
else (or the same thing in other words). Drift compares a variant with the baseline image by image,
on the images both captioned:

- `identical_pct`: captions equal to the baseline's, after stripping surrounding whitespace (percent);
- `cider_vs_baseline`: CIDEr-D of the variant's captions with the baseline's caption as the single
  reference of each image (document frequencies from those references, as in CIDEr-D);
- `mean_words` (whitespace-separated words) and `mean_words_change` against the baseline;
- `hit_max_new_tokens_pct`: captions whose `generated_tokens` equals `max_new_tokens`.
"""
from __future__ import annotations

import statistics
from typing import Callable, Optional

from vlmbench.degenerate import hit_limit

MIN_IMAGES_FOR_CIDER = 2  # one image always scores 0 (document frequencies of one reference)


def captions_of(rows: list[dict]) -> dict[int, str]:
    """image id -> caption of the captioned (status ok) rows."""
    return {int(r["image_id"]): r.get("caption") or "" for r in rows if r.get("status") == "ok"}


def mean_words(captions: dict[int, str], ids) -> Optional[float]:
    counts = [len(captions[i].split()) for i in ids]
    return statistics.fmean(counts) if counts else None


def hit_max_pct(rows: list[dict], max_new_tokens: int) -> Optional[float]:
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    return 100.0 * sum(hit_limit(r.get("generated_tokens"), max_new_tokens) for r in ok) / len(ok)


def identical_pct(captions: dict[int, str], baseline: dict[int, str], ids) -> float:
    return 100.0 * sum(captions[i].strip() == baseline[i].strip() for i in ids) / len(ids)


def drift(rows: list[dict], baseline_rows: list[dict], max_new_tokens: int,
          score: Callable[[dict, dict], float]) -> dict:
    """Drift of one variant's rows against the baseline's rows (chunk-CSV dicts).

    `score(references, predictions)` returns CIDEr-D ({id: [caption]}, {id: caption}); pass
    `lambda r, p: metrics.cider(r, p, tokenizer).score`. Metrics that need shared images are null
    with a `<key>_null_reason` when there are none (or too few for CIDEr-D).
    """
    mine, base = captions_of(rows), captions_of(baseline_rows)
    ids = sorted(set(mine) & set(base))
    out: dict = {"images": len(ids), "hit_max_new_tokens_pct": hit_max_pct(rows, max_new_tokens),
                 "mean_words": mean_words(mine, ids), "baseline_mean_words": mean_words(base, ids)}
    if not ids:
        why = "no image captioned by both this variant and the baseline"
        return out | {k: None for k in ("identical_pct", "cider_vs_baseline", "mean_words_change")} | {
            f"{k}_null_reason": why for k in ("identical_pct", "cider_vs_baseline", "mean_words_change")}
    out["identical_pct"] = identical_pct(mine, base, ids)
    out["mean_words_change"] = out["mean_words"] - out["baseline_mean_words"]
    if len(ids) < MIN_IMAGES_FOR_CIDER:
        out["cider_vs_baseline"] = None
        out["cider_vs_baseline_null_reason"] = f"CIDEr-D needs at least {MIN_IMAGES_FOR_CIDER} shared images"
    elif not any(base[i].strip() for i in ids):
        out["cider_vs_baseline"] = None
        out["cider_vs_baseline_null_reason"] = "every baseline caption is empty: no reference to score against"
    else:
        try:
            out["cider_vs_baseline"] = score({i: [base[i]] for i in ids}, {i: mine[i] for i in ids})
        except Exception as exc:  # a scorer that fails here must not cost the summary
            out["cider_vs_baseline"] = None
            out["cider_vs_baseline_null_reason"] = f"scoring failed: {type(exc).__name__}: {exc}"
    return out
