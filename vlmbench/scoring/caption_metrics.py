"""The COCO caption metrics beside CIDEr-D: BLEU-1..4, METEOR, ROUGE-L and SPICE, through pycocoevalcap.

Why it exists: lmms-eval's and VLMEvalKit's COCO tasks report these, so a reader compares vlmbench's numbers
with theirs. Every metric is pycocoevalcap's own scorer (the ones its `COCOEvalCap` runs), fed the summary's
one PTB tokenization of the common image set, the same input as CIDEr-D (vlmbench.scoring.metrics), so all
metrics of a variant are on the same images and tokens. CIDEr-D stays the headline and the gated metric.

What each needs, and what a missing piece gives (null with `<metric>_null_reason`, never 0):
- BLEU-1..4 (`Bleu(4)`, Papineni et al. 2002, corpus BLEU with the closest reference length) and ROUGE-L
  (`Rouge`, Lin 2004, F-measure with beta 1.2, mean over images): pure Python.
- METEOR (`Meteor`, Denkowski & Lavie 2014, meteor-1.5.jar): Java, and a JVM that loads a 60 MB paraphrase
  table (5-20 s per summary; one JVM scores every variant). `quality.meteor: false` skips it.
- SPICE (`Spice`, Anderson et al. 2016): Java and Stanford CoreNLP 3.6.0 jars in pycocoevalcap's
  `spice/lib/`, which pycocoevalcap downloads on first use; vlmbench never downloads them, so without them
  SPICE is null with the reason.

Intervals (percentile bootstrap over images, each an interval of the number reported): ROUGE-L and CIDEr-D are
means of per-image scores, so the mean is resampled; corpus BLEU sums clipped n-gram counts and lengths over the
corpus before one brevity penalty (pycocoevalcap's per-image BLEU is another number), so each resample sums its
images' counts and recomputes corpus BLEU; corpus METEOR aggregates statistics inside the JVM before scoring, so
its interval is null with that reason rather than an interval of another quantity.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import threading
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from vlmbench.scoring.metrics import CIDER_DIGITS

NAMES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
# metrics whose corpus score is the mean of their per-image scores: a bootstrap over images is their interval
MEAN_OF_IMAGES = ("ROUGE-L", "CIDEr-D")
WITH_INTERVALS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", *MEAN_OF_IMAGES)
NOT_A_MEAN = ("corpus METEOR aggregates its statistics before scoring and is not the mean of per-image scores, "
              "so a bootstrap over per-image scores would be an interval of another number")
METRIC_DIGITS = CIDER_DIGITS  # significant digits of every metric shown (terminal and report.html), CIDEr-D's too
METEOR_TIMEOUT_S = 900  # the JVM loads its tables in 5-20 s and scores 25,000 captions in about a minute
SPICE_CORENLP_JAR = "stanford-corenlp-3.6.0.jar"  # pycocoevalcap.spice.get_stanford_models.JAR, what SPICE loads


def bleu(refs: dict, preds: dict) -> dict:
    """BLEU-1..4 of tokenized `preds` (image id -> [caption]) against `refs` (image id -> [captions]):
    pycocoevalcap's Bleu(4), whose progress print is swallowed. Returns {"BLEU-1": float, ...}, 0 to 1."""
    from pycocoevalcap.bleu.bleu import Bleu
    with contextlib.redirect_stdout(io.StringIO()):
        scores, _ = Bleu(4).compute_score(refs, preds)
    return {f"BLEU-{n}": float(s) for n, s in zip(range(1, 5), scores)}


# pycocoevalcap/bleu/bleu_scorer.py compute_score: precision = (correct + 1e-15) / (guess + 1e-9) (its `tiny`
# and `small`), brevity penalty exp(1 - reflen / testlen) when testlen < reflen (its ratio uses the same constants)
BLEU_NUMERATOR_EPS, BLEU_DENOMINATOR_EPS = 1e-15, 1e-9


def bleu_statistics(refs: dict, preds: dict) -> np.ndarray:
    """Per image (sorted ids), what corpus BLEU sums: [test length, closest reference length, guessed n-grams
    n=1..4, clipped matches n=1..4], shape (images, 10), as pycocoevalcap's BleuScorer counts them."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer
    scorer = BleuScorer(n=4)
    for i in sorted(preds):
        scorer += (preds[i][0], refs[i])
    return np.array([[c["testlen"], scorer._single_reflen(c["reflen"], "closest", c["testlen"]), *c["guess"],
                      *c["correct"]] for c in scorer.ctest], dtype=np.float64)


def corpus_bleu(sums: np.ndarray) -> np.ndarray:
    """BLEU-1..4 (shape (..., 4)) from summed bleu_statistics (shape (..., 10)), pycocoevalcap's formula."""
    testlen, reflen, guess, correct = sums[..., 0], sums[..., 1], sums[..., 2:6], sums[..., 6:10]
    precisions = np.cumprod((correct + BLEU_NUMERATOR_EPS) / (guess + BLEU_DENOMINATOR_EPS), axis=-1)
    bleus = precisions ** (1.0 / np.arange(1, 5))
    ratio = (testlen + BLEU_NUMERATOR_EPS) / (reflen + BLEU_DENOMINATOR_EPS)
    penalty = np.exp(1 - 1 / np.minimum(ratio, 1.0))
    return bleus * penalty[..., None]


