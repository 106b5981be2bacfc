"""fedavg — FedAvg training of a binary logistic classifier (McMahan et al. 2017), on Flower (D36).

The ServerApp drives it (oncofed.flower.serverapp); a node answers a round on either plane like any
model round, but the query-plane client does not offer it. Why next to the exact models:
federations that train on Flower expect FedAvg; the exact Newton fit (oncofed.analyses.logistic)
is the reference it is measured against. The model, outcome, design and
gates are the logistic model's (parsed by it, so the two cannot drift apart); what differs is the
round:

- **Node side** (`local`, `local_update`): from the round's weights w (carried as β on the original
  scale, like every model round, so the public bound on the linear predictor, D30, applies as it
  is), each centre runs `local_epochs` epochs of (mini-batch or full-batch) gradient descent on
  the *mean* log-loss of its own complete cases and releases its update Δw = w_local − w. Columns
  are scaled to [−1, 1] by their dictionary ranges — public, the same at every centre, so one
  learning rate suits every covariate and a clip norm means the same whatever a field's unit.
- **Clipping** (FlatClip, as Flower's `compute_clip_model_update`): Δw · min(1, C / ‖Δw‖₂). The
  clipped update lies in a ball of radius C whatever the centre's rows, so changing any patient
  (or all of them) moves it by at most **2C in L2**: that is the sensitivity of the DP release,
  independent of n, so the noise scale tells nothing about the centre.
- **Disclosure**: without DP the update goes out exact, behind the logistic gates (n ≥ k,
  p ≤ 0.33·n, no count in 1 … k−1) and the release ledger, like a Newton round. Under a
  differentially private permit the engine charges the body's ε to the permit before anything
  is computed — once per round — and the update is noised at the centre, before masking, by
  OpenDP's discrete Gaussian (or Laplace: the centre's `dp_mechanism`) on its fixed-point form,
  with δ = min(the request's `dp_delta`, the centre's). n, correct and the log-likelihood are
  not released under DP (each would spend ε of its own): zeros.
- **Metrics** (without DP): n, the expected number of correct classifications at the round's
  weights — Σ p(the row's observed class), a smooth "soft" accuracy — and the log-likelihood at
  those weights, the training log-likelihood the coordinator compares with the pooled exact fit.
  Not the count of rows whose predicted class (η ≥ 0 → 1) is their outcome: that is a step at
  η = 0 for any slope, so two rounds at weights crossing 0 one age apart gave the exact counts of
  that age's cell — one patient's outcome — which D30's bound on the linear predictor exists to
  prevent (it keeps smooth functions of a round a kernel years wide).
- **Coordinator** (`FedAvgFit`): the *unweighted* mean of the centres' updates (weighting by
  each centre's n would put n into a DP release's sensitivity; with centres of similar size the
  two are alike), times a server step (`[fit] server_learning_rate`, 1 by default: plain FedAvg;
  below 1 it averages DP noise over rounds), projected back inside the public bound on the
  linear predictor.

Vector: [n, expected correct · 2^16, log-likelihood · 2^16, Δw · 2^scale_bits (p) | centres, withheld].
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from oncofed.analyses.base import (
    Analysis,
    Block,
    DesignQuestion,
    DesignRows,
    Grants,
    Iteration,
    Reader,
    Release,
    Result,
    Rules,
)
from oncofed.analyses.design import gate, gate_counts, level_counts, matrix
from oncofed.analyses.logistic import ANALYSIS as LOGISTIC
from oncofed.analyses.logistic import outcome
from oncofed.analyses.regression import ModelSpec, fit_keys
from oncofed.dictionary import Dictionary
from oncofed.query.errors import QueryError, invalid
from oncofed.query.refusals import Refusal
from oncofed.query.vector import MAX_SCALE_BITS, fixed
from oncofed.v1 import query_pb2 as pb

KIND = "fedavg"
DEFAULT_ROUNDS = 50             # a run's rounds when its signed body says 0
DEFAULT_LEARNING_RATE = 1.0
MAX_LEARNING_RATE = 100.0
DEFAULT_EPOCHS = 5
MAX_EPOCHS = 100
DEFAULT_SCALE_BITS = 32          # the update's; 40 would leave DP's integer range at 10^7 rows (dp.check_dp_range)
LOGLIK_BITS = 16                 # a sum of log-likelihoods to 1.5e-5 is plenty for a training curve
MAX_DELTA = 1e-3
MAX_CLIP = 16.0
Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FedAvgSpec:
    """One FedAvg round: the logistic model it trains, the local step's settings, the layout."""

    model: ModelSpec
    learning_rate: float
    local_epochs: int
    batch_size: int
    clip_norm: float
    dp_delta: float
    seed: int
    scale_bits: int
    fit_key: bytes
    beta_key: bytes
    kind: str = KIND
    flags: tuple[str, ...] = ("centres", "withheld")

    @property
    def p(self) -> int:
        return self.model.p

    @property
    def round(self) -> int:
        return self.model.round

    @property
    def n_values(self) -> int:
        return 3 + self.p

    @property
    def question(self) -> DesignQuestion:
        return self.model.question

    def fields(self) -> tuple[str, ...]:
        return self.model.fields()

    def coefficient_names(self) -> list[str]:
        return self.model.coefficient_names()


