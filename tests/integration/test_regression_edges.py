"""Edge cases of the federated models over real nodes (each through its answering pipeline): a
centre with no events, a covariate constant within one centre or within every centre, perfect
and quasi-complete separation, heavily tied times, the disclosure gates, the round cap, the
audit of every β, data that change between rounds, and what a centre refuses outright."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from node_fed_helpers import query_body, signed
from regression_data import CUTOFF, registry_rows, write_csv
from regression_reference import assert_matches
from regression_world import EXACT, fit, network, split

from oncofed.analyses.newton import BoundReached, FitError, FitOptions, NotEstimable, Separation
from oncofed.node.query.policy import NodePolicy
from oncofed.query.errors import QueryError
from oncofed.query.textform import analysis_from

MAPPING = {"x": "x1", "z": "x2", "b": "b1", "g": "c2"}


def synthetic(n: int, seed: int, *, ties: int = 0) -> pd.DataFrame:
    """Exponential survival times with a hazard in x, b and g; `ties` > 0 rounds times to that many days."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(0, 1, n), 3)
    b = rng.integers(0, 2, n)
    g = rng.choice(["a", "b", "c"], n)
    hazard = np.exp(0.5 * x - 0.4 * b + np.where(g == "c", 0.6, 0.0)) / 400
    t = np.ceil(rng.exponential(1 / hazard))
    c = np.ceil(rng.uniform(200, 1500, n))
    time = np.minimum(t, c)
    if ties:
        time = np.ceil(time / ties) * ties
    return pd.DataFrame({"x": x, "z": np.round(rng.normal(0, 1, n), 3), "b": b, "g": g, "time": time.astype(int),
                         "event": (t <= c).astype(int)})


def cox(covariates: list[str], **extra: Any) -> dict[str, Any]:
    return {"cox": {"outcome": "OS", "cutoff": CUTOFF, "covariates": covariates, **extra}}


def reference(frame: pd.DataFrame, columns: list[str], ties: str = "efron") -> Any:
    import statsmodels.api as sm

    model = sm.PHReg(frame["time"].to_numpy(float), frame[columns].to_numpy(float),
                     status=frame["event"].to_numpy(float), ties=ties, strata=frame["centre"].to_numpy())
    return model.fit(method="newton", tol=1e-12, maxiter=200)


