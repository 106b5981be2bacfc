"""poisson — one round of a piecewise-exponential Poisson model on a public time lattice.

The disclosure-safe alternative to the pooled Cox model (DESIGN §5): the hazard is constant
within each interval of the query's lattice, λ(t | x) = exp(α_j + xᵀβ) for t in interval j, so
the likelihood is a Poisson one over (interval × covariate pattern) cells with a log person-time
offset, and every sum a centre releases is a sum over cells placed on the lattice — never an
exact event or censoring time. exp(β) are hazard ratios comparable to Cox's; the α_j are the
intervals' baseline log-hazards per day.

Placement (the lattice rules of Kaplan–Meier, oncofed.node.store.cohort_reads): with step w and
J intervals, interval 1 is [0, w] and interval j > 1 is (g_{j−1}, g_j]. A row with time T leaves
in interval κ = max(1, ⌈T/w⌉) (by its event or censoring); it enters at α = 1, or, entering
late at e > 0, at the first interval that starts at or after e (⌊e/w⌋ + 1). It contributes the
whole width w of person-time to each interval α ≤ j < κ and **half the width** to κ, where its
event counts (the actuarial rule: exact person-time in the interval it leaves would sum the exact
days of the few rows that leave there); a row followed beyond the horizon counts every interval
whole and is censored at the horizon. A row that enters after the interval it leaves counts
nothing. The k rules of the lattice: a centre stops at the first interval where fewer than k of
its rows are at risk, censoring them all at its start (as Kaplan–Meier's tail rule does).

At β = (α, γ), each centre sums over its cells c (interval j_c, covariates x_c, events d_c,
person-time t_c; η_c = α_{j_c} + x_cᵀγ, μ_c = t_c e^{η_c}, z_c = (e_{j_c}, x_c)):

    score  Σ z_c (d_c − μ_c)     information  Σ z_c z_cᵀ μ_c     log-lik  Σ d_c η_c − μ_c

in the layout of oncofed.analyses.regression. The log-likelihood is the Poisson one without its
data constants (Σ d log t, log d!): the fit, SEs and LR tests are unchanged by them, and leaving
them out releases nothing beyond the cells. Gates as for Cox (D24) plus each interval's events
(0 or at least k). The coordinator starts from β = 0 and then at α_j = log(d_j / t_j), the null
model's exact optimum, with one score step for the covariates from there — both read from round
1's sums (`warm_start`, D32) —, so a fit needs about as many rounds as Cox's.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from oncofed.analyses.design import MAX_COLUMNS, matrix
from oncofed.analyses.regression import (
    LatticeModel,
    ModelRaw,
    ModelSpec,
    moments_and_gates,
    parse_survival,
    survival_spec,
    upper,
)
from oncofed.dictionary import Dictionary
from oncofed.v1 import query_pb2 as pb

DEFAULT_STEP_DAYS = 365
DEFAULT_HORIZON_DAYS = 3650
MAX_INTERVALS = MAX_COLUMNS
MAX_ETA = 4096.0          # |η| of a cell, so that its d·η is bounded
MAX_MU = float(2**16)     # μ of one row in one interval (a rate of 2^16 events per interval)
Array = npt.NDArray[np.float64]


class Poisson(LatticeModel):
    kind = "poisson"
    model_name = "Poisson regression, piecewise-exponential"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> ModelSpec:
        assert isinstance(msg, pb.Poisson)
        model = parse_survival(msg, d, allowed, path, what="Poisson",
                               lattice=(DEFAULT_STEP_DAYS, DEFAULT_HORIZON_DAYS), max_intervals=MAX_INTERVALS)
        spec: ModelSpec = survival_spec(self.kind, msg, model, path, baselines=model.intervals,
                                        intervals=model.intervals)
        return spec

    def title(self, spec: ModelSpec) -> str:
        return f"{self.model_name}, {spec.step_days}-day intervals"

    def component_maxima(self, spec: ModelSpec) -> list[int]:
        """Per row, from public bounds only. e^η is unbounded over the dictionary's ranges, so the
        fitted values are held to public bounds instead — |η| ≤ MAX_ETA and μ ≤ MAX_MU per
        row and interval — and a centre whose cells pass them withholds that round (`beyond`)."""
        s = 1 << spec.scale_bits
        mu = float(MAX_MU * spec.intervals)            # a row's μ over every interval
        bounds = spec.x_bounds()
        cols = [c.bound for c in spec.design.columns]
        top = [1, 1, *(math.ceil(b * s) for b in cols), *(math.ceil(b * b * s) for b in cols),
               *(math.ceil(b * (1 + mu) * s) for b in bounds)]
        top += [math.ceil(bounds[a] * bounds[b] * mu * s) for a in range(spec.p) for b in range(a, spec.p)]
        return [*top, math.ceil((MAX_ETA + mu) * s), 1]

    def at_k(self, spec: ModelSpec, raw: ModelRaw, k: int) -> ModelRaw:
        rows = raw.rows
        if rows is None:                              # already evaluated
            return raw
        key = ("poisson", spec.design, spec.step_days, spec.intervals, k)
        prepared = rows.prepared.get(key)
        if prepared is None:                          # β-free: once for every round over these rows
            assert rows.time is not None and rows.event is not None and rows.entry is not None
            x = matrix(spec.design, rows.values)
            cells = Cells.of(x, rows.time, rows.event, rows.entry, spec.step_days, spec.intervals, k)
            sx, sxx, counts = moments_and_gates(spec.design, rows.values, x, cells.counted, "event")
            counts.update({f"events in {name[10:-1]}": int(e)
                           for name, e in zip(spec.interval_names(), cells.interval_events, strict=True)})
            prepared = rows.prepared[key] = (cells, sx, sxx, counts)
        cells, sx, sxx, counts = prepared
        beta = np.asarray(spec.beta, dtype=np.float64)
        g, info, ll = cells.at(beta)
        return ModelRaw(n=rows.n, events=cells.events, sum_x=sx, sum_xx=sxx, gradient=g, information=upper(info),
                        loglik=ll, extreme=0, counts=dict(counts), beyond=cells.beyond(beta, spec.step_days))

    def warm_start(self, spec: ModelSpec, beta0: Any) -> list[float] | None:
        """Round 2's coefficients from round 1's sums (at β = 0, where μ_c = t_c): the null model's
        optimum α_j = log(d_j / t_j) — d_j = score_j + information_jj, t_j = information_jj — then
        one score step for the covariates there (`score_step`). Round 2 is so already one Newton
        step on from the null optimum, without a round spent evaluating it (D32)."""
        from oncofed.analyses.newton import FitError

        d, t = interval_totals(spec, beta0)
        names = spec.interval_names()
        for name, dj, tj in zip(names, d, t, strict=True):
            if tj <= 0:
                raise FitError(f"nobody is at risk in {name[10:-1]} at any centre: shorten the horizon "
                               "(lattice.horizon_days)")
            if dj <= 0:
                raise FitError(f"no events in {name[10:-1]} at any centre: its baseline hazard would be 0 "
                               "(the fit diverges); use longer intervals or a shorter horizon")
        alpha = np.log(np.asarray(d) / np.asarray(t))
        shift, gamma = score_step(spec.intervals, np.asarray(beta0.gradient), np.asarray(beta0.information), d, t)
        return [*(alpha - shift).tolist(), *gamma.tolist()]

    def null_loglik(self, spec: ModelSpec, first: Any) -> float | None:
        """The baseline-only model's maximum: Σ_j d_j (log(d_j / t_j) − 1)."""
        d, t = interval_totals(spec, first)
        return float(sum(dj * (math.log(dj / tj) - 1.0) for dj, tj in zip(d, t, strict=True) if dj > 0 and tj > 0))


