"""What this centre releases: the `[query]` table of node.toml, read into one object.

A permit can only tighten it (k = the larger of the two). The policy turns into the
disclosure `Rules` an analysis applies and the `Grants` its own checks read, so the analyses
never see node configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from oncofed.analyses import KINDS, Grants, Rules

MODES = ("cell_key", "threshold", "none")


@dataclass(frozen=True)
class NodePolicy:
    """What this centre releases; read from the `[query]` table of node.toml (defaults below)."""

    min_cell_count: int = 10              # the centre's own k; a permit may only raise it
    mode: str = "cell_key"                # cell_key | threshold | none (exact: local admin, tests)
    survival_counts: str = "auto"         # auto (cell_key, or round in threshold mode) | cell_key | round
    survival_table: str = "survival"      # cell-key table of survival series: survival (ptable-survival-v1,
                                          # variance 0.2) | counts (ptable-v1, variance 1); decision D19
    allowed_analyses: tuple[str, ...] = KINDS
    max_values: int = 50_000              # largest answer vector (values)
    min_step_days: int = 30               # coarsest-allowed survival lattice step, unless exact
    allow_exact_survival_times: bool = False  # a 1-day lattice (also needs the permit's exact dates)
    rate_per_minute: int = 30
    rate_per_day: int = 2_000
    dp_mechanism: str = "laplace"         # laplace (ε-DP) | gaussian ((ε, δ)-DP)
    dp_delta: float = 1e-9
    dp_rows_per_patient: int = 2          # DP mode keeps at most this many cohort rows per patient
    max_depth: int = 8
    max_nodes: int = 64
    max_rows: int = 10_000_000            # public maximum rows per centre: overflow and DP range checks use
                                          # this, never the store's actual size
    max_rounds: int = 25                  # distinct coefficient vectors answered per model fit and permit
    fedavg_max_rounds: int = 200          # the same for FedAvg training, which needs many more rounds (D36)
    allow_pooled_cox: bool = False        # answer the pooled-equivalent Cox model (risk-set sums); off: withhold
    model_max_linear_predictor: float = 40.0  # a model round's public bound on |η − c| over the dictionary (D30)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"query mode must be one of {', '.join(MODES)}")
        if self.survival_counts not in ("auto", "cell_key", "round"):
            raise ValueError("survival_counts must be auto, cell_key or round")
        if self.survival_table not in ("survival", "counts"):
            raise ValueError("survival_table must be survival or counts")
        if self.dp_mechanism not in ("laplace", "gaussian"):
            raise ValueError("dp_mechanism must be laplace or gaussian")
        if (self.min_cell_count < 1 or self.dp_rows_per_patient < 1 or self.max_rows < 1 or self.max_rounds < 1
                or self.fedavg_max_rounds < 1):
            raise ValueError("min_cell_count, dp_rows_per_patient, max_rows, max_rounds and fedavg_max_rounds must "
                             "be at least 1")
        if not 1 <= self.model_max_linear_predictor <= 4096:
            raise ValueError("model_max_linear_predictor must be between 1 and 4096")
        unknown = set(self.allowed_analyses) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown analyses in policy: {', '.join(sorted(unknown))}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> NodePolicy:
        """Build from node.toml's `[query]` table; unknown keys are refused, not ignored."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(m) - known)
        if extra:
            raise ValueError(f"unknown [query] setting(s): {', '.join(extra)}")
        kw = dict(m)
        if "allowed_analyses" in kw:
            kw["allowed_analyses"] = tuple(kw["allowed_analyses"])
        return cls(**kw)

    def round_cap(self, kind: str) -> int:
        """Distinct coefficient vectors this centre answers per fit of `kind` and permit: FedAvg
        training has its own cap (its rounds are many small steps, not Newton's handful)."""
        return self.fedavg_max_rounds if kind == "fedavg" else self.max_rounds

    def effective_k(self, permit_k: int | None) -> int:
        """The stricter of the centre's and the permit's minimum cell count."""
        return max(self.min_cell_count, permit_k or 0)

    def survival_method(self) -> str:
        if self.survival_counts != "auto":
            return self.survival_counts
        return "round" if self.mode == "threshold" else "cell_key"

    def rules(self, *, permit_k: int | None, epsilon: float | None) -> Rules:
        """The disclosure rules for one answer: DP when the permit has a budget (ε given)."""
        return Rules(mode="dp" if epsilon is not None else self.mode, k=self.effective_k(permit_k),
                     survival_counts=self.survival_method(), survival_table=self.survival_table,
                     epsilon=epsilon or 0.0,
                     dp_mechanism=self.dp_mechanism, dp_delta=self.dp_delta,
                     rows_per_patient=self.dp_rows_per_patient, pooled_cox=self.allow_pooled_cox)

    def grants(self, *, local_admin: bool, dp: bool, permit_exact_dates: bool,
               outcomes: frozenset[str] | None = None) -> Grants:
        return Grants(local_admin=local_admin, dp=dp,
                      exact_times=permit_exact_dates and self.allow_exact_survival_times,
                      min_step_days=self.min_step_days, outcomes=outcomes,
                      max_linear_predictor=float(self.model_max_linear_predictor))
