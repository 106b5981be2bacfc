"""The shape every answer shares: a fixed-length vector of integers mod 2^128.

Each analysis lays out its own values (oncofed.analyses); what all of them share lives here, so
a node, secure aggregation and the researcher's finaliser agree on it without knowing which
analysis they carry: values first, then flags (the first flag is always `centres`: each answering
centre puts 1 there, so the sum counts them); signed integers in two's complement mod 2^128;
reals in fixed point, `round(x · 2^s)` exactly; and the overflow margin (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Protocol

from oncofed.query.errors import QueryError

MOD = 1 << 128
HALF = 1 << 127
MAX_CENTRES = 64               # the federation's largest participant set, for overflow checks
SAFE_LIMIT = 1 << 126          # no component may be able to reach this (DESIGN §4)
MAX_SCALE_BITS = 64


class Layout(Protocol):
    """What anyone needs to know of an analysis to handle its vector."""

    @property
    def kind(self) -> str: ...
    @property
    def n_values(self) -> int: ...
    @property
    def flags(self) -> tuple[str, ...]: ...


def n_total(layout: Layout) -> int:
    """Length of the whole vector: values then flags."""
    return layout.n_values + len(layout.flags)


def encode(value: int) -> int:
    """A signed integer as an element of Z/2^128 (two's complement)."""
    return value % MOD


def decode(value: int) -> int:
    """An element of Z/2^128 back to a signed integer: v ≥ 2^127 means v − 2^128."""
    value %= MOD
    return value - MOD if value >= HALF else value


def fixed(x: int | float | Fraction, scale_bits: int) -> int:
    """int(round(x · 2^s)), exactly (half to even, as Python's round) — never a float product."""
    return round(Fraction(x) * (1 << scale_bits))


def sum_vectors(vectors: Iterable[Sequence[int]]) -> list[int]:
    """Element-wise sum mod 2^128 (what secure aggregation hands the researcher)."""
    total: list[int] | None = None
    for v in vectors:
        if total is None:
            total = [x % MOD for x in v]
        elif len(v) != len(total):
            raise ValueError("answer vectors differ in length")
        else:
            total = [(a + b) % MOD for a, b in zip(total, v, strict=True)]
    if total is None:
        raise ValueError("no vectors to sum")
    return total


def check_overflow(component_maxima: Sequence[int], max_rows: int) -> None:
    """Refuse before computing when a component could reach 2^126 at the worst case: the
    centre's public maximum row count (policy, never its actual size) times the largest per-row
    contribution, summed over the federation's largest participant set. Names no data."""
    worst = max(component_maxima, default=1) * max(max_rows, 1) * MAX_CENTRES
    if worst >= SAFE_LIMIT:
        raise QueryError("OUT_OF_RANGE",
                         "the fixed-point components could overflow (bound × 2^scale × the centres' "
                         f"maximum rows × {MAX_CENTRES} centres ≥ 2^126); lower scale_bits or the bound",
                         "analysis")
