"""Statistics of the pruning study: mean and spread over seeds, paired t-intervals.

Two methods run on the same seed share the dense model, the data subset and the
validation split, so their difference is paired by seed: the interval is Student's t on
the per-seed differences (df = n - 1). The t quantile comes from scipy when it is
installed, else from the table below (two-sided 95%, df 1..30; for df > 30 the df-30
value, which is slightly wider than the true one, i.e. conservative).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

#: Two-sided 95% quantiles of Student's t (t_{0.975, df}) for df = 1..30.
T_975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
    2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
    2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
    2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip


def mean_sd(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, sample standard deviation, n); sd is 0 for one value, both NaN for none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return math.nan, math.nan, 0
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return statistics.fmean(finite), sd, len(finite)


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"a t quantile needs df >= 1, got {df}")
    try:
        from scipy.stats import t
    except ImportError:
        if abs(level - 0.95) > 1e-12:
            raise ValueError(f"without scipy only level 0.95 is tabulated, got {level}") from None
        return T_975[min(df, len(T_975)) - 1]
    return float(t.ppf(0.5 + level / 2, df))


def paired_interval(
    a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95
) -> dict[str, Any]:
    """The mean of ``a[s] - b[s]`` over the seeds both have, with its t-interval.

    Returns ``n``, ``seeds``, ``mean``, ``sd``, ``half_width``, ``low``, ``high`` and
    ``excludes_zero``; with fewer than two paired seeds the interval fields are None.
    """
    seeds = sorted(set(a) & set(b))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    n = len(diffs)
    out: dict[str, Any] = {
        "n": n,
        "seeds": seeds,
        "mean": statistics.fmean(diffs) if diffs else None,
        "sd": None,
        "half_width": None,
        "low": None,
        "high": None,
        "excludes_zero": None,
    }
    if n < 2:
        return out
    sd = statistics.stdev(diffs)
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    mean = float(out["mean"])
    out.update(
        sd=sd,
        half_width=half,
        low=mean - half,
        high=mean + half,
        excludes_zero=bool(mean - half > 0 or mean + half < 0),
    )
    return out


__all__ = ["T_975", "mean_sd", "paired_interval", "t_quantile"]
