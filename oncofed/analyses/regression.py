"""What logistic and Cox regression share: one round of an iterative sum protocol (DESIGN §5).

A round's query carries the coefficients β (fixed point, `round(β · 2^beta_scale_bits)`) and the
round number. Each centre evaluates its own rows at β and releases one summable vector:

    [n, events, Σx_j (q), Σx_j² (q), gradient (p), information (upper triangle, p(p+1)/2),
     log-likelihood, extreme | centres, withheld]

j over the q non-intercept columns, p coefficients in all (logistic: 1 + q, Cox: q). Reals are
`round(x · 2^scale_bits)` of the centre's total, exactly; n and events are counts, `extreme` a
flag (logistic: 1 if any row has a fitted probability outside [1e-8, 1 − 1e-8]; summed, the
number of such centres). The sums over centres give the
coordinator (oncofed.analyses.newton) the pooled gradient, information and log-likelihood at β:
for logistic the pooled model, for Cox the model stratified by centre (each centre's own risk
sets). n, events and Σx, Σx² are the same in every round: the coordinator standardises with them
and checks the data did not change between rounds.

Disclosure: the gates of oncofed.analyses.design; a centre that fails them releases zeros with
`withheld` set. Outside the gates the sums go exact (DataSHIELD's practice for glm), under cell
key as under threshold mode: perturbing n would be pointless, since the information at β = 0
holds it. A round's β must keep every row's linear predictor within the centre's public bound
(`check`, D30), so no round is a step function of a covariate. Differential privacy is not
offered for these models (refused by `check`). Each centre also caps how many distinct β it
answers per fit (`iteration`; the engine counts them) and logs every β it answered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from abc import abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from oncofed.analyses.base import (
    Analysis,
    DesignQuestion,
    DesignRows,
    Grants,
    Iteration,
    Reader,
    Release,
    Result,
    Rules,
)
from oncofed.analyses.design import Design, gate, gate_counts, level_counts, parse_design, predictor_range
from oncofed.analyses.survival import MAX_HORIZON_DAYS, OUTCOMES, check_lattice
from oncofed.dictionary import Dictionary
from oncofed.query.errors import QueryError, invalid
from oncofed.query.refusals import Refusal
from oncofed.query.values import exact_day
from oncofed.query.vector import MAX_SCALE_BITS, fixed

DEFAULT_BETA_BITS = 40
MAX_BETA_BITS = 48
BETA_LIMIT = 2**20
DEFAULT_SCALE_BITS = 40
#: The default public bound on a round's linear predictor over the dictionary's ranges
#: (`[query] model_max_linear_predictor`, `[fit] max_linear_predictor`; D30). |η| = 40 is a fitted
#: probability 4e-18 from 0 or 1 — beyond any real model's optimum over realistic ranges — while a
#: logistic step at one value t of age (0–120) needs |η| ≥ b·60 with b the step's slope per year:
#: within 40, b ≤ 2/3, a probability that moves from 0.12 to 0.88 over six years, not a step.
DEFAULT_MAX_LINEAR_PREDICTOR = 40.0
Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ModelSpec:
    """One round of a model: its design, outcome, coefficients and vector layout."""

    kind: str
    design: Design
    intercept: bool
    question: DesignQuestion
    outcome_field: str                    # a field outcome ('' for a derived or survival outcome)
    positive: tuple[int, ...]             # logistic: the outcome's level positions counted as 1
    ties: str                             # Cox: "efron" or "breslow"
    beta: tuple[float, ...]
    beta_scale_bits: int
    scale_bits: int
    round: int
    fit_key: bytes
    beta_key: bytes
    flags: tuple[str, ...] = ("centres", "withheld")
    outcome_label: str = "outcome"
    step_days: int = 0                    # Poisson: the lattice's interval width (days)
    intervals: int = 0                    # Poisson: one baseline log-hazard per interval, before the covariates

    @property
    def q(self) -> int:
        return self.design.q

    @property
    def baselines(self) -> int:
        """The leading coefficients that act as intercepts (not centred, not penalised)."""
        return (1 if self.intercept else 0) + self.intervals

    @property
    def p(self) -> int:
        return self.q + self.baselines

    @property
    def n_values(self) -> int:
        return 2 + 2 * self.q + self.p + self.p * (self.p + 1) // 2 + 2

    def fields(self) -> tuple[str, ...]:
        return self.question.fields

    def coefficient_names(self) -> list[str]:
        return (["(intercept)"] if self.intercept else []) + self.interval_names() + self.design.names()

    def interval_names(self) -> list[str]:
        """The Poisson baselines: "(baseline 0–365 d)", then "(baseline 365–730 d)", …"""
        w = self.step_days
        return [f"(baseline {j * w}–{(j + 1) * w} d)" for j in range(self.intervals)]

    def x_bounds(self) -> list[float]:
        """|x| bounds of the p model columns (intercept or baselines first)."""
        return [1.0] * self.baselines + [c.bound for c in self.design.columns]


@dataclass
class ModelRaw:
    """One centre's exact sums at β, and the counts its gates look at (never released)."""

    n: int
    events: int
    sum_x: Vector
    sum_xx: Vector
    gradient: Vector
    information: Vector
    loglik: float
    extreme: int
    counts: dict[str, int] = field(default_factory=dict)
    #: The rows, when the sums depend on the centre's k (Poisson's tail rule: `at_k` computes them).
    rows: DesignRows | None = None
    #: Why these sums cannot go out (fitted values beyond the public bounds the overflow check
    #: assumed): the centre withholds, the reason stays in its audit log.
    beyond: str = ""


