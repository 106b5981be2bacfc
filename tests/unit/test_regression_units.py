"""The regression modules' pure parts: parsing against the dictionary, the vector layout, the local
steps against statsmodels' own score, Hessian and log-likelihood, the coordinator's Newton logic
(step-halving, stopping, the checks), the output's statistics and the model file."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from oncofed import dictionary as dictmod
from oncofed.analyses import parse_analysis
from oncofed.analyses.base import DesignRows
from oncofed.analyses.cox import partial_likelihood
from oncofed.analyses.fitting import ModelFit
from oncofed.analyses.logistic import ANALYSIS as LOGISTIC
from oncofed.analyses.model_result import chi2_sf
from oncofed.analyses.newton import FitError, FitOptions, Newton, NotConverged, RoundSums
from oncofed.federation.client.analyse import load_request
from oncofed.query.errors import QueryError
from oncofed.query.references import referenced_fields
from oncofed.query.textform import analysis_from, analysis_to
from oncofed.query.vector import n_total

D = dictmod.load()
LOG = {"outcome": "her2", "positive": ["pos"], "covariates": ["age_at_incidence", "stage_summary", "er"]}


def spec_of(kind: str, **params: Any) -> Any:
    return parse_analysis(analysis_from({kind: params}, "analysis"), D)


@pytest.mark.parametrize(("params", "message"), [
    ({**LOG, "covariates": ["nope"]}, "unknown field 'nope'"),
    ({**LOG, "covariates": ["incidence_date"]}, "a covariate is numeric"),
    ({**LOG, "covariates": ["er", "er"]}, "named twice"),
    ({**LOG, "covariates": ["her2"]}, "is the outcome"),
    ({**LOG, "reference": ["age_at_incidence=3"]}, "write field=code for a categorical covariate"),
    ({**LOG, "reference": ["er=maybe"]}, "'maybe' is not a code of er"),
    ({**LOG, "reference": ["er=neg", "er=pos"]}, "a second reference level"),
    ({**LOG, "positive": []}, "state the level"),
    ({**LOG, "positive": ["pos", "neg", "low", "unknown"]}, "every level is positive"),
    ({**LOG, "beta": [1, 2]}, "the model has 8 coefficients"),
    ({**LOG, "beta_scale_bits": 8, "beta": [2**28] + [0] * 7}, r"below 2\^20"),
    ({**LOG, "scale_bits": 65}, "exceeds 64"),
    ({**LOG, "survival": "OS", "cutoff": "2025-12-31"}, "not both"),
    ({"covariates": ["er"]}, "name the outcome field"),
])
def test_logistic_refuses_what_does_not_fit(params: dict[str, Any], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        spec_of("logistic", **params)


def test_cox_refuses_without_covariates_or_outcome() -> None:
    with pytest.raises(QueryError, match="at least one covariate"):
        spec_of("cox", outcome="OS", cutoff="2025-12-31")
    with pytest.raises(QueryError, match="OS or RFS"):
        spec_of("cox", cutoff="2025-12-31", covariates=["er"])


def test_the_design_and_layout_follow_from_the_query() -> None:
    spec = spec_of("logistic", **LOG, reference=["er=neg"])
    assert spec.coefficient_names() == ["(intercept)", "age_at_incidence", "stage_summary[regional]",
                                        "stage_summary[distant]", "stage_summary[unknown]", "er[pos]", "er[low]",
                                        "er[unknown]"]
    p, q = 8, 7
    assert spec.n_values == 2 + 2 * q + p + p * (p + 1) // 2 + 2 and n_total(spec) == spec.n_values + 2
    assert len(LOGISTIC.component_maxima(spec)) == spec.n_values
    cox = spec_of("cox", outcome="OS", cutoff="2025-12-31", covariates=["sex", "age_at_incidence"], ties="BRESLOW")
    assert cox.coefficient_names() == ["sex[2]", "sex[9]", "age_at_incidence"] and cox.ties == "breslow"
    assert not cox.intercept and cox.question.survival == "OS"


def test_the_text_form_round_trips_and_the_verifier_sees_every_field() -> None:
    text = {"logistic": {**LOG, "reference": ["er=neg"], "beta": [-5, 3, 0, 0, 0, 0, 0, 1], "beta_scale_bits": 4,
                         "round": 2}}
    a = analysis_from(text, "analysis")
    assert analysis_to(a) == text
    assert {"her2", "age_at_incidence", "stage_summary", "er"} <= referenced_fields(a)


def test_a_fit_is_its_model_without_coefficients() -> None:
    one = spec_of("logistic", **LOG, beta=[1] * 8, round=1)
    two = spec_of("logistic", **LOG, beta=[2] * 8, round=2)
    other = spec_of("logistic", **{**LOG, "covariates": ["age_at_incidence"]})
    assert one.fit_key == two.fit_key != other.fit_key and one.beta_key != two.beta_key


def rows_for(x: np.ndarray, y: np.ndarray) -> DesignRows:
    return DesignRows(np.column_stack([x, y]))


@pytest.mark.parametrize("ages", [60, 3])      # 3 ages: rows repeat, each pattern is summed once with its count
def test_the_logistic_local_step_is_statsmodels_score_hessian_and_loglik(ages: int) -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    age = rng.integers(30, 30 + ages, 400).astype(float)
    er = rng.integers(0, 4, 400).astype(float)
    stage = rng.integers(0, 4, 400).astype(float)
    her2 = rng.integers(0, 4, 400).astype(float)
    beta = [-1.0, 0.01, 0.3, -0.2, 0.1, 0.4, -0.5, 0.2]
    spec = spec_of("logistic", **LOG, beta=[round(b * 2**20) for b in beta], beta_scale_bits=20)
    raw = LOGISTIC.evaluate(spec, DesignRows(np.column_stack([age, stage, er, her2])))
    x = np.column_stack([np.ones(400), age, *[(stage == k) for k in (1, 2, 3)], *[(er == k) for k in (1, 2, 3)]])
    model = sm.Logit((her2 == 2).astype(float), x.astype(float))          # her2: neg, low, pos, unknown
    b = np.asarray(spec.beta)
    assert raw.loglik == pytest.approx(model.loglike(b), rel=1e-12)
    assert np.allclose(raw.gradient, model.score(b), rtol=1e-10, atol=1e-10)
    info = -model.hessian(b)
    assert np.allclose(raw.information, info[np.triu_indices(8)], rtol=1e-10, atol=1e-10)
    assert raw.n == 400 and raw.events == int((her2 == 2).sum()) and raw.counts["outcome=1"] == raw.events
    x_used = next(iter(raw_rows_prepared(spec, age, stage, er, her2)))
    assert (len(x_used) < 200) == (ages == 3)


def raw_rows_prepared(spec: Any, *columns: np.ndarray) -> Any:
    rows = DesignRows(np.column_stack(columns))
    LOGISTIC.evaluate(spec, rows)
    return next(iter(rows.prepared.values()))


@pytest.mark.parametrize("efron", [True, False])
def test_the_cox_local_step_is_statsmodels_score_hessian_and_loglik(efron: bool) -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    n = 300
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)]).astype(float)
    t = np.ceil(rng.exponential(50, n))                      # many ties
    e = (rng.random(n) < 0.7).astype(float)
    entry = np.where(rng.random(n) < 0.3, np.floor(t * rng.random(n)), 0.0)
    beta = np.array([0.4, -0.3])
    g, info, ll = partial_likelihood(x, t, e, entry, beta, efron=efron)
    m = sm.PHReg(t, x, status=e, entry=np.where(entry > 0, entry + 0.5, 0.0), ties="efron" if efron else "breslow")
    assert ll == pytest.approx(m.loglike(beta), rel=1e-12)
    assert np.allclose(g, m.score(beta), rtol=1e-10, atol=1e-10)
    assert np.allclose(info, -m.hessian(beta), rtol=1e-10, atol=1e-10)
    assert partial_likelihood(x, t, np.zeros(n), entry, beta)[2] == 0.0      # no events: nothing


def sums(**over: Any) -> RoundSums:
    base = {"n": 100, "events": 40, "sum_x": np.array([10.0]), "sum_xx": np.array([120.0]),
            "gradient": np.array([5.0, 3.0]), "information": np.array([[20.0, 2.0], [2.0, 30.0]]), "loglik": -60.0,
            "extreme": 0, "withheld": 0, "centres": 3}
    return RoundSums(**{**base, **over})


def newton(**options: Any) -> Newton:
    return Newton(["(intercept)", "x"], intercept=True, dummies=[False], options=FitOptions(**options),
                  beta_scale_bits=40)


def test_newton_halves_a_step_that_lowers_the_loglik_and_caps_rounds() -> None:
    n = newton(max_rounds=3)
    assert n.propose() == [0, 0]
    assert n.observe(sums()).action == "start"
    first = np.array(n.propose()) / 2**40
    assert n.observe(sums(loglik=-90.0)).action == "halved"
    half = np.array(n.propose()) / 2**40
    assert half == pytest.approx(first / 2, abs=1e-9)
    n.observe(sums(loglik=-95.0))
    with pytest.raises(NotConverged, match="within 3 rounds"):
        n.propose()


def test_newton_stops_on_a_tiny_step_and_refuses_changed_data_or_withheld_centres() -> None:
    n = newton()
    n.observe(sums())
    n.propose()
    step = n.observe(sums(gradient=np.array([1e-13, 0.0]), loglik=-59.0))
    assert step.action == "converged" and n.propose() is None and n.fitted().converged
    m = newton()
    m.observe(sums())
    with pytest.raises(FitError, match="changed between rounds"):
        m.observe(sums(n=101))
    with pytest.raises(FitError, match="withheld"):
        newton().observe(sums(withheld=1))
    with pytest.raises(FitError, match="no events"):
        newton().observe(sums(events=0))


def test_chi2_survival_function_matches_scipy() -> None:
    from scipy.stats import chi2

    for df in (1, 2, 3, 7, 20):
        for x in (0.05, 1.0, 3.84, 12.0, 80.0):
            assert chi2_sf(x, df) == pytest.approx(chi2.sf(x, df), rel=1e-10, abs=1e-300)


def test_model_files_are_checked(tmp_path: Any) -> None:
    good = b'model = { cox = { outcome = "OS", cutoff = "2025-12-31", covariates = ["er"] } }\n' \
           b'targets = ["a", "b"]\npermit = "' + b"00" * 32 + b'"\n[fit]\nl2 = 2\n'
    req = load_request(good)
    assert req.options.l2 == 2.0 and req.targets == ("a", "b") and req.permit_hash == bytes(32)
    for text, message in [(b"targets = 1", "needs 'model'"), (b"extra = 1\n" + good, "unknown key 'extra'"),
                          (good.replace(b"l2 = 2", b"l2 = true"), "expected float"),
                          (good.replace(b"l2 = 2", b"speed = 2"), "unknown \\[fit\\] option"),
                          (good.replace(b'cox = { outcome = "OS", cutoff = "2025-12-31", covariates = ["er"] }',
                                        b"count = {}"), "not a model"),
                          (good.replace(b'permit = "', b'permit = "zz'), "neither a permit file")]:
        with pytest.raises((FitError, QueryError), match=message):
            load_request(text)
    with pytest.raises(FitError, match="finite number"):
        FitOptions(l2=math.inf)


def test_model_fit_proposes_rounds_in_order() -> None:
    f = ModelFit(analysis_from({"logistic": LOG}, "a"), D)
    a = f.next_analysis()
    assert a is not None and a.logistic.round == 1 and list(a.logistic.beta) == [0] * 8
    assert a.logistic.beta_scale_bits == 40


# ---------------------------------------------------------------------------- Poisson


def brute_cells(x: np.ndarray, t: np.ndarray, e: np.ndarray, entry: np.ndarray, step: int, j_max: int,
                k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person-period records one row and interval at a time (the lattice rules, written plainly):
    → per record (interval 0-based, exposure, event), and the row each belongs to."""
    kappa = [max(1, math.ceil(ti / step)) for ti in t]
    alpha = [1 if en <= 0 else math.floor(en / step) + 1 for en in entry]
    stop = j_max
    for j in range(1, j_max + 1):
        if sum(1 for a, kap in zip(alpha, kappa, strict=True) if a <= j <= min(kap, j_max)) < k:
            stop = j - 1
            break
    recs = []
    for i in range(len(t)):
        for j in range(alpha[i], min(kappa[i], stop) + 1):
            leaving = j == kappa[i]
            recs.append((i, j - 1, step / 2 if leaving else float(step), float(e[i]) if leaving else 0.0))
    arr = np.array(recs)
    return arr[:, 0].astype(int), arr[:, 1].astype(int), arr[:, 2:]


