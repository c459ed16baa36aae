"""The quality section of the summary: degenerate captions, CIDEr-D intervals, paired deltas, drift.

Why it exists: the summary's CIDEr is one number per variant; this module adds what a decision needs
beside it, all against the variant named by the config's `baseline` (default fp16):
`degenerate` counts (vlmbench.scoring.degenerate), `cider_ci` and `cider_delta_ci` (vlmbench.scoring.bootstrap, on
the per-image scores that `summary.add_cider` keeps in `cider_per_image`), and `drift`
(vlmbench.scoring.drift). It also renders them as a markdown table and makes the gate's CIDEr decision on the
interval when `thresholds.cider_decision` is `interval`.
"""
from __future__ import annotations

from typing import Callable, Optional

from vlmbench.scoring import bootstrap
from vlmbench.scoring.degenerate import baseline_flag, count_degenerate
from vlmbench.scoring.drift import captions_of, drift, mean_words
from vlmbench.scoring.metrics import TokenizerError, cider_from_tokens, cider_text


def _per_image(entry: dict) -> Optional[dict]:
    scores = entry.get("cider_per_image")
    return {int(k): float(v) for k, v in scores.items()} if scores else None


def _ci(cfg, values) -> dict:
    q = cfg.quality
    return bootstrap.interval(values, q.bootstrap_samples, q.confidence, cfg.seed).as_dict()


def add_intervals(entries: dict, baseline: str, cfg) -> None:
    """`cider_ci` per variant and `cider_delta_ci` (variant - baseline, paired) per other variant."""
    base = _per_image(entries[baseline]) if baseline in entries else None
    for name, entry in entries.items():
        scores = _per_image(entry)
        if scores is None:
            entry["cider_ci"] = None
            entry["cider_ci_null_reason"] = entry.get("cider_null_reason") or "no per-image CIDEr-D scores"
            continue
        entry["cider_ci"] = _ci(cfg, [scores[i] for i in sorted(scores)])
        if name == baseline:
            continue
        if base is None:
            entry["cider_delta_ci"] = None
            entry["cider_delta_ci_null_reason"] = (f"baseline {baseline!r} has no per-image CIDEr-D scores"
                                                   if baseline in entries else
                                                   f"baseline {baseline!r} has no finished chunk in this results folder")
            continue
        q = cfg.quality
        delta = bootstrap.paired_difference(scores, base, q.bootstrap_samples, q.confidence, cfg.seed)
        entry["cider_delta_ci"] = {**delta.as_dict(), "baseline": baseline, "excludes_zero": delta.excludes_zero}


def drift_scorer(tokens, variant: str, baseline: str) -> Callable[[list[int]], float]:
    """drift's `score(ids)`: CIDEr-D of `variant`'s tokenized captions with `baseline`'s as the single
    reference of each image, from `tokens` (summary.SummaryTokens); raises TokenizerError when the
    summary has no tokens (None, or tokenizing failed), which drift turns into a null with the reason."""
    def score(ids: list[int]) -> float:
        if tokens is None or tokens.failure:
            raise TokenizerError(tokens.failure if tokens else "the summary passed no tokenized captions")
        mine, base = tokens.captions[variant], tokens.captions[baseline]
        return cider_from_tokens({i: base[i] for i in ids}, {i: mine[i] for i in ids})[0]
    return score


def hit_max_new_tokens(entry: dict) -> dict:
    """The variant's `hit_max_new_tokens_pct` (and its null reason) as vlmbench.scoring.degenerate counted it."""
    counts = entry["degenerate"]
    return {k: counts[k] for k in ("hit_max_new_tokens_pct", "hit_max_new_tokens_pct_null_reason") if k in counts}


def add_drift(entries: dict, rows_by_variant: dict, baseline: str, tokens) -> None:
    """`drift` per variant against `baseline`, scored from `tokens` (summary.SummaryTokens or None);
    needs the `degenerate` counts in `entries` (their hit_max_new_tokens_pct is shown with drift)."""
    for name, rows in rows_by_variant.items():
        if name == baseline:
            captions = captions_of(rows)
            entries[name]["drift"] = {"is_baseline": True, "mean_words": mean_words(captions, sorted(captions)),
                                      **hit_max_new_tokens(entries[name])}
        elif baseline in rows_by_variant:
            found = drift(rows, rows_by_variant[baseline], drift_scorer(tokens, name, baseline))
            entries[name]["drift"] = {"baseline": baseline, **found, **hit_max_new_tokens(entries[name])}
        else:
            entries[name]["drift"] = None
            entries[name]["drift_null_reason"] = f"baseline variant {baseline!r} has no rows in this folder"