def rouge_l(refs: dict, preds: dict) -> tuple[float, list[float]]:
    """ROUGE-L (pycocoevalcap's Rouge): the mean over images, and the per-image scores in `preds`' key order."""
    from pycocoevalcap.rouge.rouge import Rouge
    score, per_image = Rouge().compute_score(refs, preds)
    return float(score), [float(s) for s in per_image]


def meteor_unavailable_reason(enabled: bool) -> Optional[str]:
    """Why METEOR is not computed here (None when it is)."""
    if not enabled:
        return ("quality.meteor is false (METEOR starts a JVM that loads a 60 MB paraphrase table, "
                "5-20 s per summary)")
    if shutil.which("java") is None:
        return "METEOR needs Java (meteor-1.5.jar) and java is not on the PATH; install a JRE and rerun vlmbench-report"
    return None


def spice_unavailable_reason() -> Optional[str]:
    """Why SPICE is not computed here (None when it can be): it needs Java and the Stanford CoreNLP jars."""
    if shutil.which("java") is None:
        return "SPICE needs Java and java is not on the PATH"
    try:
        from pycocoevalcap.spice import spice
    except ImportError as exc:
        return f"pycocoevalcap's SPICE is not importable ({exc})"
    lib = Path(spice.__file__).resolve().parent / "lib"
    if not (lib / SPICE_CORENLP_JAR).is_file():
        return (f"SPICE needs Stanford CoreNLP 3.6.0 ({SPICE_CORENLP_JAR} in {lib}), which pycocoevalcap downloads "
                "on first use and vlmbench does not; run python -c \"from pycocoevalcap.spice.get_stanford_models "
                "import get_stanford_models as g; g()\" once where it may download, then rerun vlmbench-report")
    return None


class JavaScorers:
    """METEOR and SPICE for every variant of one summary: one METEOR JVM (its start-up dominates), closed at exit."""

    def __init__(self, meteor_enabled: bool):
        self.meteor_reason = meteor_unavailable_reason(meteor_enabled)
        self.spice_reason = spice_unavailable_reason()
        self._meteor = None

    def __enter__(self) -> "JavaScorers":
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        if self._meteor is not None:  # pycocoevalcap's Meteor stops its JVM only when collected; stop it now
            meteor, self._meteor = self._meteor, None
            if meteor.lock.locked():  # left held by a compute_score that raised: its __del__ would wait forever
                meteor.lock.release()
            meteor.meteor_p.kill()
            meteor.meteor_p.wait()
            for pipe in (meteor.meteor_p.stdin, meteor.meteor_p.stdout, meteor.meteor_p.stderr):
                with contextlib.suppress(OSError):  # stdin's unsent lines to a dead JVM: a broken pipe
                    pipe.close()

    def meteor(self, refs: dict, preds: dict) -> float:
        """Corpus METEOR (pycocoevalcap's Meteor, 0 to 1); the JVM starts on first use. A JVM that exits, or
        answers nothing within METEOR_TIMEOUT_S, raises (RuntimeError, TimeoutError) instead of hanging."""
        if self._meteor is None:
            from pycocoevalcap.meteor.meteor import Meteor
            self._meteor = Meteor()
        watchdog = threading.Timer(METEOR_TIMEOUT_S, self._meteor.meteor_p.kill)
        watchdog.start()
        try:
            return float(self._meteor.compute_score(refs, preds)[0])
        except (ValueError, OSError):  # an empty answer or a broken pipe: the JVM is gone
            error = self._why_meteor_stopped(watchdog)
            # its compute_score left Meteor's lock held: the next variant's call would wait on it forever, so
            # the dead scorer is closed and every later variant is null with this reason
            self._close()
            self.meteor_reason = f"METEOR stopped on an earlier variant ({type(error).__name__}: {error})"
            raise error from None
        finally:
            watchdog.cancel()

    def _why_meteor_stopped(self, watchdog: threading.Timer) -> Exception:
        process = self._meteor.meteor_p
        if watchdog.finished.is_set():  # set before cancel() only when the watchdog fired
            return TimeoutError(f"METEOR gave no answer within {METEOR_TIMEOUT_S} s")
        process.wait()
        detail = process.stderr.read().decode(errors="replace").strip().splitlines()
        return RuntimeError(f"METEOR's JVM exited with status {process.returncode}: {' | '.join(detail[:2]) or 'no output'}")

    def spice(self, refs: dict, preds: dict) -> float:
        """Corpus SPICE (pycocoevalcap's Spice: the mean of the per-image F-scores)."""
        from pycocoevalcap.spice.spice import Spice
        score = float(Spice().compute_score(refs, preds)[0])
        if not np.isfinite(score):  # Spice turns an image it could not score into NaN, and its mean with it
            raise ValueError("SPICE gave NaN (an image it could not score, such as an empty caption)")
        return score


