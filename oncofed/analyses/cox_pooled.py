"""cox_pooled — one round of the pooled-equivalent (unstratified) Cox model, where every centre opts in.

The pooled partial likelihood needs, at every event time τ of the union of centres, the risk-set
sums S0 = Σ_R w, S1 = Σ_R w x, S2 = Σ_R w x xᵀ (and for Efron the same sums T over the deaths
at τ), summed over centres. Released at exact times they disclose individual covariates: when
one patient leaves a centre's risk set, the difference of two consecutive S1 is that patient's
w x. So (DESIGN §5):

- **Times on the public lattice.** Point j is g_j = j·step (a 1-day lattice — exact event times —
  only where permit and policy allow, as for Kaplan–Meier). A row with time T exits at point
  κ = ⌈T/step⌉ (an event or a censoring there), enters at α = 0, or, entering late at e > 0, at
  ⌊e/step⌋ + 1; it is at risk at the points α ≤ j ≤ κ (on a 1-day lattice lifelines' rule,
  entry < τ ≤ T). Deaths at a point are tied there (Efron or Breslow).
- **Each centre coarsens its own times further** (`Placement.of`): exits stay at risk and move to
  a later point until those released together number at least k; entrants join in groups of at
  least k; from the first point where 1 … k−1 of its rows are at risk it releases nothing more
  (they are censored there). Under Efron a released step with 1 … k−1 deaths does not release
  their own sums T (T1 over one death would be its w x) but d × S / (number at risk), the risk
  set's mean — Efron's correction approximated at that centre and point only. So every released
  risk set is empty or holds ≥ k rows, and consecutive ones differ by ≥ k rows. With k = 1
  nothing moves: the fit is the exact pooled Cox fit on the lattice's times. A centre that moved
  anything sets its `coarsened` flag (only the count of such centres goes out).
- **A common scale**: w = exp(xᵀβ − c) with c the coordinator's xᵀβ at the pooled means (the
  query's `offset`): every ratio the likelihood uses is unchanged by it, and it keeps w near 1.
  The overflow check assumes |xᵀβ − c| ≤ MAX_LOG_W; a centre with a row beyond withholds that
  round.

Vector: [n, events, Σx (q), Σx² (q), Σ x over the deaths placed (q), then per lattice point:
deaths, S0, S1 (q), S2 (upper triangle), and under Efron T0, T1, T2 | centres, withheld,
coarsened]. The coordinator (`finalise`) computes the pooled log partial likelihood, gradient and
information at β from the summed sums — Efron's per death l = 0 … d − 1 with φ = l/d:
A = S − φ T; ℓ = βᵀΣ_D x − D c − Σ log A0, gradient Σ_D x − Σ A1/A0, information
Σ (A2/A0 − A1 A1ᵀ/A0²) — so the Newton coordinator sees the same round sums as for every model.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from oncofed.analyses.base import Release, Result, Rules
from oncofed.analyses.cox import TIES
from oncofed.analyses.design import gate, matrix
from oncofed.analyses.regression import (
    DEFAULT_BETA_BITS,
    LatticeModel,
    ModelRaw,
    ModelSpec,
    moments_and_gates,
    parse_survival,
    survival_spec,
)
from oncofed.analyses.survival import DEFAULT_HORIZON_DAYS, DEFAULT_STEP_DAYS
from oncofed.dictionary import Dictionary
from oncofed.query.refusals import Refusal
from oncofed.v1 import query_pb2 as pb

MAX_LOG_W = 16.0          # |xᵀβ − c| of any row: w within e^±16
Array = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]
#: Measured tolerance against the exact pooled fit (statsmodels PHReg on exact times): the largest
#: |β − β_exact| in standard errors of the exact fit, by the mean number of deaths per released
#: event time (D̄ = events / pooled points with deaths, what the coordinator sees) — how much the
#: lattice and the centres' coarsening tie deaths together. bench/pooled_cox_tolerance.py measured
#: gbsg2, lung and rossi, Efron and Breslow, k = 1 and 10, lattices of 1 to 91 days (docs/
#: analyses.md); each bound is the largest gap at or below its D̄, rounded up. Beyond: no bound.
TOLERANCE_SE: tuple[tuple[float, float], ...] = ((2.5, 0.05), (6.0, 0.2), (16.0, 0.3), (60.0, 0.7))
#: The measured datasets hold 200–700 rows. The coarsening's shift of β does not shrink with n
#: while SEs do (measured: 1.3 SE on a 30-day lattice at 3 × 10,000 synthetic rows, bench/
#: analyses.py), so beyond this many rows no bound is stated.
TOLERANCE_ROWS = 1_000


@dataclass(frozen=True)
class PooledSpec(ModelSpec):
    """A pooled Cox round: the regression spec plus its lattice, ties and the common offset."""

    n_points: int = 0
    offset: float = 0.0

    @property
    def efron(self) -> bool:
        return self.ties == "efron"

    @property
    def block(self) -> int:
        """Risk-set sums per point and set: S0, S1 (q), S2 (upper triangle)."""
        return 1 + self.q + self.q * (self.q + 1) // 2

    @property
    def point_width(self) -> int:
        return 1 + self.block * (2 if self.efron else 1)

    @property
    def n_values(self) -> int:
        return 2 + 3 * self.q + self.n_points * self.point_width


class CoxPooled(LatticeModel):
    kind = "cox_pooled"
    model_name = "Cox proportional hazards, pooled-equivalent"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> PooledSpec:
        assert isinstance(msg, pb.CoxPooled)
        model = parse_survival(msg, d, allowed, path, what="Cox", lattice=(DEFAULT_STEP_DAYS, DEFAULT_HORIZON_DAYS))
        spec: PooledSpec = survival_spec(self.kind, msg, model, path, ties=TIES.get(msg.ties, "efron"),
                                         per_round=("offset",), spec=PooledSpec,
                                         flags=("centres", "withheld", "coarsened"), n_points=model.intervals + 1,
                                         offset=msg.offset / (1 << (msg.beta_scale_bits or DEFAULT_BETA_BITS)))
        return spec

    def title(self, spec: ModelSpec) -> str:
        lattice = "exact event times" if spec.step_days == 1 else f"{spec.step_days}-day lattice"
        return f"{self.model_name} ({lattice})"

    def withhold(self, spec: ModelSpec, rules: Rules) -> str:
        return "" if rules.pooled_cox else "policy: this centre does not opt in to the pooled Cox model"

    def component_maxima(self, spec: ModelSpec) -> list[int]:
        """Per row, from public bounds: w ≤ e^MAX_LOG_W (rows beyond withhold the round)."""
        assert isinstance(spec, PooledSpec)
        s = 1 << spec.scale_bits
        w = math.exp(MAX_LOG_W)
        b = [c.bound for c in spec.design.columns]
        q = spec.q
        sums = [math.ceil(w * s), *(math.ceil(w * x * s) for x in b),
                *(math.ceil(w * b[i] * b[j] * s) for i in range(q) for j in range(i, q))]
        point = [1, *sums, *(sums if spec.efron else [])]
        head = [1, 1, *(math.ceil(x * s) for x in b), *(math.ceil(x * x * s) for x in b),
                *(math.ceil(x * s) for x in b)]
        return head + point * spec.n_points

    def at_k(self, spec: ModelSpec, raw: ModelRaw, k: int) -> ModelRaw:
        """The centre's sums at β with its times coarsened for k: `gradient` holds Σ x over the
        deaths placed, `information` the per-point blocks (flattened), `extreme` the coarsened flag."""
        assert isinstance(spec, PooledSpec)
        rows = raw.rows
        if rows is None:
            return raw
        key = ("cox_pooled", spec.design, spec.step_days, spec.n_points, spec.efron, k)
        prepared = rows.prepared.get(key)
        if prepared is None:                          # β-free: once for every round over these rows
            assert rows.time is not None and rows.event is not None and rows.entry is not None
            x = matrix(spec.design, rows.values)
            place = Placement.of(rows.time, rows.event, rows.entry, spec.step_days, spec.n_points, k,
                                 efron=spec.efron)
            sx, sxx, counts = moments_and_gates(spec.design, rows.values, x, place.dead.astype(np.float64), "event")
            prepared = rows.prepared[key] = (x, place, sx, sxx, counts, _upper_products(x))
        x, place, sx, sxx, counts, xx = prepared
        blocks, beyond = place.sums(x, xx, np.asarray(spec.beta, dtype=np.float64), spec.offset, spec.n_points,
                                    efron=spec.efron)
        return ModelRaw(n=rows.n, events=int(place.dead.sum()), sum_x=sx, sum_xx=sxx,
                        gradient=x[place.dead].sum(axis=0), information=blocks.reshape(-1), loglik=0.0,
                        extreme=int(place.coarsened), counts=dict(counts), beyond=beyond)

    def exact(self, spec: ModelSpec, raw: ModelRaw) -> list[int]:
        assert isinstance(spec, PooledSpec)
        raw = self.at_k(spec, raw, 1)
        if raw.beyond:
            raise Refusal("internal_error", f"{spec.kind}: {raw.beyond} at round {spec.round}'s β")
        s = spec.scale_bits
        reals = np.concatenate([raw.sum_x, raw.sum_xx, raw.gradient])
        blocks = raw.information.reshape(spec.n_points, spec.point_width) if spec.n_points else raw.information
        if not (np.isfinite(reals).all() and np.isfinite(blocks).all()):
            raise Refusal("internal_error", f"{spec.kind}: the sums are not finite at round {spec.round}'s β")
        out = [raw.n, raw.events, *(_fixed(v, s) for v in reals)]
        for row in blocks:
            out.append(int(row[0]))
            out.extend(_fixed(v, s) for v in row[1:])
        return out

    def protect(self, spec: ModelSpec, raw: ModelRaw, rules: Rules, meta: dict[str, Any]) -> Release:
        withheld = Release([0] * spec.n_values, [1, 1, 0], {**meta, "cells_suppressed": spec.n_values})
        refused = self.withhold(spec, rules)
        if refused:
            withheld.meta["suppressed"] = refused
            return withheld
        raw = self.at_k(spec, raw, rules.k)
        reason = gate(raw.n, spec.p, raw.counts, rules.k)
        if reason or raw.beyond:
            withheld.meta["suppressed"] = f"gate: {reason}" if reason else raw.beyond
            return withheld
        return Release(self.exact(spec, raw), [1, 0, raw.extreme],
                       {**meta, "gates": "passed", "coarsened": bool(raw.extreme)})

    def plausible(self, spec: ModelSpec, values: list[int]) -> bool:
        assert isinstance(spec, PooledSpec)
        n, events = values[0], values[1]
        at, width = 2 + 3 * spec.q, spec.point_width
        deaths = values[at::width][:spec.n_points]
        s0 = values[at + 1::width][:spec.n_points]
        return 0 <= events <= n and all(d >= 0 for d in deaths) and sum(deaths) == events and \
            all(v >= -(1 << 8) for v in s0)

    def finalise(self, spec: ModelSpec, values: list[int], flags: dict[str, int]) -> Result:
        """The pooled partial likelihood's gradient, information and log-likelihood at β from the
        summed risk-set sums (module docstring)."""
        assert isinstance(spec, PooledSpec)
        scale = 1 << spec.scale_bits
        q = spec.q

        def real(v: int) -> float:
            return float(Fraction(v, scale))

        sum_x = [real(v) for v in values[2:2 + q]]
        sum_xx = [real(v) for v in values[2 + q:2 + 2 * q]]
        x_dead = np.array([real(v) for v in values[2 + 2 * q:2 + 3 * q]])
        width = spec.point_width
        raw = values[2 + 3 * q:]
        deaths = np.array(raw[0::width][:spec.n_points], dtype=np.float64)
        keep = np.flatnonzero(deaths > 0)
        sums = np.array([[real(v) for v in raw[j * width + 1:(j + 1) * width]] for j in keep]).reshape(
            len(keep), width - 1)
        g, info, ll = pooled_likelihood(sums, deaths[keep], q, efron=spec.efron)
        beta = np.asarray(spec.beta, dtype=np.float64)
        d_total = float(deaths.sum())
        return {"model": self.title(spec), "round": spec.round, "coefficients": spec.coefficient_names(),
                "beta": list(spec.beta), "n": values[0], "events": values[1], "sum_x": sum_x, "sum_xx": sum_xx,
                "gradient": (x_dead - g).tolist(), "information": info.tolist(),
                "loglik": float(beta @ x_dead - d_total * spec.offset + ll), "extreme": 0,
                "withheld_centres": flags["withheld"], "coarsened_centres": flags["coarsened"],
                "event_points": len(keep)}

    # ------------------------------------------------------------------ the coordinator's hooks
    def round_message(self, msg: Message, newton: Any) -> None:
        """The round's common offset c = βᵀ x̄ at the pooled means (0 before they are known)."""
        assert isinstance(msg, pb.CoxPooled)
        means = getattr(newton, "means", None)
        sb = msg.beta_scale_bits
        beta = np.asarray(list(msg.beta), dtype=np.float64) / (1 << sb)
        c = float(beta @ means) if means is not None and len(beta) else 0.0
        msg.offset = round(c * (1 << sb))

    def fit_notes(self, spec: ModelSpec, last: Result) -> tuple[list[str], float | None]:
        """What the coarsening costs, as measured (TOLERANCE_SE): 0 on exact times with nothing
        coarsened (the exact pooled fit); otherwise the bound for the mean deaths per released
        event time, within the measured datasets' size (TOLERANCE_ROWS)."""
        coarsened = int(last.get("coarsened_centres", 0))
        step = spec.step_days
        if step == 1 and not coarsened:
            return (["exact event times, no centre coarsened: the exact pooled Cox fit"], 0.0)
        points = int(last.get("event_points", 0))
        ties = int(last.get("events", 0)) / points if points else math.inf
        bound = next((b for limit, b in TOLERANCE_SE if ties <= limit), None)
        what = f"event times on a {step}-day lattice" if step > 1 else "exact event times"
        if coarsened:
            what += (f", coarsened further at {coarsened} centre(s) so that each step removes at least k of its "
                     "tumours")
        what += f" ({ties:.1f} deaths per released time on average)"
        if bound is not None and int(last.get("n", 0)) > TOLERANCE_ROWS:
            bound = None
            tolerance = (f"no tolerance is stated beyond {TOLERANCE_ROWS:,} rows: standard errors shrink with n, "
                         "the coarsening's shift does not (D27); a finer lattice or exact times narrow it")
        elif bound is None:
            tolerance = (f"no measured tolerance with more than {TOLERANCE_SE[-1][0]:g} deaths per released time: "
                         "a finer lattice narrows it")
        else:
            tolerance = (f"coefficients within {bound:g} standard errors of the exact pooled fit, as measured on the "
                         "test datasets (docs/analyses.md)")
        return [f"pooled-equivalent Cox: {what}; {tolerance}"], bound

