"""What an analysis computes before disclosure control: exact counts with their cell keys.

A `Cell` is (count, key): the number of rows and ΣR mod 2^32 over their record keys (see
oncofed.keys.cellkey). Keys add like counts, so a union of disjoint cells (a cumulative count, a
histogram bin made of several values) has the sum of their keys — the key depends only on which
rows are in the cell, never on how the query found them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oncofed.keys.cellkey import RECORD_KEY_MOD


@dataclass(frozen=True)
class Cell:
    """A count of rows and the cell key of those rows."""

    n: int
    key: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.key < RECORD_KEY_MOD:  # SQL hands over the plain sum of record keys
            object.__setattr__(self, "key", self.key % RECORD_KEY_MOD)

    def __add__(self, other: Cell) -> Cell:
        return Cell(self.n + other.n, (self.key + other.key) % RECORD_KEY_MOD)

    def __sub__(self, other: Cell) -> Cell:
        """The rows of self that are not in other (other must be a subset of self)."""
        return Cell(self.n - other.n, (self.key - other.key) % RECORD_KEY_MOD)


EMPTY = Cell(0, 0)


def cumulative(cells: list[Cell]) -> list[Cell]:
    """Running unions: out[j] = cells[0] ∪ … ∪ cells[j]."""
    out, acc = [], EMPTY
    for c in cells:
        acc = acc + c
        out.append(acc)
    return out


@dataclass
class RawCounts:
    """count, crosstab and histogram: one cell per value of the vector."""

    cells: list[Cell]

    @property
    def total(self) -> int:
        return sum(c.n for c in self.cells)


@dataclass
class RawSummary:
    """summary: moments over present values (exact, fixed point) and count cells."""

    n: Cell
    sum_x: int          # Σ round(x · 2^s)
    sum_xx: int         # Σ round(x² · 2^s)
    missing: Cell
    bins: list[Cell]
    top_x: int = 0      # the largest |round(x · 2^s)| of a row: the magnitude perturbation's scale
    top_xx: int = 0     # the largest round(x² · 2^s)

    @property
    def total(self) -> int:
        return self.n.n + self.missing.n


@dataclass
class GroupSurvival:
    """One group's cumulative lattice counts: entered[j], events[j], censored[j] at edge j."""

    entered: list[Cell]
    events: list[Cell]
    censored: list[Cell]
    tail_censored_at: int | None = None

    @property
    def total(self) -> int:
        return self.entered[-1].n if self.entered else 0


@dataclass
class RawSurvival:
    """kaplan_meier and logrank: one GroupSurvival per group of the spec."""

    groups: list[GroupSurvival] = field(default_factory=list)
    excluded: Cell = EMPTY            # the population's rows without a follow-up end

    @property
    def total(self) -> int:
        return sum(g.total for g in self.groups) + self.excluded.n