@dataclass
class FedAvgRaw:
    """One centre's exact round (never released as such): its update and metrics."""

    n: int
    correct: float                 # Σ p(observed class): the expected correct classifications
    loglik: float
    update: Vector                 # clipped when the spec says so
    counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------- the public scaling
def scaling(spec: ModelSpec) -> tuple[Vector, Vector]:
    """Midpoints and half-widths of the columns' dictionary ranges (public): z = (x − m) / h."""
    cols = spec.design.columns
    mid = np.array([(c.low + c.high) / 2 for c in cols], dtype=np.float64)
    half = np.array([(c.high - c.low) / 2 or 1.0 for c in cols], dtype=np.float64)
    return mid, half


def to_scaled(spec: ModelSpec, beta: Sequence[float] | Vector) -> Vector:
    """β on the original scale (intercept first) → w on the scaled columns (the same η)."""
    mid, half = scaling(spec)
    b = np.asarray(beta, dtype=np.float64)
    return np.concatenate([[b[0] + float(b[1:] @ mid)], b[1:] * half])


def from_scaled(spec: ModelSpec, w: Sequence[float] | Vector) -> Vector:
    """The inverse of `to_scaled`."""
    mid, half = scaling(spec)
    v = np.asarray(w, dtype=np.float64)
    b = v[1:] / half
    return np.concatenate([[v[0] - float(b @ mid)], b])


