"""Turning a summary into what people read: the JSON file, plots, a markdown table, a verdict.

Why it exists: the end of a run (the pytest session-finish hook or `vlmbench-report`) does the same
four things; they live here, apart from how the numbers were made. Plots use matplotlib's headless
Agg backend.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from vlmbench.config import ExperimentConfig, Thresholds, differing_fields, result_fields_of
from vlmbench.scoring.metrics import MIN_CIDER_IMAGES
from vlmbench.paths import atomic_write_bytes, atomic_write_text
from vlmbench.paths import write_new
from vlmbench.results.records import json_text, stamped_names, timestamp, write_json
from vlmbench.scoring.quality import cider_drop_holds, quality_table
from vlmbench.results.summary import build_summary

# metric key -> (axis label, higher is better)
PLOTTED = {"cider": ("CIDEr-D", True), "latency_s_p50": ("latency p50 (s / image)", False),
           "throughput_img_s": ("throughput (images / s)", True), "peak_vram_mib": ("peak VRAM (MiB)", False),
           "model_size_mb": ("model size on disk (MB)", False),
           "energy_j_per_image": ("energy (J / image)", False), "avg_power_w": ("average power (W)", False)}
TRADE_OFFS = ("latency_s_p50", "peak_vram_mib", "model_size_mb", "energy_j_per_image")
# threshold field -> (summary metric, direction, kind): direction +1 = an increase is bad
GATES = {"cider_drop_abs": ("cider", -1, "abs"), "cider_drop_pct": ("cider", -1, "pct"),
         "latency_increase_pct": ("latency_s_mean", +1, "pct"), "throughput_drop_pct": ("throughput_img_s", -1, "pct"),
         "peak_vram_increase_pct": ("peak_vram_mib", +1, "pct"), "energy_increase_pct": ("energy_j_per_image", +1, "pct")}


@dataclass
class Verdict:
    text: str
    failed: bool = False
    breaches: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)  # thresholds set but not applicable, with the reason
    allowed_differences: list[str] = field(default_factory=list)  # result fields that differ, explicitly allowed


# ---------------------------------------------------------------- table
def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _census_cell(census: Optional[dict]) -> str:
    if not census:
        return "n/a"
    return " ".join(f"{c}:{e['int8']}/{e['linear']}" for c, e in census.items() if c != "other")


def table_caption(summary: dict) -> str:
    """What the table's numbers were measured on, so that the table can be read on its own."""
    scoring = summary.get("cider_scoring") or {}
    devices = sorted({v.get("device_name") or "?" for v in summary["variants"].values()})
    micro = (summary.get("config") or {}).get("inference", {}).get("micro_batch_size")
    scored = scoring.get("tokenizer") and f"{scoring['tokenizer']} tokenizer"
    micro = micro if micro is not None else "sized per variant (micro_batch_size in the summary)"
    return (f"{summary.get('experiment_name', '?')} on {', '.join(devices)}: CIDEr-D on the "
            f"{scoring.get('common_images', '?')} images every variant captioned ({scored or 'not scored'}"
            f"); latency = one image alone, p50 over {_latency_counts(summary)} image(s) per variant; throughput at "
            f"micro-batch {micro}, image reading and preprocessing included")


def _latency_counts(summary: dict) -> str:
    """The number of images timed alone per variant ('6', or '6/3' when the variants differ)."""
    counts = sorted({v.get("latency_images") for v in summary["variants"].values()}, key=str)
    return "/".join("?" if c is None else str(c) for c in counts)


