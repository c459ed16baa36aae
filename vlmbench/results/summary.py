"""From a results folder to the summary: per-variant metrics, deltas against the baseline variant, environment.

Why it exists: the summary is rebuilt from files alone (chunk CSVs, variant records, the reference
captions and the config snapshot), so it can be made at the end of a pytest run or later on another
machine (`vlmbench-report results/`). Every metric that is missing is `null` with a
`<metric>_null_reason` beside it.
"""
from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vlmbench.scoring.metrics import (MIN_CIDER_IMAGES, cider_from_tokens, common_image_set, too_few_images_reason,
                              tokenize_for_scoring)
from vlmbench.scoring.quality import add_quality_or_reason
from vlmbench.results.records import VERSIONED_LIBRARIES, chunk_csv_path, installed_version, read_chunk_csv
from vlmbench.results.variant_records import combined_record, gpu_of_records, read_variant_records

SCHEMA = "vlmbench.summary/1"
# metric key -> True when higher is better
METRICS = {"cider": True, "latency_s_mean": False, "latency_s_p50": False, "latency_s_p90": False,
           "throughput_img_s": True, "peak_vram_mib": False, "model_size_mb": False, "energy_j_per_image": False,
           "avg_power_w": False}
HEADLINE_VRAM = ("peak_vram_mib is torch.cuda.max_memory_allocated over captioning (peak stats reset after "
                 "loading); peak_reserved_mib (caching allocator) and nvml_used_mib (driver's view) are beside it")


def _float(text: str) -> Optional[float]:
    return float(text) if text not in ("", None) else None


def load_variant_rows(results_dir: Path, variant: str, num_chunks: int, fingerprint: str,
                      known: Optional[dict] = None) -> tuple[list, list]:
    """All CSV rows of a variant made with `fingerprint` (the variant's: `ExperimentConfig.variant_fingerprint`), and the chunk ids that are missing. `known`:
    (variant, chunk id) -> rows already read (a finishing shard's check), used instead of reading again."""
    rows, missing = [], []
    for chunk_id in range(num_chunks):
        chunk = [r for r in chunk_rows(results_dir, variant, chunk_id, known or {})
                 if r.get("config_fingerprint") == fingerprint]
        if not chunk:
            missing.append(chunk_id)
        rows += chunk
    return rows, missing


def chunk_rows(results_dir: Path, variant: str, chunk_id: int, known: dict) -> list[dict]:
    """The chunk's rows: as read before when `known` has them, else from its CSV ([] when absent)."""
    if (variant, chunk_id) in known:
        return known[(variant, chunk_id)]
    path = chunk_csv_path(results_dir, variant, chunk_id)
    return read_chunk_csv(path) if path.exists() else []


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def latency_stats(rows: list[dict], latency_images: int) -> dict:
    """Mean, p50 and p90 of the rows' `latency_s` and how many images were timed alone; when none was, each
    null with the reason (`latency_null_reason`). `latency_images`: the config's measure.latency_images."""
    values = [v for v in (_float(r["latency_s"]) for r in rows) if v is not None]
    stopped = {"latency_runs_stopped": runs} if (runs := stopped_latency_runs(rows)) else {}
    if not values:
        why = latency_null_reason(rows, latency_images)
        return {f"latency_s_{k}": None for k in ("mean", "p50", "p90")} | {
            f"latency_s_{k}_null_reason": why for k in ("mean", "p50", "p90")} | {"latency_images": 0} | stopped
    return {"latency_s_mean": statistics.fmean(values), "latency_s_p50": statistics.median(values),
            "latency_s_p90": _percentile(values, 0.9), "latency_images": len(values)} | stopped


def stopped_latency_runs(rows: list[dict]) -> list[str]:
    """'chunk <id>: <why>' for each chunk whose batch-1 latency runs were stopped early (measure_notes'
    `latency_runs`, written by the session when an interruption or error ended them); [] when none was."""
    return [f"chunk {c['chunk_id']}: {note}" for c in _chunks(rows)
            if (note := json.loads(c.get("measure_notes") or "{}").get("latency_runs"))]


