"""Aggregate scores across games and their bootstrap confidence intervals (Agarwal et al. 2021,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice").

Scores of one agent are a list with one array per game: `scores[g]` holds the scores of the
runs (seeds) on game g, shape [..., runs_g]; runs per game may differ. Every aggregate takes
that list and reduces the last axis of each array and the list, so it works on one set of
scores ([runs_g] -> scalar) and on a batch of bootstrap resamples ([B, runs_g] -> [B]) alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Scores = Sequence[np.ndarray]  # scores[g]: [..., runs_g]
Aggregate = Callable[[Scores], np.ndarray]


def game_means(scores: Scores) -> np.ndarray:
    """Mean over runs of each game: [..., num_games]."""
    return np.stack([np.mean(s, axis=-1) for s in scores], axis=-1)


def median_of_game_means(scores: Scores) -> np.ndarray:
    """Median over games of each game's mean score: [...]."""
    return np.median(game_means(scores), axis=-1)


def mean_of_game_means(scores: Scores) -> np.ndarray:
    """Mean over games of each game's mean score: [...]."""
    return np.mean(game_means(scores), axis=-1)


def interquartile_mean(values: np.ndarray) -> np.ndarray:
    """Mean of the middle 50% of the last axis: [..., n] -> [...].

    floor(n / 4) values are cut at each end (scipy.stats.trim_mean(values, 0.25, axis=-1)):
    robust to the outlier games that move a mean, less noisy than a median.
    """
    values = np.sort(values, axis=-1)
    cut = values.shape[-1] // 4
    return np.mean(values[..., cut : values.shape[-1] - cut], axis=-1)


def pooled_interquartile_mean(scores: Scores) -> np.ndarray:
    """IQM of the scores of all runs of all games pooled together: [...].

    With the same number of runs per game this is Agarwal et al.'s IQM; with unequal numbers
    a game with more runs weighs more.
    """
    return interquartile_mean(np.concatenate([np.asarray(s) for s in scores], axis=-1))


AGGREGATES: dict[str, Aggregate] = {
    "median": median_of_game_means,
    "mean": mean_of_game_means,
    "iqm": pooled_interquartile_mean,
}


def stratified_resample(
    scores: Scores, num_samples: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Draws runs with replacement within each game (the games are fixed, the runs are random).

    scores[g]: [runs_g] -> resampled[g]: [num_samples, runs_g].
    """
    resampled = []
    for game_scores in scores:
        game_scores = np.asarray(game_scores, dtype=np.float64)
        picks = rng.integers(0, game_scores.shape[-1], size=(num_samples, game_scores.shape[-1]))
        resampled.append(game_scores[picks])
    return resampled


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `confidence` interval of bootstrap samples [B, ...] -> (low, high): [...]."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail], axis=0)
    return low, high


def stratified_bootstrap_interval(
    aggregate: Aggregate,
    scores: Scores,
    num_samples: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile confidence interval of `aggregate(scores)` under the stratified bootstrap."""
    samples = aggregate(stratified_resample(scores, num_samples, rng))
    low, high = percentile_interval(samples, confidence)
    return float(low), float(high)


def bootstrap_mean_interval(
    values: np.ndarray, num_samples: int, confidence: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the mean over runs, at each point of a learning curve.

    values: [runs, points] (every run has a value at every point) -> (low, high): [points].
    Runs are resampled whole, so a run's points stay together.
    """
    runs = values.shape[0]
    picks = rng.integers(0, runs, size=(num_samples, runs))
    means = values[picks].mean(axis=1)  # [num_samples, points]
    return percentile_interval(means, confidence)


def mean_and_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (Bessel-corrected) of [n] values; std is NaN when n == 1."""
    values = np.asarray(values, dtype=np.float64)
    std = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    return float(np.mean(values)), std