def markdown_table(summary: dict) -> str:
    head = ("| variant | CIDEr | latency p50 (s) | throughput (img/s) | peak VRAM (MiB) | size (MB) | energy (J/img) "
            "| power (W) | images ok/failed | int8 Linear layers |")
    lines = [table_caption(summary), "", head, "|" + "---|" * 10]
    for name, v in summary["variants"].items():
        lines.append(f"| {name} | {_fmt(v.get('cider'))} | {_fmt(v.get('latency_s_p50'))} | "
                     f"{_fmt(v.get('throughput_img_s'))} | {_fmt(v.get('peak_vram_mib'), 5)} | "
                     f"{_fmt(v.get('model_size_mb'), 5)} | {_fmt(v.get('energy_j_per_image'))} | "
                     f"{_fmt(v.get('avg_power_w'))} | {v['images_captioned']}/{v['images_failed']} | "
                     f"{_census_cell(v.get('census'))} |")
    missing = null_lines(summary["variants"])
    if missing:
        lines.append("")
        lines += [f"n/a {m}" for m in missing]
    return "\n".join(lines + table_warnings(summary))


def null_lines(variants: dict) -> list[str]:
    """'metric: reason' once per metric and reason; the variants it concerns are named unless all are."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, entry in variants.items():
        for key, reason in entry.items():
            if key.endswith("_null_reason") and reason:
                groups.setdefault((key.removesuffix("_null_reason"), reason), []).append(name)
    return [f"{metric}{'' if len(names) == len(variants) else ' (' + ', '.join(names) + ')'}: {reason}"
            for (metric, reason), names in sorted(groups.items())]


CPU_TIMING_NOTE = ("note: timed on a CPU, whose cores other work shares: latency and throughput can change several-fold "
                   "between identical runs, more than between variants; compare speed on a GPU (docs/PERFORMANCE.md)")


def table_warnings(summary: dict) -> list[str]:
    """Lines under the table for what a reader must know: a tokenizer fallback, CPU timings, a mixed environment."""
    notes = []
    fallback = (summary.get("cider_scoring") or {}).get("tokenizer_fallback_reason")
    if fallback:
        notes.append(f"note: {fallback}")
    if any(v.get("device_name") == "cpu" for v in summary["variants"].values()):
        notes.append(CPU_TIMING_NOTE)
    mixed = summary.get("mixed_environment")
    if mixed:
        notes.append(f"WARNING mixed environment: {mixed['warning']}")
    notes += writer_warnings(summary)
    return [""] + notes if notes else []


def writer_warnings(summary: dict) -> list[str]:
    """A variant whose chunks were made by processes that loaded it differently (micro-batch, engine, ...)."""
    from vlmbench.results.variant_records import SETTING_FIELDS
    lines = []
    for name, entry in summary["variants"].items():
        differ = [f for f in entry.get("writers_differ") or [] if f in SETTING_FIELDS]
        if differ:
            lines.append(f"WARNING {name}: the {len(entry['writers'])} processes that made its chunks differed in "
                         f"{', '.join(differ)} (values in the n/a lines); its numbers mix those setups")
    return lines


# ---------------------------------------------------------------- plots
def write_plots(summary: dict, plot_dir: Path, unwritten: Optional[list[str]] = None) -> list[str]:
    """Bar charts per metric and CIDEr trade-off scatters; returns the files written.

    With `unwritten` given, a plot that cannot be written (disk full) is noted there and the others
    are still tried; without it, the first failure raises WriteFailed.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = summary["variants"]
    written = []
    for metric, (label, higher_better) in PLOTTED.items():
        points = {n: v.get(metric) for n, v in variants.items() if v.get(metric) is not None}
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        bars = ax.bar(list(points), list(points.values()), color="#4C72B0")
        ax.bar_label(bars, fmt="%.4g")
        ax.set_ylabel(label)
        ax.set_title(f"{label} by variant ({'higher' if higher_better else 'lower'} is better)")
        written.append(_save(fig, plot_dir / f"{metric}.png", unwritten))
    for metric in TRADE_OFFS:
        points = {n: (v.get(metric), v.get("cider")) for n, v in variants.items()
                  if v.get(metric) is not None and v.get("cider") is not None}
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (x, y) in points.items():
            ax.scatter([x], [y], s=60)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5))
        ax.set_xlabel(PLOTTED[metric][0])
        ax.set_ylabel("CIDEr-D")
        ax.set_title(f"CIDEr-D vs {PLOTTED[metric][0]}")
        written.append(_save(fig, plot_dir / f"tradeoff_cider_vs_{metric}.png", unwritten))
    written += write_interval_plot(summary, plot_dir, unwritten)
    return [name for name in written if name]