def latency_null_reason(rows: list[dict], latency_images: int) -> str:
    """Why no image of `rows` was timed alone: the chunks' stopped latency runs (measure_notes' `latency_runs`),
    else measure.latency_images being 0, else no readable image (the runs time readable images only)."""
    stopped = stopped_latency_runs(rows)
    if stopped:
        return "; ".join(stopped)
    if latency_images == 0:
        return "measure.latency_images is 0: no image timed alone"
    return f"no readable image to time alone (measure.latency_images: {latency_images})"


def _chunks(rows: list[dict]) -> list[dict]:
    """One row per chunk (chunk-level columns repeat on every row of a chunk)."""
    return list({r["chunk_id"]: r for r in rows}.values())


def null_reason(chunks: list[dict], column: str) -> str:
    """Why `column` is empty in some chunk, from the chunks' measure_notes."""
    reasons = set()
    for chunk in chunks:
        if chunk[column] in ("", None):
            notes = json.loads(chunk.get("measure_notes") or "{}")
            reasons.add(notes.get(column) or f"{column} missing in chunk {chunk['chunk_id']}")
    return "; ".join(sorted(reasons))


def _sum_or_reason(chunks: list[dict], column: str) -> tuple[Optional[float], Optional[str]]:
    values = [_float(c[column]) for c in chunks]
    if not values or any(v is None for v in values):
        return None, null_reason(chunks, column) or f"{column}: no chunk"
    return sum(values), None


def efficiency(rows: list[dict]) -> dict:
    chunks = _chunks(rows)
    out: dict = {}
    wall = sum(_float(c["chunk_wall_s"]) or 0.0 for c in chunks)
    ok = sum(int(_float(c["chunk_images_ok"]) or 0) for c in chunks)
    out["throughput_img_s"] = ok / wall if wall > 0 else None
    out["throughput_img_s_per_chunk"] = [_float(c["chunk_throughput_img_s"]) for c in chunks]
    energy, why = _sum_or_reason(chunks, "chunk_energy_j")
    out["energy_j_per_image"] = energy / ok if energy is not None and ok else None
    out["avg_power_w"] = energy / wall if energy is not None and wall > 0 else None
    if energy is None:
        out["energy_j_per_image_null_reason"] = out["avg_power_w_null_reason"] = why
    for key, column in (("peak_vram_mib", "chunk_peak_alloc_mib"), ("peak_reserved_mib", "chunk_peak_reserved_mib"),
                        ("nvml_used_mib", "chunk_nvml_used_mib")):
        values = [_float(c[column]) for c in chunks]
        known = [v for v in values if v is not None]
        out[key] = max(known) if known else None
        if not known:
            out[f"{key}_null_reason"] = null_reason(chunks, column)
    out.update(variant_idle_share(chunks, wall))
    out["device_name"] = ", ".join(sorted({c["device_name"] for c in chunks}))
    return out


def variant_idle_share(chunks: list[dict], wall_s: float) -> dict:
    """Share of the variant's captioning wall time spent outside `generate`, over all its chunks.

    (sum of chunk_wall_s - sum of chunk_generate_s) / sum of chunk_wall_s, through measure.idle_share.
    """
    from vlmbench.run.measure import idle_share
    busy = [_float(c.get("chunk_generate_s")) for c in chunks]
    if not busy or any(b is None for b in busy):
        return {"idle_share": None, "idle_share_null_reason": "chunk_generate_s missing in a chunk"}
    reading = idle_share(wall_s, sum(busy))
    out = {"idle_share": reading.value, "generate_s": sum(busy)}
    if reading.value is None:
        out["idle_share_null_reason"] = reading.reason
    return out


def chunk_writers(rows: list[dict]) -> set[str]:
    """Who made the chunks of these rows (`variant_records.writer_key` of their `worker` and `gpu_uuid`);
    empty for CSVs of versions that did not record it."""
    from vlmbench.results.variant_records import writer_key
    return {writer_key(c.get("worker"), c.get("gpu_uuid")) for c in _chunks(rows) if c.get("worker")}