def interval_totals(spec: ModelSpec, first: Any) -> tuple[list[float], list[float]]:
    """Each interval's pooled events and person-time, from a round at β = 0 (round 1)."""
    j = spec.intervals
    info = np.asarray(first.information)
    t = [float(info[i, i]) for i in range(j)]
    d = [float(round(first.gradient[i] + t[i])) for i in range(j)]
    return d, t


def score_step(j: int, gradient: Array, information: Array, d: list[float], t: list[float]) -> tuple[Array, Array]:
    """A Newton step for the covariates γ at the null optimum (α*, γ = 0), from round 1's sums.

    At (α*, 0) the score of γ is exact from round 1: Σ d x − Σ_j (d_j/t_j) C_j, with C_j = Σ_{c∈j}
    t_c x_c (round 1's interval × covariate information) and Σ d x = round 1's score + Σ_j C_j.
    The information there needs Σ_{c∈j} t_c x_c x_cᵀ per interval, which no round releases (only
    their sum over j): taking the covariates' person-time covariance within an interval, V = (Σ t x
    xᵀ − Σ_j C_j C_jᵀ / t_j) / Σ t, as the same in every interval, the information of γ with α
    profiled out is exactly D·V (D the events) — the score test's. So γ = (D V)⁻¹ score and each
    α_j moves by −m_jᵀγ (m_j = C_j / t_j, its interval's mean covariates), as Newton's step moves
    them. Columns without person-time (a left-out level) stay 0; a singular V leaves γ = 0 (the
    coordinator's rank check names the columns)."""
    tj = np.asarray(t, dtype=np.float64)
    dj = np.asarray(d, dtype=np.float64)
    cross, block = information[:j, j:], information[j:, j:]
    score = gradient[j:] + cross.sum(axis=0) - (cross * (dj / tj)[:, None]).sum(axis=0)
    means = cross / tj[:, None]
    v = (block - (cross.T / tj) @ cross) / tj.sum()
    diag = np.diag(v)
    keep = diag > 1e-12 * max(1.0, float(diag.max(initial=0.0)))
    gamma = np.zeros(len(score))
    try:
        gamma[keep] = np.linalg.solve(dj.sum() * v[np.ix_(keep, keep)], score[keep])
    except np.linalg.LinAlgError:
        gamma[:] = 0.0
    if not np.isfinite(gamma).all():
        gamma[:] = 0.0
    return means @ gamma, gamma