def plots_not_drawn(summary: dict) -> dict[str, str]:
    """Plot file -> why write_plots draws it not: no variant has the metric (or, for a trade-off, the
    metric and CIDEr-D together); the reason is the first variant's null reason."""
    variants = summary["variants"]
    missing = {}
    for metric in PLOTTED:
        if all(v.get(metric) is None for v in variants.values()):
            missing[f"{metric}.png"] = _why_null(variants, metric)
    for metric in TRADE_OFFS:
        if all(v.get(metric) is None or v.get("cider") is None for v in variants.values()):
            lacking = metric if all(v.get(metric) is None for v in variants.values()) else "cider"
            missing[f"tradeoff_cider_vs_{metric}.png"] = _why_null(variants, lacking)
    return missing


def _why_null(variants: dict, metric: str) -> str:
    reasons = [v.get(f"{metric}_null_reason") for v in variants.values() if v.get(f"{metric}_null_reason")]
    return f"{metric} is null for every variant" + (f": {reasons[0]}" if reasons else "")


def write_interval_plot(summary: dict, plot_dir: Path, unwritten: Optional[list[str]] = None) -> list[str]:
    """CIDEr-D per variant and its paired delta against the baseline, both with bootstrap intervals."""
    import matplotlib.pyplot as plt

    cis = {n: v["cider_ci"] for n, v in summary["variants"].items() if v.get("cider_ci")}
    if not cis:
        return []
    deltas = {n: v["cider_delta_ci"] for n, v in summary["variants"].items() if v.get("cider_delta_ci")}
    base = (summary.get("quality") or {}).get("baseline", "fp16")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, points, title in ((axes[0], cis, "CIDEr-D"), (axes[1], deltas, f"CIDEr-D minus {base} (paired)")):
        names = list(points)
        ax.errorbar(range(len(names)), [points[n]["point"] for n in names], fmt="o", capsize=6,
                    yerr=[[points[n]["point"] - points[n]["low"] for n in names],
                          [points[n]["high"] - points[n]["point"] for n in names]])
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.5, max(len(names), 1) - 0.5)  # an empty panel (no deltas) keeps a valid range
        ax.set_ylabel("CIDEr-D")
        ax.set_title(f"{title}, {int(round(100 * next(iter(cis.values()))['confidence']))}% bootstrap CI")
    axes[1].axhline(0, color="grey", linewidth=1)
    return [_save(fig, plot_dir / "cider_intervals.png", unwritten)]


def _save(fig, path: Path, unwritten: Optional[list[str]] = None) -> Optional[str]:
    """Renders into memory, then writes atomically (no half-written PNG, even on a full disk)."""
    import io

    import matplotlib.pyplot as plt
    try:
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(fig)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        if unwritten is None:
            raise
        unwritten.append(str(exc))
        return None
    return path.name


# ---------------------------------------------------------------- regression gate
class BaselineMismatch(ValueError):
    """The baseline summary was made with other result fields (model, data, micro-batch, prompt, ...)."""


