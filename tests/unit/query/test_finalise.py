"""Finalisers on hand-built summed vectors: decoding mod 2^128, exact combination, and the same
numbers as numpy / scipy / lifelines on the underlying rows (1 centre and 3 centres summed)."""

from __future__ import annotations

import datetime as dt
import math
import random

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from scipy import stats

from oncofed import dictionary as dictmod
from oncofed.analyses import finalise, parse_analysis
from oncofed.analyses.count import CountSpec
from oncofed.analyses.crosstab import CrosstabSpec
from oncofed.analyses.logrank import chi2_sf
from oncofed.analyses.summary import SummarySpec
from oncofed.analyses.survival import SurvivalSpec
from oncofed.query.textform import analysis_from
from oncofed.query.vector import MOD, decode, encode, sum_vectors

D = dictmod.load()


def spec_of(text):
    return parse_analysis(analysis_from(text, "analysis"), D)


def test_decode_is_twos_complement_mod_2_128():
    for v in (0, 1, -1, 2**126, -(2**126), 12345678901234567890):
        assert decode(encode(v)) == v
    assert decode(2**127) == -(2**127) and decode(2**127 - 1) == 2**127 - 1
    assert sum_vectors([[MOD - 1, 5], [3, MOD - 2]]) == [2, 3]


def test_count_and_crosstab_margins_come_from_interior_cells():
    assert finalise(CountSpec(), [encode(42), 3, 1])["count"] == 42
    spec = spec_of({"crosstab": {"fields": ["sex", "dco"]}})
    assert isinstance(spec, CrosstabSpec) and spec.n_values == 4 * 3
    cells = list(range(12))
    out = finalise(spec, [*cells, 2, 0])
    assert out["margins"]["sex"] == {"1": 0 + 1 + 2, "2": 3 + 4 + 5, "9": 6 + 7 + 8, "(missing)": 9 + 10 + 11}
    assert out["margins"]["dco"] == {"0": 18, "1": 22, "(missing)": 26}
    assert out["total"] == sum(cells) and out["centres"] == 2
    assert out["cells"][4] == {"levels": {"sex": "2", "dco": "1"}, "count": 4}


def summary_vector(spec: SummarySpec, xs: list[int], missing: int) -> list[int]:
    """What one centre sends for these values (written here independently of the node's code)."""
    s = 1 << spec.scale_bits
    bins = [0] * (len(spec.edges) - 1)
    for x in xs:
        i = min(max(sum(1 for e in spec.edges if e <= x) - 1, 0), len(bins) - 1)
        bins[i] += 1
    return [len(xs), sum(xs) * s, sum(x * x for x in xs) * s, missing, *bins, 1, 0, 0]


@pytest.mark.parametrize("scale_bits", [0, 7])
@pytest.mark.parametrize("centres", [1, 3])
def test_summary_equals_numpy_with_exact_type7_quantiles(scale_bits, centres):
    rng = random.Random(scale_bits * 10 + centres)
    spec = spec_of({"summary": {"field": "age_at_incidence", "unit_bins": True, "scale_bits": scale_bits,
                                "quantiles": [0.05, 0.25, 0.5, 0.75, 0.9, 0.99]}})  # interior only
    parts = [[rng.randint(18, 95) for _ in range(rng.randint(40, 300))] for _ in range(centres)]
    out = finalise(spec, sum_vectors(summary_vector(spec, xs, 2) for xs in parts))
    xs = np.array([x for p in parts for x in p])
    assert out["n"] == len(xs) and out["missing"] == 2 * centres
    assert out["mean"] == pytest.approx(xs.mean(), rel=1e-12)
    assert out["variance"] == pytest.approx(xs.var(ddof=1), rel=1e-12)
    assert out["sd"] == pytest.approx(xs.std(ddof=1), rel=1e-12)
    for q in out["quantiles"]:
        assert q["value"] == pytest.approx(np.quantile(xs, q["p"]), abs=1e-12)
    assert out["quantile_definition"].startswith("type 7")


def test_grouped_quantile_interpolates_within_dictionary_bins():
    spec = spec_of({"summary": {"field": "age_at_incidence", "quantiles": [0.5]}})
    xs = [52] * 10 + [57] * 10          # all in [50, 55) and [55, 60)
    out = finalise(spec, summary_vector(spec, xs, 0))
    assert out["quantiles"][0]["value"] == 55.0     # half the mass lies below the 55 edge
    assert "interpolation" in out["quantile_definition"]