def variant_entry(rows: list[dict], missing_chunks: list[int], num_chunks: int, record: dict,
                  latency_images: int) -> dict:
    """One variant's summary entry from its CSV rows and its combined record (`latency_images`: the config's)."""
    failures = Counter(r["error"].split(":")[0] for r in rows if r["status"] != "ok")
    return {"chunks_done": num_chunks - len(missing_chunks), "chunks_expected": num_chunks,
            "missing_chunks": missing_chunks, "images_total": len(rows),
            "images_captioned": sum(r["status"] == "ok" for r in rows),
            "images_failed": sum(r["status"] != "ok" for r in rows), "failure_reasons": dict(failures),
            **tokens_per_caption(rows), **latency_stats(rows, latency_images), **efficiency(rows), **record}


def tokens_per_caption(rows: list[dict]) -> dict:
    """`generated_tokens_mean`: the mean of the captioned rows' `generated_tokens` (the tokens before the end
    token), shown as tokens/caption; null with the reason when no row was captioned."""
    counts = [int(r["generated_tokens"]) for r in rows if r["status"] == "ok"]
    if not counts:
        return {"generated_tokens_mean": None, "generated_tokens_mean_null_reason": "no image was captioned"}
    return {"generated_tokens_mean": statistics.fmean(counts)}


@dataclass
class SummaryTokens:
    """Every caption of one summary, tokenized in one tokenizer call (one JVM start with the Java one).

    `references`: image id -> tokenized reference captions of the scored (common) images;
    `captions`: variant -> image id -> [tokenized caption] for each of its captioned (status ok) rows;
    `tokenizer`: the tokenizer used (None when nothing was tokenized); `failure`: why nothing was.
    Drift (vlmbench.scoring.drift) scores from these, so it tokenizes nothing itself.
    """
    references: dict = field(default_factory=dict)
    captions: dict = field(default_factory=dict)
    tokenizer: Optional[str] = None
    failure: Optional[str] = None


def add_cider(entries: dict, rows_by_variant: dict, references: dict,
              tokenizer: str) -> tuple[dict, SummaryTokens]:
    """Scores every variant on the images all of them captioned; returns the scoring's own record and
    the summary's tokenized captions (for drift).

    Never raises for a scoring fault: a tokenizer that fails falls back (reason in
    `tokenizer_fallback_reason`) and anything else makes each variant's CIDEr null with the reason.
    """
    ok = {v: {int(r["image_id"]) for r in rows if r["status"] == "ok"} for v, rows in rows_by_variant.items()}
    common = common_image_set(ok)
    info = {"common_images": len(common), "min_images": MIN_CIDER_IMAGES, "tokenizer": None}
    for variant, rows in rows_by_variant.items():
        entries[variant].update(_exclusions(rows, ok[variant], common))
    predictions = {v: {int(r["image_id"]): r["caption"] for r in rows if int(r["image_id"]) in common}
                   for v, rows in rows_by_variant.items()}
    why = ("no image was captioned by every variant" if not common else
           unreferenced_reason(predictions, references) or too_few_images_reason(len(common)))
    tokens = tokenize_summary(rows_by_variant, references, predictions if why is None else {}, tokenizer, info)
    why = why or tokens.failure
    if why is None:
        _score(entries, tokens, common)
    else:
        info["cider_null_reason"] = why
        for entry in entries.values():
            entry["cider"], entry["cider_null_reason"] = None, why
    return info, tokens


def _exclusions(rows: list[dict], ok_ids: set[int], common: set[int]) -> dict:
    """How many of a variant's images are outside the scored set, and why."""
    return {"cider_images": len(common), "cider_excluded_images": len({int(r["image_id"]) for r in rows}) - len(common),
            "cider_excluded_reasons": {
                "failed in this variant": len({int(r["image_id"]) for r in rows if r["status"] != "ok"}),
                "failed or missing in another variant": len(ok_ids - common)}}


def unreferenced_reason(predictions: dict, references: dict) -> Optional[str]:
    """Why CIDEr cannot be computed when references.json lacks scored images (another experiment's file)."""
    scored = set().union(*(set(p) for p in predictions.values())) if predictions else set()
    unreferenced = sorted(scored - set(references))
    if not unreferenced:
        return None
    return (f"references.json has no captions for {len(unreferenced)} of the scored images (e.g. {unreferenced[0]}): "
            "it belongs to another experiment; rerun pytest benchmarks once to rewrite it")