@dataclass(frozen=True)
class Cells:
    """One centre's rows on the lattice, aggregated into (interval × covariate pattern) cells."""

    interval: npt.NDArray[np.intp]   # per cell: its interval, 0-based
    x: Array                         # per cell: its covariates
    d: Array                         # per cell: events
    t: Array                         # per cell: person-time (days)
    counted: Array                   # per row: 1 when its event is counted on the lattice
    interval_events: Array           # per interval: events
    n_intervals: int

    @property
    def events(self) -> int:
        return int(self.d.sum())

    @classmethod
    def of(cls, x: Array, time: Array, event: Array, entry: Array, step: int, intervals: int, k: int) -> Cells:
        """Place the rows on the lattice (module docstring), stopping at the first interval with
        fewer than k at risk, and sum them per cell."""
        n, j_max, w = len(time), intervals, float(step)
        if n == 0:
            q = x.shape[1]
            return cls(np.zeros(0, dtype=np.intp), np.zeros((0, q)), np.zeros(0), np.zeros(0), np.zeros(0),
                       np.zeros(j_max), j_max)
        kappa = np.maximum(1, np.ceil(time / w)).astype(np.intp)
        alpha = np.where(entry > 0, np.floor(entry / w) + 1, 1).astype(np.intp)
        last = np.minimum(kappa, j_max)
        live = alpha <= last
        at_risk = np.zeros(j_max + 2)
        np.add.at(at_risk, alpha[live], 1.0)
        np.add.at(at_risk, last[live] + 1, -1.0)
        below = np.flatnonzero(np.cumsum(at_risk)[1:j_max + 1] < k)
        stop = int(below[0]) if below.size else j_max      # intervals 1 … stop are reported
        last = np.minimum(last, stop)
        live = alpha <= last
        leaves = live & (kappa <= stop)                     # leaves inside what is reported
        full_end = np.where(leaves, kappa - 1, last)
        counted = (leaves & (event > 0)).astype(np.float64)
        patterns, pid = np.unique(x, axis=0, return_inverse=True)
        pid = pid.reshape(-1)
        width = j_max + 2
        size = len(patterns) * width
        whole = live & (full_end >= alpha)
        diff = (np.bincount(pid[whole] * width + alpha[whole], minlength=size)
                - np.bincount(pid[whole] * width + full_end[whole] + 1, minlength=size)) * w
        person_time = np.cumsum(diff.reshape(-1, width), axis=1).astype(np.float64)
        person_time += np.bincount(pid[leaves] * width + kappa[leaves], minlength=size).reshape(-1, width) * (w / 2)
        deaths = np.asarray(np.bincount(pid[leaves] * width + kappa[leaves], weights=counted[leaves],
                                        minlength=size), dtype=np.float64).reshape(-1, width)
        person_time, deaths = person_time[:, 1:j_max + 1], deaths[:, 1:j_max + 1]
        p_of, j_of = np.nonzero(person_time > 0)
        return cls(j_of.astype(np.intp), np.ascontiguousarray(patterns[p_of], dtype=np.float64),
                   deaths[p_of, j_of], person_time[p_of, j_of], counted, deaths.sum(axis=0), j_max)

    def beyond(self, beta: Array, step: int) -> str:
        """'' when every cell's fitted values are within the public bounds at β, else why not."""
        if not len(self.t):
            return ""
        eta = beta[:self.n_intervals][self.interval] + self.x @ beta[self.n_intervals:]
        top = float(np.max(np.abs(eta)))
        if not top <= MAX_ETA or not float(np.max(eta)) <= math.log(MAX_MU / step):
            return "fitted values beyond the public bounds (|η| ≤ 4096, μ ≤ 2^16 per row and interval)"
        return ""

    def at(self, beta: Array) -> tuple[Array, Array, float]:
        """Score, information and log-likelihood (without data constants) at β = (α, γ)."""
        j_max = self.n_intervals
        x = self.x
        q = x.shape[1]
        p = j_max + q
        if not len(self.t):
            return np.zeros(p), np.zeros((p, p)), 0.0
        eta = beta[:j_max][self.interval] + x @ beta[j_max:]
        mu = self.t * np.exp(eta)
        r = self.d - mu
        g = np.concatenate([np.bincount(self.interval, weights=r, minlength=j_max), x.T @ r])
        info = np.zeros((p, p))
        info[np.arange(j_max), np.arange(j_max)] = np.bincount(self.interval, weights=mu, minlength=j_max)
        mx = x * mu[:, None]
        cross = np.zeros((j_max, q))
        np.add.at(cross, self.interval, mx)
        info[:j_max, j_max:] = cross
        info[j_max:, :j_max] = cross.T
        info[j_max:, j_max:] = x.T @ mx
        return g, info, float(self.d @ eta - mu.sum())


ANALYSIS = Poisson()
