"""Caption drift: how far a variant's captions move away from the baseline variant's.

Why it exists: CIDEr against human references can stay flat while a quantized model says something
else (or the same thing in other words). Drift compares a variant with the baseline image by image,
on the images both captioned:

- `identical_pct`: captions equal to the baseline's, after stripping surrounding whitespace (percent);
- `cider_vs_baseline`: CIDEr-D of the variant's captions with the baseline's caption as the single
  reference of each image (document frequencies from those references, as in CIDEr-D); null with the
  reason below metrics.MIN_CIDER_IMAGES shared images, as the summary's CIDEr-D is;
- `mean_words` (whitespace-separated words) and `mean_words_change` against the baseline.

The captions are scored as the summary tokenized them (summary.SummaryTokens: one tokenizer call for
every caption of every variant), so drift starts no tokenizer of its own. The share of captions that
stopped at `max_new_tokens` is counted once, by vlmbench.scoring.degenerate; quality.add_drift shows it here.
"""
from __future__ import annotations

import statistics
from typing import Callable, Optional

from vlmbench.scoring.metrics import too_few_images_reason

NULL_WITHOUT_SHARED_IMAGES = ("identical_pct", "cider_vs_baseline", "mean_words_change")


def captions_of(rows: list[dict]) -> dict[int, str]:
    """image id -> caption of the captioned (status ok) rows."""
    return {int(r["image_id"]): r.get("caption") or "" for r in rows if r.get("status") == "ok"}


def mean_words(captions: dict[int, str], ids) -> Optional[float]:
    counts = [len(captions[i].split()) for i in ids]
    return statistics.fmean(counts) if counts else None


def identical_pct(captions: dict[int, str], baseline: dict[int, str], ids) -> float:
    return 100.0 * sum(captions[i].strip() == baseline[i].strip() for i in ids) / len(ids)


def drift(rows: list[dict], baseline_rows: list[dict], score: Callable[[list[int]], float]) -> dict:
    """Drift of one variant's rows against the baseline's rows (chunk-CSV dicts).

    `score(ids)` returns the CIDEr-D of the variant's captions of the image ids `ids` (sorted, shared
    by both) with the baseline's captions as references (quality.drift_scorer, from the summary's
    tokens). Metrics that need shared images are null with a `<key>_null_reason` when there are none,
    CIDEr-D also below metrics.MIN_CIDER_IMAGES of them or when scoring fails.
    """
    mine, base = captions_of(rows), captions_of(baseline_rows)
    ids = sorted(set(mine) & set(base))
    out: dict = {"images": len(ids), "mean_words": mean_words(mine, ids), "baseline_mean_words": mean_words(base, ids)}
    if not ids:
        why = "no image captioned by both this variant and the baseline"
        return out | dict.fromkeys(NULL_WITHOUT_SHARED_IMAGES) | {
            f"{k}_null_reason": why for k in NULL_WITHOUT_SHARED_IMAGES}
    out["identical_pct"] = identical_pct(mine, base, ids)
    out["mean_words_change"] = out["mean_words"] - out["baseline_mean_words"]
    out["cider_vs_baseline"], why = cider_vs_baseline(base, ids, score)
    if why is not None:
        out["cider_vs_baseline_null_reason"] = why
    return out


def cider_vs_baseline(base: dict[int, str], ids: list[int],
                      score: Callable[[list[int]], float]) -> tuple[Optional[float], Optional[str]]:
    """(CIDEr-D against the baseline's captions, None) or (None, why it is not reported)."""
    too_few = too_few_images_reason(len(ids), "both this variant and the baseline")
    if too_few is not None:
        return None, too_few
    if not any(base[i].strip() for i in ids):
        return None, "every baseline caption is empty: no reference to score against"
    try:
        return score(ids), None
    except Exception as exc:  # a scorer that fails here must not cost the summary
        return None, f"scoring failed: {type(exc).__name__}: {exc}"
