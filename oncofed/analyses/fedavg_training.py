"""The FedAvg coordinator's side (D36): the run's rounds as it saw them (`FedAvgRound`), the
training result it returns (`FedAvgResult`) and the fit that steps the weights between rounds
(`FedAvgFit`). The centres' side — the model, its local step, clip and release — is
oncofed.analyses.fedavg; this half runs on the researcher's machine or in the ServerApp."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from oncofed.analyses.base import Result
from oncofed.analyses.fedavg import (
    ANALYSIS,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    KIND,
    FedAvgSpec,
    Vector,
    from_scaled,
)
from oncofed.analyses.logistic import ANALYSIS as LOGISTIC
from oncofed.dictionary import Dictionary
from oncofed.v1 import query_pb2 as pb


# ---------------------------------------------------------------------- the coordinator
@dataclass
class FedAvgRound:
    """One round as the coordinator saw it: metrics at the weights it sent (None under DP)."""

    round: int
    n: int | None
    loglik: float | None
    accuracy: float | None
    update_norm: float
    seconds: float = 0.0


@dataclass
class FedAvgResult:
    """A FedAvg training run: the final weights (original scale), the per-round curve and how it
    ended. `reference_*`: the pooled exact fit beside it, when the caller supplies one."""

    model: str
    outcome: str
    coefficients: list[str]
    beta: list[float]
    rounds: list[FedAvgRound]
    participants: list[str]
    centres: int
    epsilon_per_round: float = 0.0
    dp_delta: float = 0.0
    clip_norm: float = 0.0
    learning_rate: float = DEFAULT_LEARNING_RATE
    local_epochs: int = DEFAULT_EPOCHS
    stopped: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reference_loglik: float | None = None
    reference_accuracy: float | None = None
    kind: str = KIND

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FedAvgResult:
        rounds = [FedAvgRound(**r) for r in doc.get("rounds", [])]
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{**{k: v for k, v in doc.items() if k in names}, "rounds": rounds})

    def rows(self) -> list[dict[str, Any]]:
        """The per-round table (CSV, `to_pandas`), the pooled reference beside each round."""
        out = []
        for r in self.rounds:
            gap = (r.loglik - self.reference_loglik) if r.loglik is not None and self.reference_loglik is not None \
                else None
            out.append({"round": r.round, "n": r.n, "loglik": r.loglik, "accuracy": r.accuracy,
                        "update_norm": r.update_norm, "pooled_loglik": self.reference_loglik,
                        "pooled_accuracy": self.reference_accuracy, "loglik_gap_per_row":
                        gap / r.n if gap is not None and r.n else None})
        return out

    def to_pandas(self) -> Any:
        """The per-round table as a pandas DataFrame indexed by round (pandas needed), as
        ModelResult.to_pandas gives the coefficient table."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows()).set_index("round")

    def summary(self) -> str:
        delta = f"δ ≤ {self.dp_delta:g}" if self.dp_delta else "δ the centres'"
        dp = (f"client-side DP: ε {self.epsilon_per_round:g} per round, {delta}, clip {self.clip_norm:g}"
              if self.epsilon_per_round else "no DP" + (f", updates clipped to {self.clip_norm:g}" if self.clip_norm
                                                        else ""))
        lines = [f"{self.model} — outcome: {self.outcome}",
                 f"{len(self.rounds)} round(s) over {self.centres} centre(s) ({', '.join(self.participants)}); "
                 f"step {self.learning_rate:g}, {self.local_epochs} local epoch(s); {dp}"]
        head = f"{'round':>5}  {'log-likelihood':>18}  {'accuracy':>8}  {'Δ per row vs pooled':>19}  {'‖update‖':>9}"
        lines.append(head)
        for row in self.rows():
            ll = f"{row['loglik']:18.6f}" if row["loglik"] is not None else f"{'(DP: not released)':>18}"
            acc = f"{row['accuracy']:8.4f}" if row["accuracy"] is not None else f"{'—':>8}"
            gap = f"{row['loglik_gap_per_row']:19.3e}" if row["loglik_gap_per_row"] is not None else f"{'—':>19}"
            lines.append(f"{row['round']:>5}  {ll}  {acc}  {gap}  {row['update_norm']:9.3g}")
        if self.reference_loglik is not None:
            acc = f", accuracy {self.reference_accuracy:.4f}" if self.reference_accuracy is not None else ""
            lines.append(f"pooled exact fit: log-likelihood {self.reference_loglik:.6f}{acc}")
        lines.append("weights (original scale): " + ", ".join(f"{n} {b:.6g}" for n, b in
                                                               zip(self.coefficients, self.beta, strict=True)))
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


