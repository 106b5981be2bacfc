"""The coordinator's side of an iterative model (DESIGN §5): Newton's method on summed rounds.

Transport-neutral: a driver asks `propose()` for the next coefficients (fixed point, as the next
round's query carries them), runs the round however it federates — the query plane's client, a
Flower ServerApp — and hands the summed, finalised round to `observe()`. Nothing here sees a
centre's own figures.

- **Parametrisation.** Internally θ with every non-intercept column centred and scaled by its
  pooled mean and SD (from the first round's Σx, Σx², n): β = Aθ. The convergence rule and
  the checks read θ, so they mean the same whatever a covariate's unit. The result is reported
  on the original scale, or — `standardise` — with numeric covariates per pooled SD around their
  pooled mean (dummies stay 0/1).
- **L2** (`l2` = λ): −λ/2 ‖γ‖² on the reported coefficients γ (intercept not penalised), added
  here once — never per centre.
- **Newton with step-halving**: from β = 0, Δ = I(θ)⁻¹ g(θ); when the (penalised)
  log-likelihood falls, the step is halved (each try one round, at most 10). Stop when the next
  step has max|Δθ| < 1e-10, or the relative change of the log-likelihood is below 1e-12; at most
  50 iterations and the round cap (25 by default, the centres' own default cap).
- **Checks**: a covariate constant over the pooled rows, or whose information is zero (under
  the stratified Cox model: constant within every centre), or collinear ones (rank of the
  normalised information), cannot be estimated; separation — |θ| growing while fitted
  probabilities leave [1e-8, 1 − 1e-8] (logistic) or the information's condition number
  explodes (either model) — stops the fit with a clear error; so do withheld centres (unless
  allowed), centres whose data change between rounds, and non-convergence.
- **The public bound on the linear predictor** (`max_linear_predictor`, the centres' `[query]
  model_max_linear_predictor`; D30): every centre refuses a β that could give some row |η| beyond
  it over the dictionary's ranges, so the coordinator never proposes one — a step that would
  cross the bound is scaled back to it (step-halving then stays inside: the bound is convex), and
  a fit whose next step still points beyond the bound from the boundary stops (`BoundReached`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from oncofed.errors import OncofedError

Array = npt.NDArray[np.float64]


class FitError(OncofedError):
    """The model cannot be fitted as asked; the message says why and what to change."""

    exit_code = 4


class NotEstimable(FitError):
    """A covariate (or a combination) carries no information: it cannot be estimated."""


class Separation(FitError):
    """The outcome is (quasi-)perfectly separated: the coefficients diverge."""


class BoundReached(Separation):
    """The optimum lies on or beyond the public bound on the linear predictor."""


class NotConverged(FitError):
    """Newton's method did not meet its stopping rule within the iteration or round cap."""


@dataclass(frozen=True)
class FitOptions:
    """How the coordinator fits (every default is the one DESIGN §5 states)."""

    l2: float = 0.0
    standardise: bool = False
    max_rounds: int = 25
    max_iterations: int = 50
    beta_tol: float = 1e-10
    loglik_rtol: float = 1e-12
    max_halvings: int = 10
    allow_withheld: bool = False
    max_linear_predictor: float = 40.0    # the centres' default [query] model_max_linear_predictor (D30)
    server_learning_rate: float = 1.0     # FedAvg only: the coordinator's step along the mean update (D36)

    def __post_init__(self) -> None:
        if not (self.l2 >= 0 and np.isfinite(self.l2)):
            raise FitError("l2 must be a finite number ≥ 0")
        if not 1 <= self.max_linear_predictor <= 4096:
            raise FitError("max_linear_predictor must be between 1 and 4096 (the centres' own bound, or below it)")
        if not 0 < self.server_learning_rate <= 10:
            raise FitError("server_learning_rate must be above 0 and at most 10")
        if self.max_rounds < 1 or self.max_iterations < 1:
            raise FitError("max_rounds and max_iterations must be at least 1")


@dataclass(frozen=True)
class RoundSums:
    """One round's pooled sums, decoded (the analysis' finalised result)."""

    n: int
    events: int
    sum_x: Array
    sum_xx: Array
    gradient: Array
    information: Array
    loglik: float
    extreme: int
    withheld: int
    centres: int

    @classmethod
    def from_result(cls, r: dict[str, Any]) -> RoundSums:
        return cls(int(r["n"]), int(r["events"]), np.asarray(r["sum_x"], dtype=np.float64),
                   np.asarray(r["sum_xx"], dtype=np.float64), np.asarray(r["gradient"], dtype=np.float64),
                   np.asarray(r["information"], dtype=np.float64).reshape(len(r["gradient"]), len(r["gradient"])),
                   float(r["loglik"]), int(r["extreme"]), int(r.get("withheld_centres", 0)),
                   int(r.get("centres", 0)))