def pooled_likelihood(sums: Array, deaths: Array, q: int, *, efron: bool) -> tuple[Array, Array, float]:
    """Σ over event points of Σ_l A1/A0 (returned as g), the information and −Σ log A0, from the
    summed per-point sums [S0, S1, S2 (upper), (T0, T1, T2)] and deaths d."""
    tri = q * (q + 1) // 2
    block = 1 + q + tri
    if not len(deaths):
        return np.zeros(q), np.zeros((q, q)), 0.0
    s0, s1, s2 = sums[:, 0], sums[:, 1:1 + q], _full(sums[:, 1 + q:block], q)
    if efron:
        t0, t1, t2 = sums[:, block], sums[:, block + 1:block + 1 + q], _full(sums[:, block + 1 + q:], q)
    else:
        t0, t1, t2 = np.zeros_like(s0), np.zeros_like(s1), np.zeros_like(s2)
    d = deaths.astype(np.intp)
    point = np.repeat(np.arange(len(d)), d)
    start = np.repeat(np.cumsum(d) - d, d)
    phi = (np.arange(len(point)) - start) / d[point] if efron else np.zeros(len(point))
    a0 = s0[point] - phi * t0[point]
    inv = 1.0 / a0
    a, b, c1, c2, c3 = (np.bincount(point, weights=v, minlength=len(d)) for v in
                        (inv, phi * inv, inv * inv, phi * inv * inv, phi * phi * inv * inv))
    g = s1.T @ a - t1.T @ b
    info = np.einsum("j,jab->ab", a, s2) - np.einsum("j,jab->ab", b, t2)
    cross = s1.T @ (t1 * c2[:, None])
    info -= s1.T @ (s1 * c1[:, None]) - cross - cross.T + t1.T @ (t1 * c3[:, None])
    return g, info, float(-np.log(a0).sum())