def check_baseline_compatible(summary: dict, baseline: dict, allowed=()) -> list[str]:
    """Refuses a baseline whose result fields differ from this run's, except the `allowed` ones.

    Compares the fingerprinted fields of both summaries' configs (`config.result_fields_of`), as resume
    does for chunk CSVs. Returns the lines of the differences that were allowed; raises
    BaselineMismatch naming the others.
    """
    if summary.get("model_id") != baseline.get("model_id") and "model_id" not in allowed:
        raise BaselineMismatch(f"baseline is for model {baseline.get('model_id')!r}, this run is for "
                               f"{summary.get('model_id')!r}; pass a baseline summary of the same model.")
    diff = differing_fields(result_fields_of(baseline.get("config") or {}), result_fields_of(summary["config"]))
    refused = [line for key, line in diff.items() if key not in allowed]
    if refused:
        keys = ", ".join(k for k in diff if k not in allowed)
        raise BaselineMismatch(
            "baseline was made with different result fields (" + "; ".join(refused) + "); its numbers are not "
            "comparable with this run's. Pass a baseline made with the same settings, or allow these differences "
            f"explicitly: thresholds.allow_differences: [{keys}] in the config (or --vlm-set "
            f"'thresholds.allow_differences=[{keys}]').")
    return [line for key, line in diff.items() if key in allowed]


def _thresholds_for(cfg: ExperimentConfig, variant: str) -> Thresholds:
    return cfg.thresholds.per_variant.get(variant, cfg.thresholds.default)


def _gated_pairs(summary: dict, baseline: dict, cfg: ExperimentConfig):
    """(variant, threshold name, limit, this run's entry, the baseline's entry) for every threshold set."""
    for name, entry in summary["variants"].items():
        base = baseline.get("variants", {}).get(name)
        if base is None:
            continue
        limits = _thresholds_for(cfg, name)
        for f in fields(Thresholds):
            if getattr(limits, f.name) is not None:
                yield name, f.name, getattr(limits, f.name), entry, base


def breaches(summary: dict, baseline: dict, cfg: ExperimentConfig) -> list[str]:
    """One line per breached threshold: metric, value, baseline value, threshold."""
    found = []
    for name, threshold, limit, entry, base in _gated_pairs(summary, baseline, cfg):
        metric, direction, kind = GATES[threshold]
        now, before = entry.get(metric), base.get(metric)
        if undecided_reason(metric, entry, base) is not None:
            continue
        change = (now - before) * direction
        amount = change if kind == "abs" else (change / before * 100 if before else 0.0)
        holds, why = cider_drop_holds(entry, base, cfg) if metric == "cider" and amount > limit else (True, "")
        if amount > limit and holds:
            found.append(f"{name}: {metric} = {now:.4g} vs baseline {before:.4g} ({'+' if direction > 0 else '-'}"
                         f"{amount:.3g}{'%' if kind == 'pct' else ''}), threshold {threshold} = {limit}{why}")
    return found


def undecided_reason(metric: str, entry: dict, base: dict):
    """Why `metric` cannot be compared with the baseline (None when it can)."""
    if entry.get(metric) is None:
        return f"null in this run ({entry.get(f'{metric}_null_reason') or 'no reason recorded'})"
    if base.get(metric) is None:
        return f"null in the baseline ({base.get(f'{metric}_null_reason') or 'no reason recorded'})"
    if metric == "cider" and (base.get("cider_images") or MIN_CIDER_IMAGES) < MIN_CIDER_IMAGES:
        return (f"the baseline's CIDEr-D was computed on {base['cider_images']} image(s), fewer than the "
                f"{MIN_CIDER_IMAGES} needed for a meaningful score")
    return None


def _has_thresholds(cfg: ExperimentConfig, variant: str) -> bool:
    limits = _thresholds_for(cfg, variant)
    return any(getattr(limits, f.name) is not None for f in fields(Thresholds))


def missing_from_baseline(summary: dict, baseline: dict, cfg: ExperimentConfig) -> list[str]:
    """One line per gated variant of this run that the baseline summary does not hold (nothing compared)."""
    held = sorted(baseline.get("variants", {}))
    return [f"{name}: not in the baseline (it holds {', '.join(held) or 'no variant'}); no threshold compared"
            for name in summary["variants"] if name not in held and _has_thresholds(cfg, name)]


