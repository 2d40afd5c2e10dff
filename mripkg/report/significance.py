"""Statistics of the scorecard (issue 17): pure functions of per-slice values, unit-tested.

* Slice dependence.  Adjacent axial slices of one brain are correlated, so a plain t interval
  over slices is too narrow.  :func:`dependent_interval` is a t interval on the effective
  number of slices ``n_eff = n (1 - r1) / (1 + r1)`` (``r1``: the lag-1 autocorrelation of the
  values in slice order, :func:`lag1_autocorrelation`, counted only when positive), with
  ``n_eff - 1`` degrees of freedom.  With a user folder (one slice per subject) the values are
  independent and the interval is over subjects: pass ``ordered=False``.
* Seeds.  A diffusion comparison must hold for *each* sampler seed (at least
  :data:`MIN_SEEDS`): an intersection-union test, which needs no multiplicity correction over
  seeds (:func:`holds_per_seed`).
* Multiplicity.  :func:`holm` across the comparisons of one claim (one-sided p values from
  :func:`one_sided_p`, family level :data:`ALPHA_ONE_SIDED`, the one-sided level of a 95 %
  two-sided interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st

#: Confidence of every reported interval.
CONFIDENCE = 0.95
#: One-sided level of the tests behind "the 95 % interval lies above 0".
ALPHA_ONE_SIDED = (1 - CONFIDENCE) / 2
#: Fewest sampler seeds for a diffusion comparison.
MIN_SEEDS = 3
#: Fewest (effective) values for an interval.
MIN_VALUES = 2


def _vec(values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or inf")
    return v


def lag1_autocorrelation(values: Sequence[float] | np.ndarray) -> float:
    """Sample lag-1 autocorrelation of ``values`` in their given (slice) order,
    ``sum (v_i - m)(v_{i+1} - m) / sum (v_i - m)^2``; NaN for fewer than 3 values or constant
    values."""
    v = _vec(values)
    if v.size < 3:
        return math.nan
    d = v - v.mean()
    den = float((d * d).sum())
    if den == 0:
        return math.nan
    return float((d[:-1] * d[1:]).sum() / den)


def effective_n(values: Sequence[float] | np.ndarray, ordered: bool = True) -> float:
    """``n (1 - r1) / (1 + r1)`` for ``r1 = max(lag-1 autocorrelation, 0)`` (an AR(1)
    approximation; a negative r1 never counts as more than ``n`` values); ``n`` when
    ``ordered`` is False (independent values: one slice per subject)."""
    v = _vec(values)
    n = float(v.size)
    if not ordered:
        return n
    r = lag1_autocorrelation(v)
    if not math.isfinite(r) or r <= 0:
        return n
    r = min(r, 0.99)
    return max(1.0, n * (1 - r) / (1 + r))


def t_interval(
    values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE, n_eff: float | None = None
) -> tuple[float, float, float]:
    """Mean and its two-sided t interval, ``(mean, low, high)``, with ``n_eff`` effective
    values (default: all) and ``n_eff - 1`` degrees of freedom; NaN bounds when ``n_eff < 2``;
    ``low = high = mean`` when every value is the same."""
    v = _vec(values)
    m = float(v.mean())
    n = float(v.size) if n_eff is None else float(n_eff)
    if v.size < 2 or n < MIN_VALUES:
        return m, math.nan, math.nan
    sd = float(v.std(ddof=1))
    if sd == 0:
        return m, m, m
    half = float(_st.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return m, m - half, m + half


def dependent_interval(
    values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE, ordered: bool = True
) -> dict[str, float]:
    """The dependence-aware interval of a mean over slices: :func:`t_interval` on
    :func:`effective_n`.  Returns ``{mean, low, high, n, n_eff, lag1, se}`` (``se`` on
    ``n_eff``)."""
    v = _vec(values)
    ne = effective_n(v, ordered)
    m, lo, hi = t_interval(v, confidence, ne)
    sd = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return {
        "mean": m,
        "low": lo,
        "high": hi,
        "n": int(v.size),
        "n_eff": ne,
        "lag1": lag1_autocorrelation(v) if ordered else math.nan,
        "se": sd / math.sqrt(ne) if v.size > 1 else math.nan,
    }


def one_sided_p(
    values: Sequence[float] | np.ndarray, null: float = 0.0, ordered: bool = True
) -> float:
    """One-sided p value of "mean > ``null``" from the t statistic on the effective n
    (:func:`effective_n`, ``n_eff - 1`` degrees of freedom); 1 when it cannot be computed
    (fewer than 2 effective values), 0/1 for constant values above/not above ``null``."""
    v = _vec(values)
    ne = effective_n(v, ordered)
    if v.size < 2 or ne < MIN_VALUES:
        return 1.0
    sd = float(v.std(ddof=1))
    m = float(v.mean())
    if sd == 0:
        return 0.0 if m > null else 1.0
    t = (m - null) / (sd / math.sqrt(ne))
    return float(_st.t.sf(t, ne - 1))


def holm(pvalues: Sequence[float], alpha: float = ALPHA_ONE_SIDED) -> list[bool]:
    """Holm's step-down procedure: which of the hypotheses behind ``pvalues`` are rejected at
    family-wise level ``alpha`` (sorted ascending, the k-th smallest (k from 0) is compared with
    ``alpha / (m - k)``; the first that fails stops the rest)."""
    p = [float(x) for x in pvalues]
    if any(not (0 <= x <= 1) for x in p):
        raise ValueError(f"p values must lie in [0, 1], got {p}")
    m = len(p)
    out = [False] * m
    for k, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        if p[i] <= alpha / (m - k):
            out[i] = True
        else:
            break
    return out


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p values (monotone, capped at 1): reject at ``alpha`` where <= alpha."""
    p = [float(x) for x in pvalues]
    m = len(p)
    order = sorted(range(m), key=lambda j: p[j])
    adj = [0.0] * m
    run = 0.0
    for k, i in enumerate(order):
        run = max(run, min(1.0, (m - k) * p[i]))
        adj[i] = run
    return adj


