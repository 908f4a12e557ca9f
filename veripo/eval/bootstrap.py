"""95% bootstrap intervals of a benchmark score, and of the paired difference between two checkpoints.

Questions are resampled with replacement within their category (stratified): the official
aggregations average category means (VSI-Bench's official_overall), and a plain resample could leave
a category out and change what is averaged. A paired difference resamples the same questions for both
checkpoints, so question difficulty, which both share, cancels out of the interval.

Resample r draws, for each category in sorted order (None first), that category's indices with
``numpy.random.default_rng(seed).integers(0, n_c, size=(resamples, n_c))``: a direct bootstrap that
draws the same way and scores each resample with ``score_predictions`` gives the same interval
(tests/test_bootstrap.py checks it).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def _strata(categories: Sequence[str | None]) -> list[np.ndarray]:
    order = sorted(set(categories), key=lambda c: (c is not None, c or ""))
    return [np.array([i for i, c in enumerate(categories) if c == cat]) for cat in order]


def resample_indices(categories: Sequence[str | None], resamples: int = RESAMPLES,
                     seed: int = SEED) -> np.ndarray:
    """(resamples, n) question indices: each row a stratified resample of the questions."""
    rng = np.random.default_rng(seed)
    cols = []
    for members in _strata(categories):
        cols.append(members[rng.integers(0, len(members), size=(resamples, len(members)))])
    return np.concatenate(cols, axis=1)


def _interval(values: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def score_interval(scores: Sequence[float], categories: Sequence[str | None],
                   aggregate: Callable[[np.ndarray, np.ndarray], np.ndarray],
                   resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> list[float]:
    """[low, high] of ``aggregate`` over stratified resamples.

    ``aggregate(scores, idx)`` gets the per-question scores and a (resamples, n) index array and
    returns one value per resample."""
    idx = resample_indices(categories, resamples, seed)
    return _interval(aggregate(np.asarray(scores, dtype=np.float64), idx), level)


def paired_difference(scores: Sequence[float], baseline: Sequence[float], categories: Sequence[str | None],
                      aggregate: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict:
    """Difference ``aggregate(scores) - aggregate(baseline)`` over the same questions, with its interval
    from resampling the questions once for both."""
    a = np.asarray(scores, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired difference: {a.size} scores against {b.size} baseline scores")
    whole = np.arange(a.size)[None, :]
    idx = resample_indices(categories, resamples, seed)
    return {"difference": float(aggregate(a, whole)[0] - aggregate(b, whole)[0]),
            "ci95": _interval(aggregate(a, idx) - aggregate(b, idx), level)}


def mean_aggregate(scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Percent of the mean score of each resample (a benchmark's `overall`)."""
    return scores[idx].mean(axis=1) * 100


def category_mean_aggregate(categories: Sequence[str | None],
                            combine: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Callable:
    """An aggregate over category means: ``combine`` gets {category: per-resample percent} and returns
    one value per resample (VSI-Bench's official_overall averages its categories)."""
    cats = np.array(["" if c is None else c for c in categories], dtype=object)

    def aggregate(scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
        picked = scores[idx]
        cat_of = cats[idx]
        means = {}
        for cat in sorted(set(c for c in categories if c is not None)):
            mask = cat_of == cat
            means[cat] = (picked * mask).sum(axis=1) / mask.sum(axis=1) * 100
        return combine(means)

    return aggregate
