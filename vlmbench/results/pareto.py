"""Which variants are worth deploying: the Pareto-optimal ones for quality (CIDEr-D) against each cost.

Why it exists: the summary gives every variant's CIDEr-D and costs, but "which one should I deploy?"
is a trade-off question. A variant is Pareto-optimal for (CIDEr-D, cost) when no other variant is
at least as good on both and strictly better on one (the usual dominance definition, e.g. Deb,
"Multi-Objective Optimization Using Evolutionary Algorithms", 2001, ch. 2). Variants with equal
values on both axes are all optimal. A CIDEr-D difference from the baseline whose paired bootstrap interval
includes 0 is a tie: such a variant is compared with the baseline's CIDEr-D (`compared_quality`). A cost
that no variant measured is said to be unmeasured, with
the reason recorded in the summary, never skipped silently. A variant whose record carries a
`quality_warning` (its CIDEr-D is known not to measure its method, e.g. bitsandbytes' CPU 4-bit defect)
is left out of every front with that warning, so that it is never recommended on a broken number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from vlmbench.scoring.metrics import cider_text

# summary metric -> (words, unit, higher is better)
COSTS = {"throughput_img_s": ("throughput", "img/s", True), "latency_s_p50": ("latency p50", "s", False),
         "peak_vram_mib": ("peak VRAM", "MiB", False), "model_size_mb": ("size on disk", "MB", False),
         "energy_j_per_image": ("energy", "J/img", False)}
QUALITY = "cider"


@dataclass
class Front:
    """The answer for one cost: optimal variants, dominated ones (-> a variant that dominates each),
    variants left out (-> why), or `unmeasured` (why no variant has the cost)."""
    cost: str
    optimal: list[str] = field(default_factory=list)
    dominated: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    unmeasured: Optional[str] = None


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(quality, cost-as-benefit) a dominates b: at least as good on both, strictly better on one."""
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def _benefit_points(variants: dict, cost: str) -> dict[str, tuple[float, float]]:
    """variant -> (CIDEr-D as compared, cost turned into a benefit: negated when lower is better), where both are
    known."""
    sign = 1.0 if COSTS[cost][2] else -1.0
    return {name: (compared_quality(v, variants), sign * v[cost]) for name, v in variants.items()
            if v.get(QUALITY) is not None and v.get(cost) is not None and not _warned(v)}


def within_noise_of(entry: dict, variants: dict) -> Optional[str]:
    """The baseline whose CIDEr-D this variant's cannot be told from (its paired bootstrap interval of the
    difference includes 0), or None: the difference is resolved, or there is no interval."""
    interval = entry.get("cider_delta_ci") or {}
    baseline = variants.get(interval.get("baseline") or "")
    if interval.get("excludes_zero") is False and baseline and baseline.get(QUALITY) is not None:
        return interval["baseline"]
    return None


def compared_quality(entry: dict, variants: dict) -> float:
    """The CIDEr-D a front compares: the baseline's where the variant's cannot be told from it (a one-caption +0.13
    made W8A8 'Pareto-optimal' on latency over a variant 4x faster), else the variant's own."""
    baseline = within_noise_of(entry, variants)
    return variants[baseline][QUALITY] if baseline else entry[QUALITY]


def _warned(entry: dict) -> bool:
    return isinstance(entry.get("quality_warning"), dict)


def _why_left_out(entry: dict, cost: str) -> str:
    if _warned(entry):
        return "quality warning: its CIDEr-D does not measure its method"
    metric = QUALITY if entry.get(QUALITY) is None else cost
    return f"{metric} is null: {entry.get(f'{metric}_null_reason') or 'no reason recorded'}"


def front(variants: dict, cost: str) -> Front:
    """The Pareto front of `variants` (summary entries, name -> dict) for CIDEr-D against `cost` (a COSTS key)."""
    if all(v.get(cost) is None for v in variants.values()):
        reasons = sorted({v.get(f"{cost}_null_reason") or "no reason recorded" for v in variants.values()})
        return Front(cost, unmeasured="; ".join(reasons))
    points = _benefit_points(variants, cost)
    result = Front(cost, left_out={n: _why_left_out(v, cost) for n, v in variants.items() if n not in points})
    for name, point in points.items():
        winner = next((other for other, p in points.items() if dominates(p, point)), None)
        if winner is None:
            result.optimal.append(name)
        else:
            result.dominated[name] = winner
    return result


def fronts(variants: dict) -> list[Front]:
    """One Front per cost in COSTS, in COSTS' order."""
    return [front(variants, cost) for cost in COSTS]


def _value(entry: dict, cost: str) -> str:
    return f"{entry[cost]:.4g} {COSTS[cost][1]}"


def sentence(result: Front, variants: dict) -> str:
    """One line in words, e.g. 'CIDEr-D against throughput: Pareto-optimal int8_vit (CIDEr-D 6.3, 32.1 img/s);
    dominated: int8 (by int8_vit)'."""
    words = COSTS[result.cost][0]
    if result.unmeasured is not None:
        return f"CIDEr-D against {words}: unmeasured ({result.unmeasured})"
    if not result.optimal:
        return f"CIDEr-D against {words}: no variant has both values"
    best = ", ".join(f"{n} (CIDEr-D {cider_text(variants[n][QUALITY])}{_noise_words(variants[n], variants)}, "
                     f"{_value(variants[n], result.cost)})" for n in result.optimal)
    text = f"CIDEr-D against {words}: Pareto-optimal {best}"
    if result.dominated:
        text += "; dominated: " + ", ".join(f"{n} (by {w})" for n, w in result.dominated.items())
    if result.left_out:
        text += "; not compared: " + ", ".join(f"{n} ({why})" for n, why in result.left_out.items())
    return text


def _noise_words(entry: dict, variants: dict) -> str:
    baseline = within_noise_of(entry, variants)
    return f", within noise of {baseline}" if baseline else ""


def warned_lines(variants: dict) -> list[str]:
    """One line per variant left out of every front for its quality_warning, with the warning's short form."""
    return [f"{name} is left out of every front: {v['quality_warning'].get('short') or v['quality_warning'].get('reason')}"
            for name, v in variants.items() if _warned(v)]
