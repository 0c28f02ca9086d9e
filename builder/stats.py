"""The statistics of the lift report, all from scipy: intervals, differences, sample-ratio checks.

- A **mean per user** (watches, watch seconds) gets Student's t interval
  (``scipy.stats.ttest_1samp(...).confidence_interval``); the difference of two arms' means
  Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``): its interval and p-value.
- A **share** (watches on the shelf / all watches) is a ratio of per-user sums: watches of one
  user are not independent, so the unit resampled is the user. Its interval is a percentile
  bootstrap over users (``scipy.stats.bootstrap``); the difference of two arms' shares is
  bootstrapped the same way (each arm resampled on its own), and its p-value is the normal
  approximation with the bootstrap standard error (``scipy.stats.norm``).
- **Sample-ratio mismatch**: ``scipy.stats.chisquare`` of observed counts against the counts the
  weights predict.

Resampling uses a fixed seed, so a report on the same input prints the same numbers. Where a
statistic is undefined (an arm with fewer than two users, a sample with no variance for a test)
it is ``None``, never a made-up number.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

__all__ = [
    "CONFIDENCE",
    "Comparison",
    "Estimate",
    "mean_difference",
    "mean_estimate",
    "ratio_difference",
    "ratio_estimate",
    "sample_ratio_p",
]

CONFIDENCE: Final = 0.95
BOOTSTRAP_RESAMPLES: Final = 2000
BOOTSTRAP_SEED: Final = 20_261_201
# Resampled indices held in memory at once (resamples per batch x users).
_BATCH_CELLS: Final = 20_000_000


def _num(value: Any) -> float | None:
    """A finite float, or None (NaN and infinities are 'undefined', and are not JSON)."""
    out = float(value)
    return out if math.isfinite(out) else None


@dataclass(frozen=True)
class Estimate:
    """A metric of one arm with its confidence interval."""

    value: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


@dataclass(frozen=True)
class Comparison:
    """An arm's metric minus the baseline arm's, with interval, p-value and relative lift."""

    diff: float | None
    low: float | None
    high: float | None
    p_value: float | None
    relative: float | None  # diff / the baseline's value

    def as_dict(self) -> dict[str, float | None]:
        return {
            "diff": self.diff,
            "ci_low": self.low,
            "ci_high": self.high,
            "p_value": self.p_value,
            "relative": self.relative,
        }


_UNDEFINED_ESTIMATE: Final = Estimate(None, None, None)


def _relative(diff: float | None, base: float) -> float | None:
    return None if diff is None or base == 0 else diff / base


def mean_estimate(x: NDArray[np.float64]) -> Estimate:
    """The mean of ``x`` with its t interval."""
    if len(x) == 0:
        return _UNDEFINED_ESTIMATE
    mean = float(np.mean(x))
    if len(x) < 2:
        return Estimate(mean, None, None)
    if np.ptp(x) == 0:  # no spread: the interval is the value (scipy would warn and give NaN)
        return Estimate(mean, mean, mean)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(CONFIDENCE)
    return Estimate(mean, _num(ci.low), _num(ci.high))


def mean_difference(x: NDArray[np.float64], base: NDArray[np.float64]) -> Comparison:
    """mean(x) - mean(base): Welch's interval and two-sided p-value."""
    if len(x) == 0 or len(base) == 0:
        return Comparison(None, None, None, None, None)
    diff = float(np.mean(x) - np.mean(base))
    rel = _relative(diff, float(np.mean(base)))
    if len(x) < 2 or len(base) < 2:
        return Comparison(diff, None, None, None, rel)
    if np.ptp(x) == 0 and np.ptp(base) == 0:
        # Both arms constant: the difference is exact, and a t-test has nothing to say.
        return Comparison(diff, diff, diff, 1.0 if diff == 0 else None, rel)
    with warnings.catch_warnings():
        # One arm constant (all users watched once, say): its variance is exactly 0, which
        # Welch's test handles; scipy's precision check warns about it all the same.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        res = stats.ttest_ind(x, base, equal_var=False)
        ci = res.confidence_interval(CONFIDENCE)
    return Comparison(diff, _num(ci.low), _num(ci.high), _num(res.pvalue), rel)


def _ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> float:
    total = float(np.sum(den))
    return float(np.sum(num)) / total if total else math.nan


def _batch(n: int) -> int:
    return max(1, min(BOOTSTRAP_RESAMPLES, _BATCH_CELLS // max(n, 1)))


def ratio_estimate(num: NDArray[np.float64], den: NDArray[np.float64]) -> Estimate:
    """sum(num) / sum(den) over users, with a percentile bootstrap interval over users."""
    if len(num) == 0:
        return _UNDEFINED_ESTIMATE
    value = _num(_ratio(num, den))
    if len(num) < 2:
        return Estimate(value, None, None)

    def statistic(idx: NDArray[np.intp], axis: int = -1) -> NDArray[np.float64]:
        sums: NDArray[np.float64] = num[idx].sum(axis=axis) / den[idx].sum(axis=axis)
        return sums

    res = stats.bootstrap(
        (np.arange(len(num)),),
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        batch=_batch(len(num)),
        vectorized=True,
        axis=-1,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return Estimate(value, _num(res.confidence_interval.low), _num(res.confidence_interval.high))


def ratio_difference(
    num: NDArray[np.float64],
    den: NDArray[np.float64],
    base_num: NDArray[np.float64],
    base_den: NDArray[np.float64],
) -> Comparison:
    """ratio(num, den) - ratio(base_num, base_den): bootstrap interval, normal p-value."""
    if len(num) == 0 or len(base_num) == 0:
        return Comparison(None, None, None, None, None)
    base_value = _ratio(base_num, base_den)
    diff = _num(_ratio(num, den) - base_value)
    rel = _relative(diff, base_value) if math.isfinite(base_value) else None
    if len(num) < 2 or len(base_num) < 2 or diff is None:
        return Comparison(diff, None, None, None, rel)

    def statistic(
        idx: NDArray[np.intp], base_idx: NDArray[np.intp], axis: int = -1
    ) -> NDArray[np.float64]:
        out: NDArray[np.float64] = num[idx].sum(axis=axis) / den[idx].sum(axis=axis) - base_num[
            base_idx
        ].sum(axis=axis) / base_den[base_idx].sum(axis=axis)
        return out

    res = stats.bootstrap(
        (np.arange(len(num)), np.arange(len(base_num))),
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        batch=_batch(len(num) + len(base_num)),
        vectorized=True,
        axis=-1,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    se = float(res.standard_error)
    if se > 0:
        p: float | None = _num(2 * stats.norm.sf(abs(diff) / se))
    else:
        p = 1.0 if diff == 0 else None
    ci = res.confidence_interval
    return Comparison(diff, _num(ci.low), _num(ci.high), p, rel)


def sample_ratio_p(observed: Sequence[int], weights: Sequence[int]) -> float | None:
    """Chi-square p-value of ``observed`` counts against the shares ``weights`` predict.

    Zero-weight arms are left out (nobody is assigned to them); None with fewer than two arms
    or no observations, where there is nothing to test.
    """
    pairs = [(o, w) for o, w in zip(observed, weights, strict=True) if w > 0]
    total = sum(o for o, _ in pairs)
    if len(pairs) < 2 or total == 0:
        return None
    weight_sum = sum(w for _, w in pairs)
    expected = [total * w / weight_sum for _, w in pairs]
    res = stats.chisquare([o for o, _ in pairs], f_exp=expected)
    return _num(res.pvalue)