def _run(reasons: dict, names: tuple, compute: Callable[[], object]) -> object:
    """compute(), or None with the reason recorded for each of `names` when it raises: one metric's fault
    (a JVM that dies, a scorer's assertion) never takes the others down."""
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001 - null with the reason, never a lost summary
        reasons.update({name: f"scoring failed: {type(exc).__name__}: {exc}" for name in names})
        return None


def _java_metric(reasons: dict, name: str, unavailable: Optional[str], compute: Callable[[], float]):
    if unavailable:
        reasons[name] = unavailable
        return None
    return _run(reasons, (name,), compute)


def score_variant(refs: dict, preds: dict, cider: Optional[float], java: JavaScorers) -> tuple[dict, dict]:
    """Every metric of one variant's tokenized `preds` on its images (`refs`, `preds`: image id -> list of str).

    `cider`: the variant's CIDEr-D as the summary computed it (same scorer, same input), copied, not redone.
    Returns (metric name -> value or None, with `<name>_null_reason` beside each None; what the intervals
    resample: {"ROUGE-L": per-image scores, "BLEU": bleu_statistics}, each in sorted image-id order or None)."""
    ids = sorted(preds)
    refs, preds = {i: refs[i] for i in ids}, {i: preds[i] for i in ids}
    bleu_names = tuple(f"BLEU-{n}" for n in range(1, 5))
    reasons: dict = {}
    values = _run(reasons, bleu_names, lambda: bleu(refs, preds)) or dict.fromkeys(bleu_names)
    rouge = _run(reasons, ("ROUGE-L",), lambda: rouge_l(refs, preds))
    values |= {"ROUGE-L": rouge[0] if rouge else None, "CIDEr-D": cider,
               "METEOR": _java_metric(reasons, "METEOR", java.meteor_reason, lambda: java.meteor(refs, preds)),
               "SPICE": _java_metric(reasons, "SPICE", java.spice_reason, lambda: java.spice(refs, preds))}
    per_image = {"ROUGE-L": rouge[1] if rouge else None,
                 "BLEU": _run({}, (), lambda: bleu_statistics(refs, preds)) if values["BLEU-1"] is not None else None}
    return {n: values[n] for n in NAMES} | {f"{n}_null_reason": r for n, r in reasons.items()}, per_image


def all_null(reason: str) -> dict:
    """Every metric null with one reason (e.g. the common image set was not scored)."""
    return dict.fromkeys(NAMES) | {f"{name}_null_reason": reason for name in NAMES}


def _interval_reason(name: str, value: Optional[float]) -> str:
    if value is None:
        return f"{name} is null"
    if name == "METEOR":
        return NOT_A_MEAN
    return "per-image SPICE scores are not kept" if name == "SPICE" else f"no per-image {name} statistics"


def intervals(values: dict, per_image: Optional[dict], entry: dict, cfg) -> dict:
    """`<name>_ci` per metric, percentile bootstraps over images (vlmbench.scoring.bootstrap; the config's
    quality.bootstrap_samples, quality.confidence and seed): of the mean per-image score for ROUGE-L, of
    corpus BLEU recomputed from each resample's summed n-gram counts for BLEU-1..4, the summary's `cider_ci`
    for CIDEr-D; null with `<name>_ci_null_reason` for METEOR (see NOT_A_MEAN) and SPICE."""
    from vlmbench.scoring import bootstrap
    q, per_image = cfg.quality, per_image or {}
    found = {"CIDEr-D": entry.get("cider_ci") if values["CIDEr-D"] is not None else None}
    if per_image.get("ROUGE-L"):
        found["ROUGE-L"] = bootstrap.interval(per_image["ROUGE-L"], q.bootstrap_samples, q.confidence, cfg.seed).as_dict()
    if per_image.get("BLEU") is not None:
        bleus = bootstrap.corpus_intervals(per_image["BLEU"], corpus_bleu, q.bootstrap_samples, q.confidence, cfg.seed)
        found |= {f"BLEU-{n}": ci.as_dict() for n, ci in zip(range(1, 5), bleus)}
    out: dict = {}
    for name in NAMES:
        out[f"{name}_ci"] = found.get(name)
        if out[f"{name}_ci"] is None:
            out[f"{name}_ci_null_reason"] = _interval_reason(name, values[name])
    return out