def tokenize_summary(rows_by_variant: dict, references: dict, scored: dict, prefer: str,
                     info: dict) -> SummaryTokens:
    """The captioned rows' captions of every variant, and the references of the `scored` predictions
    (variant -> image id -> caption), in one tokenizer call (metrics.tokenize_for_scoring).

    Records the tokenizer (and a fallback's reason) in `info`; a failure becomes `failure`, never raised.
    """
    unscored = {v: {int(r["image_id"]): r["caption"] for r in rows
                    if r["status"] == "ok" and int(r["image_id"]) not in scored.get(v, {})}
                for v, rows in rows_by_variant.items()}
    if not any(scored.values()) and not any(unscored.values()):
        return SummaryTokens(failure="no captioned image to tokenize")
    try:
        refs, captions, done = tokenize_for_scoring(references, scored, prefer, unscored)
    except ImportError as exc:  # e.g. a GPU box without pycocoevalcap: score later with vlmbench-report
        return SummaryTokens(failure=f"scorer unavailable here ({exc}); run vlmbench-report where it is installed")
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the summary is still written
        return SummaryTokens(failure=f"tokenizing failed ({type(exc).__name__}: {exc}); "
                                     "rerun vlmbench-report --tokenizer ptb-python")
    info["tokenizer"] = done.tokenizer
    if done.fallback_reason:
        info["tokenizer_fallback_reason"] = done.fallback_reason
    return SummaryTokens(refs, captions, done.tokenizer)


def _score(entries: dict, tokens: SummaryTokens, common: set[int]) -> None:
    """Fills each entry's `cider` (and `cider_per_image`, for quality.py) from the tokenized captions."""
    for variant, captions in tokens.captions.items():
        try:
            score, per_image = cider_from_tokens(tokens.references, {i: captions[i] for i in common})
            entries[variant]["cider"] = score
            entries[variant]["cider_per_image"] = {str(i): s for i, s in per_image.items()}
        except Exception as exc:  # noqa: BLE001 - e.g. an image without references
            entries[variant]["cider"] = None
            entries[variant]["cider_null_reason"] = f"scoring failed: {type(exc).__name__}: {exc}"


# per-chunk columns that describe where a chunk was made; more than one value in a summary is a warning
ENVIRONMENT_COLUMNS = ("device_name", "torch_version", "transformers_version", "bitsandbytes_version")


def mixed_environment(rows_by_variant: dict) -> Optional[dict]:
    """None when every chunk was made with the same GPU and library versions, else what differs.

    Returns {"warning": one line, "values": column -> value -> ["<variant>_batch_<id>", ...]}.
    """
    seen: dict = {column: {} for column in ENVIRONMENT_COLUMNS}
    for variant, rows in rows_by_variant.items():
        for chunk in _chunks(rows):
            for column in ENVIRONMENT_COLUMNS:
                value = chunk.get(column) or "not recorded"
                seen[column].setdefault(value, []).append(f"{variant}_batch_{chunk['chunk_id']}")
    mixed = {column: values for column, values in seen.items() if len(values) > 1}
    if not mixed:
        return None
    parts = [f"{column} " + " / ".join(f"{value} ({len(chunks)} chunks)" for value, chunks in values.items())
             for column, values in mixed.items()]
    return {"warning": "this summary combines chunks made in different environments: " + "; ".join(parts)
                       + "; efficiency numbers (and possibly captions) are not from one setup",
            "values": mixed}


def delta(value: Optional[float], base: Optional[float], baseline: str, why_value: Optional[str] = None,
          why_base: Optional[str] = None) -> dict:
    """Absolute and relative (%) change against the baseline variant, null with the reason where undefined
    (`why_value` / `why_base`: the metric's own null reason in this variant / the baseline)."""
    if value is None:
        return {"abs": None, "rel_pct": None, "null_reason": f"null in this variant: {why_value or 'no reason recorded'}"}
    if base is None:
        return {"abs": None, "rel_pct": None, "null_reason": f"null in {baseline}: {why_base or 'no reason recorded'}"}
    if base == 0:
        return {"abs": value - base, "rel_pct": None, "null_reason": f"{baseline}'s value is 0"}
    return {"abs": value - base, "rel_pct": (value - base) / base * 100}


