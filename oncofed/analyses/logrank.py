"""logrank — the log-rank test across the groups of a field, grouped on the public lattice.

Node side and vector: oncofed.analyses.survival. Finaliser: at every interval, expected events
per group from the *summed* counts (E_g = d·n_g/n, hypergeometric covariance), χ² on G − 1
degrees of freedom over the groups present: the levels asked for (`group_levels`), by default every
code (rows with the grouping field missing are then left out).
It is "grouped on lattice G": on a 1-day lattice it equals lifelines' (multivariate_)logrank_test;
summing per-centre O − E instead would give the centre-stratified test, a different number.
"""

from __future__ import annotations

import math
from typing import Any

from oncofed.analyses.base import Result
from oncofed.analyses.survival import SurvivalAnalysis, SurvivalSpec, group_blocks, lattice_table, survival_notes
from oncofed.analyses.text import num, plural
from oncofed.query.values import ALL, MISSING


class LogRank(SurvivalAnalysis):
    kind = "logrank"
    title = "log-rank test"
    needs_group = True

    def finalise(self, spec: SurvivalSpec, values: list[int], flags: dict[str, int]) -> Result:
        return {**self.head(spec, flags), **logrank(spec, values)}

    def table(self, result: Result) -> list[dict[str, Any]]:
        """One row per group compared: observed and expected events."""
        return [{"group": g, "observed": result["observed"][g], "expected": result["expected"][g]}
                for g in result["groups"]]

    def render(self, result: Result) -> list[str]:
        return _render(result)


def logrank(spec: SurvivalSpec, values: list[int]) -> dict[str, Any]:
    """The log-rank test across groups, grouped on the lattice, from summed counts."""
    left_out = (ALL,) if spec.levels_chosen else (MISSING, ALL)
    tables = {g: lattice_table(spec, a, d, c) for g, (a, d, c) in group_blocks(spec, values).items()
              if g not in left_out}
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
        "test": f"log-rank, grouped on lattice G (edges every {plural(spec.step_days, 'day')} to {spec.horizon_days})",
        "groups": groups, "observed": dict(zip(groups, observed, strict=True)),
        "expected": dict(zip(groups, expected, strict=True)),
        "statistic": statistic, "df": df, "p_value": chi2_sf(statistic, df) if k >= 2 else float("nan"),
        "missing_group": "compared" if MISSING in groups else "left out",
        **survival_notes(spec, values, sum(r["entered"] for t in tables.values() for r in t[1:])),
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

def _render(r: dict[str, Any]) -> list[str]:
    lines = [f"  {r['test']}", f"  {r['outcome']} to {r['cutoff']} by {r['group_by']}: "
             f"χ² = {num(r['statistic'])}, df = {r['df']}, p = {r['p_value']:.3g}"]
    for g in r["groups"]:
        lines.append(f"    {g}: observed {r['observed'][g]}, expected {r['expected'][g]:.2f}")
    lines.extend(f"  note: {n}" for n in r["notes"])
    return lines

ANALYSIS = LogRank()
