"""Reference fits for the regression tests: statsmodels and lifelines on the pooled rows.

The rows are either a public dataset as loaded (independent of everything in oncofed) or each
centre's complete cases as its node reads them (for synthetic registries, whose outcomes the node
derives); either way the fit itself is statsmodels' or lifelines', never ours.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from oncofed.analyses import parse_analysis
from oncofed.analyses.design import matrix
from oncofed.node.query.compiler import compile_cohort
from oncofed.node.store.cohort_reads import StoreReader

TOL = 1e-6


def node_rows(nodes: dict[str, Any], analysis: Any, cohort: Any, d: Any) -> tuple[Any, pd.DataFrame]:
    """Each centre's complete cases for `analysis` → (spec, one pooled frame with a `centre` column,
    the design's columns by name, and y or time/event/entry)."""
    spec = parse_analysis(analysis, d)
    frames = []
    for centre, node in nodes.items():
        c = compile_cohort(cohort, node.dictionary, None)
        rows = StoreReader(node.conn, node.dictionary, c.where, c.params, c.fields).design(spec.question)
        k = len(spec.design.fields)
        f = pd.DataFrame(matrix(spec.design, rows.values[:, :k]), columns=spec.design.names())
        if spec.question.survival is None:
            f["y"] = np.isin(rows.values[:, k], spec.positive).astype(float)
        else:
            f["time"], f["event"], f["entry"] = rows.time, rows.event, rows.entry
            if spec.kind == "logistic":
                h = spec.question.horizon_days
                f["y"] = rows.event * (rows.time <= h) if h else rows.event
        f["centre"] = centre
        frames.append(f)
    return spec, pd.concat(frames, ignore_index=True)


