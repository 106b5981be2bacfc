"""How dictionary values are encoded in the store, and back.

Every categorical field is stored as its 1-based ordinal in the dictionary's code list, every date
as days since 1970-01-01, topography as site*10 + subsite (C50.4 -> 504), morphology as its
integer. Integers make validation and encoding a single lookup per cell at ingest, make survival
times exact integer subtraction, and keep the store compact; the store is tied to one dictionary
version, so ordinals are stable. `tumours_labelled` (a view) shows the readable values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import lru_cache

from oncofed.dictionary import Dictionary, Field, valid_topographies

EPOCH = dt.date(1970, 1, 1)
# Bound in place of None: Python's sqlite3 binds None through its slow adapter protocol, so
# missing integers travel as this value and NULLIF() turns them into NULL inside SQLite.
MISSING = -(2**62)


def day_number(d: dt.date) -> int:
    return (d - EPOCH).days


def date_of(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=day)


def iso_of(day: int) -> str:
    return date_of(day).isoformat()


@lru_cache(maxsize=8)
def date_table(first: str, last: str) -> dict[str, int]:
    """Every valid ISO date between first and last (inclusive) -> its day number.

    A lookup in this table checks the format, the calendar and the range at once.
    """
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    table: dict[str, int] = {}
    day = day_number(start)
    d = start
    one = dt.timedelta(days=1)
    while d <= end:
        table[d.isoformat()] = day
        d += one
        day += 1
    return table


def topography_code(code: str) -> int:
    """'C50.4' -> 504."""
    return int(code[1:3]) * 10 + int(code[4])


def topography_text(value: int) -> str:
    return f"C{value // 10:02d}.{value % 10}"


def code_ordinals(f: Field) -> dict[str, int]:
    """Code value -> 1-based ordinal in the dictionary's order."""
    return {code: i for i, code in enumerate(f.codes, start=1)}


def code_labels(f: Field) -> dict[int, str]:
    return {i: code for i, code in enumerate(f.codes, start=1)}


def value_table(f: Field, d: Dictionary, today: dt.date) -> Mapping[str, int] | None:
    """The lookup table that validates and encodes one input column, or None when the field
    needs a parser (decimals, identifiers) rather than a finite table."""
    if f.type == "boolean":
        return {"0": 0, "1": 1}
    if f.type == "code":
        return code_ordinals(f)
    if f.type == "date":
        first = str(f.minimum or d.earliest_date)
        last = today.isoformat() if f.maximum in (None, "today") else str(f.maximum)
        return date_table(first, last)
    if f.type == "topography":
        return {code: topography_code(code) for code in valid_topographies(d)}
    if f.type in {"integer", "morphology"}:
        lo, hi = int(f.minimum if f.minimum is not None else 0), int(f.maximum if f.maximum is not None else 10**6)
        if hi - lo <= 200_000:
            return {str(i): i for i in range(lo, hi + 1)}
    return None


def decode(f: Field, value: object) -> object:
    """Store value -> the text a person or the CSV would use."""
    if value is None:
        return None
    if f.type == "code":
        return code_labels(f).get(int(value))  # type: ignore[call-overload]
    if f.type == "date":
        return iso_of(int(value))  # type: ignore[call-overload]
    if f.type == "topography":
        return topography_text(int(value))  # type: ignore[call-overload]
    if f.type == "morphology":
        return f"{int(value):04d}"  # type: ignore[call-overload]
    return value
