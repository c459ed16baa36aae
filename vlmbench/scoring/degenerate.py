"""Degenerate captions: counted per variant, with examples, and a loud flag on a bad baseline.

Why it exists: a model run in a dtype it was not trained in can answer with strings of "!" (reported
for Qwen2.5-VL-3B in fp16, trained in bf16). CIDEr alone hides how often that happens, and a
baseline that does it makes every delta wrong. The kinds, on one caption of a captioned (`ok`) row:

- `empty`: nothing but whitespace;
- `repeated`: one character repeated ("!!!!", "aaaa") or one whitespace-separated token repeated
  ("the the the"), at least twice;
- `no_letter`: not empty, but without any letter of any script (`str.isalpha`): "!!!", "1 2 3", "...";
- `hit_max_new_tokens`: `generated_tokens == max_new_tokens` in the chunk CSV, i.e. generation stopped
  at the limit, not at an end token (the runner counts tokens up to the first end token).

A caption may be of several kinds; `degenerate` counts captions of at least one kind. When
`inference.min_new_tokens` forces `max_new_tokens` tokens, every caption hits the limit by
construction: `hit_max_new_tokens` is still counted but is then left out of `degenerate`.
Its share, `hit_max_new_tokens_pct`, is counted here only; the drift section shows the same number.
"""
from __future__ import annotations

from typing import Optional

KINDS = ("empty", "repeated", "no_letter", "hit_max_new_tokens")
EXAMPLE_CHARS = 80


def is_empty(caption: str) -> bool:
    return not caption.strip()


def is_repeated(caption: str) -> bool:
    """One character (spaces ignored) or one whitespace token, repeated at least twice."""
    tokens = caption.split()
    chars = "".join(tokens)
    return (len(chars) >= 2 and len(set(chars)) == 1) or (len(tokens) >= 2 and len(set(tokens)) == 1)


def has_no_letter(caption: str) -> bool:
    return bool(caption.strip()) and not any(ch.isalpha() for ch in caption)


def hit_limit(generated_tokens: Optional[str | int], max_new_tokens: int) -> bool:
    return generated_tokens not in (None, "") and int(generated_tokens) == max_new_tokens


def kinds_of(caption: str, generated_tokens, max_new_tokens: int) -> list[str]:
    """The degenerate kinds (from KINDS) of one caption; [] for a healthy one."""
    found = {"empty": is_empty(caption), "repeated": is_repeated(caption), "no_letter": has_no_letter(caption),
             "hit_max_new_tokens": hit_limit(generated_tokens, max_new_tokens)}
    return [kind for kind in KINDS if found[kind]]


def count_degenerate(rows: list[dict], max_new_tokens: int, forced_length: bool = False, examples: int = 3) -> dict:
    """Counts and shares (percent of the variant's captioned images) per kind, with examples.

    `rows` are chunk-CSV rows (`status`, `caption`, `generated_tokens`, `image_id`); failed rows are
    not captions and are left out. Returns {"captioned", "<kind>", "<kind>_pct", "degenerate",
    "degenerate_pct", "examples": {kind: [{"image_id", "caption"}]}}; shares are null with a reason
    when nothing was captioned.
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    counts = dict.fromkeys(KINDS, 0)
    degenerate = 0
    kept: dict[str, list] = {kind: [] for kind in KINDS}
    for row in ok:
        kinds = kinds_of(row.get("caption") or "", row.get("generated_tokens"), max_new_tokens)
        for kind in kinds:
            counts[kind] += 1
            if len(kept[kind]) < examples:
                kept[kind].append({"image_id": int(row["image_id"]),
                                   "caption": (row.get("caption") or "")[:EXAMPLE_CHARS]})
        counted = [k for k in kinds if not (forced_length and k == "hit_max_new_tokens")]
        degenerate += bool(counted)
    out: dict = {"captioned": len(ok), **counts, "degenerate": degenerate,
                 "examples": {k: v for k, v in kept.items() if v}}
    for key in (*KINDS, "degenerate"):
        out[f"{key}_pct"] = 100.0 * out[key] / len(ok) if ok else None
        if not ok:
            out[f"{key}_pct_null_reason"] = "no captioned image"
    if forced_length:
        out["note"] = "min_new_tokens forces max_new_tokens tokens: hit_max_new_tokens is not counted as degenerate"
    return out


def baseline_flag(baseline: str, counts: Optional[dict], max_pct: float, random_weights: bool = False) -> Optional[str]:
    """A loud warning when the baseline's degenerate share is above `max_pct` percent, else None.

    With `random_weights` (model.weights: random) the captions are degenerate by construction: random
    weights never end a caption on their own, so every one runs to max_new_tokens. The line then says so
    instead of blaming the baseline's dtype (the bf16 advice fits a trained model run in the wrong dtype only).
    """
    if not counts or counts.get("degenerate_pct") is None or counts["degenerate_pct"] <= max_pct:
        return None
    kinds = ", ".join(f"{k} {counts[k]}" for k in KINDS if counts[k])
    found = (f"baseline {baseline!r} has {counts['degenerate']} degenerate captions of {counts['captioned']} "
             f"({counts['degenerate_pct']:.1f}% > quality.degenerate_max_pct {max_pct:g}%: {kinds})")
    if random_weights:
        return (f"note: {found}, as expected: the model has random weights (model.weights: random), which caption "
                f"nothing meaningful, so its captions are degenerate by construction and CIDEr-D and every delta say "
                f"nothing about quality. Such a run measures shapes, speed and where the quantized layers are.")
    return (f"WARNING: {found}; every delta against it is suspect. Look at the examples in the summary; a model "
            f"trained in bf16 may need the bf16 variant as baseline (variants: [bf16, ...], baseline: bf16).")