def parse_beta(msg: Any, p: int, path: str) -> tuple[tuple[float, ...], int, int]:
    """The query's coefficients as floats (exactly int / 2^s), their scale and the sums' scale."""
    sb = msg.beta_scale_bits or DEFAULT_BETA_BITS
    if sb > MAX_BETA_BITS:
        raise invalid(f"{path}.beta_scale_bits", f"at most {MAX_BETA_BITS} bits")
    s = msg.scale_bits or DEFAULT_SCALE_BITS
    if s > MAX_SCALE_BITS:
        raise invalid(f"{path}.scale_bits", f"scale {s} exceeds {MAX_SCALE_BITS} bits")
    raw = list(msg.beta)
    if raw and len(raw) != p:
        raise invalid(f"{path}.beta", f"the model has {p} coefficients; the query gives {len(raw)}")
    limit = BETA_LIMIT << sb
    if any(abs(b) >= limit for b in raw):
        raise invalid(f"{path}.beta", f"every |β| must be below 2^{BETA_LIMIT.bit_length() - 1}")
    beta = tuple(b / (1 << sb) for b in raw) if raw else (0.0,) * p
    return beta, sb, s


def fit_keys(msg: Message, kind: str, per_round: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """The fit's identity (the model without its coefficients and round) and the β asked for.
    `per_round`: more fields the coordinator sets each round (the pooled Cox model's offset);
    they belong to the round's β, not to the fit, or each round would count as a new fit."""
    bare = type(msg)()
    bare.CopyFrom(msg)
    for name in ("beta", "round", *per_round):
        bare.ClearField(name)
    fit = hashlib.sha256(kind.encode() + b"\0" + bare.SerializeToString(deterministic=True)).digest()
    beta = f"{msg.beta_scale_bits}:" + "".join(f"{getattr(msg, name)}:" for name in per_round) + \
        ",".join(str(b) for b in msg.beta)
    return fit, hashlib.sha256(beta.encode()).digest()


@dataclass(frozen=True)
class SurvivalModel:
    """What a survival model's message states besides its coefficients (Cox, Poisson, pooled Cox)."""

    outcome: str
    cutoff: dt.date
    design: Design
    step_days: int = 0                  # 0: no lattice (the stratified Cox model's exact days)
    horizon_days: int = 0

    @property
    def intervals(self) -> int:
        return -(-self.horizon_days // self.step_days) if self.step_days else 0


def parse_survival(msg: Any, d: Dictionary, allowed: Collection[str] | None, path: str, *, what: str,
                   lattice: tuple[int, int] | None = None, max_intervals: int = 0) -> SurvivalModel:
    """The outcome (OS or RFS) and its cutoff, the lattice (`lattice`: its default step and
    horizon; a horizon shorter than the step stretches to it) and the covariates — checked in
    that order, each refusal naming its path."""
    outcome = OUTCOMES.get(msg.outcome)
    if outcome is None:
        raise invalid(f"{path}.outcome", "outcome must be OS or RFS")
    cutoff = cutoff_of(msg.cutoff, f"{path}.cutoff")
    step = horizon = 0
    if lattice is not None:
        step = msg.lattice.step_days or lattice[0]
        horizon = msg.lattice.horizon_days or max(lattice[1], step)
        if horizon > MAX_HORIZON_DAYS:
            raise invalid(f"{path}.lattice.horizon_days", f"horizon {horizon} exceeds {MAX_HORIZON_DAYS} days")
        if step > horizon:
            raise invalid(f"{path}.lattice.step_days", f"step {step} is longer than the horizon {horizon}")
        intervals = -(-horizon // step)
        if max_intervals and intervals > max_intervals:
            raise invalid(f"{path}.lattice", f"{intervals} intervals; at most {max_intervals} (a longer step)")
    if not msg.covariates:
        raise invalid(f"{path}.covariates", f"a {what} model needs at least one covariate")
    design = parse_design(d, msg.covariates, msg.reference, allowed, path)
    return SurvivalModel(outcome, cutoff, design, step, horizon)


def survival_spec(kind: str, msg: Any, model: SurvivalModel, path: str, *, baselines: int = 0, ties: str = "",
                  per_round: Sequence[str] = (), spec: type[ModelSpec] = ModelSpec, **extra: Any) -> Any:
    """A survival model's round spec: no intercept, `baselines` leading coefficients (Poisson's
    intervals) before the covariates', the outcome's label with its cutoff."""
    design = model.design
    beta, sb, s = parse_beta(msg, baselines + design.q, path)
    fit, beta_key = fit_keys(msg, kind, per_round)
    return spec(kind=kind, design=design, intercept=False,
                question=DesignQuestion(design.fields, survival=model.outcome, cutoff=model.cutoff),
                outcome_field="", positive=(), ties=ties, beta=beta, beta_scale_bits=sb, scale_bits=s,
                round=msg.round, fit_key=fit, beta_key=beta_key,
                outcome_label=f"{model.outcome} (cutoff {model.cutoff.isoformat()})", step_days=model.step_days,
                **extra)


class ModelAnalysis(Analysis[ModelSpec, ModelRaw]):
    """The node side and the vector of one round; subclasses parse their outcome and evaluate."""

    model_name = ""

    @abstractmethod
    def evaluate(self, spec: ModelSpec, rows: DesignRows) -> ModelRaw:
        """The centre's exact sums at spec.beta over its complete cases."""

    def at_k(self, spec: ModelSpec, raw: ModelRaw, k: int) -> ModelRaw:
        """The sums a centre whose minimum cell count is k releases (most models: the same at any k)."""
        return raw

    def title(self, spec: ModelSpec) -> str:
        """The model's name in the output (a lattice or a coarsening may be part of it)."""
        return self.model_name

    def warm_start(self, spec: ModelSpec, beta0: Any) -> list[float] | None:
        """Coefficients to try after round 1 (at β = 0) instead of the first Newton step, from that
        round's pooled sums (oncofed.analyses.newton.RoundSums); None: Newton's own step."""
        return None

    def round_message(self, msg: Message, newton: Any) -> None:
        """Fill in what a round's message needs besides β and the round number (the coordinator's
        oncofed.analyses.newton.Newton at hand); most models need nothing."""

    def fit_notes(self, spec: ModelSpec, last: Result) -> tuple[list[str], float | None]:
        """Notes for the fitted model from its last finalised round, and its stated tolerance
        against an exact reference (in standard errors; None: not applicable)."""
        return [], None

    def null_loglik(self, spec: ModelSpec, first: Any) -> float | None:
        """The null model's log-likelihood from round 1's pooled sums, when it has a closed form
        (None: the log-likelihood at β = 0)."""
        return None

    def predictor_spread(self, spec: ModelSpec, beta: Sequence[float]) -> float:
        """The largest |η − c| any row could have at β, from the dictionary's ranges alone: η the
        linear predictor (an intercept, or Poisson's interval baseline, plus xᵀβ) and c = 0 — or,
        for a model without an intercept (Cox), c the midpoint of xᵀβ's range: the partial
        likelihood depends only on differences of η, so only its spread can make one row
        outweigh all others. Public (the query and the dictionary): a centre may refuse on it."""
        off = spec.baselines
        lo, hi = predictor_range(spec.design.columns, beta[off:])
        if not off:
            return (hi - lo) / 2
        start = beta[0] if spec.intercept else 0.0
        leads = [start + a for a in beta[1 if spec.intercept else 0:off]] or [start]
        return max(max(abs(a + lo), abs(a + hi)) for a in leads)

    def check(self, spec: ModelSpec, d: Dictionary, grants: Grants) -> None:
        """No DP permit (this release); a survival outcome the permit names; the coefficients
        within the centre's public bound on the linear predictor (from β and the dictionary
        only, so the refusal tells nothing about the rows: a steep β would make the round's sums
        exact counts of the rows at one covariate value, D30)."""
        spread = self.predictor_spread(spec, spec.beta)
        if not spread <= grants.max_linear_predictor:
            raise QueryError("INVALID_ARGUMENT", f"the coefficients give a linear predictor up to {spread:.4g} "
                             "over the dictionary's ranges; this centre answers models up to "
                             f"{grants.max_linear_predictor:g} ([query] model_max_linear_predictor)",
                             f"analysis.{spec.kind}.beta")
        if grants.dp:
            raise QueryError("PERMISSION_DENIED", f"{spec.kind} is not offered under a differentially private "
                             "permit in this release", f"analysis.{spec.kind}")
        outcome = spec.question.survival
        allowed = grants.outcomes
        if not grants.local_admin and outcome and allowed is not None and outcome.lower() not in allowed:
            raise QueryError("PERMISSION_DENIED", f"the permit does not allow the outcome {outcome} (it names "
                             f"{', '.join(sorted(allowed)) or 'none'})", f"analysis.{spec.kind}")

    def iteration(self, spec: ModelSpec) -> Iteration:
        return Iteration(spec.fit_key, spec.beta_key, spec.round, spec.beta)

    def component_maxima(self, spec: ModelSpec) -> list[int]:
        """Per row, from public bounds only: the dictionary's ranges and the query's β."""
        s = 1 << spec.scale_bits
        xb = spec.x_bounds()
        cols = [c.bound for c in spec.design.columns]
        eta = sum(abs(b) * x for b, x in zip(spec.beta, xb, strict=True))
        lik = 64.0 + 2 * eta                     # log(1 + e^|η|), or a Cox risk set's log-sum
        top = [1, 1, *(math.ceil(b * s) for b in cols), *(math.ceil(b * b * s) for b in cols),
               *(math.ceil(2 * b * s) for b in xb)]
        top += [math.ceil(2 * xb[i] * xb[j] * s) for i in range(spec.p) for j in range(i, spec.p)]
        return [*top, math.ceil(lik * s), 1]

    def local(self, spec: ModelSpec, reader: Reader, *, clamp: bool) -> ModelRaw:
        return self.evaluate(spec, reader.design(spec.question))

    def total(self, raw: ModelRaw) -> int:
        return raw.n

    def exact(self, spec: ModelSpec, raw: ModelRaw) -> list[int]:
        raw = self.at_k(spec, raw, 1)
        if raw.beyond:                                 # only the local admin's exact mode gets here
            raise Refusal("internal_error", f"{spec.kind}: {raw.beyond} at round {spec.round}'s β")
        s = spec.scale_bits
        reals = [*raw.sum_x, *raw.sum_xx, *raw.gradient, *raw.information, raw.loglik]
        if not all(math.isfinite(x) for x in reals):   # the rows decided it: outward only as BUSY
            raise Refusal("internal_error", f"{spec.kind}: the sums are not finite at round {spec.round}'s β")
        fx = [fixed(float(x), s) for x in reals]
        q, p = spec.q, spec.p
        return [raw.n, raw.events, *fx[:2 * q + p + p * (p + 1) // 2], fx[-1], raw.extreme]

    def protect(self, spec: ModelSpec, raw: ModelRaw, rules: Rules, meta: dict[str, Any]) -> Release:
        out = dict(meta)
        refused = self.withhold(spec, rules)
        if refused:
            return Release([0] * spec.n_values, [1, 1], {**out, "suppressed": refused,
                                                         "cells_suppressed": spec.n_values})
        raw = self.at_k(spec, raw, rules.k)
        reason = gate(raw.n, spec.p, raw.counts, rules.k) or raw.beyond
        if reason:
            return Release([0] * spec.n_values, [1, 1], {**out, "suppressed": f"gate: {reason}",
                                                         "cells_suppressed": spec.n_values})
        return Release(self.exact(spec, raw), [1, 0], {**out, "gates": "passed"})

    def withhold(self, spec: ModelSpec, rules: Rules) -> str:
        """A reason this centre withholds whatever its rows (its policy), for the audit log; ''."""
        return ""

    def plausible(self, spec: ModelSpec, values: list[int]) -> bool:
        n, events = values[0], values[1]
        q, p = spec.q, spec.p
        sxx = values[2 + q:2 + 2 * q]
        info = values[2 + 2 * q + p:2 + 2 * q + p + p * (p + 1) // 2]
        diag = [info[i * p - i * (i - 1) // 2] for i in range(p)]
        return 0 <= events <= n and values[-1] >= 0 and all(v >= -(1 << 8) for v in (*sxx, *diag))

    def finalise(self, spec: ModelSpec, values: list[int], flags: dict[str, int]) -> Result:
        """The round's pooled sums as floats (the coordinator's input; exact until this point)."""
        scale = 1 << spec.scale_bits
        q, p = spec.q, spec.p

        def real(v: int) -> float:
            return float(Fraction(v, scale))

        at = 2
        sum_x = [real(v) for v in values[at:at + q]]
        sum_xx = [real(v) for v in values[at + q:at + 2 * q]]
        at += 2 * q
        gradient = [real(v) for v in values[at:at + p]]
        at += p
        tri = [real(v) for v in values[at:at + p * (p + 1) // 2]]
        info = [[0.0] * p for _ in range(p)]
        k = 0
        for i in range(p):
            for j in range(i, p):
                info[i][j] = info[j][i] = tri[k]
                k += 1
        return {"model": self.title(spec), "round": spec.round, "coefficients": spec.coefficient_names(),
                "beta": list(spec.beta), "n": values[0], "events": values[1], "sum_x": sum_x, "sum_xx": sum_xx,
                "gradient": gradient, "information": info, "loglik": real(values[-2]), "extreme": values[-1],
                "withheld_centres": flags["withheld"]}

    def render(self, result: Result) -> list[str]:
        from oncofed.analyses.text import num

        r = result
        lines = [f"  {r['model']}: round {r['round']} over {num(r['n'])} rows, {num(r['events'])} events"
                 + (f"; {r['withheld_centres']} centre(s) withheld" if r["withheld_centres"] else ""),
                 f"  log-likelihood at β: {num(r['loglik'], 6)}"]
        for name, b, g in zip(r["coefficients"], r["beta"], r["gradient"], strict=True):
            lines.append(f"  {name:<32} β {b: .6g}  gradient {g: .6g}")
        return lines


def cutoff_of(text: str, path: str) -> dt.date:
    return exact_day(text, path)


def upper(m: npt.NDArray[np.float64]) -> Vector:
    """A symmetric matrix's upper triangle, row by row."""
    i, j = np.triu_indices(m.shape[0])
    return np.asarray(m[i, j], dtype=np.float64)


def column_moments(x: npt.NDArray[np.float64]) -> tuple[Vector, Vector]:
    return x.sum(axis=0), (x * x).sum(axis=0)


def moments_and_gates(design: Design, values: npt.NDArray[np.float64], x: npt.NDArray[np.float64],
                      y: npt.NDArray[np.float64], outcome: str) -> tuple[Vector, Vector, dict[str, int]]:
    """What does not depend on β, kept with a centre's design rows for every round: Σx, Σx² of
    the model columns and the counts its gates look at (`outcome` names the 1s of y in them)."""
    sx, sxx = column_moments(x)
    return sx, sxx, {**gate_counts(design, x, y, outcome), **level_counts(design, values)}


class LatticeModel(ModelAnalysis):
    """A model on a public time lattice (Poisson, pooled Cox): its sums depend on the centre's k
    (the tail rule, the coarsening), so `evaluate` keeps the rows and `at_k` computes them once
    the disclosure step knows k; the lattice's step is checked as Kaplan–Meier's."""

    def check(self, spec: ModelSpec, d: Dictionary, grants: Grants) -> None:
        """The models' checks, and the lattice's as for Kaplan–Meier (a 1-day step needs exact times)."""
        super().check(spec, d, grants)
        if not grants.local_admin:
            check_lattice(spec.step_days, grants, f"analysis.{spec.kind}.lattice.step_days")

    def evaluate(self, spec: ModelSpec, rows: DesignRows) -> ModelRaw:
        """The rows themselves: the sums depend on the centre's k, see `at_k`."""
        z = np.zeros(0)
        return ModelRaw(n=rows.n, events=0, sum_x=z, sum_xx=z, gradient=z, information=z, loglik=0.0, extreme=0,
                        rows=rows)
