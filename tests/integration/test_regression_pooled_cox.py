"""The pooled-equivalent Cox model over real nodes (each through its answering pipeline): with
exact event times and k = 1 it equals the exact pooled (unstratified) statsmodels
`PHReg(ties=…)` and lifelines fits to 1e-6 — on rossi (tied weeks) and on synthetic data with late
entries —; with times coarsened (a coarser lattice, centres' k = 10) the tolerance the output
states holds against the exact fit on gbsg2; a centre that has not opted in withholds."""

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
from regression_reference import assert_matches, lifelines_strata, node_rows, phreg
from regression_world import POOLED, Network, fit, network, split

from oncofed.analyses.newton import FitError, FitOptions
from oncofed.query.errors import QueryError
from oncofed.query.textform import analysis_from

warnings.filterwarnings("ignore", category=FutureWarning)
ROSSI = {"fin": "b1", "race": "b2", "wexp": "b3", "mar": "b4", "paro": "b5", "prio": "h1"}
ROSSI_MODEL = ["b1", "age_at_incidence", "b2", "b3", "b4", "b5", "h1"]
ROSSI_COLS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


def pooled(covariates: list[str], **extra: Any) -> dict[str, Any]:
    return {"cox_pooled": {"outcome": "OS", "cutoff": CUTOFF, "covariates": covariates, **extra}}


@pytest.fixture(scope="module")
def rossi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, pd.DataFrame]]:
    import lifelines.datasets as ld

    r = ld.load_rossi()
    r["centre"] = np.arange(len(r)) % 3
    net = network(tmp_path_factory.mktemp("rossi"), split(r, r["centre"], time="week", event="arrest", age="age",
                                                           mapping=ROSSI), policy=POOLED, exact_dates=True)
    yield net, r
    net.close()


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_exact_times_and_k_1_equal_the_exact_pooled_fit(rossi: tuple[Network, pd.DataFrame], ties: str) -> None:
    net, r = rossi
    result = fit(net, pooled(ROSSI_MODEL, ties=ties.upper(), step_days=1, horizon_days=52))
    assert result.converged and result.rounds <= 8
    assert result.model == "Cox proportional hazards, pooled-equivalent (exact event times)"
    frame = r.rename(columns={"week": "time", "arrest": "event"})
    ref = phreg(frame, ROSSI_COLS, ties=ties, strata=None)
    assert_matches(result, ref.params, ref.bse, ref.llf)
    if ties == "efron":
        ll = lifelines_strata(frame.assign(centre=0), ROSSI_COLS)
        assert_matches(result, ll.params_[ROSSI_COLS].to_numpy(), ll.standard_errors_[ROSSI_COLS].to_numpy(),
                       ll.log_likelihood_)
    assert result.tolerance_se == 0.0 and any("exact pooled Cox fit" in n for n in result.notes)
    # not the stratified model: the stratified fit of the same rows differs
    stratified = fit(net, {"cox": {"outcome": "OS", "cutoff": CUTOFF, "covariates": ROSSI_MODEL,
                                   "ties": ties.upper()}})
    assert np.abs(np.array(stratified.beta) - np.array(result.beta)).max() > 1e-4


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(0, 1, n), 3)
    b = rng.integers(0, 2, n)
    g = rng.choice(["a", "b", "c"], n)
    hazard = np.exp(0.5 * x - 0.4 * b + np.where(g == "c", 0.6, 0.0)) / 300
    t = np.ceil(rng.exponential(1 / hazard))
    c = np.ceil(rng.uniform(100, 900, n))
    late = np.where(rng.random(n) < 0.25, np.ceil(rng.uniform(1, 200, n)), 0).astype(int)
    return pd.DataFrame({"x": x, "b": b, "g": g, "time": np.minimum(t, c).astype(int), "event": (t <= c).astype(int),
                         "late": late})


