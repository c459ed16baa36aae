"""Turning a summary into what people read: the JSON file, plots, a markdown table, a verdict.

Why it exists: the end of a run (the pytest session-finish hook or `vlmbench-report`) does the same
four things; they live here, apart from how the numbers were made. The plots are drawn by
vlmbench.results.plots.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from vlmbench.config import ExperimentConfig, Thresholds, differing_fields, result_fields_of
from vlmbench.scoring.metrics import MIN_CIDER_IMAGES, TOKENIZER_ALIASES, cider_text
from vlmbench.paths import atomic_write_text, write_new
from vlmbench.results.records import json_text, stamped_names, timestamp, write_json
from vlmbench.results.labels import LABELS, column_labels, label, label_order
from vlmbench.results.references import load_references
from vlmbench.scoring.caption_metrics import metrics_table
from vlmbench.scoring.quality import cider_drop_holds, quality_table
from vlmbench.results.summary import build_summary
from vlmbench.results.plots import (PLOTTED, TRADE_OFFS, plots_not_drawn, timed_on_cpu,  # noqa: F401 (re-exported)
                                    write_interval_plot, write_plots)

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
    checks: int = 0  # thresholds compared with the baseline (decided: passed or breached)
    outcome: str = "not applied"  # "passed", "failed", "nothing checked", "not applied" (no baseline)


# ---------------------------------------------------------------- table
def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def census_text(census: Optional[dict]) -> str:
    """'vision:12/12 language_model:0/21 lm_head:0/1 (bitsandbytes Linear8bitLt (int8))'; 'n/a' without a census."""
    from vlmbench.quantize.census import census_cell, methods_cell
    if not census:
        return "n/a"
    return f"{census_cell(census)} ({methods_cell(census)})"


def table_caption(summary: dict) -> str:
    """What the table's numbers were measured on, so that the table can be read on its own."""
    scoring = summary.get("cider_scoring") or {}
    devices = sorted({v.get("device_name") or "?" for v in summary["variants"].values()})
    micro = (summary.get("config") or {}).get("inference", {}).get("micro_batch_size")
    scored = scoring.get("tokenizer") and f"{scoring['tokenizer']} tokenizer"
    micro = micro if micro is not None else "sized per variant (micro_batch_size in the summary)"
    return (f"{summary.get('experiment_name', '?')}{_model_words(summary)} on {', '.join(devices)}: CIDEr-D on the "
            f"{scoring.get('common_images', '?')} images every variant captioned ({scored or 'not scored'}"
            f"); latency = one image alone, p50 over {_latency_counts(summary)} image(s) per variant; throughput at "
            f"micro-batch {micro}, image reading and preprocessing included")


def model_label(summary: dict) -> str:
    """The model as the summary names it (summary.model_section's label: the family where model_id alone would not
    say it), else model_id (summaries of an older vlmbench)."""
    return (summary.get("model") or {}).get("label") or summary.get("model_id") or "?"


def _model_words(summary: dict) -> str:
    """' (vlmbench/tiny-captioner)' or ' (Gemma 3, model_type gemma3, tiny random weights)': the model in the caption,
    as report.html's title names it; '' when the summary names none."""
    label = model_label(summary)
    return f" ({label})" if label != "?" else ""


def _latency_counts(summary: dict) -> str:
    """The number of images timed alone per variant ('6', or '6/3' when the variants differ)."""
    counts = sorted({v.get("latency_images") for v in summary["variants"].values()}, key=str)
    return "/".join("?" if c is None else str(c) for c in counts)


# the table's columns after `variant`: summary keys (labels.label names them), "images ok/failed" as it is
TERMINAL_COLUMNS = ("cider", "latency_s_p50", "throughput_img_s", "peak_vram_mib", "model_size_mb",
                    "energy_j_per_image", "avg_power_w", "images ok/failed", "warmup_s", "census")


