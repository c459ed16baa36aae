"""Bootstrap confidence intervals for CIDEr-D and for the paired difference between two variants.

Why it exists: a CIDEr difference of 0.01 between two variants means nothing without a sense of
the noise from which images happened to be scored. The corpus CIDEr-D of pycocoevalcap is the mean
of its per-image scores (`Cider.compute_score` returns both), so the interval resamples images with
replacement and takes the mean of their per-image scores each time (the percentile bootstrap,
Efron & Tibshirani 1993, ch. 13).

The per-image scores are computed once, on the whole common image set: CIDEr-D's document
frequencies stay those of that set (the official definition), and are not recomputed for each
resample. The paired difference resamples the same images for both variants (one index matrix),
so a difference that holds image by image gets a narrow interval, and two identical variants get an
interval of width zero. The generator is numpy's PCG64 seeded with the config's `seed`: the same
folder gives the same intervals.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_ROWS = 256  # resamples drawn per block, so that memory stays at BLOCK_ROWS x images


@dataclass(frozen=True)
class Interval:
    point: float  # the statistic on the full set (mean of the per-image scores)
    low: float
    high: float
    confidence: float
    samples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {"point": self.point, "low": self.low, "high": self.high, "confidence": self.confidence,
                "bootstrap_samples": self.samples}


def resampled_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Means of `samples` resamples (with replacement, same size) of the 1-d array `values`.

    The resampled indices depend only on `seed`, `samples` and len(values), so two arrays of the same
    length resampled with the same seed use the same images: that is what pairs them.
    """
    rng = np.random.default_rng(seed)
    n = len(values)
    means = []
    for start in range(0, samples, BLOCK_ROWS):
        rows = min(BLOCK_ROWS, samples - start)
        means.append(values[rng.integers(0, n, size=(rows, n))].mean(axis=1))
    return np.concatenate(means)


def interval(values, samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of `values` (per-image scores, shape (images,)).

    Raises ValueError on an empty array.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no per-image scores to resample")
    means = resampled_means(values, samples, seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(values.mean()), float(low), float(high), confidence, samples)


def paired_difference(scores: dict, baseline_scores: dict, samples: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> Interval:
    """Interval of mean(variant - baseline) over the images both score, resampled together.

    `scores` and `baseline_scores` map image id -> per-image CIDEr-D computed on the same image set.
    Raises ValueError when they share no image.
    """
    ids = sorted(set(scores) & set(baseline_scores))
    if not ids:
        raise ValueError("the variant and the baseline share no scored image")
    diff = np.array([scores[i] - baseline_scores[i] for i in ids], dtype=np.float64)
    return interval(diff, samples, confidence, seed)


def resampled_sums(rows: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Column sums of `samples` resamples (with replacement) of the images, the rows of `rows` (images, k):
    shape (samples, k). The indices are drawn as resampled_means draws them (same seed, same image count,
    same images), one column at a time so that memory stays at BLOCK_ROWS x images."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    sums = []
    for start in range(0, samples, BLOCK_ROWS):
        index = rng.integers(0, n, size=(min(BLOCK_ROWS, samples - start), n))
        sums.append(np.stack([rows[:, j][index].sum(axis=1) for j in range(rows.shape[1])], axis=1))
    return np.concatenate(sums)


def corpus_intervals(rows, statistic, samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> list[Interval]:
    """Percentile bootstrap intervals of a corpus statistic made from summed per-image statistics (corpus BLEU
    from n-gram counts and lengths), where the corpus score is not a mean of per-image scores.

    `rows`: (images, k) per-image statistics; `statistic`: sums (..., k) -> values (..., m). Each resample
    draws images and recomputes the statistic from their sums. Returns one Interval per output value, its
    point the statistic of the whole set. Raises ValueError on an empty array.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0:
        raise ValueError("no per-image statistics to resample")
    point = statistic(rows.sum(axis=0))
    values = statistic(resampled_sums(rows, samples, seed))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return [Interval(float(p), float(lo), float(hi), confidence, samples) for p, lo, hi in zip(point, low, high)]
