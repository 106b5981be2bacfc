"""cox — one round of a Cox proportional-hazards model, stratified by centre.

Each centre evaluates the partial likelihood over **its own** risk sets, so the sum over centres
is the model stratified by centre (lifelines `CoxPHFitter(strata=['centre'])`, statsmodels
`PHReg(strata=…)`); a pooled-equivalent model would need risk-set sums at the union of event
times, which this release does not offer. Times are the survival outcome's exact days, derived
at query time as for Kaplan–Meier (OS or RFS, a cutoff); a tumour this centre did not diagnose
enters at its first contact (left truncation: at risk at τ iff entry < τ ≤ T).

At β, with η = xᵀβ and w = e^{η − c} (c the centre's mean η: every quantity below is unchanged
by a shift of η, or of x, within a stratum, so each centre centres its own), for each distinct
event time τ with d deaths D, risk set R and, for Efron, l = 0 … d − 1 and φ = l/d (Breslow: φ = 0)

    A0 = Σ_R w − φ Σ_D w,   A1 = Σ_R w x − φ Σ_D w x,   A2 = Σ_R w x xᵀ − φ Σ_D w x xᵀ
    log-lik      Σ_D η − Σ_l log A0          gradient  Σ_D x − Σ_l A1/A0
    information  Σ_l (A2/A0 − (A1/A0)(A1/A0)ᵀ)

computed in O(n p²) per round after sorting once per fit (`Stratum`): Σ_τ a_τ A2-terms become
one weighted XᵀX with each row's weight the sum of a_τ over the event times it is at risk for.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from oncofed.analyses.base import DesignRows
from oncofed.analyses.design import matrix
from oncofed.analyses.regression import (
    ModelAnalysis,
    ModelRaw,
    ModelSpec,
    moments_and_gates,
    parse_survival,
    survival_spec,
    upper,
)
from oncofed.dictionary import Dictionary
from oncofed.v1 import query_pb2 as pb

TIES = {pb.TIES_UNSPECIFIED: "efron", pb.TIES_EFRON: "efron", pb.TIES_BRESLOW: "breslow"}
Array = npt.NDArray[np.float64]


class Cox(ModelAnalysis):
    kind = "cox"
    model_name = "Cox proportional hazards, stratified by centre"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> ModelSpec:
        assert isinstance(msg, pb.Cox)
        model = parse_survival(msg, d, allowed, path, what="Cox")
        spec: ModelSpec = survival_spec(self.kind, msg, model, path, ties=TIES.get(msg.ties, "efron"))
        return spec

    def evaluate(self, spec: ModelSpec, rows: DesignRows) -> ModelRaw:
        assert rows.time is not None and rows.event is not None and rows.entry is not None
        key = ("cox", spec.design)
        prepared = rows.prepared.get(key)
        if prepared is None:                          # β-free: once for every round over these rows
            x = matrix(spec.design, rows.values)
            sx, sxx, gates = moments_and_gates(spec.design, rows.values, x, rows.event, "event")
            prepared = rows.prepared[key] = (Stratum.of(x, rows.time, rows.event, rows.entry), sx, sxx, gates)
        stratum, sx, sxx, gates = prepared
        g, info, ll = stratum.at(np.asarray(spec.beta, dtype=np.float64), efron=spec.ties == "efron")
        return ModelRaw(n=rows.n, events=stratum.events, sum_x=sx, sum_xx=sxx, gradient=g, information=upper(info),
                        loglik=ll, extreme=0, counts=dict(gates))


@dataclass(frozen=True)
class Stratum:
    """One centre's rows prepared for the partial likelihood at any β: sorted once, latest time
    first, so that every risk set {T ≥ τ} is a prefix and its sums one running sum."""

    x: Array                       # centred covariates, rows by descending time
    at_risk: npt.NDArray[np.intp]  # per τ: how many rows have T ≥ τ (a prefix)
    late: npt.NDArray[np.intp]     # late entrants (entry > 0), by descending entry
    entered: npt.NDArray[np.intp]  # per τ: how many of `late` have entry ≥ τ (not yet at risk)
    dead: npt.NDArray[np.intp]     # event rows, by ascending time
    k: npt.NDArray[np.intp]        # each death's event time (index into the ascending τ)
    starts: npt.NDArray[np.intp]   # where each event time's deaths start in `dead`
    phi: Array                     # Efron's l/d per death
    upto_time: npt.NDArray[np.intp]   # per row: how many event times are ≤ T
    upto_entry: npt.NDArray[np.intp]  # per row: how many event times are ≤ entry (0 without delayed entry)
    x_dead: Array
    x_dead_sum: Array

    @property
    def events(self) -> int:
        return len(self.dead)

    @classmethod
    def of(cls, x: Array, time: Array, event: Array, entry: Array) -> Stratum:
        order = np.argsort(-time, kind="stable")
        xs = np.ascontiguousarray(x[order] - x.mean(axis=0)) if len(x) else x
        ts, es, en = time[order], event[order] > 0, entry[order]
        dead = np.flatnonzero(es)[::-1]                # ascending time
        dead = dead[np.argsort(ts[dead], kind="stable")]
        taus = np.unique(ts[dead])
        ascending = np.sort(ts)
        at_risk = len(ts) - np.searchsorted(ascending, taus, side="left")
        late = np.flatnonzero(en > 0)
        late = late[np.argsort(-en[late], kind="stable")]
        entered = len(late) - np.searchsorted(np.sort(en[late]), taus, side="left")
        k = np.searchsorted(taus, ts[dead])
        d = np.bincount(k, minlength=len(taus))
        starts = np.concatenate([[0], np.cumsum(d)[:-1]]).astype(np.intp)
        phi = (np.arange(len(dead)) - starts[k]) / d[k] if len(dead) else np.zeros(0)
        upto_entry = np.where(en > 0, np.searchsorted(taus, en, side="right"), 0)
        xd = xs[dead]
        return cls(xs, at_risk, late, entered, dead, k, starts, phi, np.searchsorted(taus, ts, side="right"),
                   upto_entry, xd, xd.sum(axis=0))

    def at(self, beta: Array, *, efron: bool = True) -> tuple[Array, Array, float]:
        """Gradient, information and log partial likelihood at β."""
        x = self.x
        q = x.shape[1]
        if not self.events:
            return np.zeros(q), np.zeros((q, q)), 0.0
        eta = x @ beta
        eta -= eta.mean()
        w = np.exp(np.clip(eta, -700.0, 700.0))
        wx = x * w[:, None]
        s0, s1 = _prefix(w, self.at_risk), _prefix(wx, self.at_risk)
        if len(self.late):
            s0 = s0 - _prefix(w[self.late], self.entered)
            s1 = s1 - _prefix(wx[self.late], self.entered)
        dead, k, starts = self.dead, self.k, self.starts
        phi = self.phi if efron else np.zeros(len(dead))
        t0 = np.add.reduceat(w[dead], starts)
        t1 = np.add.reduceat(wx[dead], starts, axis=0)
        a0 = s0[k] - phi * t0[k]                    # one per death: Efron's l-th denominator
        inv = 1.0 / a0
        per_tau = [np.add.reduceat(v, starts) for v in (inv, phi * inv, inv * inv, phi * inv * inv,
                                                          phi * phi * inv * inv)]
        a, b, c1, c2, c3 = per_tau
        loglik = float(eta[dead].sum() - np.log(a0).sum())
        # Σ_l A1_l/A0_l = S1·Σ_l 1/A0_l − T1·Σ_l φ_l/A0_l, and likewise for the outer products: every
        # covariate vector is per event time, only scalars are per death
        gradient = self.x_dead_sum - (s1.T @ a - t1.T @ b)
        cum = np.concatenate([[0.0], np.cumsum(a)])
        weight = cum[self.upto_time] - cum[self.upto_entry]
        xd = self.x_dead
        info = x.T @ (x * (w * weight)[:, None])
        info -= xd.T @ (xd * (w[dead] * b[k])[:, None])
        cross = s1.T @ (t1 * c2[:, None])
        info -= s1.T @ (s1 * c1[:, None]) - cross - cross.T + t1.T @ (t1 * c3[:, None])
        return gradient, info, loglik


def _prefix(values: Array, counts: npt.NDArray[np.intp]) -> Array:
    """Σ of the first `counts[i]` rows of `values`, for each i (0 rows: 0)."""
    running = np.cumsum(values, axis=0)
    out = running[np.maximum(counts - 1, 0)]
    if (counts == 0).any():
        out = np.where((counts == 0).reshape(-1, *([1] * (values.ndim - 1))), 0.0, out)
    return np.asarray(out, dtype=np.float64)


def partial_likelihood(x: Array, time: Array, event: Array, entry: Array, beta: Array, *,
                       efron: bool = True) -> tuple[Array, Array, float]:
    """Gradient, information and log partial likelihood of one stratum at β (module docstring)."""
    return Stratum.of(x, time, event, entry).at(beta, efron=efron)


ANALYSIS = Cox()