def markdown_table(summary: dict) -> str:
    head = "| variant | " + " | ".join(map(label, TERMINAL_COLUMNS)) + " |"
    lines = [table_caption(summary), "", head, "|" + "---|" * (len(TERMINAL_COLUMNS) + 1)]
    for name, v in summary["variants"].items():
        lines.append(f"| {name} | {cider_text(v.get('cider'))} | {_fmt(v.get('latency_s_p50'))} | "
                     f"{_fmt(v.get('throughput_img_s'))} | {_fmt(v.get('peak_vram_mib'), 5)} | "
                     f"{_fmt(v.get('model_size_mb'), 5)} | {_fmt(v.get('energy_j_per_image'))} | "
                     f"{_fmt(v.get('avg_power_w'))} | {v['images_captioned']}/{v['images_failed']} | "
                     f"{_fmt(v.get('warmup_s'))} | {census_text(v.get('census'))} |")
    missing = null_lines(summary["variants"], column_labels(summary))
    if missing:
        lines.append("")
        lines += [f"n/a {m}" for m in missing]
    return "\n".join(lines + table_warnings(summary))


def null_lines(variants: dict, labels: dict = LABELS) -> list[str]:
    """'<names>[ of <variants>]: <reason>' once per reason and set of variants it concerns, the null values
    named by the headers the reader sees (`labels`: labels.column_labels of the summary); the variants are
    named unless the reason is every variant's. Values that share both are one line, in table order."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (key, reason), names in _null_reasons(variants).items():
        groups.setdefault((reason, tuple(names)), []).append(key)
    lines = []
    for (reason, names), keys in sorted(groups.items(), key=lambda g: (min(map(label_order, g[1])), g[0])):
        who = "" if len(names) == len(variants) else f" of {', '.join(names)}"
        lines.append(f"{', '.join(label(k, labels) for k in sorted(keys, key=label_order))}{who}: {reason}")
    return lines


def _null_reasons(variants: dict) -> dict[tuple[str, str], list[str]]:
    """(key, reason) -> the variants whose entry has that `<key>_null_reason`."""
    found: dict[tuple[str, str], list[str]] = {}
    for name, entry in variants.items():
        for key, reason in entry.items():
            if key.endswith("_null_reason") and reason:
                found.setdefault((key.removesuffix("_null_reason"), reason), []).append(name)
    return found


CPU_TIMING_NOTE = ("note: timed on a CPU, whose cores other work shares: latency and throughput can change several-fold "
                   "between identical runs, more than between variants; compare speed on a GPU (docs/PERFORMANCE.md)")


def table_warnings(summary: dict) -> list[str]:
    """Lines under the table for what a reader must know: a tokenizer fallback, CPU timings, a mixed environment."""
    notes = []
    fallback = (summary.get("cider_scoring") or {}).get("tokenizer_fallback_reason")
    if fallback:
        notes.append(f"note: {fallback}")
    if timed_on_cpu(summary):
        notes.append(CPU_TIMING_NOTE)
    mixed = summary.get("mixed_environment")
    if mixed:
        notes.append(f"WARNING mixed environment: {mixed['warning']}")
    if (summary.get("dtype_mix") or {}).get("note"):
        notes.append(summary["dtype_mix"]["note"])
    notes += writer_warnings(summary)
    notes += quality_warning_lines(summary)
    return [""] + notes if notes else []


def quality_warning_lines(summary: dict) -> list[str]:
    """'WARNING nf4: ...' for each variant whose record says its captions cannot be read as its method's quality
    (`quality_warning`, e.g. bitsandbytes' CPU 4-bit defect: vlmbench.quantize.bnb.cpu_4bit_quality_warning)."""
    return [f"WARNING {name}: {entry['quality_warning']['reason']}" for name, entry in summary["variants"].items()
            if isinstance(entry.get("quality_warning"), dict)]


def writer_warnings(summary: dict) -> list[str]:
    """A variant whose chunks were made by processes that loaded it differently (micro-batch, engine, ...)."""
    from vlmbench.results.variant_records import SETTING_FIELDS
    lines = []
    for name, entry in summary["variants"].items():
        differ = [f for f in entry.get("writers_differ") or [] if f in SETTING_FIELDS]
        if differ:
            lines.append(f"WARNING {name}: the {len(entry['writers'])} processes that made its chunks differed in "
                         f"{', '.join(map(label, differ))} (values in the n/a lines); its numbers mix those setups")
    return lines


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
    diff |= tokenizer_difference(summary, baseline)
    refused = [line for key, line in diff.items() if key not in allowed]
    if refused:
        keys = ", ".join(k for k in diff if k not in allowed)
        raise BaselineMismatch(
            "baseline was made with different result fields (" + "; ".join(refused) + "); its numbers are not "
            "comparable with this run's. Pass a baseline made with the same settings, or allow these differences "
            f"explicitly: thresholds.allow_differences: [{keys}] in the config (or --vlm-set "
            f"'thresholds.allow_differences=[{keys}]')." + _tokenizer_fix(diff, allowed))
    return [line for key, line in diff.items() if key in allowed]


TOKENIZER_FIELD = "cider_scoring.tokenizer"


def tokenizer_difference(summary: dict, baseline: dict) -> dict[str, str]:
    """{TOKENIZER_FIELD: 'cider_scoring.tokenizer: old -> new'} when both summaries record the PTB tokenizer
    their CIDEr-D came from and the two differ (the Java and Java-free ones can split rare Unicode
    differently, and CIDEr-D with them); {} otherwise."""
    theirs, ours = (_tokenizer_of(s) for s in (baseline, summary))
    if theirs is None or ours is None or theirs == ours:
        return {}
    return {TOKENIZER_FIELD: f"{TOKENIZER_FIELD}: {theirs!r} -> {ours!r}"}


def _tokenizer_of(summary: dict):
    name = (summary.get("cider_scoring") or {}).get("tokenizer")
    return TOKENIZER_ALIASES.get(name, name)


def _tokenizer_fix(diff: dict, allowed) -> str:
    if TOKENIZER_FIELD not in diff or TOKENIZER_FIELD in allowed:
        return ""
    return (" For the tokenizer, better rescore one side with the other's: vlmbench-report DIR --tokenizer "
            "ptb-java (needs java) or --tokenizer ptb-python.")


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


def checks_made(summary: dict, baseline: dict, cfg: ExperimentConfig) -> int:
    """How many thresholds the gate compared with the baseline: set, and decidable (see undecided_reason)."""
    return sum(undecided_reason(GATES[threshold][0], entry, base) is None
               for _, threshold, _, entry, base in _gated_pairs(summary, baseline, cfg))


def gate(summary: dict, baseline_path: Optional[str], cfg: ExperimentConfig) -> Verdict:
    """The regression verdict against the baseline summary at `baseline_path`, with the number of checks made.

    A gate that compared nothing never says "passed": its outcome is "nothing checked", and a failure
    when `thresholds.require_checks` is true."""
    if not baseline_path:
        return Verdict("no baseline given (--vlm-baseline; vlmbench-report --baseline): regression gate not applied")
    try:
        baseline = json.loads(Path(baseline_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return Verdict(f"baseline {baseline_path!r} unreadable: {exc}. Pass a summary_*.json file.", failed=True,
                       outcome="failed")
    try:
        allowed = check_baseline_compatible(summary, baseline, cfg.thresholds.allow_differences)
    except BaselineMismatch as exc:
        return Verdict(f"baseline refused: {exc}", failed=True, outcome="failed")
    found, open_ = breaches(summary, baseline, cfg), undecided(summary, baseline, cfg)
    checks = checks_made(summary, baseline, cfg)
    text, failed, outcome = _verdict_line(found, checks, open_, baseline_path, cfg)
    text += "".join(f"\n  (allowed difference) {line}" for line in allowed)
    text += "".join(f"\n  (no decision) {line}" for line in open_)
    return Verdict(text, failed, found, open_, allowed, checks, outcome)


def _verdict_line(found: list[str], checks: int, open_: list[str], baseline_path: str,
                  cfg: ExperimentConfig) -> tuple[str, bool, str]:
    """(first lines of the verdict, failed, outcome) from the breaches and the number of checks made."""
    if found:
        return (f"regression gate FAILED ({len(found)} of {checks} checks breached) against {baseline_path}:\n"
                + "\n".join(f"  - {b}" for b in found)), True, "failed"
    if checks:
        return f"regression gate passed: {checks} checks against {baseline_path}, none breached", False, "passed"
    why = ("every threshold set could not be decided (below)" if open_ else
           "no threshold is set for any variant the baseline holds (thresholds.default and per_variant are null)")
    if cfg.thresholds.require_checks:
        return (f"regression gate FAILED: nothing checked against {baseline_path}: {why}; "
                "thresholds.require_checks is true"), True, "failed"
    return (f"regression gate: nothing checked against {baseline_path} (0 checks): {why}; set thresholds "
            "(or thresholds.require_checks: true to make this an error)"), False, "nothing checked"


# ---------------------------------------------------------------- the end of a run
def report(results_dir: Path, cfg: ExperimentConfig, started_at: float, baseline: Optional[str],
           tokenizer: str = "auto", known_rows: Optional[dict] = None) -> tuple[dict, Verdict]:
    """Builds the summary, then writes what it can, each file atomically: the summary JSON first, the
    markdown table, then the plots. A file that cannot be written (disk full) is named in the verdict,
    and the rest is still written; the summary is rewritten with the list of plots at the end.
    `known_rows`: chunk rows already read, (variant, chunk id) -> rows (see summary.build_summary)."""
    references = load_references(results_dir, cfg.fingerprint)  # checked: ConfigError with the fix
    rows: dict = {}  # variant -> rows, read once by build_summary, shown again by the page
    summary = build_summary(results_dir, cfg, references, started_at, tokenizer, known_rows, rows)
    summary["plots"] = []
    verdict = gate(summary, baseline, cfg)
    gate_text = verdict.text
    summary["regression_gate"] = {"baseline": baseline, "outcome": verdict.outcome, "checks": verdict.checks,
                                  "failed": verdict.failed, "breaches": verdict.breaches,
                                  "undecided": verdict.undecided,
                                  "allowed_differences": verdict.allowed_differences,
                                  **({} if baseline else {"baseline_null_reason": verdict.text})}
    unwritten: list[str] = []
    path = _try_write(unwritten, lambda: _write_summary(results_dir, summary))
    table = ("\n\n".join(filter(None, [markdown_table(summary), quality_table(summary), metrics_table(summary)]))
             if summary["variants"] else "no variant has finished chunks yet")
    _try_write(unwritten, lambda: atomic_write_text(results_dir / "summary_latest.md",
                                                    f"{table}\n\n{verdict.text}\n"))
    if summary["variants"]:
        summary["plots"] = _plots_or_reason(summary, results_dir / "plots", unwritten)
        summary["plots_not_drawn"] = plots_not_drawn(summary)
        if path is not None:  # now with the plots drawn and why others were not
            _try_write(unwritten, lambda: _write_both(path, summary))
    page = html_or_reason(results_dir, summary, cfg, references, gate_text, path, rows, unwritten)
    lines = [table, "", *completeness_lines(summary), *ignored_lines(results_dir, cfg, summary),
             f"summary: {path if path is not None else 'NOT WRITTEN'}", page]
    if unwritten:
        lines += [f"could not write: {u}" for u in unwritten]
        lines.append(f"finished chunks are kept; free space and run vlmbench-report {results_dir} to write the rest")
        verdict.failed = True
    verdict.text = "\n".join(lines + [verdict.text])
    quality = summary.get("quality") or {}
    warning = quality.get("baseline_warning")
    if warning and quality.get("baseline_warning_kind") == "random_weights":
        verdict.text += f"\n\n{warning}"  # expected of random weights: said, not shouted
    elif warning:
        verdict.text += f"\n\n{'!' * 78}\n{warning}\n{'!' * 78}"
    return summary, verdict


def html_or_reason(results_dir: Path, summary: dict, cfg: ExperimentConfig, references: dict, gate_text: str,
                   summary_path: Optional[Path], rows: Optional[dict], unwritten: list[str]) -> str:
    """Writes report.html (vlmbench.results.html); returns the line that says where, or why not. A write
    that fails (disk full) is noted in `unwritten`; a fault while building the page costs nothing else."""
    from vlmbench.results.html import write_report_html
    try:
        paths = write_report_html(results_dir, summary, cfg, references, gate_text, summary_path, rows)
    except OSError as exc:
        unwritten.append(str(exc))
        return "report: NOT WRITTEN"
    except Exception as exc:  # noqa: BLE001 - the page must not cost the summary, plots or verdict
        return f"report: NOT WRITTEN ({type(exc).__name__}: {exc}); run vlmbench-report {results_dir} to retry"
    return f"report: {paths[0]}"


def _plots_or_reason(summary: dict, plot_dir: Path, unwritten: list[str]) -> list[str]:
    """The plots written; a plotting fault is recorded in the summary instead of losing it."""
    if not summary["variants"]:
        return []
    try:
        return write_plots(summary, plot_dir, unwritten)
    except Exception as exc:  # noqa: BLE001 - a broken matplotlib must not cost the summary
        summary["plots_null_reason"] = f"plotting failed: {type(exc).__name__}: {exc}"
        return []


LATEST_SUMMARY = "summary_latest.json"  # a copy of the newest summary_<timestamp>.json, under a fixed name


def _write_summary(results_dir: Path, summary: dict) -> Path:
    """`summary_<stamp>[_<n>].json`, a new name that appears only with the whole summary behind it, then
    its copy summary_latest.json (written atomically, after it)."""
    path = write_new(stamped_names(results_dir, "summary_", timestamp(), ".json"), json_text(summary).encode("utf-8"))
    write_json(path.parent / LATEST_SUMMARY, summary)
    return path


def _write_both(path: Path, summary: dict) -> None:
    """The timestamped summary at `path` and its copy summary_latest.json beside it, both atomic; the copy
    is written after the timestamped file, so it never holds a summary that has no timestamped twin."""
    write_json(path, summary)
    write_json(path.parent / LATEST_SUMMARY, summary)


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
    """What the summary lacks, printed (not only stored in the JSON): missing chunks, latency runs stopped early,
    variants with no chunk."""
    lines = [f"{name}: chunks {entry.get('missing_chunks')} missing ({entry['chunks_done']} of "
             f"{entry['chunks_expected']} done)" for name, entry in summary["variants"].items() if entry.get("missing_chunks")]
    lines += [f"{name}: batch-1 latency runs stopped early ({'; '.join(entry['latency_runs_stopped'])}); its latency "
              f"covers {entry.get('latency_images', 0)} image(s): delete the chunk's CSV to time them again"
              for name, entry in summary["variants"].items() if entry.get("latency_runs_stopped")]
    if summary.get("variants_not_run"):
        lines.append(f"variants with no finished chunk: {', '.join(summary['variants_not_run'])}")
    return lines


def ignored_lines(results_dir: Path, cfg: ExperimentConfig, summary: dict) -> list[str]:
    """Chunk CSVs in the folder that this report did not use (another experiment or variant), and how to report them."""
    from vlmbench.results.records import ignored_chunk_csvs, snapshots_by_fingerprint
    ignored = ignored_chunk_csvs(results_dir, cfg, used_chunks(summary))
    if not ignored:
        return []
    snapshots = snapshots_by_fingerprint(results_dir, variants=True)  # a CSV of an older definition too
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