@pytest.mark.parametrize("k", [1, 40])
def test_poisson_cells_are_the_person_period_records_summed(k: int) -> None:
    from oncofed.analyses.poisson import Cells

    rng = np.random.default_rng(5)
    n, step, j_max = 250, 100, 8
    x = np.column_stack([rng.integers(0, 2, n), rng.integers(0, 3, n)]).astype(float)     # few patterns
    t = np.ceil(rng.exponential(300, n))
    t[:5] = 0.0                                                  # day 0: the first interval, half its width
    e = (rng.random(n) < 0.6).astype(float)
    entry = np.where(rng.random(n) < 0.3, np.floor(t * rng.random(n)), 0.0)
    cells = Cells.of(x, t, e, entry, step, j_max, k)
    row, interval, (exposure, d) = (lambda r, j, m: (r, j, m.T))(*brute_cells(x, t, e, entry, step, j_max, k))
    beta = np.array([-5.0 + 0.1 * j for j in range(j_max)] + [0.3, -0.2])
    g, info, ll = cells.at(beta)
    z = np.column_stack([np.eye(j_max)[interval], x[row]])
    mu = exposure * np.exp(z @ beta)
    assert np.allclose(g, z.T @ (d - mu), rtol=1e-10, atol=1e-10)
    assert np.allclose(info, z.T @ (z * mu[:, None]), rtol=1e-10, atol=1e-10)
    assert ll == pytest.approx(float(d @ (z @ beta) - mu.sum()), rel=1e-12)
    assert cells.events == int(d.sum()) and len(cells.t) < len(row)
    if k > 1:
        assert interval.max() < j_max - 1                        # the tail rule stopped this centre early