def test_negative_sums_survive_the_modulus():
    spec = SummarySpec(field="x", scale_bits=2, bound=10.0, edges=(), unit_bins=False, integer=True,
                       quantiles=(0.5,))
    xs = [-3, -7, 2]
    vec = [encode(v) for v in [3, sum(xs) * 4, sum(x * x for x in xs) * 4, 0, 1, 0, 0]]
    out = finalise(spec, vec)
    assert out["mean"] == pytest.approx(np.mean(xs), rel=1e-15)
    assert out["variance"] == pytest.approx(np.var(xs, ddof=1), rel=1e-15)


def lattice_vector(spec: SurvivalSpec, groups: dict[str, list[tuple[int, int, int]]]) -> list[int]:
    """Cumulative entered/events/censored per group for rows (T, event, entry), by definition."""
    out: list[int] = []
    step, m = spec.step_days, spec.n_edges - 1
    for g in spec.groups:
        rows = groups.get(g, [])
        alpha = [0 if e == 0 else e // step + 1 for _, _, e in rows]
        kappa = [None if t > m * step else -(-t // step) for t, _, _ in rows]
        a = [sum(1 for x in alpha if x <= j) for j in range(m + 1)]
        d = [sum(1 for k, (_, ev, _) in zip(kappa, rows, strict=True) if ev and k is not None and k <= j)
             for j in range(m + 1)]
        c = [sum(1 for k, (_, ev, _) in zip(kappa, rows, strict=True) if not ev and k is not None and k <= j)
             for j in range(m + 1)]
        out += a + d + c
    return out + [0] + [1, 0] + [0] * len(spec.groups)      # no row left out; centres, suppressed, groups


def _rows(rng, n):
    rows = []
    for _ in range(n):
        t = rng.randint(0, 400)
        entry = 0 if rng.random() < 0.7 else rng.randint(1, 100)
        if entry and entry >= t:
            continue
        rows.append((t, int(rng.random() < 0.6), entry))
    return rows


@pytest.mark.parametrize("centres", [1, 3])
def test_product_limit_on_a_one_day_lattice_equals_lifelines(centres):
    rng = random.Random(centres)
    spec = SurvivalSpec(kind="kaplan_meier", outcome="OS", cutoff=dt.date(2025, 1, 1), step_days=1, n_edges=401,
                        group_field=None, groups=("all",))
    parts = [_rows(rng, 150) for _ in range(centres)]
    out = finalise(spec, sum_vectors(lattice_vector(spec, {"all": p}) for p in parts))
    rows = [r for p in parts for r in p]
    kmf = KaplanMeierFitter().fit([r[0] for r in rows], [r[1] for r in rows], entry=[r[2] for r in rows])
    points = {p["time"]: p for p in out["curves"]["all"]["points"]}
    ci = kmf.confidence_interval_
    for t, s, lo, hi in zip(kmf.survival_function_.index, kmf.survival_function_.iloc[:, 0], ci.iloc[:, 0],
                            ci.iloc[:, 1], strict=True):
        p = points[int(t)]
        assert p["survival"] == pytest.approx(s, abs=1e-12)
        assert (p["ci_lower"], p["ci_upper"]) == pytest.approx((lo, hi), abs=1e-12)
    assert out["estimator"] == "product-limit" and out["ci"]["transform"] == "log-log"
    assert out["curves"]["all"]["median"] == (kmf.median_survival_time_ if math.isfinite(kmf.median_survival_time_)
                                              else None)


def test_actuarial_estimate_on_a_coarse_lattice():
    spec = SurvivalSpec(kind="kaplan_meier", outcome="OS", cutoff=dt.date(2025, 1, 1), step_days=30, n_edges=3,
                        group_field=None, groups=("all",))
    # 10 at risk; interval (0, 30]: 2 deaths, 2 censored → 1 − 2/(10 − 1) ; (30, 60]: 1 death of 6, none censored
    rows = [(10, 1, 0), (20, 1, 0), (5, 0, 0), (25, 0, 0), (45, 1, 0)] + [(90, 0, 0)] * 5
    out = finalise(spec, lattice_vector(spec, {"all": rows}))
    s = [p["survival"] for p in out["curves"]["all"]["points"]]
    assert s == pytest.approx([1.0, 1 - 2 / 9, (1 - 2 / 9) * (1 - 1 / 6)], abs=1e-15)
    assert out["estimator"].startswith("actuarial")


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8])
def test_chi2_survival_function_equals_scipy(df):
    for x in (0.01, 0.5, 1.0, 3.84, 10.0, 55.5, 300.0):
        assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-12)
