"""Kaplan–Meier and log-rank from summed lattice counts (the researcher's side).

Per group the vector holds cumulative counts at edges g_j = j·step: entered A_j, events D_j,
censored C_j (summed over centres). Intervals: 0 is the instant 0, j ≥ 1 is (g_{j−1}, g_j].

- at risk in interval j: n_j = A_j − D_{j−1} − C_{j−1} (entrants up to g_j, minus those removed
  before the interval); events d_j = D_j − D_{j−1}, censorings c_j = C_j − C_{j−1} (perturbed
  counts are clamped so that 0 ≤ d_j ≤ n_j);
- estimator: product-limit on a 1-day lattice (equal to lifelines' KaplanMeierFitter, with left
  truncation entry < t ≤ T); on a coarser lattice the actuarial (life-table) estimate, where those
  censored within an interval count as at risk for half of it: n'_j = n_j − c_j/2 (j ≥ 1);
- S(g_j) = Π_{i≤j} (1 − d_i/n'_i), computed exactly; Greenwood: Var S = S² Σ d_i/(n'_i(n'_i − d_i));
- CI: the log-log transform (lifelines' default) at 95 %: exp(−exp(log(−log S) ∓ z·√V / log S));
- median: the first edge where S ≤ 0.5;
- log-rank: at every interval, expected events per group from the *summed* counts
  (E_g = d·n_g/n, hypergeometric covariance), χ² on G − 1 degrees of freedom over the groups
  present (rows with the grouping field missing are left out). It is "grouped on lattice G": on a
  1-day lattice it equals lifelines' (multivariate_)logrank_test; summing per-centre O − E instead
  would give the centre-stratified test, a different number.
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist
from typing import Any

from oncofed.federation.query.spec import ALL, MISSING, SurvivalSpec

Z_95 = NormalDist().inv_cdf(0.975)


def _group_blocks(spec: SurvivalSpec, values: list[int]) -> dict[str, tuple[list[int], list[int], list[int]]]:
    e = spec.n_edges
    out = {}
    for gi, g in enumerate(spec.groups):
        o = gi * 3 * e
        out[g] = (values[o:o + e], values[o + e:o + 2 * e], values[o + 2 * e:o + 3 * e])
    return out


def lattice_table(spec: SurvivalSpec, entered: list[int], events: list[int],
                  censored: list[int]) -> list[dict[str, int]]:
    """Per interval: time (its closing edge), entered, at_risk, events, censored."""
    rows = []
    prev_a = prev_d = prev_c = 0
    for j in range(spec.n_edges):
        a, d_cum, c_cum = max(entered[j], prev_a), max(events[j], prev_d), max(censored[j], prev_c)
        n = max(a - prev_d - prev_c, 0)
        d = min(d_cum - prev_d, n)
        c = min(c_cum - prev_c, n - d)
        rows.append({"time": j * spec.step_days, "entered": a - prev_a, "at_risk": n, "events": d, "censored": c})
        prev_a, prev_d, prev_c = a, d_cum, c_cum
    return rows


def kaplan_meier(spec: SurvivalSpec, values: list[int]) -> dict[str, Any]:
    """One survival curve per group (a single "all" curve without group_by)."""
    product_limit = spec.step_days == 1
    curves: dict[str, Any] = {}
    for g, (a, d, c) in _group_blocks(spec, values).items():
        table = lattice_table(spec, a, d, c)
        if not any(r["at_risk"] for r in table):
            continue
        curves[g] = _curve(table, product_limit)
    return {
        "outcome": spec.outcome, "cutoff": spec.cutoff.isoformat(), "step_days": spec.step_days,
        "horizon_days": spec.horizon_days, "group_by": spec.group_field,
        "estimator": "product-limit" if product_limit else "actuarial (life table)",
        "ci": {"transform": "log-log", "level": 0.95, "variance": "Greenwood"},
        "median_definition": "first lattice edge where S ≤ 0.5",
        "curves": curves,
    }


def _curve(table: list[dict[str, int]], product_limit: bool) -> dict[str, Any]:
    s = Fraction(1)
    greenwood = 0.0
    points = []
    median = None
    for j, r in enumerate(table):
        n, d = Fraction(r["at_risk"]), r["events"]
        if not product_limit and j > 0:
            n -= Fraction(r["censored"], 2)
        if n > 0 and d > 0:
            s *= 1 - d / n
            greenwood += float(d / (n * (n - d))) if n > d else 0.0   # lifelines drops the infinite term
        sf = float(s)
        lower, upper = _loglog_ci(sf, greenwood)
        points.append({**r, "survival": sf, "se": sf * math.sqrt(greenwood), "ci_lower": lower, "ci_upper": upper})
        if median is None and s <= Fraction(1, 2):
            median = r["time"]
    return {"median": median, "points": _trim(points)}


def _trim(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the trailing edges where nobody is left at risk."""
    last = max((i for i, p in enumerate(points) if p["at_risk"] > 0), default=-1)
    return points[:last + 1]