@dataclass(frozen=True)
class Step:
    """What one round did, for progress displays."""

    round: int
    beta: list[float]
    loglik: float
    change: float | None
    action: str              # start | newton | halved | converged


@dataclass
class Fitted:
    """Where the fit ended: coefficients and covariance on the reported scale, and how."""

    beta: Array
    covariance: Array
    loglik: float
    loglik_zero: float
    penalised_loglik: float
    iterations: int
    rounds: int
    converged: bool
    sums: RoundSums
    notes: list[str] = field(default_factory=list)
    means: Array | None = None
    sds: Array | None = None
    free: npt.NDArray[np.bool_] | None = None      # False: a left-out level (no row has it)


class Newton:
    """Newton's method over federated rounds (see the module docstring)."""

    def __init__(self, names: list[str], *, intercept: bool, dummies: list[bool], options: FitOptions,
                 beta_scale_bits: int, stratified: bool = False, baselines: int = 0,
                 warm_start: Callable[[RoundSums], list[float] | None] | None = None,
                 spread: Callable[[Array], float] | None = None) -> None:
        self.names, self.intercept, self.options, self.stratified = names, intercept, options, stratified
        # the leading coefficients that act as intercepts: logistic's one, or Poisson's baselines
        # (one per interval; every person-period has exactly one, so together they are an intercept)
        self.off = (1 if intercept else 0) + baselines
        self.warm = warm_start
        # β → the largest |η − c| any row could have over the dictionary's ranges (None: unbounded)
        self.spread = spread
        self.bound = options.max_linear_predictor
        self.dummies = np.asarray(dummies, dtype=bool)
        self.p, self.sb = len(names), beta_scale_bits
        self.rounds = self.iterations = self.halvings = 0
        self.first: RoundSums | None = None
        self.pending = np.zeros(self.p)
        self.current: tuple[Array, RoundSums, float] | None = None
        self.step = np.zeros(self.p)
        self.sizes: list[float] = []
        self.done = False
        self.converged = False
        self.notes: list[str] = []
        self.condition = 1.0
        self.loglik_zero = 0.0
        eye: Array = np.eye(self.p)
        self.A, self.T, self.Q, self.A_inv = eye, eye, eye, eye
        self.means: Array | None = None
        self.sds: Array | None = None
        self.free = np.ones(self.p, dtype=bool)

    # ------------------------------------------------------------------ the driver's side
    def propose(self) -> list[int] | None:
        """The next round's coefficients as round(β · 2^s), or None when the fit is done."""
        if self.done:
            return None
        if self.rounds >= self.options.max_rounds:
            raise NotConverged(f"no convergence within {self.options.max_rounds} rounds (the round cap); "
                               "the last step changed θ by " + f"{np.abs(self.step).max():.3g}")
        beta = self._beta(self.pending) if self.first is not None else np.zeros(self.p)
        return [round(float(b) * (1 << self.sb)) for b in beta]

    def observe(self, sums: RoundSums) -> Step:
        """Take one round's pooled sums at the proposed coefficients."""
        self.rounds += 1
        self._consistent(sums)
        if self.first is None:
            self._start(sums)
        theta = self.pending
        g, info, pll = self._at(theta, sums)
        if self.current is not None and pll < self.current[2] - 1e-12 * max(1.0, abs(self.current[2])):
            self.halvings += 1
            if self.halvings > self.options.max_halvings:
                raise NotConverged(f"step-halving failed {self.options.max_halvings} times in a row: the "
                                   "log-likelihood does not rise along the Newton direction")
            self.pending = self.current[0] + self.step / 2**self.halvings
            self.pending = self._quantised(self.pending)
            return Step(self.rounds, self._reported(theta).tolist(), sums.loglik, None, "halved")
        previous = self.current
        self.current = (theta, sums, pll)
        if previous is not None:
            self.iterations += 1
        self.halvings = 0
        self.sizes.append(float(np.abs(theta).max()) if self.p else 0.0)
        raw = self._solve(info, g, theta)
        size = float(np.abs(raw).max()) if self.p else 0.0
        self.step, clipped = self._within(theta, raw)
        if clipped and size >= self.options.beta_tol and self._spread(theta) >= self.bound * (1 - 1e-4):
            order = np.argsort(-np.abs(theta[self.off:])) + self.off
            worst = ", ".join(self.names[i] for i in order[:3] if abs(theta[i]) > 1e-12)
            raise BoundReached("a coefficient reaches the public bound on the linear predictor: separation, or a "
                               "covariate whose dictionary range is far wider than its data — narrow its range in "
                               "the extension, or store it standardised (largest: " + (worst or "none") +
                               f"; |xᵀβ| ≤ {self.bound:g} over the dictionary's ranges: [fit] max_linear_predictor, "
                               "the centres' [query] model_max_linear_predictor)")
        self._separation(sums)
        rel = abs(pll - previous[2]) / max(abs(previous[2]), 1e-300) if previous is not None else None
        if size < self.options.beta_tol or (rel is not None and rel < self.options.loglik_rtol):
            self.done = self.converged = True
            if sums.extreme:
                self.notes.append(f"{sums.extreme} centre(s) have rows with fitted probabilities within 1e-8 of 0 "
                                  "or 1")
            return Step(self.rounds, self._reported(theta).tolist(), sums.loglik, size, "converged")
        if self.iterations >= self.options.max_iterations:
            raise NotConverged(f"no convergence within {self.options.max_iterations} iterations")
        warm = self.warm(sums) if previous is None and self.warm is not None else None
        if warm is not None:                          # a closed-form start from round 1's sums
            target = self.A_inv @ np.asarray(warm, dtype=np.float64)
            self.pending = self._quantised(theta + self._within(theta, target - theta)[0])
        else:
            self.pending = self._quantised(theta + self.step)
        return Step(self.rounds, self._reported(theta).tolist(), sums.loglik, size,
                    "start" if previous is None else "newton")

    def fitted(self) -> Fitted:
        """The fit at its last accepted coefficients (call when `propose()` returned None)."""
        assert self.current is not None and self.first is not None
        theta, sums, pll = self.current
        _, info, _ = self._at(theta, sums)
        cov_theta = np.linalg.inv(info)
        cov_theta[~self.free, :] = 0.0
        cov_theta[:, ~self.free] = 0.0
        m = self.T @ self.A
        cov = m @ cov_theta @ m.T
        return Fitted(beta=self._reported(theta), covariance=cov, loglik=sums.loglik, loglik_zero=self.loglik_zero,
                      penalised_loglik=pll, iterations=self.iterations, rounds=self.rounds, converged=self.converged,
                      sums=sums, notes=list(self.notes), means=self.means, sds=self.sds, free=self.free.copy())

    # ------------------------------------------------------------------ internals
    def _start(self, sums: RoundSums) -> None:
        """Pooled means and SDs → the parametrisations; the rank check at β = 0."""
        self.first = sums
        self.loglik_zero = sums.loglik
        n = sums.n
        if n < 2:
            raise FitError("the pooled cohort has fewer than two complete cases")
        if sums.events == 0 or (self.intercept and sums.events == n):
            raise FitError("no events in the pooled cohort: there is nothing to fit" if sums.events == 0 else
                           "every row of the pooled cohort is an event: the outcome has one level")
        off = self.off
        cols = self.names[off:]
        # A level no row has anywhere is left out (as a formula would never make its column);
        # every other constant column is an error the researcher must see.
        empty = self.dummies & (sums.sum_x == 0)
        self.free[off:] = ~empty
        self.notes.extend(f"{c} left out: no row of the pooled cohort has this level"
                          for c, e in zip(cols, empty, strict=True) if e)
        means = np.where(empty, 0.0, sums.sum_x / n)
        var = np.maximum((sums.sum_xx - n * means**2) / (n - 1), 0.0)
        sds = np.where(empty, 1.0, np.sqrt(var))
        top = max(1.0, float(np.max(sds, initial=0.0)))
        constant = [c for c, sd in zip(cols, sds, strict=True) if not sd > 1e-12 * top]
        if constant:
            raise NotEstimable(f"cannot be estimated: {', '.join(constant)} "
                               f"{'is' if len(constant) == 1 else 'are'} constant over the pooled cohort")
        self.means, self.sds = means, sds
        a = np.eye(self.p)                            # β = A θ
        a[off:, off:] = np.diag(1.0 / sds)
        a[:off, off:] = -means / sds                  # every intercept-like row absorbs the centring
        t = np.eye(self.p)                            # γ = T β, the reported scale
        if self.options.standardise:
            numeric = ~self.dummies
            scale = np.where(numeric, sds, 1.0)
            t[off:, off:] = np.diag(scale)
            t[:off, off:] = np.where(numeric, means, 0.0)
        self.A, self.T = a, t
        drop = np.eye(self.p)[off:]                  # the intercept(s) are not penalised
        pa = drop @ t @ a
        self.Q = pa.T @ pa
        self.A_inv = np.asarray(np.linalg.inv(a), dtype=np.float64)
        self._rank(sums)

    def _rank(self, sums: RoundSums) -> None:
        free = self.free
        names = [n for n, f in zip(self.names, free, strict=True) if f]
        info = (self.A.T @ sums.information @ self.A)[np.ix_(free, free)]
        diag = np.diag(info)
        top = float(diag.max()) if diag.size else 0.0
        dead = [n for n, v in zip(names, diag, strict=True) if not v > 1e-10 * top]
        if dead:
            where = " (under the model stratified by centre: constant within every centre)" if self.stratified else ""
            raise NotEstimable(f"cannot be estimated: {', '.join(dead)} carries no information{where}")
        d = 1.0 / np.sqrt(diag)
        eig, vec = np.linalg.eigh(info * d[:, None] * d[None, :])
        if eig[0] < 1e-10:
            involved = [n for n, v in zip(names, vec[:, 0], strict=True) if abs(v) > 0.2]
            raise NotEstimable("cannot be estimated: the covariates are collinear (" + ", ".join(involved) + ")")

    def _at(self, theta: Array, sums: RoundSums) -> tuple[Array, Array, float]:
        lam = self.options.l2
        g = self.A.T @ sums.gradient - lam * (self.Q @ theta)
        info = self.A.T @ sums.information @ self.A + lam * self.Q
        fixed = ~self.free                            # left-out levels stay at 0
        g[fixed] = 0.0
        info[fixed, :] = 0.0
        info[:, fixed] = 0.0
        info[fixed, fixed] = 1.0
        return g, info, sums.loglik - 0.5 * lam * float(theta @ self.Q @ theta)

    def _solve(self, info: Array, g: Array, theta: Array) -> Array:
        d = np.sqrt(np.maximum(np.diag(info), 1e-300))
        normal = info / d[:, None] / d[None, :]
        self.condition = float(np.linalg.cond(normal))
        if not np.isfinite(self.condition) or self.condition > 1e12:
            if len(self.sizes) >= 2 and self.sizes[-1] > self.sizes[-2]:
                raise Separation(self._separation_message(theta))
            raise NotEstimable("cannot be estimated: the information matrix is singular at the current "
                               f"coefficients (condition number {self.condition:.3g})")
        return np.asarray(np.linalg.solve(info, g), dtype=np.float64)

    def _separation(self, sums: RoundSums) -> None:
        growing = len(self.sizes) >= 3 and self.sizes[-1] > self.sizes[-2] > self.sizes[-3]
        if growing and (sums.extreme > 0 or self.condition > 1e8):
            assert self.current is not None
            raise Separation(self._separation_message(self.current[0]))

    def _separation_message(self, theta: Array) -> str:
        order = np.argsort(-np.abs(theta))
        worst = [self.names[i] for i in order[:3] if abs(theta[i]) > 1.0]
        return ("separation: the coefficients diverge (the outcome is perfectly or quasi-perfectly predicted"
                + (f" by {', '.join(worst)}" if worst else "") + "); drop or merge the covariate's levels, "
                "or add an L2 penalty")

    def _consistent(self, sums: RoundSums) -> None:
        if sums.withheld and not self.options.allow_withheld:
            raise FitError(f"{sums.withheld} of {sums.centres} centre(s) withheld their sums: the model's disclosure "
                           "gates (DESIGN §5) failed there, and each centre's audit log says why; no model is "
                           "fitted (drop covariates or merge levels, or set allow_withheld to fit over the others)")
        f = self.first
        if f is None:
            return
        same = (sums.n, sums.events, sums.centres, sums.withheld) == (f.n, f.events, f.centres, f.withheld)
        if not (same and np.array_equal(sums.sum_x, f.sum_x) and np.array_equal(sums.sum_xx, f.sum_xx)):
            raise FitError("the centres' rows changed between rounds (a new ingest?): start the fit again")

    def _spread(self, theta: Array) -> float:
        return self.spread(self._beta(theta)) if self.spread is not None else 0.0

    def _within(self, theta: Array, step: Array) -> tuple[Array, bool]:
        """The step, scaled back so that θ + step keeps within the public bound (θ itself is
        within: the centres answered it), and whether it had to be. The bound is convex in θ,
        so bisection finds the boundary; the margin absorbs the fixed-point rounding of β."""
        if self.spread is None:
            return step, False
        target = self.bound * (1 - 1e-6)
        if self._spread(theta + step) <= target:
            return step, False
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if self._spread(theta + mid * step) <= target:
                lo = mid
            else:
                hi = mid
        return step * lo, True

    def _beta(self, theta: Array) -> Array:
        return np.asarray(self.A @ theta, dtype=np.float64)

    def _quantised(self, theta: Array) -> Array:
        """θ moved onto the coefficients the centres will actually evaluate."""
        scale = float(1 << self.sb)
        beta = np.round(self._beta(theta) * scale) / scale
        return np.asarray(self.A_inv @ beta, dtype=np.float64)

    def _reported(self, theta: Array) -> Array:
        return np.asarray(self.T @ self.A @ theta, dtype=np.float64)
