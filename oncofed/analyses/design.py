"""A model's design, written once for logistic and Cox: covariates → columns, rows → a matrix,
and the disclosure gates a centre applies to its own rows before it releases any sum.

Columns (DESIGN §5): a numeric field (integer or decimal, with a dictionary range — the public
bound of every fixed-point component) is one column of its stored values; a categorical field
(code or boolean) is one 0/1 column per level other than its **reference level** (given as
"field=code", else the field's first dictionary code), in dictionary order. Its "(missing)"
level never enters: the model runs over **complete cases** (rows with the outcome and every
covariate present), read so by the store (`Reader.design`).

Gates (DESIGN §5, DataSHIELD's glm checks), at each centre over its own rows, with k the centre's
minimum cell count (a permit can only raise it):

- at least k rows, and no more coefficients than 0.33 × rows;
- no count c with 0 < c < k among the tables the model's sums contain at β = 0: each outcome
  level, each level of every categorical covariate, each dummy's 1s and 0s, every
  dummy × dummy (of different fields) and every dummy × outcome level.

A count of 0 passes, as in the threshold rule for tables (a crosstab releases that same zero):
a centre without events, or without a level, still takes part. A centre that fails contributes
zeros with its `withheld` flag set inside the masked vector — never a decline that would tell
who failed; the fine reason stays in its audit log.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from oncofed.dictionary import Dictionary, Field
from oncofed.query.errors import invalid
from oncofed.query.values import lookup_field

MAX_COLUMNS = 60
P_PER_ROW = 0.33
Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Column:
    """One column of the design: a numeric field, or one level of a categorical field."""

    name: str                 # "age_at_incidence", "stage_summary[regional]"
    field: str
    level: int | None         # the level's position among the field's codes; None: numeric
    bound: float              # |x| ≤ bound (the dictionary's range; 1 for a dummy)
    low: float = 0.0          # the dictionary's range, low ≤ x ≤ high (a dummy: 0 … 1)
    high: float = 1.0

    @property
    def dummy(self) -> bool:
        return self.level is not None


@dataclass(frozen=True)
class Design:
    """The covariates as the query names them, and the columns they make."""

    fields: tuple[str, ...]
    references: tuple[tuple[str, str], ...]   # (categorical field, its reference code)
    columns: tuple[Column, ...]
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (categorical field, its codes)

    @property
    def q(self) -> int:
        return len(self.columns)

    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def parse_design(d: Dictionary, covariates: Sequence[str], references: Sequence[str],
                 allowed: Collection[str] | None, path: str, *, exclude: str = "") -> Design:
    """Covariate fields and "field=code" references → the design's columns (refusing, with the
    offending path, what does not fit the dictionary or the permit)."""
    if len(set(covariates)) != len(covariates):
        raise invalid(f"{path}.covariates", "a covariate is named twice")
    fields: list[Field] = []
    for i, name in enumerate(covariates):
        f = lookup_field(d, name, f"{path}.covariates[{i}]", allowed)
        if f.at_query:
            raise invalid(f"{path}.covariates[{i}]", f"{name!r} is a status derived per query; a model's "
                          "outcome status is a derived event (survival, cutoff, horizon_days)")
        if name == exclude:
            raise invalid(f"{path}.covariates[{i}]", f"{name!r} is the outcome")
        if not f.is_categorical:
            if f.type not in ("integer", "decimal"):
                raise invalid(f"{path}.covariates[{i}]", f"field {name!r} is {f.type}: a covariate is numeric "
                              "(integer, decimal) or categorical (code, boolean)")
            if f.minimum is None or f.maximum is None:
                raise invalid(f"{path}.covariates[{i}]", f"field {name!r} has no dictionary range (the public "
                              "bound of its fixed-point sums)")
        fields.append(f)
    refs: dict[str, str] = {}
    for i, text in enumerate(references):
        name, sep, code = text.partition("=")
        where = f"{path}.reference[{i}]"
        cf = next((x for x in fields if x.name == name), None)
        if not sep or cf is None or not cf.is_categorical:
            raise invalid(where, f"{text!r}: write field=code for a categorical covariate")
        if name in refs:
            raise invalid(where, f"a second reference level for {name!r}")
        if code not in cf.codes:
            raise invalid(where, f"{code!r} is not a code of {name}")
        refs[name] = code
    columns: list[Column] = []
    for f in fields:
        if f.is_categorical:
            codes = list(f.codes)
            ref = refs.setdefault(f.name, codes[0])
            columns.extend(Column(f"{f.name}[{code}]", f.name, pos, 1.0)
                           for pos, code in enumerate(codes) if code != ref)
        else:
            assert f.minimum is not None and f.maximum is not None
            lo, hi = float(f.minimum), float(f.maximum)
            columns.append(Column(f.name, f.name, None, max(abs(lo), abs(hi)), lo, hi))
    if len(columns) > MAX_COLUMNS:
        raise invalid(f"{path}.covariates", f"the design has {len(columns)} columns; at most {MAX_COLUMNS}")
    return Design(tuple(f.name for f in fields), tuple(sorted(refs.items())), tuple(columns),
                  tuple((f.name, tuple(f.codes)) for f in fields if f.is_categorical))


def predictor_range(columns: Sequence[Column], beta: Sequence[float]) -> tuple[float, float]:
    """The least and greatest xᵀβ any row could have, over the dictionary's ranges of the columns
    (β_j x_j is monotone in x_j, so each term's extremes are at its range's ends)."""
    lo = hi = 0.0
    for c, b in zip(columns, beta, strict=True):
        a, z = b * c.low, b * c.high
        lo += min(a, z)
        hi += max(a, z)
    return lo, hi


def matrix(design: Design, values: Matrix) -> Matrix:
    """The design's columns over the rows (`values[:, j]` = covariate field j, as read)."""
    out = np.empty((values.shape[0], design.q), dtype=np.float64)
    index = {name: j for j, name in enumerate(design.fields)}
    for c, col in enumerate(design.columns):
        v = values[:, index[col.field]]
        out[:, c] = v if col.level is None else (v == col.level)
    return out


