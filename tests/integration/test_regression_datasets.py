"""Exactness on real public clinical datasets shipped inside Python packages: each is mapped onto
registry rows (OS time = the dataset's time exactly; covariates into the test extension's
fields), split across three real nodes through real ingest, and fitted round by round through
every node's answering pipeline. Coefficients and SEs equal the pooled statsmodels `Logit` /
`PHReg(ties=…, strata=centre)` and lifelines `CoxPHFitter(strata=['centre'])` fits to 1e-6,
with the reference computed from the dataset as loaded — never from our reads.

- rossi (lifelines): recidivism, times in weeks — tied-time heavy; Efron and Breslow.
- lung (lifelines; NCCTG lung cancer): missing values (complete cases) and a categorical ECOG
  score with a stated reference; split by institution.
- gbsg2 (lifelines; German breast cancer study group 2): Cox and a logistic model of recurrence.
- fair (statsmodels): 6,366 rows, logistic; with L2 and with standardisation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from regression_data import CUTOFF
from regression_reference import assert_matches
from regression_world import Network, fit, network, split

warnings.filterwarnings("ignore", category=FutureWarning)


def load(name: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "fair":
            import statsmodels.api as sm

            return sm.datasets.fair.load_pandas().data
        import lifelines.datasets as ld

        return getattr(ld, f"load_{name}")()


def cox(covariates: list[str], **extra: Any) -> dict[str, Any]:
    return {"cox": {"outcome": "OS", "cutoff": CUTOFF, "covariates": covariates, **extra}}


def lifelines_fit(frame: pd.DataFrame, time: str, event: str, columns: list[str]) -> Any:
    from lifelines import CoxPHFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxPHFitter().fit(frame[[*columns, time, event, "centre"]], time, event, strata=["centre"],
                                 fit_options={"precision": 1e-12})


def phreg(frame: pd.DataFrame, time: str, event: str, columns: list[str], ties: str) -> Any:
    import statsmodels.api as sm

    return sm.PHReg(frame[time].to_numpy(float), frame[columns].to_numpy(float), status=frame[event].to_numpy(float),
                    ties=ties, strata=frame["centre"].to_numpy()).fit(method="newton", tol=1e-12, maxiter=200)


# ---------------------------------------------------------------------------- rossi: ties

ROSSI = {"fin": "b1", "race": "b2", "wexp": "b3", "mar": "b4", "paro": "b5", "prio": "h1"}
ROSSI_COX = ["b1", "age_at_incidence", "b2", "b3", "b4", "b5", "h1"]
ROSSI_REF = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def rossi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, pd.DataFrame]]:
    r = load("rossi")
    r["centre"] = np.arange(len(r)) % 3
    net = network(tmp_path_factory.mktemp("rossi"), split(r, r["centre"], time="week", event="arrest", age="age",
                                                           mapping=ROSSI))
    yield net, r
    net.close()


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_rossi_cox_stratified_equals_statsmodels_and_lifelines(rossi: tuple[Network, pd.DataFrame], ties: str) -> None:
    net, r = rossi
    result = fit(net, cox(ROSSI_COX, ties=ties.upper()))
    assert result.converged and result.rounds <= 8 and result.ties == ties
    ref = phreg(r, "week", "arrest", ROSSI_REF, ties)
    assert_matches(result, ref.params, ref.bse, ref.llf)
    if ties == "efron":
        ll = lifelines_fit(r, "week", "arrest", ROSSI_REF)
        assert_matches(result, ll.params_[ROSSI_REF].to_numpy(), ll.standard_errors_[ROSSI_REF].to_numpy(),
                       ll.log_likelihood_)
    assert result.n == len(r) and result.events == int(r["arrest"].sum())
    # LR test against β = 0 as statsmodels computes it
    null = phreg(r, "week", "arrest", ROSSI_REF, ties).model.loglike(np.zeros(len(ROSSI_REF)))
    assert result.loglik_null == pytest.approx(null, rel=1e-10)


def test_efron_and_breslow_differ_on_tied_data(rossi: tuple[Network, pd.DataFrame]) -> None:
    net, _ = rossi
    efron, breslow = fit(net, cox(ROSSI_COX)), fit(net, cox(ROSSI_COX, ties="BRESLOW"))
    assert np.abs(np.array(efron.beta) - np.array(breslow.beta)).max() > 1e-3


# ---------------------------------------------------------------------------- lung: missing values

LUNG = {"ph.ecog": "c1", "ph.karno": "h1", "wt.loss": "w1", "meal.cal": "k1"}


@pytest.fixture(scope="module")
def lung(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, pd.DataFrame]]:
    g = load("lung")
    g = g[g["age"].notna()].reset_index(drop=True)
    g["dead"] = (g["status"] == g["status"].max()).astype(int)      # 1/2 in R's coding, 0/1 in lifelines'
    assert g["dead"].sum() == 165
    g["centre"] = (g["inst"].fillna(0).astype(int) % 3)           # institutions grouped into 3 centres
    net = network(tmp_path_factory.mktemp("lung"), split(g, g["centre"], time="time", event="dead", age="age",
                                                          sex="sex", mapping=LUNG))
    yield net, g
    net.close()


def test_lung_complete_cases_and_a_stated_reference_level(lung: tuple[Network, pd.DataFrame]) -> None:
    net, g = lung
    result = fit(net, cox(["age_at_incidence", "sex", "c1", "h1", "w1"], reference=["c1=1"]))
    cc = g.dropna(subset=["ph.ecog", "ph.karno", "wt.loss"]).copy()
    for level in (0, 2, 3):                       # reference ECOG 1; ECOG 4 has no row: left out
        cc[f"ecog{level}"] = (cc["ph.ecog"] == level).astype(float)
    cc["female"] = (cc["sex"] == 2).astype(float)
    columns = ["age", "female", "ecog0", "ecog2", "ecog3", "ph.karno", "wt.loss"]
    assert result.coefficients == ["age_at_incidence", "sex[2]", "c1[0]", "c1[2]", "c1[3]", "h1", "w1"]
    assert result.n == len(cc) < len(g)
    ll = lifelines_fit(cc, "time", "dead", columns)
    assert_matches(result, ll.params_[columns].to_numpy(), ll.standard_errors_[columns].to_numpy(),
                   ll.log_likelihood_)
    ref = phreg(cc, "time", "dead", columns, "efron")
    assert_matches(result, ref.params, ref.bse, ref.llf)
    assert any("c1[4] left out" in n for n in result.notes) and any("sex[9] left out" in n for n in result.notes)


# ---------------------------------------------------------------------------- gbsg2: Cox and logistic

GBSG = {"horTh": "b1", "menostat": "b2", "tsize": "s1", "tgrade": "c2", "pnodes": "h2", "progrec": "k1",
        "estrec": "k2", "cens": "b6"}


@pytest.fixture(scope="module")
def gbsg2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, pd.DataFrame]]:
    g = load("gbsg2")
    g["horTh"] = (g["horTh"] == "yes").astype(int)
    g["menostat"] = (g["menostat"] == "Post").astype(int)
    g["tgrade"] = g["tgrade"].map({"I": "a", "II": "b", "III": "c"})
    g["centre"] = np.arange(len(g)) % 3
    net = network(tmp_path_factory.mktemp("gbsg2"), split(g, g["centre"], time="time", event="cens", age="age",
                                                           mapping=GBSG))
    yield net, g
    net.close()


def gbsg_design(g: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    x = g.copy()
    x["grade2"], x["grade3"] = (x["tgrade"] == "b").astype(float), (x["tgrade"] == "c").astype(float)
    return x, ["age", "horTh", "menostat", "tsize", "grade2", "grade3", "pnodes", "progrec", "estrec"]


def test_gbsg2_cox_equals_lifelines(gbsg2: tuple[Network, pd.DataFrame]) -> None:
    net, g = gbsg2
    result = fit(net, cox(["age_at_incidence", "b1", "b2", "s1", "c2", "h2", "k1", "k2"]))
    x, columns = gbsg_design(g)
    ll = lifelines_fit(x, "time", "cens", columns)
    assert_matches(result, ll.params_[columns].to_numpy(), ll.standard_errors_[columns].to_numpy(),
                   ll.log_likelihood_)
    assert result.ratios == pytest.approx(np.exp(ll.params_[columns].to_numpy()), rel=1e-6)


def test_gbsg2_logistic_of_recurrence_equals_statsmodels(gbsg2: tuple[Network, pd.DataFrame]) -> None:
    import statsmodels.api as sm

    net, g = gbsg2
    result = fit(net, {"logistic": {"outcome": "b6", "covariates": ["age_at_incidence", "b1", "b2", "s1", "c2", "h2",
                                                                      "k1", "k2"]}})
    x, columns = gbsg_design(g)
    ref = sm.Logit(x["cens"].astype(float), sm.add_constant(x[columns].astype(float))).fit(
        method="newton", tol=1e-12, disp=0)
    assert_matches(result, ref.params, ref.bse, ref.llf)
    assert result.lr_stat == pytest.approx(ref.llr, rel=1e-6)


# ---------------------------------------------------------------------------- fair: a larger logistic

FAIR = {"rate_marriage": "x1", "age": "h1", "yrs_married": "h2", "children": "x4", "religious": "x5"}
FAIR_COLS = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ"]
FAIR_MODEL = {"logistic": {"outcome": "b1", "covariates": ["x1", "h1", "h2", "x4", "x5", "age_at_incidence"]}}


@pytest.fixture(scope="module")
def fair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, pd.DataFrame]]:
    f = load("fair")
    f["had_affair"] = (f["affairs"] > 0).astype(int)
    f["educ"] = f["educ"].astype(int)
    f["centre"] = np.arange(len(f)) % 3
    net = network(tmp_path_factory.mktemp("fair"), split(f, f["centre"], age="educ",
                                                          mapping={**FAIR, "had_affair": "b1"}))
    yield net, f
    net.close()


def test_fair_logistic_equals_statsmodels(fair: tuple[Network, pd.DataFrame]) -> None:
    import statsmodels.api as sm

    net, f = fair
    result = fit(net, FAIR_MODEL)
    ref = sm.Logit(f["had_affair"].astype(float), sm.add_constant(f[FAIR_COLS].astype(float))).fit(
        method="newton", tol=1e-12, disp=0)
    assert_matches(result, ref.params, ref.bse, ref.llf)
    assert result.rounds <= 8 and result.n == len(f) == 6366


def test_fair_with_l2_added_once_equals_the_penalised_optimum(fair: tuple[Network, pd.DataFrame]) -> None:
    """−λ/2‖β‖² (intercept free) added once by the coordinator: the optimum of the pooled
    penalised log-likelihood (scipy, independently), not λ per centre."""
    from scipy.optimize import minimize

    net, f = fair
    lam = 25.0
    result = fit(net, FAIR_MODEL, options=_options(l2=lam))
    x = np.column_stack([np.ones(len(f)), f[FAIR_COLS].to_numpy(float)])
    y = f["had_affair"].to_numpy(float)

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        eta = x @ b
        nll = float(np.sum(np.logaddexp(0, eta) - y * eta)) + lam / 2 * float(b[1:] @ b[1:])
        grad = x.T @ (1 / (1 + np.exp(-eta)) - y) + lam * np.r_[0.0, b[1:]]
        return nll, grad

    best = minimize(loss, np.zeros(x.shape[1]), jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000})
    assert np.abs(np.array(result.beta) - best.x).max() < 1e-6
    assert result.lr_stat is None and result.l2 == lam
    plain = fit(net, FAIR_MODEL)
    assert np.abs(np.array(plain.beta[1:])).sum() > np.abs(np.array(result.beta[1:])).sum()


def test_fair_standardised_coefficients_are_per_pooled_sd(fair: tuple[Network, pd.DataFrame]) -> None:
    import statsmodels.api as sm

    net, f = fair
    result = fit(net, FAIR_MODEL, options=_options(standardise=True))
    z = (f[FAIR_COLS] - f[FAIR_COLS].mean()) / f[FAIR_COLS].std(ddof=1)
    ref = sm.Logit(f["had_affair"].astype(float), sm.add_constant(z)).fit(method="newton", tol=1e-12, disp=0)
    assert_matches(result, ref.params, ref.bse, ref.llf)
    assert "standardised" in result.summary()


def _options(**kw: Any) -> Any:
    from oncofed.analyses.newton import FitOptions

    return FitOptions(**kw)