def design(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(gb=(frame["g"] == "b").astype(float), gc=(frame["g"] == "c").astype(float))


def test_a_centre_without_events_takes_part_and_changes_nothing(tmp_path: Path) -> None:
    from lifelines import CoxPHFitter

    s = synthetic(450, 1)
    centre = np.arange(len(s)) % 2
    quiet = s[s["event"] == 0].index[:60]
    centre[quiet] = 2                                      # centre-c: 60 censored rows, no event
    s["centre"] = centre
    net = network(tmp_path, split(s, centre, time="time", event="event", mapping=MAPPING))
    try:
        result = fit(net, cox(["x1", "b1", "c2"]))
        ref = reference(design(s), ["x", "b", "gb", "gc"])
        assert_matches(result, ref.params, ref.bse, ref.llf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ll = CoxPHFitter().fit(design(s)[["x", "b", "gb", "gc", "time", "event", "centre"]], "time", "event",
                                   strata=["centre"], fit_options={"precision": 1e-12})
        assert_matches(result, ll.params_.to_numpy(), ll.standard_errors_.to_numpy(), ll.log_likelihood_)
        assert result.centres == 3 and result.withheld_centres == 0
    finally:
        net.close()


def test_a_covariate_constant_within_one_centre_is_still_estimated(tmp_path: Path) -> None:
    s = synthetic(450, 2)
    centre = np.where(s["b"] == 1, np.arange(len(s)) % 2, np.arange(len(s)) % 3)   # centre-c: b = 0 only
    s["centre"] = centre
    assert set(s.loc[s["centre"] == 2, "b"]) == {0}
    net = network(tmp_path, split(s, centre, time="time", event="event", mapping=MAPPING))
    try:
        result = fit(net, cox(["x1", "b1", "c2"]))
        ref = reference(design(s), ["x", "b", "gb", "gc"])
        assert_matches(result, ref.params, ref.bse, ref.llf)
    finally:
        net.close()


def test_a_covariate_constant_within_every_centre_cannot_be_estimated(tmp_path: Path) -> None:
    s = synthetic(300, 3)
    s["centre"] = np.arange(len(s)) % 3
    s["z"] = s["centre"] * 1.5                              # a centre-level covariate
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", mapping=MAPPING))
    try:
        with pytest.raises(NotEstimable, match=r"x2 carries no information \(under the model stratified by centre"):
            fit(net, cox(["x1", "x2"]))
        with pytest.raises(NotEstimable, match="x1 is constant over the pooled cohort"):
            _constant_everywhere(tmp_path)
    finally:
        net.close()


def _constant_everywhere(tmp_path: Path) -> None:
    s = synthetic(240, 4)
    s["centre"] = np.arange(len(s)) % 3
    s["x"] = 2.0
    net = network(tmp_path / "const", split(s, s["centre"], time="time", event="event", mapping=MAPPING))
    try:
        fit(net, {"logistic": {"outcome": "b1", "covariates": ["x2", "x1"]}})
    finally:
        net.close()


@pytest.mark.slow
def test_perfect_and_quasi_complete_separation_are_errors(tmp_path: Path) -> None:
    s = synthetic(300, 5)
    s["centre"] = np.arange(len(s)) % 3
    s["b"] = (s["x"] > 0).astype(int)                        # b is perfectly predicted by x
    s.loc[s["g"] == "c", "event"] = 0                       # and no event in level c
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", mapping=MAPPING))
    try:
        with pytest.raises(Separation, match=r"separation.*x1"):
            fit(net, {"logistic": {"outcome": "b1", "covariates": ["x1", "x2"]}})
        with pytest.raises(Separation, match="separation"):
            fit(net, {"logistic": {"survival": "OS", "cutoff": CUTOFF, "covariates": ["x2", "c2"]}})
        ok = fit(net, {"logistic": {"outcome": "b1", "covariates": ["x2"]}})   # without x: a plain fit
        assert ok.converged
    finally:
        net.close()


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_heavily_tied_times(tmp_path: Path, ties: str) -> None:
    s = synthetic(360, 6, ties=150)                          # about ten distinct times
    s["centre"] = np.arange(len(s)) % 3
    assert s["time"].nunique() <= 12
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", mapping=MAPPING))
    try:
        result = fit(net, cox(["x1", "b1", "c2"], ties=ties.upper()))
        ref = reference(design(s), ["x", "b", "gb", "gc"], ties)
        assert_matches(result, ref.params, ref.bse, ref.llf)
    finally:
        net.close()


# ---------------------------------------------------------------------------- gates, caps, audit


def test_gates_withhold_a_centre_inside_the_vector_and_audit_why(tmp_path: Path) -> None:
    """At k = 10 a centre holding 4 rows of level c of g fails its gates: it releases zeros with
    its withheld flag (no decline names it), its audit log says why, and the coordinator stops
    unless told to fit over the others."""
    import statsmodels.api as sm

    s = synthetic(600, 7)
    centre = np.arange(len(s)) % 3
    few = s.index[(centre == 2) & (s["g"] == "c")]
    s = s.drop(index=few[4:]).reset_index(drop=True)
    centre = np.delete(centre, few[4:])
    s["centre"] = centre
    policy = NodePolicy(mode="threshold", min_cell_count=10, rate_per_minute=100_000)
    net = network(tmp_path, split(s, centre, time="time", event="event", mapping=MAPPING), policy=policy,
                  min_cell_count=10)
    model = {"logistic": {"outcome": "b1", "covariates": ["x1", "c2"]}}
    try:
        with pytest.raises(FitError, match=r"1 of 3 centre.*withheld.*gates"):
            fit(net, model)
        entries = net.pipelines["centre-c"].verifier.audit.entries()
        last = [e for e in entries if e.event == "query.answer"][-1]
        assert last.decision == "answered" and "c2=c" in last.detail["suppressed"]
        assert "gate" in last.detail["suppressed"] and last.detail["beta"] == [0.0, 0.0, 0.0, 0.0]
        others = fit(net, model, options=FitOptions(allow_withheld=True))
        ab = design(s[s["centre"] < 2])
        ref = sm.Logit(ab["b"].astype(float), sm.add_constant(ab[["x", "gb", "gc"]])).fit(disp=0, tol=1e-12,
                                                                                           method="newton")
        assert_matches(others, ref.params, ref.bse, ref.llf)
        assert others.withheld_centres == 1 and any("withheld" in n for n in others.notes)
    finally:
        net.close()


def test_a_fit_whose_optimum_lies_beyond_the_public_bound_stops_with_a_clear_error(tmp_path: Path) -> None:
    """k1's dictionary range (0 … 5000) is 500 times wider than the data put there: the fitted
    log-hazard per unit (≈ 0.05) would spread xᵀβ over ±125 across the range, beyond the centres'
    bound of 40 (D30). The coordinator scales its steps back to the bound, so no centre is ever
    asked a β it refuses, and stops on the boundary with the error saying what to change."""
    s = synthetic(300, 13)
    s["centre"] = np.arange(len(s)) % 3
    s["k"] = np.round(2500 + 10 * s["x"], 3)
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", mapping={**MAPPING, "k": "k1"}))
    try:
        with pytest.raises(BoundReached, match=r"public bound on the linear predictor: separation, or a covariate "
                                               r"whose dictionary range is far wider than its data.*k1"):
            fit(net, cox(["k1", "b1"]))
        entries = [e for e in net.pipelines["centre-a"].verifier.audit.entries() if e.event == "query.answer"]
        assert len(entries) >= 2 and all(e.decision == "answered" for e in entries)
        spreads = [abs(e.detail["beta"][0]) * 2500 + abs(e.detail["beta"][1]) * 0.5 for e in entries]
        assert max(spreads) <= 40 and max(spreads) > 39.9          # it went to the bound, never past it
        assert fit(net, cox(["x1", "b1"])).converged                # the same data on x1 (−10 … 10) fit
    finally:
        net.close()


def test_the_round_cap_and_every_beta_in_the_audit_log(tmp_path: Path) -> None:
    s = synthetic(300, 8)
    s["centre"] = np.arange(len(s)) % 3
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", mapping=MAPPING))
    model = cox(["x1", "b1"])
    try:
        full = fit(net, model)
        entries = [e for e in net.pipelines["centre-a"].verifier.audit.entries() if e.event == "query.answer"]
        betas = [e.detail["beta"] for e in entries]
        assert len(betas) == full.rounds and betas[0] == [0.0, 0.0] and [e.detail["round"] for e in entries] == \
            list(range(1, full.rounds + 1))
        assert betas[-1] == pytest.approx(full.beta, abs=1e-9)
        capped = net.with_policy(NodePolicy(mode="threshold", min_cell_count=1, max_rounds=3, rate_per_minute=10**5))
        # the same fit again: its rounds were answered before (same β), so the cap does not bite …
        assert fit(net, model, pipelines=capped).beta == full.beta
        # … but a new fit (another model) is refused at its fourth distinct β, with a message that may go out
        with pytest.raises(QueryError) as refused:
            fit(net, cox(["x1", "x2"]), pipelines=capped)
        assert refused.value.reason == "round_cap" and "at most 3 rounds" in refused.value.public_message()
    finally:
        net.close()


def test_a_fit_reads_each_centres_rows_once_through_the_release_ledger(tmp_path: Path) -> None:
    """Every round passes the release ledger (its row ids and the answer's rows are one read, kept
    for the fit), and the answers equal the fit without the ledger's cache."""
    from oncofed.node.store.design_reads import DESIGNS
    s = synthetic(300, 12)
    s["centre"] = np.arange(len(s)) % 3
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", mapping=MAPPING))
    try:
        DESIGNS.clear()
        first = fit(net, cox(["x1", "b1"]))
        assert len(DESIGNS) == 3 and first.rounds > 3
        entries = [e for e in net.pipelines["centre-a"].verifier.audit.entries() if e.event == "query.answer"]
        assert all(e.detail.get("ledger") for e in entries[-first.rounds:])
        DESIGNS.clear()
        again = fit(net, cox(["x1", "b1"]))
        assert again.beta == first.beta and again.se == first.se
    finally:
        net.close()


def test_data_that_change_between_rounds_stop_the_fit(tmp_path: Path) -> None:
    from oncofed.analyses import finalise, parse_analysis
    from oncofed.analyses.fitting import ModelFit
    from oncofed.query import sum_vectors

    s = synthetic(300, 9)
    s["centre"] = np.arange(len(s)) % 3
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", mapping=MAPPING))
    try:
        f = ModelFit(analysis_from(cox(["x1", "b1"]), "m"), net.d)
        for r in range(2):
            analysis = f.next_analysis()
            assert analysis is not None
            vectors = []
            for centre, p in net.pipelines.items():
                body = query_body(net.permit[centre], targets=tuple(net.pipelines), d=net.d)
                body.ClearField("cohort")
                body.analysis.CopyFrom(analysis)
                vectors.append(p.answer_envelope(signed(net.fed.identities["res-1"], body)).vector)
            summed = finalise(parse_analysis(analysis, net.d), sum_vectors(vectors))
            if r == 0:
                f.observe(summed)
                extra = registry_rows(synthetic(20, 10).to_dict("records"), prefix="NEW", time="time", event="event",
                                      mapping=MAPPING)
                net.pipelines["centre-b"].node.ingest(write_csv(extra, tmp_path / "more.csv"))
            else:
                with pytest.raises(FitError, match="changed between rounds"):
                    f.observe(summed)
    finally:
        net.close()


def test_what_a_centre_refuses_before_reading_a_row(tmp_path: Path) -> None:
    from oncofed.node.query.engine import prepare

    s = synthetic(60, 11)
    s["centre"] = 0
    net = network(tmp_path, split(s, s["centre"], time="time", event="event", mapping=MAPPING))
    node = net.pipelines["centre-a"].node
    try:
        dp = type("P", (), {"permit_id": "p", "allowed_analyses": ("cox",), "allowed_fields": ("x1",),
                            "min_cell_count": 1, "epsilon": 1.0, "allow_exact_dates": False,
                            "allowed_outcomes": ("os",)})()
        body = query_body(net.permit["centre-a"], targets=("centre-a",), d=net.d)
        body.ClearField("cohort")
        body.epsilon = 0.5
        body.analysis.CopyFrom(analysis_from(cox(["x1"]), "a"))
        with pytest.raises(QueryError, match="not offered under a differentially private permit"):
            prepare(node, body, dp, EXACT)
        rfs_only = type("P", (), {**dp.__class__.__dict__, "epsilon": None, "allowed_outcomes": ("rfs",)})()
        body.epsilon = 0
        with pytest.raises(QueryError, match="does not allow the outcome OS"):
            prepare(node, body, rfs_only, EXACT)
        body.epsilon = 0
        # β beyond the public bound on the linear predictor (|x1| ≤ 10 in the dictionary: 10 · 5 > 40)
        body.analysis.CopyFrom(analysis_from(cox(["x1"], beta_scale_bits=8, beta=[5 * 2**8]), "a"))
        with pytest.raises(QueryError, match=r"linear predictor up to 50 .*up to 40") as exc:
            prepare(node, body, None, EXACT)
        assert exc.value.code == "INVALID_ARGUMENT"
        # a β steep enough to overflow the fixed point (once this test's OUT_OF_RANGE) is refused by the bound first
        body.analysis.CopyFrom(analysis_from(cox(["x1"], scale_bits=64, beta_scale_bits=8, beta=[2**27]), "a"))
        with pytest.raises(QueryError, match="linear predictor") as exc:
            prepare(node, body, None, EXACT)
        assert exc.value.code == "INVALID_ARGUMENT"
    finally:
        net.close()