def _loglog_ci(s: float, v: float) -> tuple[float, float]:
    if s >= 1.0 or (v == 0.0 and s > 0.0):
        return 1.0, 1.0
    if s <= 0.0:
        return 0.0, 0.0
    log_s = math.log(s)
    base = math.log(-log_s)
    half = Z_95 * math.sqrt(v) / log_s
    return math.exp(-math.exp(base - half)), math.exp(-math.exp(base + half))


def logrank(spec: SurvivalSpec, values: list[int]) -> dict[str, Any]:
    """The log-rank test across groups, grouped on the lattice, from summed counts."""
    tables = {g: lattice_table(spec, a, d, c) for g, (a, d, c) in _group_blocks(spec, values).items()
              if g not in (MISSING, ALL)}
    groups = [g for g, t in tables.items() if any(r["at_risk"] for r in t)]
    k = len(groups)
    observed = [0] * k
    expected = [0.0] * k
    cov = [[0.0] * k for _ in range(k)]
    for j in range(spec.n_edges):
        n_g = [tables[g][j]["at_risk"] for g in groups]
        d_g = [tables[g][j]["events"] for g in groups]
        n, d = sum(n_g), sum(d_g)
        if d == 0 or n == 0:
            continue
        factor = d * (n - d) / (n - 1) / (n * n) if n > 1 else 0.0
        for a in range(k):
            observed[a] += d_g[a]
            expected[a] += d * n_g[a] / n
            for b in range(k):
                cov[a][b] += factor * n_g[a] * ((n if a == b else 0) - n_g[b])
    z = [o - e for o, e in zip(observed, expected, strict=True)]
    statistic = _quadratic_form(z[:-1], [row[:-1] for row in cov[:-1]]) if k >= 2 else float("nan")
    df = k - 1
    return {
        "outcome": spec.outcome, "cutoff": spec.cutoff.isoformat(), "group_by": spec.group_field,
        "test": f"log-rank, grouped on lattice G (edges every {spec.step_days} day(s) to {spec.horizon_days})",
        "groups": groups, "observed": dict(zip(groups, observed, strict=True)),
        "expected": dict(zip(groups, expected, strict=True)),
        "statistic": statistic, "df": df, "p_value": chi2_sf(statistic, df) if k >= 2 else float("nan"),
        "missing_group": "left out",
    }


def _quadratic_form(z: list[float], m: list[list[float]]) -> float:
    """zᵀ M⁻¹ z by Gaussian elimination with partial pivoting (M is small and positive definite)."""
    size = len(z)
    a = [[*row, z[i]] for i, row in enumerate(m)]
    for col in range(size):
        piv = max(range(col, size), key=lambda r: abs(a[r][col]))
        if a[piv][col] == 0.0:
            return float("nan")
        a[col], a[piv] = a[piv], a[col]
        for r in range(col + 1, size):
            f = a[r][col] / a[col][col]
            for c in range(col, size + 1):
                a[r][c] -= f * a[col][c]
    x = [0.0] * size
    for r in range(size - 1, -1, -1):
        x[r] = (a[r][size] - sum(a[r][c] * x[c] for c in range(r + 1, size))) / a[r][r]
    return math.fsum(zi * xi for zi, xi in zip(z, x, strict=True))


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df > x), in closed form for integer df (no cancellation: all terms are positive)."""
    if math.isnan(x):
        return float("nan")
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= half / k
            total += term
        return math.exp(-half) * total
    total = math.erfc(math.sqrt(half))
    term = math.exp(-half + 0.5 * math.log(half) - math.lgamma(1.5))
    for k in range(df // 2):
        total += term
        term *= half / (k + 1.5)
    return total
