"""Reading the values a query writes as text, checked against the data dictionary.

Both sides use these: the researcher's client (to refuse a bad query before it is signed) and
every node (which trusts nothing it receives). Values stay text on the wire so they are exact and
so the dictionary, not the sender, decides what they mean.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Collection
from functools import lru_cache

from oncofed.dictionary import Dictionary, Field
from oncofed.query.errors import invalid

_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_INT = re.compile(r"^-?\d{1,18}$")
_DEC = re.compile(r"^-?\d{1,18}(\.\d{1,12})?$")
_MORPH = re.compile(r"^\d{4}$")
_ICD10 = re.compile(r"^[A-Z]\d\d(\.\d)?$")
TOPOGRAPHY_PREFIX = re.compile(r"^C\d{1,2}$|^C\d\d\.\d$")
MORPHOLOGY_PREFIX = re.compile(r"^\d{1,4}$")
ICD10_PREFIX = re.compile(r"^[A-Z](\d(\d(\.\d?)?)?)?$")
QUERYABLE_TYPES = frozenset({"code", "boolean", "integer", "decimal", "date", "topography", "morphology", "icd10"})
NUMERIC_TYPES = frozenset({"integer", "decimal"})
_BOOL = {"0": 0, "1": 1, "false": 0, "true": 1}


def lookup_field(d: Dictionary, name: str, path: str, allowed: Collection[str] | None) -> Field:
    """The stored, queryable dictionary field `name`, or a refusal naming `path`.

    `allowed` is the permit's field list (None: the centre's own admin, who may use every field).
    Identifiers are never queryable: a predicate on a pseudonym would single out one patient.
    A field derived at query time (a status at the query's cutoff) is queryable like a stored one.
    """
    f = d.fields.get(name) if name else None
    if f is None or not f.queryable:
        raise invalid(path, f"unknown field {name!r} (not a stored field of {d.label()})")
    if f.type not in QUERYABLE_TYPES:
        raise invalid(path, f"field {name!r} is an identifier and cannot be queried")
    if allowed is not None and name not in allowed:
        raise invalid(path, f"field {name!r} is not allowed by the permit")
    return f


def period(text: str, path: str, *, exact_dates: bool) -> tuple[dt.date, dt.date]:
    """A date written at year, month (or, when allowed, day) precision → its first and last day."""
    try:
        if m := _YEAR.match(text):
            y = int(m[1])
            return dt.date(y, 1, 1), dt.date(y, 12, 31)
        if m := _MONTH.match(text):
            y, mo = int(m[1]), int(m[2])
            return dt.date(y, mo, 1), dt.date(y, mo, calendar.monthrange(y, mo)[1])
        if m := _DAY.match(text):
            if not exact_dates:
                raise invalid(path, f"date {text!r} is written to the day; queries use months "
                              "(YYYY-MM) unless exact_dates is set and the permit allows days")
            day = dt.date(int(m[1]), int(m[2]), int(m[3]))
            return day, day
    except (ValueError, calendar.IllegalMonthError):
        raise invalid(path, f"{text!r} is not a calendar date") from None
    raise invalid(path, f"{text!r} is not a date (write YYYY-MM)")


def exact_day(text: str, path: str) -> dt.date:
    """A full date YYYY-MM-DD (a survival cutoff: public, so day precision is fine)."""
    if not _DAY.match(text):
        raise invalid(path, f"{text!r} is not a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise invalid(path, f"{text!r} is not a calendar date") from None


def integer(f: Field, text: str, path: str, *, check_range: bool) -> int:
    if not _INT.match(text):
        raise invalid(path, f"{text!r} is not an integer ({f.name} is {f.type})")
    value = int(text)
    if check_range:
        lo, hi = f.minimum, f.maximum
        if (lo is not None and value < int(lo)) or (hi is not None and value > int(hi)):
            raise invalid(path, f"{value} is outside {f.name}'s range {lo}–{hi}")
    return value


def decimal(f: Field, text: str, path: str) -> float:
    if not _DEC.match(text):
        raise invalid(path, f"{text!r} is not a decimal number ({f.name} is {f.type})")
    value = float(text)
    if not math.isfinite(value):
        raise invalid(path, f"{text!r} is not a finite number")
    return value


def code_value(f: Field, text: str, path: str) -> str:
    """A code of a categorical field, checked against the dictionary's code list."""
    if f.type == "boolean":
        if text.lower() not in _BOOL:
            raise invalid(path, f"{text!r} is not a boolean for {f.name} (write 0 or 1)")
        return str(_BOOL[text.lower()])
    if text not in f.codes:
        shown = ", ".join(list(f.codes)[:12]) + (", …" if len(f.codes) > 12 else "")
        raise invalid(path, f"{text!r} is not a code of {f.name} (codes: {shown})")
    return text


def topography(d: Dictionary, text: str, path: str) -> str:
    if text not in _topographies(d):
        raise invalid(path, f"{text!r} is not an ICD-O-3 topography code (write like C50.4)")
    return text


def morphology(f: Field, text: str, path: str) -> int:
    if not _MORPH.match(text):
        raise invalid(path, f"{text!r} is not an ICD-O-3 morphology code (four digits, e.g. 8500)")
    return integer(f, text, path, check_range=True)


def icd10(text: str, path: str) -> str:
    if not _ICD10.match(text):
        raise invalid(path, f"{text!r} is not an ICD-10 code (write like C50.4 or C61)")
    return text


def _topographies(d: Dictionary) -> frozenset[str]:
    return _topography_set(tuple(sorted(d.topography_sites.items())))


@lru_cache(maxsize=8)
def _topography_set(sites: tuple[tuple[str, str], ...]) -> frozenset[str]:
    return frozenset(f"{site}.{digit}" for site, digits in sites for digit in digits)


# ------------------------------------------------------------------ fields an analysis names

MISSING = "(missing)"          # the last level of every categorical field: rows where it is absent
ALL = "all"                    # the one group of an ungrouped analysis


def categorical_field(d: Dictionary, name: str, path: str, allowed: Collection[str] | None) -> Field:
    """A queryable code or boolean field, or a refusal naming `path`."""
    f = lookup_field(d, name, path, allowed)
    if not f.is_categorical:
        raise invalid(path, f"field {name!r} is {f.type}, not categorical (code or boolean)")
    return f


def numeric_field(d: Dictionary, name: str, path: str, allowed: Collection[str] | None) -> Field:
    """A queryable integer or decimal field, or a refusal naming `path`."""
    f = lookup_field(d, name, path, allowed)
    if f.type not in NUMERIC_TYPES:
        raise invalid(path, f"field {name!r} is {f.type}, not numeric (integer or decimal)")
    return f


def levels_of(f: Field) -> tuple[str, ...]:
    """A categorical field's cells: its codes in dictionary order, then MISSING."""
    return (*f.codes, MISSING)
