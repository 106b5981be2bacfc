"""The piecewise-exponential Poisson model over real nodes (each through its answering pipeline):
equal to statsmodels' `GLM(family=Poisson, offset=log(exposure))` on the person-period records of
the pooled rows — written out by the test itself (regression_reference.person_period) — to 1e-6
in coefficients and SEs, on a public dataset (gbsg2) and on synthetic data over three centres with
late entries and a centre that stops at its tail (k rule); hazard ratios near Cox's; and what a
centre or the coordinator refuses."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from regression_data import CUTOFF
from regression_reference import (
    assert_matches,
    lifelines_strata,
    node_rows,
    person_period,
    poisson_constant,
    poisson_glm,
)
from regression_world import EXACT, Network, fit, network, split

from oncofed.analyses.newton import FitError
from oncofed.query.errors import QueryError
from oncofed.query.textform import analysis_from

warnings.filterwarnings("ignore", category=FutureWarning)
GBSG = {"horTh": "b1", "menostat": "b2", "tsize": "s1", "tgrade": "c2", "pnodes": "h2", "progrec": "k1",
        "estrec": "k2"}
GBSG_MODEL = ["age_at_incidence", "b1", "b2", "s1", "c2", "h2", "k1", "k2"]
GBSG_COLS = ["age", "horTh", "menostat", "tsize", "grade2", "grade3", "pnodes", "progrec", "estrec"]
# Measured on gbsg2 with 365-day intervals (docs/analyses.md): the largest |log HR(Poisson) −
# log HR(Cox)| over the covariates, in units of the Cox SE. Not an exactness gate — the two are
# different models — but a check that the hazard ratios are comparable.
NEAR_COX_SE = 0.25


def poisson(covariates: list[str], **extra: Any) -> dict[str, Any]:
    return {"poisson": {"outcome": "OS", "cutoff": CUTOFF, "covariates": covariates, **extra}}


@pytest.fixture(scope="module")
def gbsg2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, pd.DataFrame]]:
    import lifelines.datasets as ld

    g = ld.load_gbsg2()
    g["horTh"] = (g["horTh"] == "yes").astype(int)
    g["menostat"] = (g["menostat"] == "Post").astype(int)
    g["tgrade"] = g["tgrade"].map({"I": "a", "II": "b", "III": "c"})
    g["centre"] = np.arange(len(g)) % 3
    net = network(tmp_path_factory.mktemp("gbsg2"), split(g, g["centre"], time="time", event="cens", age="age",
                                                           mapping=GBSG))
    g["grade2"], g["grade3"] = (g["tgrade"] == "b").astype(float), (g["tgrade"] == "c").astype(float)
    yield net, g.rename(columns={"cens": "event"}).assign(entry=0.0)
    net.close()


def test_gbsg2_equals_the_pooled_poisson_glm_on_person_period_records(gbsg2: tuple[Network, pd.DataFrame]) -> None:
    net, g = gbsg2
    result = fit(net, poisson(GBSG_MODEL, step_days=365, horizon_days=2555))
    assert result.converged and result.rounds <= 8          # issue 11's target (D32)
    assert result.model == "Poisson regression, piecewise-exponential, 365-day intervals"
    pp = person_period(g, GBSG_COLS, 365, 7)
    ref = poisson_glm(pp, GBSG_COLS, 7)
    assert_matches(result, ref.params, ref.bse)
    assert result.loglik + poisson_constant(pp) == pytest.approx(ref.llf, rel=1e-9)
    assert result.n == len(g) and result.events == int(pp["d"].sum())
    assert result.coefficients[:2] == ["(baseline 0–365 d)", "(baseline 365–730 d)"]
    # the null model (baselines only) as statsmodels fits it; the LR test on the covariates alone
    null = poisson_glm(pp, [], 7)
    assert result.loglik_null + poisson_constant(pp) == pytest.approx(null.llf, rel=1e-9)
    assert result.lr_df == len(GBSG_COLS)
    assert result.lr_stat == pytest.approx(2 * (ref.llf - null.llf), rel=1e-6)
    # hazard ratios near Cox's (a different model: no exactness, a stated closeness)
    cox = lifelines_strata(g.assign(centre=0), GBSG_COLS)
    gap = np.abs(np.array(result.beta[7:]) - cox.params_[GBSG_COLS].to_numpy()) / cox.standard_errors_[GBSG_COLS]
    assert float(gap.max()) < NEAR_COX_SE, gap
    table = result.rows()
    assert "hazard_ratio" not in table[0] and table[7]["hazard_ratio"] == pytest.approx(np.exp(result.beta[7]))


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(0, 1, n), 3)
    b = rng.integers(0, 2, n)
    g = rng.choice(["a", "b", "c"], n)
    hazard = np.exp(0.5 * x - 0.4 * b + np.where(g == "c", 0.6, 0.0)) / 500
    t = np.ceil(rng.exponential(1 / hazard))
    c = np.ceil(rng.uniform(300, 2000, n))
    entry = np.where(rng.random(n) < 0.25, np.ceil(rng.uniform(1, 400, n)), 0).astype(int)   # a quarter referred
    return pd.DataFrame({"x": x, "b": b, "g": g, "time": np.minimum(t, c).astype(int),
                         "event": (t <= c).astype(int), "late": entry})


def test_synthetic_three_centres_late_entries_and_a_centre_that_stops_at_its_tail(tmp_path: Path) -> None:
    """Three centres with referred tumours (late entry); at k = 8 centre-c, whose follow-up is
    short (5 tumours followed into the third interval), stops at its first interval with fewer
    than 8 at risk — the reference applies the same rule per centre — and the fit equals the
    pooled GLM on those records."""
    s = synthetic(1500, 21)
    s["centre"] = np.arange(len(s)) % 3
    late = s.index[(s["centre"] == 2) & (s["time"] > 700)]
    s.loc[late, "event"] = 0                                        # centre-c follows up for ~2 years …
    s.loc[late, "time"] = 700
    s.loc[late[:5], "time"] = 750                                   # … but for 5 of its tumours
    policy = replace(EXACT, min_cell_count=8)
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", entry="late",
                                  mapping={"x": "x1", "b": "b1", "g": "c2"}), policy=policy, min_cell_count=8)
    model = poisson(["x1", "b1", "c2"], step_days=360, horizon_days=1080)
    try:
        result = fit(net, model)
        nodes = {c: p.node for c, p in net.pipelines.items()}
        _, rows = node_rows(nodes, analysis_from(model, "m"), None, net.d)
        assert (rows["entry"] > 0).sum() > 100
        cols = ["x1", "b1[1]", "c2[b]", "c2[c]"]
        pp = person_period(rows, cols, 360, 3, k=8)
        every = person_period(rows, cols, 360, 3, k=1)            # without the tail rule
        last = {c: int(pp.loc[pp["centre"] == c, "interval"].max()) for c in nodes}
        assert last == {"centre-a": 3, "centre-b": 3, "centre-c": 2}
        assert int(every.loc[every["centre"] == "centre-c", "interval"].max()) == 3
        ref = poisson_glm(pp, cols, 3)
        assert_matches(result, ref.params, ref.bse)
        assert result.loglik + poisson_constant(pp) == pytest.approx(ref.llf, rel=1e-9)
    finally:
        net.close()


def test_an_interval_without_events_and_what_a_centre_refuses(tmp_path: Path) -> None:
    s = synthetic(300, 22)
    s["centre"] = np.arange(len(s)) % 3
    net = network(tmp_path, split(s, s["centre"], time="time", event="event",
                                  mapping={"x": "x1", "b": "b1", "g": "c2"}))
    try:
        with pytest.raises(FitError, match=r"no events in 1800–2000 d at any centre"):
            fit(net, poisson(["x1"], step_days=200, horizon_days=2000))
        with pytest.raises(QueryError, match="1-day lattice"):
            fit(net, poisson(["x1"], step_days=1, horizon_days=30))
        with pytest.raises(QueryError, match="at most 60"):
            fit(net, poisson(["x1"], step_days=30, horizon_days=3000))
        gated = net.with_policy(replace(EXACT, min_cell_count=10))
        with pytest.raises(FitError, match=r"3 of 3 centre.*withheld"):
            fit(net, poisson(["x1"], step_days=30, horizon_days=600), pipelines=gated)
        entries = net.pipelines["centre-a"].verifier.audit.entries()
        last = [e for e in entries if e.event == "query.answer"][-1]
        assert "events in" in last.detail["suppressed"]
    finally:
        net.close()