def _full(tri: Array, q: int) -> Array:
    """Per point, the symmetric q × q matrix from its upper triangle (row by row)."""
    out = np.zeros((tri.shape[0], q, q))
    i, j = np.triu_indices(q)
    out[:, i, j] = tri
    out[:, j, i] = tri
    return out


def _upper_products(x: Array) -> Array:
    i, j = np.triu_indices(x.shape[1])
    return np.asarray(x[:, i] * x[:, j], dtype=np.float64)


def _fixed(v: float, s: int) -> int:
    """round(v · 2^s) exactly: scaling a float by a power of two is exact, and round() of a float
    is correctly rounded (half to even), so this equals oncofed.query.vector.fixed, faster."""
    return round(math.ldexp(float(v), s))


@dataclass(frozen=True)
class Placement:
    """One centre's rows on the lattice after its own coarsening: each row at risk at the points
    start ≤ j ≤ end (start > end: never), dead when its death is released at `end`."""

    start: Ints
    end: Ints
    dead: npt.NDArray[np.bool_]
    coarsened: bool
    stop: int | None = None            # the point from which the centre released nothing
    #: Efron: points whose released deaths number 1 … k − 1; their death-set sums T are released
    #: as deaths × S / (number at risk) — the risk set's mean —, never the deaths' own sums
    mean_points: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.intp))

    @classmethod
    def of(cls, time: Array, event: Array, entry: Array, step: int, n_points: int, k: int, *,
           efron: bool) -> Placement:
        m = n_points - 1
        n = len(time)
        kappa = np.ceil(time / step).astype(np.intp)
        alpha = np.where(entry > 0, np.floor(entry / step) + 1, 0).astype(np.intp)
        valid = alpha <= np.minimum(kappa, m)
        base_end = np.minimum(kappa, m)
        start = np.full(n, m + 1, dtype=np.intp)
        end = np.full(n, -1, dtype=np.intp)
        released = np.zeros(n, dtype=bool)
        if k <= 1:                                     # nothing moves: the lattice placement itself
            start[valid], end[valid] = alpha[valid], base_end[valid]
            released[valid] = kappa[valid] <= m
            return cls(start, end, released & (event > 0), False)
        mean_points: list[int] = []
        ev = event > 0
        by_entry = _buckets(alpha[valid], np.flatnonzero(valid), n_points)
        by_exit = _buckets(np.minimum(kappa[valid], m + 1), np.flatnonzero(valid), n_points + 1)
        joined = np.zeros(n, dtype=bool)
        pending_in: list[int] = []
        pending_out: list[int] = []
        at_risk = 0
        stop: int | None = None
        for j in range(n_points):
            pending_in.extend(by_entry[j])
            pending_in = [r for r in pending_in if kappa[r] >= j]       # an entrant who left before joining
            if len(pending_in) >= k:
                start[pending_in] = j
                joined[pending_in] = True
                at_risk += len(pending_in)
                pending_in = []
            if 0 < at_risk < k:
                stop = j
                break
            leaving = pending_out + [r for r in by_exit[j] if joined[r]]
            if len(leaving) >= k:
                deaths = int(ev[leaving].sum())
                if efron and 0 < deaths < k:
                    mean_points.append(j)
                end[leaving] = j
                released[leaving] = True
                at_risk -= len(leaving)
                pending_out = []
            else:
                pending_out = leaving
        last = m if stop is None else stop - 1
        still = joined & ~released
        end[still] = last
        dead = released & ev & (kappa <= m)
        base_dead = valid & ev & (kappa <= m)
        moved = bool((start[valid] != alpha[valid]).any() or (end[valid] != base_end[valid]).any()
                     or (dead != base_dead).any() or stop is not None)
        return cls(start, end, dead, moved, stop, np.asarray(mean_points, dtype=np.intp))

    def sums(self, x: Array, xx: Array, beta: Array, offset: float, n_points: int, *,
             efron: bool) -> tuple[Array, str]:
        """Per lattice point [deaths, S0, S1, S2, (T0, T1, T2)] at β, and '' or why not releasable."""
        live = self.start <= self.end
        eta = x @ beta - offset
        if live.any() and float(np.abs(eta[live]).max()) > MAX_LOG_W:
            return np.zeros((n_points, 0)), (f"a row's xᵀβ − offset is beyond ±{MAX_LOG_W:g} (the public bound of "
                                              "the risk-set sums)")
        w = np.exp(eta)
        z = np.column_stack([w, x * w[:, None], xx * w[:, None]])
        k = z.shape[1]
        idx_in, idx_out = self.start[live], self.end[live] + 1
        zl = z[live]
        diff = np.zeros((n_points + 1, k))
        for c in range(k):
            diff[:, c] = (np.bincount(idx_in, weights=zl[:, c], minlength=n_points + 1)[:n_points + 1]
                          - np.bincount(idx_out, weights=zl[:, c], minlength=n_points + 1)[:n_points + 1])
        s = np.cumsum(diff, axis=0)[:n_points]
        at = self.end[self.dead]
        deaths = np.bincount(at, minlength=n_points)[:n_points].astype(np.float64)
        parts = [deaths[:, None], s]
        if efron:
            zd = z[self.dead]
            t: Array = np.zeros((n_points, k))
            for c in range(k):
                t[:, c] = np.bincount(at, weights=zd[:, c], minlength=n_points)[:n_points]
            if len(self.mean_points):                 # 1 … k − 1 deaths: the risk set's mean, not theirs
                ones = np.cumsum(np.bincount(idx_in, minlength=n_points + 1)[:n_points + 1]
                                 - np.bincount(idx_out, minlength=n_points + 1)[:n_points + 1])[:n_points]
                j = self.mean_points
                t[j] = s[j] * (deaths[j] / ones[j])[:, None]
            parts.append(t)
        return np.hstack(parts), ""


def _buckets(points: Ints, rows: Ints, size: int) -> list[list[int]]:
    """rows grouped by their point (0 … size − 1), each list in row order."""
    out: list[list[int]] = [[] for _ in range(size)]
    for p, r in zip(points.tolist(), rows.tolist(), strict=True):
        out[p].append(r)
    return out


ANALYSIS = CoxPooled()
