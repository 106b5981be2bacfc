"""The analysis catalogue at a node: one grouped SQL aggregate per analysis → exact cells.

Each analysis is a single statement over the compiled cohort (COUNT and SUM of record keys,
GROUP BY the analysis' fields), so it stays one pass over the rows at a million tumours; Python
then only touches the groups. Real values become fixed point here, exactly: `int(round(x·2^s))`
per row (Python rounding; Fraction for x², so a decimal's square is not rounded twice). What
leaves this module is exact; disclosure.py decides what of it may be published.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from fractions import Fraction
from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.federation.query.spec import (
    AnalysisSpec,
    CountSpec,
    CrosstabSpec,
    HistogramSpec,
    SummarySpec,
    SurvivalSpec,
)
from oncofed.node.query.cells import EMPTY, Cell, Raw, RawCounts, RawSummary
from oncofed.node.query.compiler import CompiledCohort
from oncofed.node.query.survival import count_survival, survival_statement
from oncofed.node.store.encoding import code_ordinals
from oncofed.node.store.recordkeys import RECORD_KEY_COLUMN
from oncofed.node.store.schema import TUMOURS, quote

Restrict = tuple[str, tuple[Any, ...]] | None
_AGG = f"COUNT(*), SUM({quote(RECORD_KEY_COLUMN)})"


def statement(spec: AnalysisSpec, d: Dictionary, cohort: CompiledCohort,
              restrict: Restrict = None) -> tuple[str, list[Any]]:
    """The one SQL statement of an analysis and its parameters (also used by the benchmark)."""
    if isinstance(spec, SurvivalSpec):
        return survival_statement(spec, d, cohort, restrict)
    where = f"({cohort.where})"
    params = list(cohort.params)
    if restrict is not None:
        where += f" AND ({restrict[0]})"
        params.extend(restrict[1])
    if isinstance(spec, CountSpec):
        cols: tuple[str, ...] = ()
    elif isinstance(spec, CrosstabSpec):
        cols = tuple(quote(f) for f in spec.field_names)
    else:
        cols = (quote(spec.field),)
    select = ", ".join((*cols, _AGG))
    group = f" GROUP BY {', '.join(cols)}" if cols else ""
    # Identifiers come from the dictionary via quote(); every value is a bound parameter.
    return f"SELECT {select} FROM {TUMOURS} WHERE {where}{group}", params  # noqa: S608


def compute(conn: sqlite3.Connection, spec: AnalysisSpec, d: Dictionary, cohort: CompiledCohort,
            restrict: Restrict = None, *, clamp: bool = False) -> Raw:
    """Run the analysis' statement and turn its groups into exact cells. `clamp` (DP permits only)
    clamps a summary's rows to the query's bound; otherwise the bound covers the dictionary range
    (spec.check_bound) and no row is changed."""
    sql, params = statement(spec, d, cohort, restrict)
    rows = conn.execute(sql, params).fetchall()
    if isinstance(spec, CountSpec):
        n, keys = rows[0]
        return RawCounts([Cell(int(n), int(keys or 0))])
    if isinstance(spec, CrosstabSpec):
        return _crosstab(rows, spec, d)
    if isinstance(spec, HistogramSpec):
        return _histogram(rows, spec)
    if isinstance(spec, SummarySpec):
        return _summary(rows, spec, clamp)
    return count_survival(rows, spec, d)


def _level_index(d: Dictionary, name: str) -> dict[Any, int]:
    """Stored value → position among the field's levels (codes in order; NULL → missing)."""
    f = d.fields[name]
    if f.type == "boolean":
        return {0: 0, 1: 1}
    return {ordinal: ordinal - 1 for ordinal in code_ordinals(f).values()}


def _crosstab(rows: list[tuple[Any, ...]], spec: CrosstabSpec, d: Dictionary) -> RawCounts:
    indexes = [_level_index(d, name) for name in spec.field_names]
    sizes = [len(lv) for lv in spec.levels]
    cells = [EMPTY] * spec.n_values
    for row in rows:
        pos = 0
        for value, index, size in zip(row[:-2], indexes, sizes, strict=True):
            pos = pos * size + index.get(value, size - 1)
        cells[pos] = cells[pos] + Cell(int(row[-2]), int(row[-1] or 0))
    return RawCounts(cells)


def bin_of(edges: tuple[int | float, ...], x: float) -> int:
    """Index of the bin [e_i, e_i+1) holding x; values beyond the edges go to the end bins."""
    return min(max(bisect_right(edges, x) - 1, 0), len(edges) - 2)


def _histogram(rows: list[tuple[Any, ...]], spec: HistogramSpec) -> RawCounts:
    n_bins = len(spec.edges) - 1
    cells = [EMPTY] * (n_bins + 1)
    for x, n, keys in rows:
        i = n_bins if x is None else bin_of(spec.edges, x)
        cells[i] = cells[i] + Cell(int(n), int(keys or 0))
    return RawCounts(cells)


def fixed(x: int | float | Fraction, scale_bits: int) -> int:
    """int(round(x · 2^s)), exactly (half to even, as Python's round)."""
    return round(Fraction(x) * (1 << scale_bits))


def _summary(rows: list[tuple[Any, ...]], spec: SummarySpec, clamp: bool = False) -> RawSummary:
    s, bound = spec.scale_bits, Fraction(spec.bound)
    n, missing = EMPTY, EMPTY
    sum_x = sum_xx = 0
    bins = [EMPTY] * spec.n_bins
    for x, count, keys in rows:
        cell = Cell(int(count), int(keys or 0))
        if x is None:
            missing = missing + cell
            continue
        n = n + cell
        v = Fraction(x)
        if clamp:                                       # DP only: rows beyond the bound are clamped
            v = min(max(v, -bound), bound)
        sum_x += cell.n * fixed(v, s)
        sum_xx += cell.n * fixed(v * v, s)
        if bins:
            i = bin_of(spec.edges, x)
            bins[i] = bins[i] + cell
    return RawSummary(n=n, sum_x=sum_x, sum_xx=sum_xx, missing=missing, bins=bins)