def separation_p(
    lower: Sequence[float] | np.ndarray,
    upper: Sequence[float] | np.ndarray,
    ordered: bool = True,
) -> float:
    """``1 - c*``, where ``c*`` is the largest confidence at which the two-sided intervals
    (:func:`dependent_interval`) of the means of ``lower`` and ``upper`` do not overlap with
    ``lower``'s below ``upper``'s: "non-overlapping 95 % intervals" is ``separation_p < 0.05``,
    so Holm applies to it like to a p value.  1 when ``lower``'s mean is not below."""
    a, b = _vec(lower), _vec(upper)
    ia, ib = dependent_interval(a, ordered=ordered), dependent_interval(b, ordered=ordered)
    gap = ib["mean"] - ia["mean"]
    if gap <= 0:
        return 1.0

    def half(i: dict[str, float], c: float) -> float:
        if i["n_eff"] < MIN_VALUES or not math.isfinite(i["se"]):
            return math.inf
        return float(_st.t.ppf(0.5 + c / 2, i["n_eff"] - 1)) * i["se"]

    lo, hi = 0.0, 1.0 - 1e-12
    if half(ia, lo + 1e-12) + half(ib, lo + 1e-12) >= gap:
        return 1.0
    for _ in range(60):  # bisection on the confidence level
        mid = (lo + hi) / 2
        if half(ia, mid) + half(ib, mid) < gap:
            lo = mid
        else:
            hi = mid
    return 1.0 - lo


def holds_per_seed(per_seed: Sequence[bool], min_seeds: int = MIN_SEEDS) -> bool:
    """The seed rule: a diffusion comparison holds only when it holds for every one of at
    least ``min_seeds`` sampler seeds (intersection-union: no correction over seeds)."""
    if len(per_seed) < min_seeds:
        return False
    return all(bool(x) for x in per_seed)


def geometric_mean_interval(
    ratios: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE, ordered: bool = True
) -> dict[str, float]:
    """Geometric mean of positive per-slice ratios with the back-transformed
    :func:`dependent_interval` of their logs: ``{mean, low, high, n, n_eff, lag1, p}``
    (``p``: one-sided p value of "geometric mean > 1")."""
    r = _vec(ratios)
    if (r <= 0).any():
        raise ValueError("ratios must be positive")
    lg = np.log(r)
    d = dependent_interval(lg, confidence, ordered)
    return {
        "mean": math.exp(d["mean"]),
        "low": math.exp(d["low"]) if math.isfinite(d["low"]) else math.nan,
        "high": math.exp(d["high"]) if math.isfinite(d["high"]) else math.nan,
        "n": d["n"],
        "n_eff": d["n_eff"],
        "lag1": d["lag1"],
        "p": one_sided_p(lg, 0.0, ordered),
    }


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance between the values ``a`` and ``b``."""
    a, b = _vec(a), _vec(b)
    return float(_st.ks_2samp(a, b).statistic)


def excess_kurtosis(a: np.ndarray) -> float:
    """Fisher excess kurtosis of the values (0 for a Gaussian)."""
    return float(_st.kurtosis(_vec(a), fisher=True, bias=True))


__all__ = [
    "ALPHA_ONE_SIDED",
    "CONFIDENCE",
    "MIN_SEEDS",
    "dependent_interval",
    "effective_n",
    "excess_kurtosis",
    "geometric_mean_interval",
    "holds_per_seed",
    "holm",
    "holm_adjusted",
    "ks_distance",
    "lag1_autocorrelation",
    "one_sided_p",
    "separation_p",
    "t_interval",
]