def add_deltas(entries: dict, baseline: str = "fp16") -> None:
    base = entries.get(baseline)
    for name, entry in entries.items():
        if base is not None and name != baseline:
            entry[f"delta_vs_{baseline}"] = {m: delta(entry.get(m), base.get(m), baseline, entry.get(f"{m}_null_reason"),
                                                      base.get(f"{m}_null_reason")) for m in METRICS}


def environment() -> dict:
    """Python, platform, vlmbench's version, library versions (from the installed distributions' metadata:
    nothing is imported, so a report prints no library's import-time warnings) and the git commit."""
    import vlmbench
    env = {"python": platform.python_version(), "platform": platform.platform(), "vlmbench": vlmbench.__version__,
           **distribution_version()}
    for library in VERSIONED_LIBRARIES:
        env[library] = installed_version(library)
        if env[library] is None:
            env[f"{library}_null_reason"] = f"{library} is not installed"
    env.update(git_commit())
    return env


def distribution_version() -> dict:
    """`pytest_vlmbench`: the version of the installed distribution (vlmbench.DISTRIBUTION) from its metadata,
    or null with the reason (a source tree on PYTHONPATH, or an install made before the rename)."""
    from vlmbench import DISTRIBUTION
    version = installed_version(DISTRIBUTION)
    key = DISTRIBUTION.replace("-", "_")
    if version is not None:
        return {key: version}
    return {key: None, f"{key}_null_reason": f"no distribution named {DISTRIBUTION!r} is installed (run from a "
                                             "source tree, or installed before the rename: pip install -e .)"}


