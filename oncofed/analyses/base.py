"""The shape every analysis has, and the two small protocols it meets the world through.

An analysis is one object (`Analysis`) that knows, for its own kind:

- `parse` — the proto message checked against the dictionary and the permit's fields → its
  **spec**: the vector layout (n_values, flags) fixed by the query and dictionary alone;
- `iteration` — for an iterative model (a regression round), which fit a query belongs to and at
  which coefficients, so the node can cap the rounds it answers and audit every β;
- `check` — what the permit and the centre's policy must grant beyond the contract (`Grants`);
- `local` — the node-side step: exact cells over the cohort, read only through a `Reader` (the
  node implements it with parameterised SQL; an analysis never sees SQL or a connection);
- `protect` / `dp_blocks` + `dp_values` / `exact` — its disclosure step, under `Rules`;
- `finalise` and `render` — the coordinator's side, on the vector summed over centres.

The drivers (the node's engine, the researcher's client, later the Flower apps) call these and
never switch on the analysis' kind; `oncofed.analyses.catalogue` maps the `Analysis` oneof to the
object. A new analysis is one module, one catalogue entry and one proto message.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from oncofed.analyses.cells import Cell
from oncofed.dictionary import Dictionary

Result = dict[str, Any]
MODES = ("cell_key", "threshold", "none", "dp")


class Spec(Protocol):
    """An analysis' layout: enough for anyone to handle its vector (oncofed.query.vector.Layout)."""

    @property
    def kind(self) -> str: ...
    @property
    def n_values(self) -> int: ...
    @property
    def flags(self) -> tuple[str, ...]: ...
    def fields(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class SurvivalQuestion:
    """What a survival analysis asks the reader (outcomes and lattice: DESIGN §4, §6)."""

    outcome: str                 # "OS" or "RFS"
    cutoff: dt.date
    step_days: int
    n_edges: int
    group_field: str | None
    levels: tuple[int, ...] = ()  # the group levels read (positions: codes, then missing); () every one


@dataclass(frozen=True)
class SurvivalRow:
    """One group of the cohort's rows on the lattice: entry interval α, exit interval κ (None:
    beyond the horizon), whether the exit is an event, and the rows' cell. `excluded` rows are
    in the outcome's population but have no follow-up end: they are counted, never placed."""

    group: int | None
    alpha: int
    kappa: int | None
    event: bool
    cell: Cell
    excluded: bool = False


@dataclass(frozen=True)
class DesignQuestion:
    """What a model asks the reader (DESIGN §5): its fields over the complete cases — rows where
    every field is present — and, for a survival outcome, each row's time, event and entry.

    With `horizon_days` > 0 (a derived event status), rows censored before the horizon are left
    out: their status at the horizon is unknown. The reader returns exactly the rows the model
    uses, so what an answer rests on is what its read returns."""

    fields: tuple[str, ...]
    survival: str | None = None      # "OS" or "RFS"
    cutoff: dt.date | None = None
    horizon_days: int = 0


@dataclass(frozen=True)
class DesignRows:
    """The complete cases, one row per tumour: `values[i, j]` is field j (a categorical field's
    level position, a boolean 0/1, a number as stored); with a survival outcome `time` (days
    from the origin, > 0 or 0), `event` (1/0) and `entry` (days of delayed entry, 0 when none)."""

    values: npt.NDArray[np.float64]
    time: npt.NDArray[np.float64] | None = None
    event: npt.NDArray[np.float64] | None = None
    entry: npt.NDArray[np.float64] | None = None
    rowids: npt.NDArray[np.int64] | None = None     # the store's ids of these rows (a release ledger's)
    #: What a model derives from these rows once for all its rounds (sorting, design matrix, the
    #: gates' counts), keyed by the model; the reader may hand the same rows to every round.
    prepared: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class Iteration:
    """One round of an iterative fit: the fit's identity (its model without the coefficients and
    round) and the coefficients asked for (both as canonical bytes), the round and β for the
    audit log."""

    fit: bytes
    beta: bytes
    round: int
    coefficients: tuple[float, ...]


class Reader(Protocol):
    """What a local step may read at a node: exact cells over the query's cohort (compiled,
    and under DP restricted to at most L rows per patient, before the reader is handed over).

    Categorical values come as their level's position among the field's dictionary codes
    (booleans: 0 false, 1 true), None when missing; numeric values as stored numbers.

    Two rules the release ledger relies on (oncofed.node.store.rowsets): which reads a local step
    makes depends on its spec alone, never on the rows; and every row a read returns counts in the
    answer (`total`) — a step that leaves rows out asks the reader not to return them.
    """

    def groups(self, fields: Sequence[str]) -> list[tuple[tuple[Any, ...], Cell]]:
        """One entry per distinct combination of the fields' values (no fields: one entry)."""
        ...

    def survival(self, question: SurvivalQuestion) -> list[SurvivalRow]:
        """The cohort's survival outcomes, derived at query time, grouped on the lattice."""
        ...

    def design(self, question: DesignQuestion) -> DesignRows:
        """The cohort's complete cases for a model, one row per tumour (they never leave the node:
        the model's local step sums over them)."""
        ...


@dataclass(frozen=True)
class Grants:
    """What this request may do beyond the contract, for an analysis' own checks."""

    local_admin: bool = True          # the centre's own admin (no permit)
    dp: bool = False                  # a differentially private permit
    exact_times: bool = False         # a 1-day lattice: the permit's exact dates and the centre's policy
    min_step_days: int = 30           # the coarsest lattice step the centre requires otherwise
    outcomes: frozenset[str] | None = None  # survival outcomes the permit allows ("os", "rfs"); None: every
    max_linear_predictor: float = 40.0    # a model's public bound on |η − c| over the dictionary's ranges (D30)


@dataclass(frozen=True)
class Rules:
    """The centre's disclosure rules for one answer (from its policy and the permit)."""

    mode: str = "cell_key"            # cell_key | threshold | none (exact) | dp
    k: int = 10
    survival_counts: str = "cell_key"  # cell_key | round (OpenSAFELY's midpoint rounding)
    survival_table: str = "survival"   # survival (ptable-survival-v1) | counts (ptable-v1), under cell_key
    epsilon: float = 0.0              # dp only
    dp_mechanism: str = "laplace"
    dp_delta: float = 1e-9
    rows_per_patient: int = 2
    pooled_cox: bool = False          # the centre opts in to the pooled-equivalent Cox model (its policy)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"disclosure mode must be one of {', '.join(MODES)}")


@dataclass
class Release:
    """The values and flags a centre publishes, and what was done to them (for its audit log)."""

    values: list[int]
    flags: list[int]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    """A part of the vector noised together under DP, with its sensitivities over one patient."""

    data: list[int]
    l1: int
    l2: float


S = TypeVar("S")
R = TypeVar("R")


class Analysis(ABC, Generic[S, R]):
    """One analysis, written once for every driver (see the module docstring)."""

    kind: str = ""

    @abstractmethod
    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> S:
        """The proto message → the spec, refusing (QueryError) what does not fit the dictionary."""

    def check(self, spec: S, d: Dictionary, grants: Grants) -> None:
        """Refuse (QueryError) what the permit or the centre's policy does not grant."""

    def iteration(self, spec: S) -> Iteration | None:
        """The fit and round this query is, for an iterative model; None for one-shot analyses."""
        return None

    def component_maxima(self, spec: S) -> list[int]:
        """The largest contribution one row can make to each value (overflow and DP range)."""
        return [1] * spec.n_values  # type: ignore[attr-defined]

    @abstractmethod
    def local(self, spec: S, reader: Reader, *, clamp: bool) -> R:
        """Exact cells over the cohort. `clamp` (DP only) clamps values to the query's bound."""

    @abstractmethod
    def total(self, raw: R) -> int:
        """How many cohort rows the answer rests on (below k everything is withheld)."""

    @abstractmethod
    def exact(self, spec: S, raw: R) -> list[int]:
        """The exact values in the spec's layout (mode "none", and what DP starts from)."""

    @abstractmethod
    def protect(self, spec: S, raw: R, rules: Rules, meta: dict[str, Any]) -> Release:
        """Cell-key or threshold disclosure control on a cohort of at least k rows."""

    def dp_blocks(self, spec: S, raw: R, rows_per_patient: int) -> list[Block]:
        """The vector in blocks with their sensitivities (default: one block of counts)."""
        L = rows_per_patient
        return [Block(self.exact(spec, raw), L, float(L))]

    def dp_rules(self, spec: S, rules: Rules) -> Rules:
        """The rules DP noise is calibrated under: the centre's, or stricter where the signed
        request asks for it (a smaller δ)."""
        return rules

    def dp_values(self, spec: S, noisy: list[list[int]]) -> list[int]:
        """The noisy blocks back in the spec's layout."""
        return noisy[0]

    def plausible(self, spec: S, values: list[int]) -> bool:
        """Whether summed, decoded values can be a sum of honest releases (the client's sanity
        check: secure aggregation gives no integrity, so gross shifts are caught here)."""
        return True

    @abstractmethod
    def finalise(self, spec: S, values: list[int], flags: dict[str, int]) -> Result:
        """The statistic from the decoded, summed values and flags (exact arithmetic)."""

    @abstractmethod
    def render(self, result: Result) -> list[str]:
        """The finalised result as lines of text for people."""

    def table(self, result: Result) -> list[dict[str, Any]]:
        """The finalised result as the rows of one table, for CSV export and `to_pandas`: here its
        scalar figures as one row; an analysis with a natural table (cells, bins, curve points,
        groups) gives that instead."""
        return scalar_row(result)


def scalar_row(result: Result) -> list[dict[str, Any]]:
    """A result's scalar figures (numbers, text, missing) as a table of one row."""
    return [{k: v for k, v in result.items() if isinstance(v, int | float | str | type(None))}]
