"""Day numbers: dates as integers (1 = 1900-01-01, 0 = missing) and the table that prints them.

The generator does all date arithmetic on day numbers and turns them into ISO strings by
indexing one table that ends at the extraction date, so a date after `today` (or before 1900)
cannot be written: it would be an IndexError, not a wrong row.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from oncofed.errors import UsageError

BASE = date(1900, 1, 1)
DAY0 = BASE.toordinal() - 1          # day number = ordinal - DAY0; 1 is 1900-01-01, 0 is "none"
INCIDENCE_FIRST = date(2005, 1, 1)
INCIDENCE_LAST = date(2025, 12, 31)
EARLIEST_TODAY = date(1990, 1, 1)
LATEST_TODAY = date(2100, 12, 31)
YEAR_DAYS = 365.25


@lru_cache(maxsize=4)
def iso_calendar(today: date) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """ISO strings and years by day number, from "" (0) and 1900-01-01 (1) up to `today`."""
    n = today.toordinal() - DAY0
    one = timedelta(days=1)
    iso, years = [""], [0]
    d = BASE
    for _ in range(n):
        iso.append(d.isoformat())
        years.append(d.year)
        d += one
    return tuple(iso), tuple(years)


def parse_today(value: date | str) -> date:
    """The extraction date: no generated date may be after it (a fixed default keeps the
    output independent of the clock)."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise UsageError(f"--today must be a date YYYY-MM-DD, got {value!r}") from None
    if not EARLIEST_TODAY <= value <= LATEST_TODAY:
        raise UsageError(
            f"--today must lie between {EARLIEST_TODAY} and {LATEST_TODAY}, got {value}"
        )
    return value