def observed(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns a formula would make: a dummy of a level no row has is left out."""
    return [c for c in columns if frame[c].any()]


def logit(frame: pd.DataFrame, columns: list[str], y: str = "y") -> Any:
    import statsmodels.api as sm

    x = sm.add_constant(frame[columns].to_numpy(float), has_constant="add")
    return sm.Logit(frame[y].to_numpy(float), x).fit(method="newton", tol=1e-12, maxiter=100, disp=0)


def phreg(frame: pd.DataFrame, columns: list[str], *, time: str = "time", event: str = "event",
          ties: str = "efron", strata: str | None = "centre") -> Any:
    import statsmodels.api as sm

    entry = frame["entry"].to_numpy(float) if "entry" in frame else None
    if entry is not None:          # statsmodels: at risk for t ≥ entry; ours and lifelines': t > entry
        entry = np.where(entry > 0, entry + 0.5, 0.0)
    model = sm.PHReg(frame[time].to_numpy(float), frame[columns].to_numpy(float),
                     status=frame[event].to_numpy(float), ties=ties, entry=entry,
                     strata=frame[strata].to_numpy() if strata else None)
    return model.fit(method="newton", tol=1e-12, maxiter=200)


def lifelines_strata(frame: pd.DataFrame, columns: list[str], *, time: str = "time", event: str = "event",
                     strata: str = "centre") -> Any:
    from lifelines import CoxPHFitter

    entry = ["entry"] if "entry" in frame and frame["entry"].any() else []
    data = frame[[*columns, time, event, strata, *entry]].copy()
    if entry:               # no delayed entry: at risk from before time 0 (a death on day 0 included)
        data["entry"] = np.where(data["entry"] > 0, data["entry"], -1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxPHFitter().fit(data, time, event, strata=[strata], entry_col=entry[0] if entry else None,
                                 fit_options={"precision": 1e-12})


def assert_matches(result: Any, params: Any, bse: Any, llf: float | None = None, tol: float = TOL) -> None:
    """Coefficients and SEs within `tol` (absolute), the log-likelihood within tol relative."""
    beta, se = np.asarray(result.beta), np.asarray(result.se)
    params, bse = np.asarray(params, dtype=float), np.asarray(bse, dtype=float)
    assert beta.shape == params.shape, (result.coefficients, params)
    assert np.abs(beta - params).max() < tol, (beta - params)
    assert np.abs(se - bse).max() < tol, (se - bse)
    if llf is not None:
        assert abs(result.loglik - llf) <= tol * max(1.0, abs(llf)), (result.loglik, llf)


def person_period(frame: pd.DataFrame, columns: list[str], step: int, intervals: int, *, k: int = 1,
                  time: str = "time", event: str = "event", centre: str = "centre") -> pd.DataFrame:
    """The rows expanded to one record per (row, interval at risk), written out independently of
    oncofed: interval 1 is [0, step], j > 1 is (g_{j−1}, g_j]; a row leaves in ⌈T/step⌉ (at least
    1) with half the width of exposure and its event there, counts the whole width before; a late
    entrant starts in the first interval that starts at or after its entry; each centre stops at
    its first interval with fewer than k at risk. Columns: the covariates, `centre`, `interval`
    (1-based), `d` and `exposure`."""
    out: list[dict[str, Any]] = []
    for name, part in frame.groupby(centre):
        placed = []
        for _, r in part.iterrows():
            kappa = max(1, math.ceil(r[time] / step))
            e = float(r["entry"]) if "entry" in part and r["entry"] > 0 else 0.0
            alpha = 1 if e == 0 else math.floor(e / step) + 1
            placed.append((r, alpha, kappa))
        stop = intervals
        for j in range(1, intervals + 1):
            if sum(1 for _, a, kap in placed if a <= j <= min(kap, intervals)) < k:
                stop = j - 1
                break
        for r, alpha, kappa in placed:
            for j in range(alpha, min(kappa, stop) + 1):
                leaving = j == kappa
                out.append({**{c: r[c] for c in columns}, "centre": name, "interval": j,
                            "exposure": step / 2 if leaving else step, "d": float(r[event]) if leaving else 0.0})
    return pd.DataFrame(out)


def poisson_glm(pp: pd.DataFrame, columns: list[str], intervals: int) -> Any:
    """statsmodels GLM(Poisson, offset = log exposure) on person-period records: one baseline per
    interval (no constant), then the covariates."""
    import statsmodels.api as sm

    base = np.column_stack([(pp["interval"] == j).to_numpy(float) for j in range(1, intervals + 1)])
    x = np.column_stack([base, pp[columns].to_numpy(float)])
    model = sm.GLM(pp["d"].to_numpy(float), x, family=sm.families.Poisson(), offset=np.log(pp["exposure"]))
    return model.fit(method="newton", tol=1e-13, maxiter=200)


def poisson_constant(pp: pd.DataFrame) -> float:
    """What statsmodels' Poisson log-likelihood adds to ours: Σ d log(exposure) (each d is 0/1)."""
    return float((pp["d"] * np.log(pp["exposure"])).sum())


def fedavg_updates(spec: Any, frame: pd.DataFrame, beta: Any = None, *, clipped: bool = True) -> list[Any]:
    """Each centre's FedAvg update by the pure local step (oncofed.analyses.fedavg) over its rows
    in `frame` (node_rows of the logistic model with the same outcome and covariates), at `beta`
    (the spec's when None), its columns scaled by the dictionary's public ranges."""
    from oncofed.analyses.fedavg import clip, local_update, to_scaled

    m = spec.model
    cols = m.design.columns
    mid = np.array([(c.low + c.high) / 2 for c in cols])
    half = np.array([(c.high - c.low) / 2 for c in cols])
    w0 = to_scaled(m, m.beta if beta is None else beta)
    out = []
    for _, f in frame.groupby("centre", sort=False):
        x = f[m.design.names()].to_numpy(float)
        z = np.hstack([np.ones((len(f), 1)), (x - mid) / half])
        rng = np.random.default_rng([spec.seed, spec.round]) if spec.batch_size else None
        u = local_update(z, f["y"].to_numpy(float), w0, learning_rate=spec.learning_rate, epochs=spec.local_epochs,
                         batch_size=spec.batch_size, rng=rng)
        out.append(clip(u, spec.clip_norm) if clipped else u)
    return out