def test_poisson_parse_layout_and_overflow_bounds() -> None:
    from oncofed.analyses.poisson import ANALYSIS as POISSON
    from oncofed.query.vector import check_overflow

    spec = spec_of("poisson", outcome="OS", cutoff="2025-12-31", covariates=["age_at_incidence", "er"])
    assert (spec.step_days, spec.intervals, spec.p) == (365, 10, 14)
    assert spec.coefficient_names()[:2] == ["(baseline 0–365 d)", "(baseline 365–730 d)"]
    assert POISSON.title(spec) == "Poisson regression, piecewise-exponential, 365-day intervals"
    check_overflow(POISSON.component_maxima(spec), 10_000_000)             # the default policy's rows
    for params, message in [({"cutoff": "2025-12-31", "covariates": ["er"]}, "OS or RFS"),
                            ({"outcome": "OS", "cutoff": "2025-12-31"}, "at least one covariate"),
                            ({"outcome": "OS", "cutoff": "2025-12-31", "covariates": ["er"], "step_days": 10,
                              "horizon_days": 1000}, "at most 60"),
                            ({"outcome": "OS", "cutoff": "2025-12-31", "covariates": ["er"], "step_days": 400,
                              "horizon_days": 300}, "longer than the horizon")]:
        with pytest.raises(QueryError, match=message):
            spec_of("poisson", **params)


