"""kaplan_meier — survival curves on the public lattice, one per group.

Node side and vector: oncofed.analyses.survival. Finaliser, from the summed lattice counts:

- estimator: product-limit on a 1-day lattice (equal to lifelines' KaplanMeierFitter, with left
  truncation entry < t ≤ T); on a coarser lattice the actuarial (life-table) estimate, where those
  censored within an interval count as at risk for half of it: n'_j = n_j − c_j/2 (j ≥ 1);
- S(g_j) = Π_{i≤j} (1 − d_i/n'_i), computed exactly; Greenwood: Var S = S² Σ d_i/(n'_i(n'_i − d_i));
- CI: the log-log transform (lifelines' default) at 95 %: exp(−exp(log(−log S) ∓ z·√V / log S));
- median: the first edge where S ≤ 0.5.

Each curve's table ends at its last edge with anyone at risk (after tail censoring, where the
centres stopped reporting); `late_entries` counts patients entering after time 0 (left
truncation), and the result's notes explain both.
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist
from typing import Any

from oncofed.analyses.base import Result
from oncofed.analyses.survival import SurvivalAnalysis, SurvivalSpec, group_blocks, lattice_table, survival_notes
from oncofed.analyses.text import MAX_ROWS, plural

Z_95 = NormalDist().inv_cdf(0.975)


class KaplanMeier(SurvivalAnalysis):
    kind = "kaplan_meier"

    def finalise(self, spec: SurvivalSpec, values: list[int], flags: dict[str, int]) -> Result:
        return {**self.head(spec, flags), **kaplan_meier(spec, values)}

    def table(self, result: Result) -> list[dict[str, Any]]:
        """One row per point of each curve, the group named by the grouping field."""
        group = result.get("group_by") or "group"
        return [{group: g, **point} for g, curve in result["curves"].items() for point in curve["points"]]

    def render(self, result: Result) -> list[str]:
        return _render(result)


def kaplan_meier(spec: SurvivalSpec, values: list[int]) -> dict[str, Any]:
    """One survival curve per group (a single "all" curve without group_by)."""
    product_limit = spec.step_days == 1
    curves: dict[str, Any] = {}
    late = 0
    for g, (a, d, c) in group_blocks(spec, values).items():
        table = lattice_table(spec, a, d, c)
        if not any(r["at_risk"] for r in table):
            continue
        curves[g] = _curve(table, product_limit)
        late += curves[g]["late_entries"]
    return {
        "outcome": spec.outcome, "cutoff": spec.cutoff.isoformat(), "step_days": spec.step_days,
        "horizon_days": spec.horizon_days, "group_by": spec.group_field, "levels": list(spec.groups),
        "estimator": "product-limit" if product_limit else "actuarial (life table)",
        "ci": {"transform": "log-log", "level": 0.95, "variance": "Greenwood"},
        "median_definition": "first lattice edge where S ≤ 0.5",
        "curves": curves, **survival_notes(spec, values, late, any(
            c["reported_to"] is not None and c["reported_to"] < spec.horizon_days for c in curves.values())),
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
    kept = _trim(points)
    return {"median": median, "late_entries": sum(p["entered"] for p in kept[1:]),
            "reported_to": kept[-1]["time"] if kept else None, "points": kept}


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



def _render(r: dict[str, Any]) -> list[str]:
    lines = [f"  {r['outcome']} to {r['cutoff']}, lattice {plural(r['step_days'], 'day')}, {r['estimator']}, "
             f"{int(r['ci']['level'] * 100)} % CI {r['ci']['transform']} ({r['ci']['variance']})"]
    if r.get("suppressed_groups"):
        lines.append("  withheld groups (fewer than k, possibly none): " +
                     ", ".join(f"{g} at {plural(n, 'centre')}" for g, n in r["suppressed_groups"].items()))
    for group, curve in r["curves"].items():
        label = f"{r['group_by']} = {group}" if r["group_by"] else "all"
        median = f"{curve['median']} days" if curve["median"] is not None else "not reached"
        late = f", {curve['late_entries']} entering after day 0" if curve["late_entries"] else ""
        lines.append(f"  {label}: median {median}, reported to day {curve['reported_to']}{late}")
        points = curve["points"]
        stride = max(1, -(-len(points) // MAX_ROWS))
        entering = "  entered" if curve["late_entries"] else ""
        lines.append(f"    to day   at risk{entering}   events  censored  S(t)    95% CI")
        for i in range(0, len(points), stride):
            window = points[i:i + stride]        # entries, events, censorings summed over the rows not shown
            p = window[-1]
            events, censored = sum(w["events"] for w in window), sum(w["censored"] for w in window)
            entered = f" {sum(w['entered'] for w in window):>8}" if entering else ""
            lines.append(f"    {p['time']:<8} {window[0]['at_risk']:>8}{entered} {events:>8} {censored:>9}  "
                         f"{p['survival']:.4f}  [{p['ci_lower']:.4f}, {p['ci_upper']:.4f}]")
    lines.extend(f"  note: {n}" for n in r["notes"])
    return lines



ANALYSIS = KaplanMeier()