def level_counts(design: Design, values: Matrix) -> dict[str, int]:
    """Rows per level of every categorical covariate, the reference level included."""
    out: dict[str, int] = {}
    index = {name: j for j, name in enumerate(design.fields)}
    for name, codes in design.categories:
        counts = np.bincount(values[:, index[name]].astype(np.int64), minlength=len(codes))
        for pos, code in enumerate(codes):
            out[f"{name}={code}"] = int(counts[pos])
    return out


def gate_counts(design: Design, x: Matrix, y: npt.NDArray[np.float64], outcome: str) -> dict[str, int]:
    """The counts the gates look at (see the module docstring), by a name for the audit log.
    `y` is the 0/1 outcome (the event indicator for Cox); `outcome` its name."""
    n = x.shape[0]
    ones = int(y.sum())
    out = {f"{outcome}=1": ones, f"{outcome}=0": n - ones}
    dummies = [i for i, c in enumerate(design.columns) if c.dummy]
    if dummies:
        dm = x[:, dummies]
        pos = dm.sum(axis=0)
        both = dm.T @ dm
        with_y = dm.T @ y
        for a, ia in enumerate(dummies):
            ca = design.columns[ia]
            out[f"{ca.name}=1"] = int(pos[a])
            out[f"{ca.name}=0"] = n - int(pos[a])
            out[f"{ca.name}×{outcome}=1"] = int(with_y[a])
            out[f"{ca.name}×{outcome}=0"] = int(pos[a] - with_y[a])
            for b in range(a + 1, len(dummies)):
                cb = design.columns[dummies[b]]
                if cb.field != ca.field:
                    out[f"{ca.name}×{cb.name}"] = int(both[a, b])
    return out


def gate(n: int, p: int, counts: dict[str, int], k: int) -> str:
    """'' when the rows pass the gates at k, else the fine reason (for the local audit log)."""
    if n < k:
        return "fewer than k complete cases"
    if p > math.floor(P_PER_ROW * n):
        return f"{p} coefficients exceed 0.33 × {n} rows"
    small = sorted(name for name, c in counts.items() if 0 < c < k)
    if small:
        return f"{len(small)} count(s) below k: " + ", ".join(small[:8]) + (", …" if len(small) > 8 else "")
    return ""