def test_synthetic_three_centres_with_late_entries_equal_the_exact_pooled_fit(tmp_path: Path) -> None:
    s = synthetic(600, 31)
    s["centre"] = np.arange(len(s)) % 3
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", entry="late",
                                  mapping={"x": "x1", "b": "b1", "g": "c2"}), policy=POOLED, exact_dates=True)
    model = pooled(["x1", "b1", "c2"], step_days=1, horizon_days=int(s["time"].max()))
    try:
        result = fit(net, model)
        nodes = {c: p.node for c, p in net.pipelines.items()}
        _, rows = node_rows(nodes, analysis_from(model, "m"), None, net.d)
        assert (rows["entry"] > 0).sum() > 50
        cols = ["x1", "b1[1]", "c2[b]", "c2[c]"]
        ref = phreg(rows, cols, strata=None)                       # entries shifted as statsmodels needs
        assert_matches(result, ref.params, ref.bse, ref.llf)
        ll = lifelines_strata(rows.assign(centre=0), cols)
        assert_matches(result, ll.params_[cols].to_numpy(), ll.standard_errors_[cols].to_numpy(), ll.log_likelihood_)
        assert result.tolerance_se == 0.0
    finally:
        net.close()


@pytest.fixture(scope="module")
def gbsg2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, pd.DataFrame]]:
    import lifelines.datasets as ld

    g = ld.load_gbsg2()
    g["horTh"] = (g["horTh"] == "yes").astype(int)
    g["menostat"] = (g["menostat"] == "Post").astype(int)
    g["centre"] = np.arange(len(g)) % 3
    net = network(tmp_path_factory.mktemp("gbsg2"), split(g, g["centre"], time="time", event="cens", age="age",
                                                           mapping={"horTh": "b1", "menostat": "b2", "tsize": "s1",
                                                                    "pnodes": "h2", "progrec": "k1", "estrec": "k2"}),
                  policy=POOLED, exact_dates=True, min_cell_count=1)
    yield net, g.rename(columns={"cens": "event"})
    net.close()


GBSG_MODEL = ["age_at_incidence", "b1", "b2", "s1", "h2", "k1", "k2"]
GBSG_COLS = ["age", "horTh", "menostat", "tsize", "pnodes", "progrec", "estrec"]


@pytest.mark.parametrize(("ties", "step", "k"), [("efron", 30, 10), ("breslow", 30, 10), ("efron", 7, 1),
                                                 ("efron", 1, 10)])
def test_the_stated_tolerance_holds_when_times_are_coarsened(gbsg2: tuple[Network, pd.DataFrame], ties: str,
                                                             step: int, k: int) -> None:
    net, g = gbsg2
    policy = replace(POOLED, min_cell_count=k, min_step_days=1)
    result = fit(net, pooled(GBSG_MODEL, ties=ties.upper(), step_days=step, horizon_days=2660),
                 pipelines=net.with_policy(policy))
    exact = phreg(g, GBSG_COLS, ties=ties, strata=None)
    gap = np.abs(np.array(result.beta) - exact.params) / exact.bse
    assert result.tolerance_se is not None and result.tolerance_se > 0
    assert float(gap.max()) <= result.tolerance_se, (gap, result.notes)
    assert float(gap.max()) > 1e-4                                  # coarsened: not the exact fit
    note = next(n for n in result.notes if n.startswith("pooled-equivalent Cox"))
    assert f"{step}-day lattice" in note or step == 1
    assert ("coarsened further at 3 centre(s)" in note) == (k > 1)
    assert f"within {result.tolerance_se:g} standard errors" in note


def test_a_centre_that_has_not_opted_in_withholds(rossi: tuple[Network, pd.DataFrame]) -> None:
    net, r = rossi
    pipelines = dict(net.pipelines)
    pipelines["centre-c"] = net.with_policy(replace(POOLED, allow_pooled_cox=False))["centre-c"]
    model = pooled(ROSSI_MODEL, step_days=1, horizon_days=52)
    with pytest.raises(FitError, match=r"1 of 3 centre\(s\) withheld"):
        fit(net, model, pipelines=pipelines)
    last = [e for e in net.pipelines["centre-c"].verifier.audit.entries() if e.event == "query.answer"][-1]
    assert "does not opt in" in last.detail["suppressed"] and last.decision == "answered"
    others = fit(net, model, pipelines=pipelines, options=FitOptions(allow_withheld=True))
    ab = r[r["centre"] < 2].rename(columns={"week": "time", "arrest": "event"})
    ref = phreg(ab, ROSSI_COLS, strata=None)
    assert_matches(others, ref.params, ref.bse, ref.llf)
    with pytest.raises(QueryError, match="1-day lattice"):          # exact times need the policy's leave
        fit(net, model, pipelines=net.with_policy(replace(POOLED, allow_exact_survival_times=False)))
