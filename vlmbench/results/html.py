"""report.html: one self-contained page that answers "which variant should I deploy?".

Why it exists: the summary JSON, the markdown table and the PNGs each hold part of the answer; the
page puts them together for someone who opens one file: the headline table with the change against
the baseline in %, the CIDEr-D intervals, the Pareto-optimal variants for CIDEr-D against each cost
in words (vlmbench.results.pareto), the gate's verdict and what it checked, the plots, a gallery of
the images where the captions differ most (vlmbench.results.gallery) and the environment.

The page needs nothing outside itself: CSS inline, images as data: URIs, no script, and a
Content-Security-Policy that forbids any request a browser could make from it. Every text from the
folder (captions above all: model output is untrusted) goes through html.escape.
"""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Optional

from vlmbench.results import gallery, pareto
from vlmbench.results.labels import column_labels, label
from vlmbench.scoring.caption_metrics import METRIC_DIGITS
from vlmbench.scoring.metrics import CIDER_DIGITS, cider_text

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
 padding:12px;color:#1d1d1f;background:#fff}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
p,li,figcaption,pre{overflow-wrap:anywhere}td{overflow-wrap:break-word}
td:first-child{white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #ccc;padding:3px 7px;vertical-align:top}
th{background:#f2f2f2;text-align:left}td.num{text-align:right;white-space:nowrap}
.better{color:#137333}.worse{color:#b3261e}.muted{color:#666;font-size:.9em}
.pass{background:#e6f4ea;padding:6px}.fail{background:#fce8e6;padding:6px}.none{background:#fff4e5;padding:6px}
.plots{display:flex;flex-wrap:wrap;gap:8px}figure{margin:.4em 0;flex:1 1 420px;max-width:100%}
figure img{width:100%;height:auto}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;margin:10px 0;display:flex;flex-wrap:wrap;gap:12px}
.card .pic{flex:0 0 auto;max-width:100%}.card .text{flex:1 1 300px;min-width:0}
.placeholder{width:192px;max-width:100%;min-height:80px;background:#eee;color:#555;font-size:.85em;padding:6px;
 box-sizing:border-box}
ins{background:#fff0a8;text-decoration:none}del{color:#b3261e}.flag{color:#b3261e;font-weight:600}
pre{white-space:pre-wrap;background:#f7f7f7;padding:6px}
"""
# summary metric -> (column heading, digits, higher is better); the headings are the terminal table's (labels.LABELS)
HEADLINE = {metric: (label(metric), digits, higher_better) for metric, digits, higher_better in (
    ("cider", CIDER_DIGITS, True), ("latency_s_p50", 3, False), ("throughput_img_s", 3, True),
    ("peak_vram_mib", 5, False), ("model_size_mb", 5, False), ("energy_j_per_image", 3, False),
    ("avg_power_w", 3, False))}


# ---------------------------------------------------------------- small pieces
def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else (f"{value:.{digits}g}" if isinstance(value, float) else escape(str(value)))


def _table(head: list[str], rows: list[list[str]]) -> str:
    """A table in a box that scrolls sideways on a narrow screen; cells are HTML already escaped."""
    top = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{top}</tr></thead><tbody>{body}</tbody></table></div>'


def _td(text: str, numeric: bool = False) -> str:
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _list(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>" if lines else ""


def baseline_of(summary: dict) -> str:
    return (summary.get("quality") or {}).get("baseline") or "fp16"


# ---------------------------------------------------------------- headline table
def change_cell(entry: dict, metric: str, baseline: str, higher_better: bool) -> str:
    """'+12.3%' against the baseline, coloured better/worse, or why there is none."""
    change = (entry.get(f"delta_vs_{baseline}") or {}).get(metric) or {}
    pct = change.get("rel_pct")
    if pct is None:
        return f'<span class="muted" title="{escape(change.get("null_reason") or "")}">(n/a)</span>'
    if metric == "cider" and (entry.get("cider_delta_ci") or {}).get("excludes_zero") is False:
        title = "the paired interval of the change includes 0"
        return f'<span class="muted" title="{title}">({pct:+.1f}%, within noise)</span>'
    tone = "" if pct == 0 else ("better" if (pct > 0) == higher_better else "worse")
    return f'<span class="{tone}">({pct:+.1f}%)</span>'


def _metric_cell(name: str, entry: dict, metric: str, digits: int, baseline: str, higher_better: bool) -> str:
    value = _num(entry.get(metric), digits)
    change = "" if name == baseline else " " + change_cell(entry, metric, baseline, higher_better)
    return _td(value + change, numeric=True)


def caption_metrics_of(summary: dict) -> dict[str, dict]:
    """Variant -> its COCO caption metrics beyond CIDEr-D (BLEU-1..4, METEOR, ROUGE-L, SPICE): from the
    summary's `metrics` section (vlmbench.scoring.caption_metrics), else a variant entry's own `metrics`;
    interval and null-reason keys (`<name>_ci`, `<name>_null_reason`) and CIDEr-D (a headline column) left out."""
    section = summary.get("metrics") or {}
    return {name: {k: v for k, v in (section.get(name) or entry.get("metrics") or {}).items()
                   if k != "CIDEr-D" and not k.endswith(("_ci", "_null_reason"))}
            for name, entry in summary["variants"].items()}


def extra_metric_names(metrics: dict[str, dict]) -> list[str]:
    """The metric names that at least one variant has a value for, in the order first seen."""
    names: dict[str, None] = {}
    for values in metrics.values():
        for key, value in values.items():
            if _metric_value(value) is not None:
                names[key] = None
    return list(names)


def _metric_value(value) -> Optional[float]:
    """A metric as a number: the value itself, or the `point`/`value` of an interval record."""
    if isinstance(value, dict):
        value = value.get("point", value.get("value"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def headline_section(summary: dict) -> str:
    """The terminal table's columns (with the change against the baseline), the caption metrics beyond
    CIDEr-D, then the n/a lines and the notes the terminal prints under its table."""
    from vlmbench.results.report import null_lines, table_caption, table_warnings
    variants, baseline = summary["variants"], baseline_of(summary)
    metrics = caption_metrics_of(summary)
    extra = extra_metric_names(metrics)
    head = ["variant", *(h for h, _, _ in HEADLINE.values()), *map(escape, extra), "images ok/failed",
            label("warmup_s"), label("census")]
    rows = [_headline_row(name, entry, baseline, [metrics[name].get(k) for k in extra])
            for name, entry in variants.items()]
    notes = [f"n/a {line}" for line in null_lines(variants, column_labels(summary))]
    notes += [n for n in table_warnings(summary) if n]
    return (f"<h2>Variants against {escape(baseline)}</h2><p class=muted>{escape(table_caption(summary))}; in "
            f"brackets the change against {escape(baseline)}, green where it is better (a CIDEr-D change whose "
            "paired interval includes 0 is grey, 'within noise')</p>"
            + _table(head, rows) + _list(notes))


def _headline_row(name: str, entry: dict, baseline: str, extra: list) -> list[str]:
    """One variant's cells; warm-up and census formatted as the terminal table formats them."""
    from vlmbench.results.report import census_text
    cells = [_td(escape(name) + (" <span class=muted>(baseline)</span>" if name == baseline else "")
                 + _quality_flag(entry))]
    cells += [_metric_cell(name, entry, m, d, baseline, hb) for m, (_, d, hb) in HEADLINE.items()]
    cells += [_td(_num(_metric_value(value), METRIC_DIGITS), True) for value in extra]
    cells.append(_td(f"{entry.get('images_captioned', '?')}/{entry.get('images_failed', '?')}", True))
    return cells + [_td(_num(entry.get("warmup_s")), True), _td(escape(census_text(entry.get("census"))))]


def _quality_flag(entry: dict) -> str:
    """A red flag beside a variant whose record carries a quality_warning (its reason under the table)."""
    warning = entry.get("quality_warning")
    if not isinstance(warning, dict):
        return ""
    return f' <span class="flag" title="{escape(warning.get("reason") or "")}">quality warning</span>'


# ---------------------------------------------------------------- intervals
def _ci(ci: Optional[dict]) -> str:
    if not ci:
        return "n/a"
    return f"{cider_text(ci['point'])} [{cider_text(ci['low'])}, {cider_text(ci['high'])}]"


def _interval_row(name: str, entry: dict, baseline: str) -> list[str]:
    delta = entry.get("cider_delta_ci")
    drift = entry.get("drift") or {}
    degenerate = entry.get("degenerate") or {}
    excludes = "baseline" if name == baseline else ("n/a" if not delta else ("yes" if delta["excludes_zero"] else "no"))
    return [_td(escape(name) + _quality_flag(entry)), _td(_ci(entry.get("cider_ci")), True),
            _td("baseline" if name == baseline else escape(_ci(delta)), True), _td(excludes),
            _td("baseline" if name == baseline else _num(drift.get("identical_pct")), True),
            _td(_num(entry.get("generated_tokens_mean")), True),
            _td(f"{degenerate.get('degenerate', 'n/a')}/{degenerate.get('captioned', 'n/a')}", True)]


def intervals_section(summary: dict) -> str:
    info, baseline, labels = summary.get("quality") or {}, baseline_of(summary), column_labels(summary)
    if info.get("quality_null_reason"):
        return f"<h2>Intervals</h2><p>not computed: {escape(info['quality_null_reason'])}</p>"
    head = ["variant", escape(labels["cider_ci"]), escape(labels["cider_delta_ci"]) + ", paired",
            "interval excludes 0", f"captions identical to {escape(baseline)} (%)",
            escape(labels["generated_tokens_mean"]), "degenerate captions"]
    rows = [_interval_row(name, entry, baseline) for name, entry in summary["variants"].items()]
    method = (f"{info.get('bootstrap_method', 'bootstrap')}; {info.get('bootstrap_samples', '?')} resamples, "
              f"seed {info.get('seed', '?')}")
    tone = "none" if info.get("baseline_warning_kind") == "random_weights" else "fail"
    warning = f"<p class={tone}>{escape(info['baseline_warning'])}</p>" if info.get("baseline_warning") else ""
    return f"<h2>Intervals</h2>{warning}" + _table(head, rows) + f"<p class=muted>{escape(method)}</p>"


# ---------------------------------------------------------------- Pareto
def pareto_section(summary: dict) -> str:
    """The Pareto lines in words, with what limits them: a CPU run's timing fronts are stamped as the plots
    are, and variants whose paired CIDEr-D change has an interval that includes 0 are named: the fronts compare
    them at the baseline's CIDEr-D (pareto.compared_quality), since this sample does not resolve the difference."""
    from vlmbench.results.plots import CPU_STAMP, TIMING, timed_on_cpu
    variants, cpu = summary["variants"], timed_on_cpu(summary)
    lines = [pareto.sentence(result, variants) + (f" ({CPU_STAMP})" if cpu and result.cost in TIMING else "")
             for result in pareto.fronts(variants)] + pareto.warned_lines(variants)
    unresolved = [name for name, entry in variants.items()
                  if entry.get("cider_delta_ci") and not entry["cider_delta_ci"].get("excludes_zero")]
    if unresolved:
        lines.append(f"CIDEr-D of {', '.join(unresolved)} is not resolved from {baseline_of(summary)}'s by this "
                     "sample (the paired interval of the change includes 0, see Intervals): the fronts compare "
                     f"them at {baseline_of(summary)}'s CIDEr-D, a tie")
    return ("<h2>Which variant: Pareto-optimal for quality against each cost</h2><p class=muted>A variant is "
            "Pareto-optimal when no other has both a CIDEr-D at least as high and a cost at least as low (one "
            "of them strictly). A CIDEr-D change from the baseline whose paired interval includes 0 counts as "
            "a tie at the baseline's CIDEr-D.</p>" + _list(lines))


# ---------------------------------------------------------------- gate
def thresholds_set(config: dict, variants) -> list[str]:
    """'int8: latency_increase_pct 50' for every threshold that applies to a variant of the run."""
    thresholds = (config or {}).get("thresholds") or {}
    per_variant, default = thresholds.get("per_variant") or {}, thresholds.get("default") or {}
    lines = []
    for name in variants:
        limits = per_variant.get(name, default)
        lines += [f"{name}: {key} {value:g}" for key, value in limits.items() if value is not None]
    return lines


def gate_section(summary: dict, verdict_text: str) -> str:
    gate = summary.get("regression_gate") or {}
    checked = thresholds_set(summary.get("config") or {}, summary["variants"])
    # green only for the gate's own "passed": thresholds set but none decided is "nothing checked", not a pass
    tone = "fail" if gate.get("failed") else {"passed": "pass"}.get(gate.get("outcome"), "none")
    made = f"checks made: {gate['checks']}; " if gate.get("checks") is not None else ""
    what = made + (f"thresholds that apply ({len(checked)}):" if checked else
            "no threshold is set in the config (thresholds.default / per_variant): nothing is checked")
    extra = [*(f"breach: {b}" for b in gate.get("breaches") or []),
             *(f"not decided: {u}" for u in gate.get("undecided") or []),
             *(f"allowed difference: {a}" for a in gate.get("allowed_differences") or [])]
    baseline = gate.get("baseline")
    return (f"<h2>Regression gate</h2><pre class={tone}>{escape(verdict_text)}</pre>"
            f"<p>baseline summary: {escape(str(baseline)) if baseline else 'none given'}; {escape(what)}</p>"
            + _list(checked) + _list(extra))


# ---------------------------------------------------------------- plots
def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def plots_section(summary: dict, plot_dir: Path) -> str:
    figures = []
    for name in summary.get("plots") or []:
        path = plot_dir / name
        if path.is_file():
            figures.append(f'<figure><img alt="{escape(name)}" src="{_png_uri(path)}">'
                           f"<figcaption>{escape(name)}</figcaption></figure>")
        else:
            figures.append(f"<p class=placeholder>{escape(name)}: file missing from {escape(str(plot_dir))}</p>")
    not_drawn = [f"{name}: {why}" for name, why in (summary.get("plots_not_drawn") or {}).items()]
    if summary.get("plots_null_reason"):
        not_drawn.append(summary["plots_null_reason"])
    drawn = '<div class="plots">' + "".join(figures) + "</div>"
    return "<h2>Plots</h2>" + drawn + ("<p>Not drawn:</p>" + _list(not_drawn) if not_drawn else "")


# ---------------------------------------------------------------- gallery
def marked_caption(baseline_text: Optional[str], caption: gallery.Caption, is_baseline: bool) -> str:
    if caption.text is None:
        return f'<span class="flag">failed</span> {escape(caption.error)}'
    if is_baseline or baseline_text is None:
        return escape(caption.text) or "<i>(empty)</i>"
    tags = {"same": "{}", "new": "<ins>{}</ins>", "gone": "<del>{}</del>"}
    pieces = [tags[kind].format(escape(text)) for kind, text in gallery.word_diff(baseline_text, caption.text)]
    return " ".join(pieces) or "<i>(empty)</i>"


def _caption_row(name: str, caption: gallery.Caption, baseline: str, base: Optional[gallery.Caption]) -> list[str]:
    flags = ", ".join(caption.degenerate)
    base_text = base.text if base is not None else None
    return [_td(escape(name)), _td(marked_caption(base_text, caption, name == baseline)),
            _td(cider_text(caption.cider), True), _td(f'<span class="flag">degenerate: {escape(flags)}</span>'
                                                    if flags else "")]


def gallery_card(item: gallery.GalleryImage, baseline: str, picture: tuple[Optional[str], str]) -> str:
    uri, why = picture
    pic = (f'<img alt="image {item.image_id}" src="{uri}">' if uri else
           f'<div class="placeholder">no picture: {escape(why)}</div>')
    rows = [_caption_row(n, c, baseline, item.captions.get(baseline)) for n, c in item.captions.items()]
    refs = "<p class=muted>references:</p>" + _list(item.references)
    return (f'<div class="card"><div class="pic">{pic}</div><div class="text"><b>image {item.image_id}</b> '
            f"<span class=muted>{escape(item.file_name)}; largest CIDEr-D gap {cider_text(item.gap)}, "
            f"{item.differing} caption(s) differ from {escape(baseline)}</span>"
            + _table(["variant", "caption", "CIDEr-D", "flags"], rows) + refs + "</div></div>")


def gallery_section(items: list[gallery.GalleryImage], baseline: str, read: gallery.ImageReader) -> str:
    if not items:
        return "<h2>Captions</h2><p>no captioned image to show</p>"
    differ = any(i.differing or i.gap for i in items)
    intro = (f"The images on which the captions differ most from {escape(baseline)}'s (largest per-image "
             "CIDEr-D gap first, then most differing captions). Words a variant adds or changes are "
             f"<ins>marked</ins>, words of {escape(baseline)}'s caption it drops are <del>struck</del>."
             if differ else f"No variant's caption differs from {escape(baseline)}'s on any image; shown are the "
             f"{len(items)} images on which {escape(baseline)} scores the lowest CIDEr-D.")
    cards = "".join(gallery_card(i, baseline, gallery.thumbnail_or_reason(read, i.image_id)) for i in items)
    return f"<h2>Captions</h2><p>{intro}</p>{cards}"


# ---------------------------------------------------------------- environment
GPU_ENVIRONMENT = ("gpu_name", "driver")  # null together, with the one reason `gpu_null_reason`


def _env_null_reason(env: dict, key: str) -> str:
    """Why an environment field is null: its own `<key>_null_reason`, or the GPU's for the GPU's fields."""
    shared = env.get("gpu_null_reason") if key in GPU_ENVIRONMENT else None
    return env.get(f"{key}_null_reason") or shared or "not recorded"


def environment_section(summary: dict) -> str:
    env = summary.get("environment") or {}
    rows = [[_td(escape(k)), _td(escape(str(v)) if v is not None else "n/a: " + escape(_env_null_reason(env, k)))]
            for k, v in env.items() if not k.endswith("_null_reason")]
    scoring = summary.get("cider_scoring") or {}
    facts = [["experiment", summary.get("experiment_name")], ["model", summary.get("model_id")],
             ["family", f"{summary['model']['family_title']} ({summary['model']['family']})"
              if (summary.get("model") or {}).get("family") else "not recorded"],
             ["config fingerprint", summary.get("config_fingerprint")], ["started", summary.get("started_at")],
             ["finished", summary.get("finished_at")], ["CIDEr-D tokenizer", scoring.get("tokenizer")]]
    rows = [[_td(escape(k)), _td(escape(str(v)))] for k, v in facts] + rows
    config = escape(json.dumps(summary.get("config") or {}, indent=1))
    return ("<h2>Environment</h2>" + _table(["what", "value"], rows)
            + f"<details><summary>experiment config</summary><pre>{config}</pre></details>")


# ---------------------------------------------------------------- the page
def page(summary: dict, verdict_text: str, plot_dir: Path, items: list[gallery.GalleryImage],
         read: gallery.ImageReader) -> str:
    """The whole document as a string."""
    from vlmbench.results.report import model_label
    title = f"vlmbench: {summary.get('experiment_name', '?')} ({model_label(summary)})"
    if not summary["variants"]:
        body = "<p>no variant has finished chunks yet</p>"
    else:
        body = (headline_section(summary) + pareto_section(summary) + intervals_section(summary)
                + gate_section(summary, verdict_text) + plots_section(summary, plot_dir)
                + gallery_section(items, baseline_of(summary), read) + environment_section(summary))
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
            f"{body}</body></html>\n")


def gallery_items(summary: dict, rows_by_variant: dict, cfg, references: dict) -> list[gallery.GalleryImage]:
    """The gallery's images from the chunk rows the summary was made from."""
    baseline = baseline_of(summary)
    forced = cfg.inference.min_new_tokens == cfg.inference.max_new_tokens
    by_image = gallery.captions_by_image(rows_by_variant, summary, cfg.inference.max_new_tokens, forced)
    order = sorted(rows_by_variant, key=lambda v: v != baseline)
    names = {int(r["image_id"]): r.get("file_name", "") for rows in rows_by_variant.values() for r in rows}
    return gallery.pick(by_image, baseline, order, names, references)


def write_report_html(results_dir: Path, summary: dict, cfg, references: dict, verdict_text: str,
                      summary_path: Optional[Path], rows: Optional[dict] = None) -> list[Path]:
    """Writes report.html (the latest) and, beside summary_<ts>.json, report_<ts>.html, each atomically.
    `rows`: variant -> chunk rows as build_summary read them (read here when not given).

    Returns the paths written; raises OSError when a write fails (the caller records it)."""
    from vlmbench.paths import atomic_write_text
    from vlmbench.results.summary import load_variant_rows
    if rows is None:
        rows = {v: load_variant_rows(results_dir, v, cfg.num_chunks, cfg.variant_fingerprint(v))[0] for v in summary["variants"]}
    items = gallery_items(summary, rows, cfg, references)
    text = page(summary, verdict_text, results_dir / "plots", items, gallery.image_reader(cfg))
    paths = [results_dir / "report.html"]
    if summary_path is not None:
        paths.append(results_dir / summary_path.name.replace("summary_", "report_").replace(".json", ".html"))
    for path in paths:
        atomic_write_text(path, text)
    return paths