def git_commit() -> dict:
    """The commit measured: VLMBENCH_GIT_COMMIT when set (a copied tree's .git may be another commit's,
    as on the lent GPU machines), else `git rev-parse HEAD`, else null with the reason."""
    import os
    if os.environ.get("VLMBENCH_GIT_COMMIT"):
        return {"git_commit": os.environ["VLMBENCH_GIT_COMMIT"]}
    try:
        return {"git_commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                             check=True, timeout=10).stdout.strip()}
    except Exception as exc:
        return {"git_commit": None,
                "git_commit_null_reason": f"not a git checkout ({type(exc).__name__}) and VLMBENCH_GIT_COMMIT unset"}


def dtype_mix(cfg, entries: dict) -> Optional[dict]:
    """None, or the note that some quantized variants' deltas mix a dtype change with quantization: variants whose
    method names its own dtype (fp8 and w4a16 run bf16: quantize.variants.METHOD_DTYPES) against a baseline that
    runs in another (fp16). Not a refusal (config._validate_baseline refuses only what precision.language_model
    decides): the run is valid, its delta is not quantization's alone. Returns {"baseline", "baseline_dtype",
    "variants": name -> dtype, "note": one line naming the run that isolates quantization}."""
    from vlmbench.quantize.variants import compute_dtype, get_variant
    baseline = cfg.baseline_variant
    if baseline not in entries:
        return None
    variants = {name: get_variant(name, cfg.variant_definitions) for name in cfg.variants}
    dtypes = {name: compute_dtype(v, cfg.precision.language_model) for name, v in variants.items()}
    mixed = {name: dtypes[name] for name in entries
             if name != baseline and variants[name].quantized and dtypes[name] != dtypes[baseline]}
    if not mixed:
        return None
    following = [n for n, v in variants.items() if v.quantized and v.dtype is None]  # take precision.language_model
    sentences = []
    for dtype in sorted(set(mixed.values())):
        names = [n for n, d in mixed.items() if d == dtype]
        also = (f" (and precision.language_model: {dtype} for {', '.join(following)})"
                if following and cfg.precision.language_model != dtype else "")
        sentences.append(
            f"{', '.join(names)} run in {dtype} (the dtype their method takes), the baseline {baseline} in "
            f"{dtypes[baseline]}: their delta vs {baseline} mixes the dtype change with quantization; "
            f"variants: [{dtype}, {', '.join(names)}, ...] with baseline: {dtype}{also} isolates quantization")
    return {"baseline": baseline, "baseline_dtype": dtypes[baseline], "variants": mixed,
            "note": "note: " + "; ".join(sentences)}


def model_section(cfg, records_by_variant: dict) -> dict:
    """What model ran, for the summary's readers: model_id, weights, the family (the `family` (model_type) that the
    variant records hold, else model.architecture) with its title, and `label`, the words the table caption and
    report.html's title use. The label names the family where model_id alone would not tell it: model.architecture
    set (random weights of a family: model_id is then only a label) or a family other than Qwen2.5-VL."""
    from vlmbench.models.families import DEFAULT_ARCHITECTURE, FAMILIES
    recorded = sorted({r["family"] for writers in records_by_variant.values() for r in writers.values()
                       if r.get("family")})
    types = recorded or [cfg.model.architecture or (DEFAULT_ARCHITECTURE if cfg.model.weights != "pretrained" else None)]
    types = [t for t in types if t]
    titles = [FAMILIES[t].title if t in FAMILIES else t for t in types]
    section = {"model_id": cfg.model_id, "weights": cfg.model.weights, "tiny": cfg.model.tiny,
               "architecture": cfg.model.architecture, "family": " / ".join(types) or None,
               "family_title": " / ".join(titles) or None, "label": cfg.model_id}
    if types and (cfg.model.architecture is not None or types != [DEFAULT_ARCHITECTURE]):
        family = f"{' / '.join(titles)}, model_type {' / '.join(types)}"
        if cfg.model.weights == "random":
            section["label"] = f"{family}, {'tiny ' if cfg.model.tiny else ''}random weights"
        else:
            section["label"] = f"{cfg.model_id}, {family}"
    return section


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def build_summary(results_dir: Path, cfg, references: dict, started_at: float, tokenizer: str = "auto",
                  known_rows: Optional[dict] = None, rows_out: Optional[dict] = None) -> dict:
    """The summary document of the experiment `cfg` from the files in `results_dir` (chunk rows already
    read may be passed as `known_rows`: (variant, chunk id) -> rows). `rows_out`, when given, receives
    variant -> the rows read, so that the report page does not read and verify every CSV again."""
    entries, rows_by_variant = {}, ({} if rows_out is None else rows_out)
    records = {variant: read_variant_records(results_dir, variant) for variant in cfg.variants}  # read once
    for variant in cfg.variants:
        fingerprint = cfg.variant_fingerprint(variant)  # a variant's chunks and records carry its own
        rows, missing = load_variant_rows(results_dir, variant, cfg.num_chunks, fingerprint, known_rows)
        if not rows:
            continue
        rows_by_variant[variant] = rows
        record = combined_record(records[variant], chunk_writers(rows), fingerprint, variant)
        entries[variant] = variant_entry(rows, missing, cfg.num_chunks, record, cfg.measure.latency_images)
    scoring, tokens = add_cider(entries, rows_by_variant, references, tokenizer) if entries else ({}, None)
    add_deltas(entries, cfg.baseline_variant)
    quality = add_quality_or_reason(entries, rows_by_variant, cfg, tokens) if entries else {}
    metrics, metrics_scoring = caption_metrics_or_reason(entries, tokens, cfg)
    return {"schema": SCHEMA, "experiment_name": cfg.experiment_name, "model_id": cfg.model_id,
            "model": model_section(cfg, records), "config_fingerprint": cfg.fingerprint, "variant_fingerprints": cfg.variant_fingerprints,
            "started_at": iso(started_at), "finished_at": iso(time.time()),
            "environment": {**environment(), **gpu_of_records(records)}, "cider_scoring": scoring, "quality": quality, "headline_vram": HEADLINE_VRAM,
            "mixed_environment": mixed_environment(rows_by_variant), "dtype_mix": dtype_mix(cfg, entries),
            "variants_not_run": [v for v in cfg.variants if v not in entries],
            "variants": entries, "metrics": metrics, "metrics_scoring": metrics_scoring, "config": cfg.to_dict()}


def caption_metrics_or_reason(entries: dict, tokens: Optional[SummaryTokens], cfg) -> tuple[dict, dict]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE per variant (vlmbench.scoring.caption_metrics); a fault
    becomes every metric null with the reason, never a lost summary."""
    from vlmbench.scoring.caption_metrics import all_null, caption_metrics
    try:
        return caption_metrics(entries, tokens, cfg)
    except Exception as exc:  # noqa: BLE001 - the measurements matter more than this section
        reason = f"caption metrics failed: {type(exc).__name__}: {exc}"
        return {v: all_null(reason) for v in entries}, {"metrics_null_reason": reason}
