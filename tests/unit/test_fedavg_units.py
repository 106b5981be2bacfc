"""FedAvg's pure parts (oncofed.analyses.fedavg, D36): the local step against statsmodels' score,
the clip against Flower's own FlatClip, the average against pooled gradient descent, the public
scaling, the DP release's calibration inputs, the coordinator's averaging and its bound."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import statsmodels.api as sm

from oncofed import dictionary as dictmod
from oncofed.analyses import parse_analysis
from oncofed.analyses.base import Grants, Rules
from oncofed.analyses.dp import dp_release
from oncofed.analyses.fedavg import (
    ANALYSIS,
    FedAvgRaw,
    average,
    clip,
    from_scaled,
    local_update,
    metrics,
    to_scaled,
)
from oncofed.analyses.fedavg_training import FedAvgFit, FedAvgResult, FedAvgRound
from oncofed.analyses.logistic import ANALYSIS as LOGISTIC
from oncofed.query.errors import QueryError
from oncofed.query.textform import analysis_from

MODEL = {"fedavg": {"outcome": "her2", "positive": ["pos"], "covariates": ["age_at_incidence", "stage_summary"],
                    "clip_norm": 0.5, "learning_rate": 2.0, "local_epochs": 3}}


def data(n: int, seed: int, p: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = np.hstack([np.ones((n, 1)), rng.uniform(-1, 1, (n, p - 1))])
    truth = np.linspace(-0.5, 1.0, p)
    y = (rng.random(n) < 1 / (1 + np.exp(-(z @ truth)))).astype(float)
    return z, y


def spec(model: dict | None = None, **fields: object):  # type: ignore[no-untyped-def]
    doc = {"fedavg": {**MODEL["fedavg"], **fields}} if model is None else model
    return parse_analysis(analysis_from(doc, "analysis"), dictmod.load())


def test_one_full_batch_epoch_is_a_gradient_step_on_the_mean_log_loss() -> None:
    z, y = data(400, 1)
    w0 = np.array([0.1, -0.2, 0.3, 0.0])
    step = local_update(z, y, w0, learning_rate=0.7, epochs=1)
    score = sm.Logit(y, z).score(w0)            # Σ x (y − p): minus the gradient of the summed loss
    assert np.allclose(step, 0.7 * score / len(y), rtol=1e-12, atol=1e-14)


def test_many_local_epochs_reach_the_centres_own_maximum_likelihood() -> None:
    z, y = data(600, 2)
    mle = sm.Logit(y, z).fit(disp=0).params
    w = local_update(z, y, np.zeros(4), learning_rate=4.0, epochs=3000)
    assert np.allclose(w, mle, atol=1e-6)


def test_one_epoch_averaged_over_equal_centres_is_one_pooled_gradient_step() -> None:
    centres = [data(300, s) for s in (3, 4, 5)]
    w0 = np.array([0.2, 0.1, -0.1, 0.3])
    avg = average([local_update(z, y, w0, learning_rate=1.5, epochs=1) for z, y in centres])
    z = np.vstack([c[0] for c in centres])
    y = np.concatenate([c[1] for c in centres])
    assert np.allclose(avg, 1.5 * sm.Logit(y, z).score(w0) / len(y), rtol=1e-12, atol=1e-14)


def test_the_clip_is_flowers_flatclip_and_bounds_the_norm() -> None:
    from flwr.supercore.differential_privacy import compute_clip_model_update

    rng = np.random.default_rng(6)
    for scale in (0.01, 0.3, 5.0):
        u = rng.normal(0, scale, 7)
        w0 = rng.normal(0, 1, 7)
        theirs = [w0 + u]
        compute_clip_model_update(theirs, [w0], 0.5)
        mine = clip(u, 0.5)
        assert np.allclose(w0 + mine, theirs[0], rtol=0, atol=1e-12)
        assert np.linalg.norm(mine) <= 0.5 * (1 + 1e-12)
        if np.linalg.norm(u) <= 0.5:
            assert np.array_equal(mine, u)
    assert np.array_equal(clip(np.array([3.0, 4.0]), 0.0), [3.0, 4.0])      # 0: no clip


def test_mini_batches_follow_the_seed_and_a_batch_over_every_row_is_full_batch() -> None:
    z, y = data(250, 7)
    w0 = np.zeros(4)

    def run(seed: int, batch: int) -> np.ndarray:
        return local_update(z, y, w0, learning_rate=1.0, epochs=2, batch_size=batch,
                            rng=np.random.default_rng([seed, 3]))

    assert np.array_equal(run(1, 32), run(1, 32))
    assert not np.allclose(run(1, 32), run(2, 32))
    assert np.allclose(run(1, 250), local_update(z, y, w0, learning_rate=1.0, epochs=2))


def test_the_public_scaling_keeps_the_linear_predictor() -> None:
    s = spec()
    rng = np.random.default_rng(8)
    beta = rng.normal(0, 0.1, s.p)
    assert np.allclose(from_scaled(s.model, to_scaled(s.model, beta)), beta, rtol=1e-12, atol=1e-15)
    cols = s.model.design.columns
    x = np.column_stack([rng.uniform(c.low, c.high, 50) if not c.dummy else rng.integers(0, 2, 50) for c in cols])
    mid = np.array([(c.low + c.high) / 2 for c in cols])
    half = np.array([(c.high - c.low) / 2 for c in cols])
    z = np.hstack([np.ones((50, 1)), (x - mid) / half])
    assert np.abs(z).max() <= 1.0
    assert np.allclose(z @ to_scaled(s.model, beta), beta[0] + x @ beta[1:], rtol=1e-12, atol=1e-12)


def test_metrics_are_the_logit_log_likelihood_and_the_expected_classification() -> None:
    z, y = data(300, 9)
    w = np.array([0.3, -0.4, 0.8, 0.1])
    correct, loglik = metrics(z, y, w)
    assert loglik == pytest.approx(sm.Logit(y, z).loglike(w), rel=1e-12)
    p = 1 / (1 + np.exp(-(z @ w)))
    assert correct == pytest.approx(float(np.sum(np.where(y == 1, p, 1 - p))), rel=1e-12)   # smooth, not a step


def test_parse_checks_and_dp_needs_a_clip() -> None:
    s = spec()
    assert (s.kind, s.p, s.n_values, s.learning_rate, s.local_epochs) == ("fedavg", 5, 8, 2.0, 3)
    for bad in ({"learning_rate": -1.0}, {"learning_rate": 1000.0}, {"local_epochs": 500}, {"clip_norm": -1.0},
                {"dp_delta": 0.5}):
        with pytest.raises(QueryError):
            spec(**bad)
    d = dictmod.load()
    ANALYSIS.check(s, d, Grants(local_admin=False, dp=True))          # clipped: offered under DP
    with pytest.raises(QueryError, match="clip"):
        ANALYSIS.check(spec(clip_norm=0.0), d, Grants(local_admin=False, dp=True))
    with pytest.raises(QueryError, match="linear predictor"):                 # D30 applies as to logistic
        ANALYSIS.check(spec(beta=[0, 1 << 40, 0, 0, 0]), d, Grants(local_admin=False))
    # the fit key ignores β and round but not the local step's settings
    assert spec(beta=[1, 2, 3, 4, 5], round=4).fit_key == s.fit_key
    assert spec(learning_rate=1.0).fit_key != s.fit_key


def test_the_dp_release_noises_only_the_clipped_update_with_the_stricter_delta() -> None:
    s = spec(dp_delta=1e-12)
    update = clip(np.array([0.3, -0.2, 0.4, 0.1, 0.2]), s.clip_norm)
    raw = FedAvgRaw(n=500, correct=300, loglik=-320.0, update=update)
    (block,) = ANALYSIS.dp_blocks(s, raw, 2)
    assert block.l2 == 2 * s.clip_norm * 2**s.scale_bits        # any two clipped updates differ by ≤ 2C
    assert block.data == [round(u * 2**s.scale_bits) for u in update]
    rules = Rules(mode="dp", epsilon=1.0, dp_mechanism="gaussian", dp_delta=1e-9)
    out = dp_release(ANALYSIS, s, raw, rules)
    assert out.values[:3] == [0, 0, 0]                          # n, correct, loglik are not released
    assert out.values[3:] != block.data and out.meta["delta"] == 1e-12
    noise = (np.array(out.values[3:]) - np.array(block.data)) / 2**s.scale_bits
    assert np.abs(noise).max() > 1e-3                           # σ ≈ 2C·√(2 ln 1.25/δ)/ε: far above rounding
    loose = dp_release(ANALYSIS, spec(dp_delta=0.0), raw, rules)
    assert loose.meta["delta"] == 1e-9                          # 0: the centre's own


def test_the_coordinator_averages_over_the_centres_that_contributed_and_keeps_within_the_bound() -> None:
    d = dictmod.load()
    fit = FedAvgFit(analysis_from(MODEL, "analysis"), d, rounds=3, max_linear_predictor=40.0)
    first = fit.next_analysis()
    assert first is not None and list(first.fedavg.beta) == [0] * 5 and first.fedavg.round == 1
    sums = [0.3, 0.6, -0.3, 0.9, 0.0]
    done = fit.observe({"centres": 4, "withheld_centres": 1, "round": 1, "n": 900, "correct": 500,
                        "loglik": -600.0, "update_sum": sums})
    assert np.allclose(fit.w, np.array(sums) / 3) and done.accuracy == pytest.approx(500 / 900)
    assert any("withheld" in n for n in fit.notes)
    fit.observe({"centres": 3, "withheld_centres": 0, "round": 2, "n": 900, "correct": 500, "loglik": -590.0,
                 "update_sum": [3000.0, 3000.0, 0.0, 0.0, 0.0]})                 # far beyond the bound
    spread = LOGISTIC.predictor_spread(fit.spec.model, fit.beta().tolist())
    assert 39.0 < spread <= 40.0
    nxt = fit.next_analysis()
    assert nxt is not None and nxt.fedavg.round == 3
    LOGISTIC.check(parse_analysis(nxt, d).model, d, Grants(local_admin=False))  # the centres would answer it
    fit.observe({"centres": 3, "withheld_centres": 0, "round": 3, "n": 900, "correct": 510, "loglik": -580.0,
                 "update_sum": [0.0] * 5})
    assert fit.next_analysis() is None                                             # the signed rounds are done
    result = fit.result(participants=["a", "b", "c"])
    again = FedAvgResult.from_json(result.to_json())
    assert again == result and [r.round for r in again.rounds] == [1, 2, 3]
    result.reference_loglik = -570.0
    text = result.summary()
    assert "pooled exact fit" in text and "log-likelihood" in text
    assert result.rows()[0]["loglik_gap_per_row"] == pytest.approx((-600.0 + 570.0) / 900)
    frame = result.to_pandas()
    assert list(frame.index) == [1, 2, 3] and frame.loc[1, "pooled_loglik"] == -570.0


def test_under_dp_the_coordinator_reports_no_metrics() -> None:
    fit = FedAvgFit(analysis_from(MODEL, "analysis"), dictmod.load(), rounds=2, epsilon=0.5)
    r = fit.observe({"centres": 3, "withheld_centres": 0, "round": 1, "n": 0, "correct": 0, "loglik": 0.0,
                     "update_sum": [0.1] * 5})
    assert r == replace(r, n=None, loglik=None, accuracy=None) and isinstance(r, FedAvgRound)
    assert any("not released" in n for n in fit.result().notes)


def test_the_server_step_scales_the_mean_update() -> None:
    fit = FedAvgFit(analysis_from(MODEL, "analysis"), dictmod.load(), rounds=2, server_learning_rate=0.25)
    fit.observe({"centres": 2, "withheld_centres": 0, "round": 1, "n": 10, "correct": 5, "loglik": -7.0,
                 "update_sum": [0.4, 0.8, 0.0, -0.4, 0.2]})
    assert np.allclose(fit.w, 0.25 * np.array([0.4, 0.8, 0.0, -0.4, 0.2]) / 2)


def test_a_fedavg_model_file_signs_epsilon_and_its_reference_is_the_exact_logistic_model() -> None:
    from oncofed.analyses.newton import FitError
    from oncofed.federation.client.analyse import load_request
    from oncofed.flower.request import reference_request

    text = ('epsilon = 0.5\ntargets = ["a", "b"]\npermit = "' + "ab" * 32 + '"\n'
            'cohort = { field = "sex", equals = "2" }\n[fit]\nmax_rounds = 40\nserver_learning_rate = 0.5\n'
            '[model.fedavg]\noutcome = "her2"\npositive = ["pos"]\ncovariates = ["age_at_incidence", "er"]\n'
            'reference = ["er=neg"]\nclip_norm = 0.5\n')
    req = load_request(text.encode())
    assert req.epsilon == 0.5 and req.options.max_rounds == 40 and req.options.server_learning_rate == 0.5
    ref = reference_request(req)
    assert ref.analysis.WhichOneof("kind") == "logistic" and ref.epsilon == 0.0 and ref.options.max_rounds == 25
    lg = ref.analysis.logistic
    assert (lg.outcome, list(lg.positive), list(lg.covariates), list(lg.reference)) == \
        ("her2", ["pos"], ["age_at_incidence", "er"], ["er=neg"])
    assert ref.cohort == req.cohort and ref.targets == req.targets and ref.permit_hash == req.permit_hash
    with pytest.raises(FitError, match="not offered under a differentially private permit"):
        load_request(text.replace("fedavg", "logistic").replace("clip_norm = 0.5\n", "").encode())
    with pytest.raises(FitError, match="fedavg model"):
        reference_request(ref)


def test_a_reference_is_evaluated_in_one_round_after_training_and_moves_nothing() -> None:
    d = dictmod.load()
    with pytest.raises(ValueError, match="without DP only"):
        FedAvgFit(analysis_from(MODEL, "analysis"), d, rounds=1, reference=[0.1] * 5, epsilon=1.0)
    fit = FedAvgFit(analysis_from(MODEL, "analysis"), d, rounds=1, reference=[-1.0, 0.02, 0.5, 0.25, 0.0])
    fit.observe({"centres": 3, "withheld_centres": 0, "round": 1, "n": 900, "correct": 450, "loglik": -620.0,
                 "update_sum": [0.3] * 5})
    w = fit.w.copy()
    evaluation = fit.next_analysis()
    assert evaluation is not None and evaluation.fedavg.round == 2
    sb = evaluation.fedavg.beta_scale_bits
    assert [b / 2**sb for b in evaluation.fedavg.beta] == pytest.approx([-1.0, 0.02, 0.5, 0.25, 0.0], abs=2**-sb)
    fit.observe({"centres": 3, "withheld_centres": 0, "round": 2, "n": 900, "correct": 600, "loglik": -500.0,
                 "update_sum": [5.0] * 5})
    assert fit.next_analysis() is None and np.array_equal(fit.w, w) and len(fit.history) == 1
    result = fit.result()
    assert (result.reference_loglik, result.reference_accuracy) == (-500.0, 600 / 900)


def test_under_a_laplace_policy_the_update_is_noised_with_its_l1_sensitivity() -> None:
    s = spec()
    update = clip(np.array([0.3, -0.2, 0.4, 0.1, 0.2]), s.clip_norm)
    raw = FedAvgRaw(n=500, correct=300, loglik=-320.0, update=update)
    (block,) = ANALYSIS.dp_blocks(s, raw, 2)
    assert block.l1 == int(np.ceil(2 * s.clip_norm * np.sqrt(s.p) * 2**s.scale_bits))   # ‖v‖₁ ≤ √p ‖v‖₂
    out = dp_release(ANALYSIS, s, raw, Rules(mode="dp", epsilon=2.0, dp_mechanism="laplace"))
    assert out.meta["mechanism"] == "laplace" and out.meta["noise_scales"] == [pytest.approx(block.l1 / 2.0)]
    assert out.values[:3] == [0, 0, 0] and out.values[3:] != block.data