def undecided(summary: dict, baseline: dict, cfg: ExperimentConfig) -> list[str]:
    """One line per threshold that is set but could not be applied, with the reason; a variant the
    baseline lacks is one line."""
    lines = missing_from_baseline(summary, baseline, cfg)
    for name, threshold, _, entry, base in _gated_pairs(summary, baseline, cfg):
        why = undecided_reason(GATES[threshold][0], entry, base)
        if why is not None:
            lines.append(f"{name}: {threshold} not decided: {GATES[threshold][0]} {why}")
    return lines


def gate(summary: dict, baseline_path: Optional[str], cfg: ExperimentConfig) -> Verdict:
    if not baseline_path:
        return Verdict("no baseline given (--vlm-baseline; vlmbench-report --baseline): regression gate not applied")
    try:
        baseline = json.loads(Path(baseline_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return Verdict(f"baseline {baseline_path!r} unreadable: {exc}. Pass a summary_*.json file.", failed=True)
    try:
        allowed = check_baseline_compatible(summary, baseline, cfg.thresholds.allow_differences)
    except BaselineMismatch as exc:
        return Verdict(f"baseline refused: {exc}", failed=True)
    found, open_ = breaches(summary, baseline, cfg), undecided(summary, baseline, cfg)
    text = (("regression gate FAILED:\n" + "\n".join(f"  - {b}" for b in found)) if found
            else f"regression gate passed against {baseline_path}")
    text += "".join(f"\n  (allowed difference) {line}" for line in allowed)
    text += "".join(f"\n  (no decision) {line}" for line in open_)
    return Verdict(text, bool(found), found, open_, allowed)


# ---------------------------------------------------------------- the end of a run
def load_references(results_dir: Path) -> dict[int, list[str]]:
    from vlmbench.paths import read_regular_text
    path = results_dir / "references.json"
    return {int(k): v for k, v in json.loads(read_regular_text(path)).items()}  # a FIFO is refused, never opened


def write_references(results_dir: Path, rows) -> None:
    write_json(results_dir / "references.json", {str(r.image_id): list(r.captions) for r in rows})


def report(results_dir: Path, cfg: ExperimentConfig, started_at: float, baseline: Optional[str],
           tokenizer: str = "auto", known_rows: Optional[dict] = None) -> tuple[dict, Verdict]:
    """Builds the summary, then writes what it can, each file atomically: the summary JSON first, the
    markdown table, then the plots. A file that cannot be written (disk full) is named in the verdict,
    and the rest is still written; the summary is rewritten with the list of plots at the end.
    `known_rows`: chunk rows already read, (variant, chunk id) -> rows (see summary.build_summary)."""
    summary = build_summary(results_dir, cfg, load_references(results_dir), started_at, tokenizer, known_rows)
    summary["plots"] = []
    verdict = gate(summary, baseline, cfg)
    summary["regression_gate"] = {"baseline": baseline, "failed": verdict.failed, "breaches": verdict.breaches,
                                  "undecided": verdict.undecided,
                                  "allowed_differences": verdict.allowed_differences,
                                  **({} if baseline else {"baseline_null_reason": verdict.text})}
    unwritten: list[str] = []
    path = _try_write(unwritten, lambda: _write_summary(results_dir, summary))
    table = (markdown_table(summary) + "\n\n" + quality_table(summary) if summary["variants"]
             else "no variant has finished chunks yet")
    _try_write(unwritten, lambda: atomic_write_text(results_dir / "summary_latest.md",
                                                    f"{table}\n\n{verdict.text}\n"))
    if summary["variants"]:
        summary["plots"] = _plots_or_reason(summary, results_dir / "plots", unwritten)
        summary["plots_not_drawn"] = plots_not_drawn(summary)
        if path is not None:  # now with the plots drawn and why others were not
            _try_write(unwritten, lambda: write_json(path, summary))
    lines = [table, "", *completeness_lines(summary), *ignored_lines(results_dir, cfg, summary),
             f"summary: {path if path is not None else 'NOT WRITTEN'}"]
    if unwritten:
        lines += [f"could not write: {u}" for u in unwritten]
        lines.append(f"finished chunks are kept; free space and run vlmbench-report {results_dir} to write the rest")
        verdict.failed = True
    verdict.text = "\n".join(lines + [verdict.text])
    warning = (summary.get("quality") or {}).get("baseline_warning")
    if warning:
        verdict.text += f"\n\n{'!' * 78}\n{warning}\n{'!' * 78}"
    return summary, verdict


def _plots_or_reason(summary: dict, plot_dir: Path, unwritten: list[str]) -> list[str]:
    """The plots written; a plotting fault is recorded in the summary instead of losing it."""
    if not summary["variants"]:
        return []
    try:
        return write_plots(summary, plot_dir, unwritten)
    except Exception as exc:  # noqa: BLE001 - a broken matplotlib must not cost the summary
        summary["plots_null_reason"] = f"plotting failed: {type(exc).__name__}: {exc}"
        return []


def _write_summary(results_dir: Path, summary: dict) -> Path:
    """`summary_<stamp>[_<n>].json`, a new name that appears only with the whole summary behind it."""
    return write_new(stamped_names(results_dir, "summary_", timestamp(), ".json"), json_text(summary).encode("utf-8"))


def _try_write(unwritten: list[str], write):
    """Runs one write; a failure (disk full, read-only) is noted in `unwritten`, never raised."""
    try:
        return write()
    except OSError as exc:
        unwritten.append(str(exc))
        return None


def used_chunks(summary: dict) -> set[tuple[str, int]]:
    """(variant, chunk id) of every chunk the summary was made from (none for an entry that does not say)."""
    return {(name, chunk_id) for name, entry in summary["variants"].items()
            for chunk_id in range(entry.get("chunks_expected", 0)) if chunk_id not in entry.get("missing_chunks", ())}


def completeness_lines(summary: dict) -> list[str]:
    """What the summary lacks, printed (not only stored in the JSON): missing chunks and variants."""
    lines = [f"{name}: chunks {entry.get('missing_chunks')} missing ({entry['chunks_done']} of "
             f"{entry['chunks_expected']} done)" for name, entry in summary["variants"].items() if entry.get("missing_chunks")]
    if summary.get("variants_not_run"):
        lines.append(f"variants with no finished chunk: {', '.join(summary['variants_not_run'])}")
    return lines


def ignored_lines(results_dir: Path, cfg: ExperimentConfig, summary: dict) -> list[str]:
    """Chunk CSVs in the folder that this report did not use (another experiment or variant), and how to report them."""
    from vlmbench.results.records import ignored_chunk_csvs, snapshots_by_fingerprint
    ignored = ignored_chunk_csvs(results_dir, cfg, used_chunks(summary))
    if not ignored:
        return []
    snapshots = snapshots_by_fingerprint(results_dir)
    lines = []
    for fingerprint, names in sorted(ignored.items()):
        snapshot = snapshots.get(fingerprint)
        how = (f"report them with: vlmbench-report {results_dir} --config {snapshot}" if snapshot else
               "no config snapshot of that experiment is in the folder: pass its YAML with --config")
        lines.append(f"ignored {len(names)} CSV(s) of experiment {fingerprint} ({', '.join(sorted(names)[:5])}"
                     f"{', ...' if len(names) > 5 else ''}); {how}")
    return lines


def finish_run(session, baseline: Optional[str], known_rows: Optional[dict] = None) -> Verdict:
    """The session-finish report; never raises: what could not be done is the verdict's text."""
    try:
        return report(session.results_dir, session.cfg, session.started_at, baseline, known_rows=known_rows)[1]
    except Exception as exc:  # the run's CSVs are written already: report the failure in one line, lose nothing
        return Verdict(f"the end-of-run report failed: {type(exc).__name__}: {exc}. Finished chunks are kept; "
                       f"rebuild the summary with: vlmbench-report {session.results_dir}", failed=True)