def _set_reason(entries: dict, tokens) -> str:
    """Why the common image set was not scored: CIDEr-D's own reason (too few images, no references, ...)."""
    reasons = [e.get("cider_null_reason") for e in entries.values() if e.get("cider_null_reason")]
    return reasons[0] if reasons else (tokens.failure if tokens is not None and tokens.failure else "nothing scored")


def caption_metrics(entries: dict, tokens, cfg) -> tuple[dict, dict]:
    """The summary's `metrics` (variant -> {"BLEU-1": ..., "BLEU-4": ..., "METEOR": ..., "ROUGE-L": ...,
    "CIDEr-D": ..., "SPICE": ..., `<name>_null_reason`, `<name>_ci`, `<name>_ci_null_reason`}) and
    `metrics_scoring` (the image set, tokenizer and scale), from `tokens` (summary.SummaryTokens: the
    references of the scored common set and every variant's tokenized captions) and `entries` (their
    `cider`, `cider_null_reason` and `cider_ci`)."""
    scored = tokens is not None and not tokens.failure and bool(tokens.references)
    info = {"images": len(tokens.references) if scored else 0, "tokenizer": tokens.tokenizer if scored else None,
            "scorers": "pycocoevalcap (Bleu(4), Meteor, Rouge, Cider, Spice) on the summary's one tokenization",
            "scale": "0 to 1, except CIDEr-D (0 to 10, pycocoevalcap's scale)"}
    if not scored:
        reason = f"the common image set was not scored: {_set_reason(entries, tokens)}"
        return {v: all_null(reason) | intervals(all_null(reason), None, {}, cfg) for v in entries}, info
    found = {}
    with JavaScorers(cfg.quality.meteor) as java:
        for variant, entry in entries.items():
            preds = {i: tokens.captions[variant][i] for i in tokens.references}
            values, per_image = score_variant(tokens.references, preds, entry.get("cider"), java)
            if entry.get("cider") is None:
                values["CIDEr-D_null_reason"] = entry.get("cider_null_reason") or "no reason recorded"
            found[variant] = values | intervals(values, per_image, entry, cfg)
    return found, info


def _cell(values: dict, name: str) -> str:
    value, ci = values.get(name), values.get(f"{name}_ci")
    if value is None:
        return "n/a"
    return metric_text(value) + (f" [{metric_text(ci['low'])}, {metric_text(ci['high'])}]" if ci else "")


def metric_text(value: Optional[float]) -> str:
    """A metric as the outputs show it, METRIC_DIGITS significant digits; 'n/a' for null."""
    return "n/a" if value is None else f"{value:.{METRIC_DIGITS}g}"


def null_lines(metrics: dict) -> list[str]:
    """'' and one 'n/a <metrics>: <reason>' line per distinct reason, naming the metrics it concerns."""
    by_reason: dict[str, list[str]] = {}
    for name in NAMES:
        for reason in sorted({v[f"{name}_null_reason"] for v in metrics.values() if v.get(f"{name}_null_reason")}):
            by_reason.setdefault(reason, []).append(name)
    return [""] + [f"n/a {', '.join(names)}: {reason}" for reason, names in by_reason.items()] if by_reason else []


def metrics_table(summary: dict) -> str:
    """The metrics as markdown: one row per variant, `n/a` lines with the reasons, and what the intervals are."""
    metrics, info = summary.get("metrics") or {}, summary.get("metrics_scoring") or {}
    if not metrics:
        return ""
    lines = [f"COCO caption metrics (pycocoevalcap) on the {info.get('images', '?')} images every variant captioned "
             f"({info.get('tokenizer') or 'not scored'}); {info.get('scale', '')}", "",
             "| variant | " + " | ".join(NAMES) + " |", "|" + "---|" * (len(NAMES) + 1)]
    lines += [f"| {variant} | " + " | ".join(_cell(values, n) for n in NAMES) + " |" for variant, values in metrics.items()]
    lines += null_lines(metrics)
    confidence = next((v[f"{n}_ci"]["confidence"] for v in metrics.values() for n in WITH_INTERVALS if v.get(f"{n}_ci")),
                      None)
    if confidence:
        lines += ["", f"[low, high]: {round(100 * confidence)}% bootstrap interval over images (BLEU: corpus BLEU "
                      f"of each resample); none for METEOR: {NOT_A_MEAN}"]
    return "\n".join(lines)