def _poisson_rows(n: int, seed: int, intervals: int, q: int = 2) -> tuple[Any, Any]:
    """Rows with an age and a 0/1 covariate (then q − 2 empty columns) on a 365-day lattice,
    and their cells."""
    from oncofed.analyses.poisson import Cells

    rng = np.random.default_rng(seed)
    x = np.zeros((n, q))
    x[:, 0], x[:, 1] = rng.integers(30, 90, n), rng.integers(0, 2, n)
    hazard = np.exp(-7.5 + 0.03 * (x[:, 0] - 60) + 0.7 * x[:, 1])
    t = np.ceil(np.minimum(rng.exponential(1 / hazard), rng.uniform(200, 365 * intervals, n)))
    event = (t < 365 * intervals).astype(float) * (rng.random(n) < 0.8)
    return x, Cells.of(x, t, event, np.zeros(n), 365, intervals, 1)


def test_poisson_score_step_is_the_newton_step_at_the_null_optimum_with_one_interval() -> None:
    """With one interval the within-interval covariance is the only one, so the warm start from
    round 1's sums (at β = 0) is exactly one Newton step from the null optimum (α*, 0)."""
    from oncofed.analyses.poisson import score_step

    _, cells = _poisson_rows(400, 5, 1)
    g0, i0, _ = cells.at(np.zeros(3))
    d, t = [float(round(g0[0] + i0[0, 0]))], [float(i0[0, 0])]
    shift, gamma = score_step(1, g0, i0, d, t)
    g, info, _ = cells.at(np.array([math.log(d[0] / t[0]), 0.0, 0.0]))
    newton = np.linalg.solve(info, g)
    assert np.abs(newton[1:] - gamma).max() < 1e-9 * np.abs(newton).max()
    assert abs(newton[0] + shift[0]) < 1e-9 * np.abs(newton).max()
    assert np.abs(gamma).max() > 1e-3                                    # a step was taken