def add_quality(entries: dict, rows_by_variant: dict, cfg, tokens) -> dict:
    """Adds degenerate counts, intervals and drift to `entries`; returns the summary's `quality` record.

    `tokens` are the summary's tokenized captions (summary.SummaryTokens from summary.add_cider), so
    that drift's CIDEr-D uses the same tokenizer and tokens as CIDEr-D and starts none of its own;
    None leaves drift's CIDEr-D null with the reason.
    """
    baseline, q = cfg.baseline_variant, cfg.quality
    forced = cfg.inference.min_new_tokens == cfg.inference.max_new_tokens
    for name, rows in rows_by_variant.items():
        entries[name]["degenerate"] = count_degenerate(rows, cfg.inference.max_new_tokens, forced, q.examples)
    add_intervals(entries, baseline, cfg)
    add_drift(entries, rows_by_variant, baseline, tokens)
    random_weights = cfg.model.weights == "random"
    warning = baseline_flag(baseline, (entries.get(baseline) or {}).get("degenerate"), q.degenerate_max_pct,
                            random_weights)
    return {"baseline": baseline, "baseline_in_run": baseline in entries, "baseline_warning": warning,
            "baseline_warning_kind": warning and ("random_weights" if random_weights else "degenerate_baseline"),
            "degenerate_max_pct": q.degenerate_max_pct, "bootstrap_samples": q.bootstrap_samples,
            "confidence": q.confidence, "seed": cfg.seed,
            "bootstrap_method": "percentile bootstrap over images of per-image CIDEr-D scores; document "
                                "frequencies from the whole common image set; paired deltas resample the same "
                                "images for both variants"}


def add_quality_or_reason(entries: dict, rows_by_variant: dict, cfg, tokens) -> dict:
    """add_quality, but a failure becomes a reason in the summary instead of costing the summary."""
    try:
        return add_quality(entries, rows_by_variant, cfg, tokens)
    except Exception as exc:  # the run's measurements matter more than this section
        return {"baseline": cfg.baseline_variant, "quality_null_reason": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- table
def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _ci_cell(ci: Optional[dict]) -> str:
    if not ci:
        return "n/a"
    return f"{cider_text(ci['point'])} [{cider_text(ci['low'])}, {cider_text(ci['high'])}]"


def _degenerate_cell(d: Optional[dict]) -> str:
    if not d:
        return "n/a"
    return (f"{d['degenerate']}/{d['captioned']} (empty {d['empty']}, repeated {d['repeated']}, no letter "
            f"{d['no_letter']}, at max {d['hit_max_new_tokens']})")


def _drift_cells(d: Optional[dict]) -> str:
    if not d:
        return "n/a | n/a | n/a | n/a"
    if d.get("is_baseline"):
        return f"baseline | baseline | {_num(d['mean_words'])} | {_num(d['hit_max_new_tokens_pct'])}"
    change = d.get("mean_words_change")
    words = f"{_num(d['mean_words'])} ({'n/a' if change is None else f'{change:+.2g}'})"
    return (f"{_num(d['identical_pct'])} | {cider_text(d['cider_vs_baseline'])} | {words} | "
            f"{_num(d['hit_max_new_tokens_pct'])}")


def quality_table(summary: dict) -> str:
    """Markdown: CIDEr-D with its interval, the paired delta, drift, tokens per caption and degenerate counts per
    variant."""
    from vlmbench.results.labels import column_labels  # the interval headers the n/a lines name
    info, labels = summary.get("quality") or {}, column_labels(summary)
    conf = int(round(100 * info.get("confidence", 0.95)))
    base = info.get("baseline") or "fp16"
    lines = [f"Quality against baseline {base} ({conf}% bootstrap intervals over images, "
             f"{info.get('bootstrap_samples', '?')} resamples, seed {info.get('seed', '?')})", "",
             f"| variant | {labels['cider_ci']} | {labels['cider_delta_ci']} | identical to {base} (%) | "
             f"CIDEr-D vs {base} captions | words (change) | at max_new_tokens (%) | "
             f"{labels['generated_tokens_mean']} | degenerate (kinds) |", "|" + "---|" * 9]
    for name, v in summary["variants"].items():
        delta = v.get("cider_delta_ci")
        star = " *" if delta and delta["excludes_zero"] else ""
        delta_cell = "baseline" if name == base else _ci_cell(delta) + star
        lines.append(f"| {name} | {_ci_cell(v.get('cider_ci'))} | {delta_cell} | {_drift_cells(v.get('drift'))} | "
                     f"{_num(v.get('generated_tokens_mean'))} | {_degenerate_cell(v.get('degenerate'))} |")
    if any((v.get("cider_delta_ci") or {}).get("excludes_zero") for v in summary["variants"].values()):
        lines += ["", "* the interval of the difference excludes 0"]
    warned = [f"WARNING {name}: {v['quality_warning']['short']} (quality_warning; the reason is under the first table)"
              for name, v in summary["variants"].items() if isinstance(v.get("quality_warning"), dict)]
    lines += [""] + warned if warned else []
    if info.get("baseline_warning"):
        lines += ["", f"**{info['baseline_warning']}**"]
    return "\n".join(lines)


# ---------------------------------------------------------------- the gate's CIDEr decision
def cider_drop_holds(entry: dict, base: dict, cfg) -> tuple[bool, str]:
    """Whether a CIDEr drop of `entry` against `base` (the same variant in the baseline summary) counts.

    With `thresholds.cider_decision: point` every drop counts. With `interval`, it counts only when the
    paired bootstrap interval of (now - baseline) on the images both scored lies below 0; when either
    summary lacks per-image scores the decision falls back to the point value, and says so.
    """
    if cfg.thresholds.cider_decision == "point":
        return True, ""
    now, before = _per_image(entry), _per_image(base)
    if not now or not before or set(now) != set(before):
        return True, " (interval decision impossible: per-image scores missing or on other images; point value used)"
    q = cfg.quality
    delta = bootstrap.paired_difference(now, before, q.bootstrap_samples, q.confidence, cfg.seed)
    span = f" (paired {int(round(q.confidence * 100))}% CI of the change [{delta.low:.3g}, {delta.high:.3g}])"
    return delta.high < 0, span
