"""The published cell-key perturbation table (ABS/ONS method), shipped as data.

`data/ptable-v1.csv` has one row per cell value v = 0 … 63 and 100 columns, one per cell-key
bucket b = ⌊key · 100⌋ (key = cell key in [0, 1)); the entry is the deviation added to a cell of
value v whose key falls in bucket b. Cells of 64 or more use row 32 + (v mod 32). Each row is a
fixed multiset in a row-specific order, so the table satisfies, exactly over a uniform key:

- 0 stays 0 (row 0 is all zeros) and no cell becomes negative (v + deviation ≥ 0);
- zero mean and variance 1 for every v ≥ 1; maximum deviation D = 2:
  v = 1:  −1 ×40, 0 ×30, +1 ×20, +2 ×10;   v ≥ 2:  −2 ×5, −1 ×30, 0 ×30, +1 ×30, +2 ×5.

The table is public: its protection comes from the secret record keys, not from the table.
`generate()` documents how the file was made; the file, not this function, is authoritative.

`data/ptable-survival-v1.csv` is the survival series' table (decision D19): same shape and
rules, smaller noise — maximum deviation 1, variance 0.2 for every v ≥ 1
(−1 ×10, 0 ×80, +1 ×10; v = 1 may become 0). A node policy may choose the counts table instead.
"""

from __future__ import annotations

import csv
import functools
import hashlib
from collections.abc import Callable
from functools import lru_cache
from importlib import resources

from oncofed.keys.cellkey import RECORD_KEY_BITS

TABLE_FILE = "ptable-v1.csv"
SURVIVAL_TABLE_FILE = "ptable-survival-v1.csv"
ROWS = 64
COLUMNS = 100
MAX_DEVIATION = 2
SURVIVAL_MAX_DEVIATION = 1
SURVIVAL_VARIANCE_PERCENT = 20          # Σ deviation² over the 100 columns
_ROW1 = (-1,) * 40 + (0,) * 30 + (1,) * 20 + (2,) * 10
_ROWN = (-2,) * 5 + (-1,) * 30 + (0,) * 30 + (1,) * 30 + (2,) * 5
_SURVIVAL_ROW = (-1,) * 10 + (0,) * 80 + (1,) * 10


def generate() -> list[list[int]]:
    """How the shipped table was made: each row's multiset ordered by a public hash."""
    return _generate("ptable-v1", lambda v: _ROW1 if v == 1 else _ROWN)


def generate_survival() -> list[list[int]]:
    """How the shipped survival table was made (the same construction, its own label)."""
    return _generate("ptable-survival-v1", lambda v: _SURVIVAL_ROW)


def _generate(label: str, base_of: Callable[[int], tuple[int, ...]]) -> list[list[int]]:
    table = [[0] * COLUMNS]
    for v in range(1, ROWS):
        base = base_of(v)
        order = sorted(range(COLUMNS), key=functools.partial(_rank, label, v))
        table.append([base[i] for i in order])
    return table


def _rank(label: str, v: int, b: int) -> bytes:
    return hashlib.sha256(f"{label}/{v}/{b}".encode()).digest()


def write(path: str, rows: list[list[int]] | None = None) -> None:
    """Write a table as CSV (value, then the 100 deviations); the counts table by default."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["value", *(f"b{b}" for b in range(COLUMNS))])
        for v, row in enumerate(rows if rows is not None else generate()):
            w.writerow([v, *row])


@lru_cache(maxsize=1)
def table() -> tuple[tuple[int, ...], ...]:
    """The shipped table, checked on load (a damaged table must not perturb anything)."""
    out = _load(TABLE_FILE)
    check(out)
    return out


@lru_cache(maxsize=1)
def survival_table() -> tuple[tuple[int, ...], ...]:
    """The shipped survival table, checked on load."""
    out = _load(SURVIVAL_TABLE_FILE)
    check(out, max_deviation=SURVIVAL_MAX_DEVIATION, variance_percent=SURVIVAL_VARIANCE_PERCENT)
    return out


def _load(name: str) -> tuple[tuple[int, ...], ...]:
    text = resources.files("oncofed.analyses").joinpath("data", name).read_text("utf-8")
    rows = list(csv.reader(text.splitlines()))[1:]
    return tuple(tuple(int(x) for x in row[1:]) for row in rows)


def check(t: tuple[tuple[int, ...], ...], *, max_deviation: int = MAX_DEVIATION,
          variance_percent: int = COLUMNS) -> None:
    """Refuse a table that breaks any published property (by default, the counts table's)."""
    if len(t) != ROWS or any(len(r) != COLUMNS for r in t):
        raise ValueError("perturbation table has the wrong shape")
    if any(t[0]):
        raise ValueError("perturbation table: 0 must stay 0")
    for v, row in enumerate(t):
        if any(abs(x) > max_deviation or v + x < 0 for x in row):
            raise ValueError(f"perturbation table row {v}: deviation beyond ±{max_deviation} or negative cell")
        if v and (sum(row) != 0 or sum(x * x for x in row) != variance_percent):
            raise ValueError(f"perturbation table row {v}: mean must be 0 and variance "
                             f"{variance_percent / COLUMNS:g}")


def row_for(value: int) -> int:
    return value if value < ROWS else 32 + value % 32


def bucket(cell_key: int) -> int:
    """Column of a cell key ΣR mod 2^32 (i.e. ⌊(Σr mod 1) · 100⌋)."""
    return ((cell_key % (1 << RECORD_KEY_BITS)) * COLUMNS) >> RECORD_KEY_BITS


def perturb(value: int, cell_key: int) -> int:
    """The published value of a cell: value + table[row(value)][bucket(key)] (never negative)."""
    if value <= 0:
        return 0
    return value + table()[row_for(value)][bucket(cell_key)]


def perturb_survival(value: int, cell_key: int) -> int:
    """A survival series' cell under the survival table (never negative, 0 stays 0)."""
    if value <= 0:
        return 0
    return value + survival_table()[row_for(value)][bucket(cell_key)]