def test_poisson_warm_start_saves_a_round_and_reaches_the_same_fit() -> None:
    """Over 3 intervals (the covariances differ between them) the score step is an approximation:
    the fit it starts reaches the optimum that Newton from the null model's optimum alone reaches,
    in fewer rounds."""
    from oncofed.analyses import poisson

    model = {"poisson": {"outcome": "OS", "cutoff": "2025-12-31", "step_days": 365, "horizon_days": 1095,
                         "covariates": ["age_at_incidence", "sex"]}}
    spec = parse_analysis(analysis_from(model, "m"), D)
    centres = [_poisson_rows(3000, seed, 3, spec.q) for seed in (1, 2)]

    def null_optimum(sums: Any) -> list[float]:
        d, t = poisson.interval_totals(spec, sums)
        return [math.log(a / b) for a, b in zip(d, t, strict=True)] + [0.0] * spec.q

    def fit(warm: bool) -> Any:
        f = ModelFit(analysis_from(model, "m"), D)
        if not warm:
            f.newton.warm = null_optimum
        x = np.vstack([rows for rows, _ in centres])
        while (a := f.next_analysis()) is not None:
            beta = np.array(list(a.poisson.beta), dtype=float) / (1 << a.poisson.beta_scale_bits)
            parts = [cells.at(beta) for _, cells in centres]
            f.observe({"n": len(x), "events": sum(c.events for _, c in centres), "sum_x": x.sum(axis=0),
                       "sum_xx": (x * x).sum(axis=0), "gradient": sum(p[0] for p in parts),
                       "information": sum(p[1] for p in parts), "loglik": sum(p[2] for p in parts), "extreme": 0,
                       "withheld_centres": 0, "centres": 2})
        return f.result()

    cold, warm = fit(False), fit(True)
    assert warm.converged and cold.converged
    assert np.abs(np.array(warm.beta) - np.array(cold.beta)).max() < 1e-8
    assert warm.rounds < cold.rounds, (warm.rounds, cold.rounds)


# ---------------------------------------------------------------------------- pooled Cox


@pytest.mark.parametrize(("k", "efron"), [(1, True), (7, True), (7, False), (25, True)])
def test_pooled_cox_placement_releases_only_steps_of_at_least_k(k: int, efron: bool) -> None:
    """Every released risk set holds 0 or ≥ k rows, every step removes and every entry adds 0 or
    ≥ k, only event rows die; k = 1 is the lattice placement itself (entry < point ≤ exit)."""
    from oncofed.analyses.cox_pooled import Placement

    rng = np.random.default_rng(6)
    n, step, points = 400, 10, 61
    t = np.ceil(rng.exponential(200, n))
    e = (rng.random(n) < 0.6).astype(float)
    entry = np.where(rng.random(n) < 0.3, np.floor(t * rng.random(n)), 0.0)
    p = Placement.of(t, e, entry, step, points, k, efron=efron)
    live = p.start <= p.end
    at_risk = [int(((p.start <= j) & (j <= p.end)).sum()) for j in range(points)]
    leave = [int((live & (p.end == j)).sum()) for j in range(points - 1)]
    join = [int((live & (p.start == j)).sum()) for j in range(1, points)]
    assert all(c == 0 or c >= k for c in at_risk + leave + join)
    assert not (p.dead & (e == 0)).any() and p.dead.sum() > 0
    if k == 1:
        kappa = np.ceil(t / step)
        alpha = np.where(entry > 0, np.floor(entry / step) + 1, 0)
        ok = alpha <= np.minimum(kappa, points - 1)
        assert (p.start[ok] == alpha[ok]).all() and (p.end[ok] == np.minimum(kappa, points - 1)[ok]).all()
        assert not p.coarsened and not len(p.mean_points)
    else:
        assert p.coarsened and (len(p.mean_points) > 0) == efron