class FedAvgFit:
    """FedAvg in progress, independent of how rounds travel (as oncofed.analyses.fitting.ModelFit):

        fit = FedAvgFit(template, dictionary, rounds=50, server_learning_rate=1.0)
        while (analysis := fit.next_analysis()) is not None:
            fit.observe(<the round's finalised sum>)
        result = fit.result(participants=…)
    """

    def __init__(self, template: pb.Analysis, dictionary: Dictionary, *, rounds: int,
                 max_linear_predictor: float = 40.0, epsilon: float = 0.0, server_learning_rate: float = 1.0,
                 reference: Sequence[float] = ()) -> None:
        if template.WhichOneof("kind") != KIND:
            raise ValueError("FedAvgFit trains a fedavg model")
        if rounds < 1:
            raise ValueError("a FedAvg run needs at least one round")
        self.template = pb.Analysis()
        self.template.CopyFrom(template)
        msg = self.template.fedavg
        msg.ClearField("beta")
        msg.ClearField("round")
        self.spec: FedAvgSpec = ANALYSIS.parse(msg, dictionary, None, f"analysis.{KIND}")
        msg.beta_scale_bits = self.spec.model.beta_scale_bits
        self.rounds, self.bound, self.epsilon = rounds, max_linear_predictor, epsilon
        self.server_learning_rate = server_learning_rate
        if reference and (len(reference) != self.spec.p or epsilon):
            raise ValueError(f"a reference is {self.spec.p} coefficients, evaluated without DP only")
        # the pooled exact fit's coefficients: one more round after training evaluates them (its
        # update is ignored) — the pooled log-likelihood and accuracy beside the training curve
        self.reference = np.asarray(reference, dtype=np.float64)
        self.reference_loglik: float | None = None
        self.reference_accuracy: float | None = None
        self._evaluating = False
        self.w = np.zeros(self.spec.p)
        self.history: list[FedAvgRound] = []
        self.centres = 0
        self.notes: list[str] = []
        self.stopped = ""

    @property
    def round(self) -> int:
        return len(self.history) + 1

    def beta(self) -> Vector:
        """The current weights on the original scale, as the centres will evaluate them."""
        sb = self.spec.model.beta_scale_bits
        scaled = from_scaled(self.spec.model, self.w) * float(1 << sb)
        return np.asarray(np.round(scaled) / float(1 << sb), dtype=np.float64)

    def next_analysis(self) -> pb.Analysis | None:
        if self.stopped:
            return None
        beta = self.beta()
        if len(self.history) >= self.rounds:
            if not self.reference.size or self.reference_loglik is not None:
                return None
            self._evaluating, beta = True, self.reference
        out = pb.Analysis()
        out.CopyFrom(self.template)
        sb = self.spec.model.beta_scale_bits
        out.fedavg.beta[:] = [round(float(b) * (1 << sb)) for b in beta]
        out.fedavg.round = self.round
        return out

    def observe(self, result: Result, seconds: float = 0.0) -> FedAvgRound:
        """One round's finalised sum: record its metrics, take the averaged step."""
        centres = int(result.get("centres", 0)) - int(result.get("withheld_centres", 0))
        if centres < 1:
            raise ValueError("every centre withheld its update (its gates; each audit log says why)")
        if result.get("withheld_centres"):
            self.notes.append(f"round {result['round']}: {result['withheld_centres']} centre(s) withheld their "
                              "update (disclosure gates): the mean is over the others")
        self.centres = centres
        n = int(result["n"])
        if self._evaluating:                          # the reference round: metrics only
            self._evaluating = False
            self.reference_loglik = float(result["loglik"])
            self.reference_accuracy = float(result["correct"]) / n if n else None
            return FedAvgRound(int(result["round"]), n, self.reference_loglik, self.reference_accuracy, 0.0, seconds)
        step = self.server_learning_rate * np.asarray(result["update_sum"], dtype=np.float64) / centres
        self.w = self._within(self.w + step)
        dp = self.epsilon > 0
        r = FedAvgRound(int(result["round"]), None if dp else n, None if dp else float(result["loglik"]),
                        None if dp or not n else float(result["correct"]) / n, float(np.linalg.norm(step)), seconds)
        self.history.append(r)
        return r

    def stop(self, reason: str) -> None:
        """End the run early (a centre's budget or round cap), keeping the weights so far."""
        self.stopped = reason

    def _within(self, w: Vector) -> Vector:
        """w scaled towards 0 until every row's linear predictor is within the public bound the
        centres enforce (D30): convex, and 0 is inside, so bisection finds the boundary."""
        def spread(v: Vector) -> float:
            return LOGISTIC.predictor_spread(self.spec.model, from_scaled(self.spec.model, v).tolist())

        target = self.bound * (1 - 1e-6)
        if spread(w) <= target:
            return w
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if spread(w * mid) <= target else (lo, mid)
        if "projected" not in " ".join(self.notes):
            self.notes.append("the averaged weights were projected back inside the public bound on the linear "
                              "predictor (D30)")
        return np.asarray(w * lo, dtype=np.float64)

    def result(self, *, participants: Sequence[str] = (), seconds: float = 0.0) -> FedAvgResult:
        s = self.spec
        notes = list(self.notes)
        if self.epsilon:
            notes.append("under DP the centres release only their noised updates: the per-round log-likelihood "
                         "and accuracy are not released (each would spend ε of its own)")
        return FedAvgResult(model=ANALYSIS.model_name, outcome=s.model.outcome_label,
                            coefficients=s.coefficient_names(), beta=[float(b) for b in self.beta()],
                            rounds=list(self.history), participants=list(participants), centres=self.centres,
                            epsilon_per_round=self.epsilon, dp_delta=s.dp_delta, clip_norm=s.clip_norm,
                            learning_rate=s.learning_rate, local_epochs=s.local_epochs, stopped=self.stopped,
                            notes=notes, seconds=seconds, reference_loglik=self.reference_loglik,
                            reference_accuracy=self.reference_accuracy)