# ---------------------------------------------------------------------- the pure local step
def _sigmoid(eta: Vector) -> Vector:
    e = np.exp(-np.abs(eta))
    return np.where(eta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def local_update(z: Vector, y: Vector, w0: Vector, *, learning_rate: float, epochs: int, batch_size: int = 0,
                 rng: np.random.Generator | None = None) -> Vector:
    """Δw after `epochs` epochs of gradient descent on the mean log-loss from w0 (`z` with its
    intercept column). Full batch when `batch_size` is 0 or covers the rows; otherwise each epoch
    visits the rows in the order `rng` draws (seeded by the caller, so a recomputation of a round
    gives the same update)."""
    w = np.array(w0, dtype=np.float64)
    n = len(y)
    if n == 0:
        return np.zeros_like(w)
    full = batch_size <= 0 or batch_size >= n
    for _ in range(epochs):
        if full:
            batches: list[Any] = [slice(None)]
        else:
            assert rng is not None, "mini-batches need the seeded generator"
            order = rng.permutation(n)
            batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        for idx in batches:
            zb, yb = z[idx], y[idx]
            w -= learning_rate * (zb.T @ (_sigmoid(zb @ w) - yb)) / len(yb)
    return w - np.asarray(w0, dtype=np.float64)


def clip(update: Vector, clip_norm: float) -> Vector:
    """FlatClip: the update scaled into the L2 ball of radius `clip_norm` (0: unchanged)."""
    norm = float(np.linalg.norm(update))
    if clip_norm <= 0 or norm <= clip_norm:
        return np.asarray(update, dtype=np.float64)
    return np.asarray(update * (clip_norm / norm), dtype=np.float64)


def in_ball(q: list[int], radius: Fraction) -> list[int]:
    """A fixed-point vector inside the L2 ball of `radius` (exactly, in integers): the clip runs on
    floats, and rounding each coordinate to fixed point can leave the ball by up to √p/2 units,
    beyond the sensitivity 2C the DP release is calibrated to. Outside, scaled towards 0 by
    radius/⌈‖q‖⌉⁺ and truncated, which only shrinks it."""
    norm2 = sum(x * x for x in q)
    if norm2 <= radius * radius:
        return q
    above = math.isqrt(norm2) + 1                   # > ‖q‖
    return [int(Fraction(x) * radius / above) for x in q]


def metrics(z: Vector, y: Vector, w: Vector) -> tuple[float, float]:
    """The expected correct classifications at w, Σ p(observed class) — smooth in w, never the
    count of rows on one side of η = 0 (a step: see the module docstring) — and the log-likelihood."""
    eta = z @ w
    loglik = float(np.sum(y * eta - (np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta))))))
    p = _sigmoid(eta)
    correct = float(np.sum(np.where(y > 0.5, p, 1.0 - p)))
    return correct, loglik


def average(updates: Sequence[Vector]) -> Vector:
    """The coordinator's FedAvg step: the unweighted mean of the centres' updates."""
    return np.asarray(np.mean(np.asarray(updates, dtype=np.float64), axis=0), dtype=np.float64)


