"""A finalised result as rows of one table (for CSV export and `to_pandas`). Each analysis gives
its own table (`Analysis.table`, looked up in the one catalogue, so nothing here knows a kind): the
cells of a crosstab, the bins of a histogram or summary, the points of each survival curve, the
per-group figures of a log-rank test, else the result's scalar figures as one row."""

from __future__ import annotations

from typing import Any

from oncofed.analyses import table


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    return table(result)