def test_pooled_cox_layout_and_bounds() -> None:
    from oncofed.analyses.cox_pooled import ANALYSIS as POOLED
    from oncofed.query.vector import check_overflow

    spec = spec_of("cox_pooled", outcome="OS", cutoff="2025-12-31", covariates=["age_at_incidence", "er"])
    q = 4
    block = 1 + q + q * (q + 1) // 2
    assert (spec.step_days, spec.n_points, spec.efron) == (30, 123, True)
    assert spec.n_values == 2 + 3 * q + 123 * (1 + 2 * block) and spec.flags[-1] == "coarsened"
    assert len(POOLED.component_maxima(spec)) == spec.n_values
    check_overflow(POOLED.component_maxima(spec), 10_000_000)
    assert POOLED.title(spec) == "Cox proportional hazards, pooled-equivalent (30-day lattice)"
    other = spec_of("cox_pooled", outcome="OS", cutoff="2025-12-31", covariates=["age_at_incidence", "er"],
                    beta=[1, 2, 3, 4], offset=9, round=3)
    assert other.fit_key == spec.fit_key and other.beta_key != spec.beta_key


@pytest.mark.parametrize("model", [
    b'[model.poisson]\noutcome = "OS"\ncutoff = "2025-12-31"\ncovariates = ["er"]\nstep_days = 365\n',
    b'[model.cox_pooled]\noutcome = "OS"\ncutoff = "2025-12-31"\ncovariates = ["er"]\nties = "BRESLOW"\n'])
def test_model_files_name_the_poisson_and_pooled_cox_models(model: bytes) -> None:
    req = load_request(b'targets = ["a", "b", "c"]\npermit = "' + b"00" * 32 + b'"\n' + model)
    f = ModelFit(req.analysis, D)
    a = f.next_analysis()
    assert a is not None and a.WhichOneof("kind") in ("poisson", "cox_pooled")
    msg = getattr(a, a.WhichOneof("kind"))
    assert msg.round == 1 and set(msg.beta) == {0}


def test_pooled_cox_states_its_tolerance_only_where_it_was_measured() -> None:
    from oncofed.analyses.cox_pooled import ANALYSIS as POOLED

    exact = spec_of("cox_pooled", outcome="OS", cutoff="2025-12-31", covariates=["er"], step_days=1)
    coarse = spec_of("cox_pooled", outcome="OS", cutoff="2025-12-31", covariates=["er"], step_days=30)
    assert POOLED.fit_notes(exact, {"n": 500, "events": 200, "event_points": 150, "coarsened_centres": 0})[1] == 0.0
    notes, bound = POOLED.fit_notes(exact, {"n": 500, "events": 200, "event_points": 40, "coarsened_centres": 2})
    assert bound == 0.2 and "coarsened further at 2 centre(s)" in notes[0] and "5.0 deaths" in notes[0]
    assert POOLED.fit_notes(coarse, {"n": 500, "events": 200, "event_points": 100, "coarsened_centres": 0})[1] == 0.05
    notes, bound = POOLED.fit_notes(coarse, {"n": 30_000, "events": 9000, "event_points": 200, "coarsened_centres": 0})
    assert bound is None and "beyond 1,000 rows" in notes[0]
    notes, bound = POOLED.fit_notes(coarse, {"n": 900, "events": 610, "event_points": 10, "coarsened_centres": 0})
    assert bound is None and "no measured tolerance" in notes[0]
