"""The disclosure steps every analysis shares, applied to one centre's answer as if it were
published alone (DESIGN §2, §4). Each analysis picks from these in its own `protect`.

With k = max(the centre's minimum cell count, the permit's) — a permit can only tighten:

- a cohort below k gives an all-zero vector with its suppression flags set *inside* the vector
  (never a refusal, which would tell the researcher the cohort is small) — `release` does that
  for every analysis before its own step runs;
- a table (count, crosstab, histogram, a summary's bins): every cell cell-key perturbed; in
  threshold mode a table with any cell 0 < n < k is withheld whole (DataSHIELD's rule);
- cumulative lattice counts: perturbed and made monotone, or rounded to the midpoint of blocks
  of k (OpenSAFELY's rounding).

Cell-key perturbation: published = value + table[value][⌊key · 100⌋] (ptable.py), with the cell key
the sum of the rows' secret record keys — same rows, same value, however the query is phrased.
Magnitudes (a summary's Σx, Σx²) get the ABS cell-key method for magnitude tables: published =
total + round(D · m · u), m the cell's largest single contribution, D = 1/2, u from a published
table indexed by the same cell key (`perturb_magnitude`).
Differential privacy replaces all of this per permit (dp.py); mode "none" (exact) is for the
centre's own admin and for tests, never for a permit holder.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from functools import lru_cache
from typing import Any, TypeVar

from oncofed.analyses import ptable
from oncofed.analyses.base import Analysis, Release, Rules
from oncofed.analyses.cells import EMPTY, Cell

S = TypeVar("S")
R = TypeVar("R")

#: D: a magnitude moves by at most this fraction of its cell's largest single contribution.
MAGNITUDE_DEVIATION = Fraction(1, 2)


def release(analysis: Analysis[S, R], spec: S, raw: R, rules: Rules) -> Release:
    """This centre's release of `raw` under `rules`: exact, DP, or the analysis' own step."""
    n_flags = len(spec.flags)  # type: ignore[attr-defined]
    n_values = spec.n_values   # type: ignore[attr-defined]
    if rules.mode == "none":
        return Release(analysis.exact(spec, raw), [1] + [0] * (n_flags - 1), {"mode": "none"})
    if rules.mode == "dp":
        from oncofed.analyses.dp import dp_release

        return dp_release(analysis, spec, raw, rules)
    total = analysis.total(raw)
    meta: dict[str, Any] = {"mode": rules.mode, "k": rules.k, "rows": total}
    if total < rules.k:
        return Release([0] * n_values, [1] * n_flags,
                       {**meta, "suppressed": "cohort below k", "cells_suppressed": n_values})
    return analysis.protect(spec, raw, rules, meta)


def withheld(spec: Any, meta: dict[str, Any] | None = None) -> Release:
    """Everything withheld, every flag set: what a cohort below k gives (and the release ledger's
    answer when it cannot tell which rows an earlier release rested on)."""
    n_flags = len(spec.flags)
    return Release([0] * spec.n_values, [1] * n_flags, {**(meta or {}), "cells_suppressed": spec.n_values})


def table(cells: list[Cell], rules: Rules, meta: dict[str, Any]) -> Release:
    """A table of counts, flags (centres, suppressed): perturbed, or withheld whole in threshold mode."""
    if rules.mode == "threshold":
        small = sum(1 for c in cells if 0 < c.n < rules.k)
        if small:
            return Release([0] * len(cells), [1, 1], {**meta, "suppressed": f"{small} cell(s) below k",
                                                      "cells_suppressed": len(cells)})
        return Release([c.n for c in cells], [1, 0], meta)
    out = [ptable.perturb(c.n, c.key) for c in cells]
    return Release(out, [1, 0], {**meta, "cells_perturbed": sum(1 for c in cells if c.n > 0)})


def code_tails(bins: list[Cell], k: int) -> list[Cell] | None:
    """Bottom- and top-code bins on the true counts: the lowest bins are merged into the first
    bin at which the cumulative count reaches k, likewise from the top, so no released tail bin
    rests on fewer than k rows (never min or max). None when the bins hold fewer than k rows in
    all (then nothing of them can be released)."""
    if not bins:
        return []
    out = [EMPTY] * len(bins)
    if sum(c.n for c in bins) < k:
        return None
    lo = _reaches(bins, k)
    hi = len(bins) - 1 - _reaches(bins[::-1], k)
    if hi <= lo:                           # the tails overlap: everything in one bin
        merged = EMPTY
        for c in bins:
            merged = merged + c
        out[lo] = merged
        return out
    bottom = top = EMPTY
    for c in bins[:lo + 1]:
        bottom = bottom + c
    for c in bins[hi:]:
        top = top + c
    out[lo] = bottom
    out[lo + 1:hi] = bins[lo + 1:hi]
    out[hi] = top
    return out


def _reaches(bins: list[Cell], k: int) -> int:
    """Index of the first bin at which the cumulative true count reaches k (the bins hold ≥ k)."""
    acc = 0
    for i, c in enumerate(bins):
        acc += c.n
        if acc >= k:
            return i
    raise AssertionError("the bins hold fewer than k rows")


def publish_cumulative(series: list[Cell], k: int, method: str) -> list[int]:
    """A cumulative count series, perturbed or rounded, and kept non-decreasing."""
    if method == "round":
        return [roundmid(c.n, k) for c in series]
    out, top = [], 0
    for c in series:
        top = max(top, ptable.perturb(c.n, c.key))
        out.append(top)
    return out


def roundmid(value: int, k: int) -> int:
    """Round to the midpoint of its block of k: 1…k → k − ⌊k/2⌋, k+1…2k → 2k − ⌊k/2⌋; 0 stays 0."""
    if value <= 0:
        return 0
    return math.ceil(value / k) * k - k // 2


@lru_cache(maxsize=1)
def magnitude_table() -> tuple[tuple[Fraction, ...], ...]:
    """The published magnitude perturbation table: two rows (Σx, Σx²) of 100 entries, one per
    cell-key bucket, each row the grid u_b = (2b − 99)/99 (b = 0 … 99: uniform on [−1, 1], mean
    exactly 0, variance 9999/29403 ≈ 0.340) in a row-specific order fixed by a public hash, so
    the two sums of one cell get different deviations. Public: the secret is the record keys."""
    grid = [Fraction(2 * b - 99, 99) for b in range(ptable.COLUMNS)]
    rows = []
    for r in range(2):
        ranks = {b: hashlib.sha256(f"ptable-magnitude-v1/{r}/{b}".encode()).digest() for b in range(ptable.COLUMNS)}
        rows.append(tuple(grid[i] for i in sorted(ranks, key=ranks.__getitem__)))
    return tuple(rows)


def perturb_magnitude(total: int, largest: int, cell_key: int, row: int) -> int:
    """A magnitude cell (a sum of fixed-point values) as published under cell key:
    total + round(D · largest · u[row][⌊key · 100⌋]), D = MAGNITUDE_DEVIATION. The noise scales
    with the largest single contribution, so it hides any one row's value — an outlier's most of
    all — and a cell keeps its noise whenever its rows are the same (the key is the count cell's).
    The mean Σx/n moves by at most D · max|x| / n (SD ≈ 0.29 · max|x| / n); a sum of values of one
    sign keeps its sign (|noise| ≤ D · largest ≤ |total|/2)."""
    u = magnitude_table()[row][ptable.bucket(cell_key)]
    return total + round(MAGNITUDE_DEVIATION * largest * u)