# ---------------------------------------------------------------------- the analysis
class FedAvg(Analysis[FedAvgSpec, FedAvgRaw]):
    kind = KIND
    model_name = "logistic classifier trained by FedAvg"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> FedAvgSpec:
        assert isinstance(msg, pb.FedAvg)
        as_logistic = pb.Logistic(outcome=msg.outcome, positive=list(msg.positive), covariates=list(msg.covariates),
                                  reference=list(msg.reference), beta=list(msg.beta),
                                  beta_scale_bits=msg.beta_scale_bits, scale_bits=0, round=msg.round)
        if msg.HasField("event"):
            as_logistic.event.CopyFrom(msg.event)
        model = LOGISTIC.parse(as_logistic, d, allowed, path)
        lr = msg.learning_rate or DEFAULT_LEARNING_RATE
        if not (math.isfinite(lr) and 0 < lr <= MAX_LEARNING_RATE):
            raise invalid(f"{path}.learning_rate", f"a step size above 0 and at most {MAX_LEARNING_RATE:g}")
        epochs = msg.local_epochs or DEFAULT_EPOCHS
        if epochs > MAX_EPOCHS:
            raise invalid(f"{path}.local_epochs", f"at most {MAX_EPOCHS}")
        if not (math.isfinite(msg.clip_norm) and 0 <= msg.clip_norm <= MAX_CLIP):
            raise invalid(f"{path}.clip_norm", f"an L2 bound from 0 (none) to {MAX_CLIP:g}")
        if not (math.isfinite(msg.dp_delta) and 0 <= msg.dp_delta <= MAX_DELTA):
            raise invalid(f"{path}.dp_delta", f"δ from 0 (the centre's) to {MAX_DELTA:g}")
        s = msg.scale_bits or DEFAULT_SCALE_BITS
        if s > MAX_SCALE_BITS:
            raise invalid(f"{path}.scale_bits", f"scale {s} exceeds {MAX_SCALE_BITS} bits")
        fit, beta_key = fit_keys(msg, KIND)
        return FedAvgSpec(model=model, learning_rate=lr, local_epochs=epochs, batch_size=msg.batch_size,
                          clip_norm=msg.clip_norm, dp_delta=msg.dp_delta, seed=msg.seed, scale_bits=s,
                          fit_key=fit, beta_key=beta_key)

    def check(self, spec: FedAvgSpec, d: Dictionary, grants: Grants) -> None:
        """The logistic model's checks (the public bound on the linear predictor, the permit's
        outcome) — but offered under a DP permit, where the update must be clipped: without a
        clip its sensitivity is unbounded."""
        LOGISTIC.check(spec.model, d, replace(grants, dp=False))
        if grants.dp and spec.clip_norm <= 0:
            raise QueryError("INVALID_ARGUMENT", "under a differentially private permit a FedAvg update must be "
                             "clipped: give clip_norm > 0", f"analysis.{KIND}.clip_norm")
        if grants.dp and spec.batch_size > 0:
            # Mini-batches make the local step's work ∝ the rows (epochs · ⌈n/b⌉ steps of Python
            # overhead each, ~ms per patient and round at b = 1): the round's latency, which the
            # coordinator sees per centre, would tell n — what DP keeps from it (the metrics are
            # zeros) — and two cohorts one patient apart its membership, with no ε spent on it.
            # Full batch: `local_epochs` vectorised steps whatever n.
            raise QueryError("INVALID_ARGUMENT", "under a differentially private permit a FedAvg round is "
                             "full-batch: leave batch_size at 0 (the number of mini-batch steps would tell the "
                             "centre's row count)", f"analysis.{KIND}.batch_size")

    def iteration(self, spec: FedAvgSpec) -> Iteration:
        return Iteration(spec.fit_key, spec.beta_key, spec.round, spec.model.beta)

    def component_maxima(self, spec: FedAvgSpec) -> list[int]:
        """Per row, from public bounds: a row's log-likelihood term is at most the linear
        predictor's public spread + log 2; the update is at most C (clipped) or, unclipped,
        the step size times the local steps (each step moves a coordinate by ≤ lr: |z| ≤ 1,
        |y − p| ≤ 1), counted once per row as if it were a sum — loose, never too small."""
        spread = LOGISTIC.predictor_spread(spec.model, spec.model.beta)
        lik = math.ceil((spread + 1.0) * (1 << LOGLIK_BITS))
        if spec.clip_norm > 0:
            top = spec.clip_norm
        else:
            steps = spec.local_epochs * (1 if spec.batch_size <= 0 else math.ceil(1e7 / spec.batch_size))
            top = spec.learning_rate * steps
        return [1, 1 << LOGLIK_BITS, lik, *([math.ceil(top * (1 << spec.scale_bits))] * spec.p)]

    def local(self, spec: FedAvgSpec, reader: Reader, *, clamp: bool) -> FedAvgRaw:
        rows = reader.design(spec.question)
        z, y, counts = self._prepared(spec, rows)
        w0 = to_scaled(spec.model, spec.model.beta)
        rng = np.random.default_rng([spec.seed, spec.round]) if spec.batch_size else None
        delta = local_update(z, y, w0, learning_rate=spec.learning_rate, epochs=spec.local_epochs,
                             batch_size=spec.batch_size, rng=rng)
        correct, loglik = metrics(z, y, w0) if rows.n else (0.0, 0.0)
        return FedAvgRaw(rows.n, correct, loglik, clip(delta, spec.clip_norm), counts)

    @staticmethod
    def _prepared(spec: FedAvgSpec, rows: DesignRows) -> tuple[Vector, Vector, dict[str, int]]:
        """The scaled design with its intercept, the outcome and the gates' counts: β-free, once
        for every round over these rows (the reader caches the rows, D24)."""
        m = spec.model
        key = (KIND, m.design, m.question, m.positive)
        got = rows.prepared.get(key)
        if got is None:
            values = rows.values
            k = len(m.design.fields)
            y = outcome(m, rows)
            x = matrix(m.design, values[:, :k])
            mid, half = scaling(m)
            z = np.hstack([np.ones((rows.n, 1)), (x - mid) / half])
            counts = {**gate_counts(m.design, x, y, "outcome"), **level_counts(m.design, values)}
            got = rows.prepared[key] = (z, np.asarray(y, dtype=np.float64), counts)
        return got

    def total(self, raw: FedAvgRaw) -> int:
        return raw.n

    def exact(self, spec: FedAvgSpec, raw: FedAvgRaw) -> list[int]:
        reals = [raw.correct, raw.loglik, *raw.update]
        if not all(math.isfinite(x) for x in reals):   # the rows decided it: outward only as BUSY
            raise Refusal("internal_error", f"{KIND}: the update is not finite at round {spec.round}'s weights")
        return [raw.n, fixed(raw.correct, LOGLIK_BITS), fixed(raw.loglik, LOGLIK_BITS), *self._update(spec, raw)]

    @staticmethod
    def _update(spec: FedAvgSpec, raw: FedAvgRaw) -> list[int]:
        return [fixed(float(u), spec.scale_bits) for u in raw.update]

    def protect(self, spec: FedAvgSpec, raw: FedAvgRaw, rules: Rules, meta: dict[str, Any]) -> Release:
        out = dict(meta)
        reason = gate(raw.n, spec.p, raw.counts, rules.k)
        if reason:
            return Release([0] * spec.n_values, [1, 1], {**out, "suppressed": f"gate: {reason}",
                                                         "cells_suppressed": spec.n_values})
        return Release(self.exact(spec, raw), [1, 0], {**out, "gates": "passed"})

    def dp_rules(self, spec: FedAvgSpec, rules: Rules) -> Rules:
        """The request's δ where it is stricter than the centre's."""
        delta = min(rules.dp_delta, spec.dp_delta) if spec.dp_delta > 0 else rules.dp_delta
        return replace(rules, dp_delta=delta)

    def dp_blocks(self, spec: FedAvgSpec, raw: FedAvgRaw, rows_per_patient: int) -> list[Block]:
        """One block: the clipped update, whose L2 sensitivity is 2C whatever the rows (L1: 2C√p).
        The metrics are not released under DP (each would need ε of its own)."""
        assert spec.clip_norm > 0, "check() refuses an unclipped update under DP"
        scale = 1 << spec.scale_bits
        l2 = 2 * spec.clip_norm * scale
        l1 = math.ceil(l2 * math.sqrt(spec.p))
        return [Block(in_ball(self._update(spec, raw), Fraction(spec.clip_norm) * scale), l1, l2)]

    def dp_values(self, spec: FedAvgSpec, noisy: list[list[int]]) -> list[int]:
        return [0, 0, 0, *noisy[0]]

    def plausible(self, spec: FedAvgSpec, values: list[int]) -> bool:
        n, correct, loglik = values[0], values[1], values[2]
        return 0 <= correct <= n << LOGLIK_BITS and loglik <= 0

    def finalise(self, spec: FedAvgSpec, values: list[int], flags: dict[str, int]) -> Result:
        """The summed round: n, the expected correct classifications and the log-likelihood at
        the round's weights, and the sum of the centres' updates (the coordinator divides by the
        centres that contributed)."""
        return {"model": self.model_name, "round": spec.round, "coefficients": spec.coefficient_names(),
                "beta": list(spec.model.beta), "n": values[0], "correct": values[1] / (1 << LOGLIK_BITS),
                "loglik": values[2] / (1 << LOGLIK_BITS),
                "update_sum": [v / (1 << spec.scale_bits) for v in values[3:]],
                "withheld_centres": flags["withheld"]}

    def render(self, result: Result) -> list[str]:
        from oncofed.analyses.text import num

        r = result
        acc = r["correct"] / r["n"] if r["n"] else math.nan
        return [f"  {r['model']}: round {r['round']} over {num(r['n'])} rows; log-likelihood {num(r['loglik'], 6)}, "
                f"expected accuracy {acc:.4f} at the round's weights"]


ANALYSIS = FedAvg()
