"""Straight lines fitted to short, irregularly sampled histories, many rows at once.

Each row is one quantity of one track (an inverse size, a distance, a lateral offset) sampled at times
dt <= 0 relative to now. A least-squares line y = a + b * dt gives the value now (a) and its rate (b);
samples beyond 3 robust sigmas of the first fit are dropped and the line refitted. Uncertainties are the
OLS ones from the residuals, so a jittery history reports itself as such; `floored` raises them to what
the measurement's known noise implies, for tests of significance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_OUTLIER_SIGMAS = 3.0


def nanmedian_rows(values: np.ndarray, empty: float = np.nan) -> np.ndarray:
    """np.nanmedian(values, axis=1) without its warnings, and ~10x faster on these small rows (NumPy's
    goes through masked arrays; here it is one sort, NaN sorting last): `empty` (NaN) for rows with no
    numbers."""
    if values.shape[1] == 0:
        return np.full(len(values), empty)
    ordered = np.sort(values, axis=1)
    count = (~np.isnan(values)).sum(1)
    rows = np.arange(len(values))
    lower, upper = ordered[rows, np.maximum(count - 1, 0) // 2], ordered[rows, count // 2 - (count == 0)]
    return np.where(count > 0, 0.5 * (lower + upper), empty)


def nan_to_num(values: np.ndarray) -> np.ndarray:
    """np.nan_to_num for a float array (NaN to 0, +-inf to the largest finite number) in three calls, not
    its dozen (it is on every frame's path, several times)."""
    out = np.where(np.isnan(values), 0.0, values)
    big = np.finfo(out.dtype).max
    return np.clip(out, -big, big, out=out)


@dataclass(slots=True)
class LineFit:
    """Per row: y = a + b * dt, with the parameters' variances and covariance; `ok` where the samples were
    enough (count and time span) to fit a line at all."""

    a: np.ndarray
    b: np.ndarray
    var_a: np.ndarray
    var_b: np.ndarray
    cov_ab: np.ndarray
    ok: np.ndarray
    s2: np.ndarray  # the residuals' variance (one sample's noise, as the samples show it)
    n: np.ndarray  # samples used
    x_mean: np.ndarray  # their mean time
    sxx: np.ndarray  # their spread in time

    def floored(self, noise_var: np.ndarray, extra_var_b: np.ndarray | float = 0.0) -> LineFit:
        """The same line with its uncertainty at least what a sample's known noise `noise_var` gives (a
        few samples can line up by chance), plus `extra_var_b` on the slope (a drift no residual shows)."""
        return self._with_s2(np.maximum(self.s2, nan_to_num(noise_var)), extra_var_b)

    def _with_s2(self, s2: np.ndarray, extra_var_b: np.ndarray | float = 0.0) -> LineFit:
        with np.errstate(divide="ignore", invalid="ignore"):
            var_b = s2 / self.sxx + extra_var_b
            var_a = s2 * (1.0 / np.maximum(self.n, 1) + self.x_mean**2 / self.sxx)
            cov_ab = -self.x_mean * s2 / self.sxx
        return LineFit(self.a, self.b, var_a, var_b, cov_ab, self.ok, s2, self.n, self.x_mean, self.sxx)

    def ttc(self, max_ttc_s: float) -> tuple[np.ndarray, np.ndarray]:
        """For y proportional to distance: TTC = a / -b and its standard deviation; NaN where the line
        does not show an approaching object (or one slower than max_ttc_s)."""
        a, b = self.a, self.b
        with np.errstate(divide="ignore", invalid="ignore"):
            ttc = a / -b
            var = self.var_a / b**2 + a**2 * self.var_b / b**4 - 2 * a * self.cov_ab / b**3
        ok = self.ok & (a > 0) & (b < 0) & (ttc <= max_ttc_s)
        return np.where(ok, ttc, np.nan), np.where(ok, np.sqrt(np.maximum(var, 0.0)), np.nan)

    def rate(self) -> tuple[np.ndarray, np.ndarray]:
        """For y proportional to distance: the relative rate of approach -b / a (1/s, = 1 / TTC, negative
        when receding) and its standard deviation; NaN where no line was fitted."""
        a, b = self.a, self.b
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = -b / a
            var = self.var_b / a**2 + b**2 * self.var_a / a**4 - 2 * b * self.cov_ab / a**3
        ok = self.ok & (a > 0)
        return np.where(ok, rate, np.nan), np.where(ok, np.sqrt(np.maximum(var, 0.0)), np.nan)

    def slope(self) -> tuple[np.ndarray, np.ndarray]:
        """b and its standard deviation; NaN where no line was fitted."""
        std = np.sqrt(np.maximum(self.var_b, 0.0))
        return np.where(self.ok, self.b, np.nan), np.where(self.ok, std, np.nan)


def fit_lines(
    dt_s: np.ndarray, y: np.ndarray, use: np.ndarray, min_samples: int, min_span_s: float
) -> LineFit:
    """Fit each row's samples `y` at times `dt_s` (<= 0, relative to now) where `use` is set; the
    uncertainties are those the residuals show (`LineFit.floored` adds what they cannot)."""
    fit = _least_squares(dt_s, y, use)
    n, x, x_mean, sxx, a, b, resid = fit
    # Drop samples beyond 3 robust sigmas (MAD), keep the rest (if enough), and fit again the rows that lost
    # some: rows are fitted independently, the others' second fit would repeat their first.
    mad = nanmedian_rows(np.where(use, np.abs(resid), np.nan), empty=0.0)
    limit = _OUTLIER_SIGMAS * 1.4826 * mad
    kept = use & (np.abs(resid) <= limit[:, None] + 1e-12)
    refit = np.flatnonzero((kept.sum(1) >= min_samples) & (kept != use).any(1))
    if len(refit):
        for whole, part in zip(fit, _least_squares(dt_s[refit], y[refit], kept[refit]), strict=True):
            whole[refit] = part
    s2 = (resid**2).sum(1) / np.maximum(n - 2, 1)
    span = -x.min(1) if dt_s.size else np.zeros(len(dt_s))  # x: dt_s where used
    ok = (n >= min_samples) & (span >= min_span_s) & (sxx > 0)
    unset = np.zeros_like(a)
    return LineFit(a, b, unset, unset, unset, ok, s2, n, x_mean, sxx)._with_s2(np.maximum(s2, 0.0))


def _least_squares(dt_s: np.ndarray, y: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row, the samples used, their times (0 where unused), mean time, spread in time, the line's a
    and b, and the residuals (0 where unused)."""
    n = use.sum(1)
    n_safe = np.maximum(n, 1)
    x = np.where(use, dt_s, 0.0)
    yy = np.where(use, y, 0.0)
    x_mean, y_mean = x.sum(1) / n_safe, yy.sum(1) / n_safe
    xc = np.where(use, dt_s - x_mean[:, None], 0.0)
    sxx = (xc**2).sum(1)
    b = np.divide((xc * (yy - y_mean[:, None])).sum(1), sxx, out=np.zeros_like(sxx), where=sxx > 0)
    a = y_mean - b * x_mean
    resid = np.where(use, y - (a[:, None] + b[:, None] * dt_s), 0.0)
    return n, x, x_mean, sxx, a, b, resid


def fuse(
    ttc_a: np.ndarray, std_a: np.ndarray, ttc_b: np.ndarray, std_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance combination where both are known, else whichever is."""
    both = np.isfinite(ttc_a) & np.isfinite(ttc_b)
    var_a = np.fmax(std_a**2, 1e-6)  # an unknown (NaN) deviation counts as none
    var_b = np.fmax(std_b**2, 1e-6)
    fused = (ttc_a / var_a + ttc_b / var_b) / (1 / var_a + 1 / var_b)  # used only where both are known
    fused_std = np.sqrt(1 / (1 / var_a + 1 / var_b))
    ttc = np.where(both, fused, np.where(np.isfinite(ttc_a), ttc_a, ttc_b))
    std = np.where(both, fused_std, np.where(np.isfinite(ttc_a), std_a, std_b))
    return ttc, std
