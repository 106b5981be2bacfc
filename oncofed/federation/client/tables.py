"""A finalised result as rows of one table (for CSV export and `to_pandas`): the cells of a
crosstab, the bins of a histogram or summary, the points of each survival curve, the per-group
figures of a log-rank test, else the result's scalar figures as one row."""

from __future__ import annotations

from typing import Any


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    if "cells" in result:
        return [{**cell["levels"], "count": cell["count"]} for cell in result["cells"]]
    if "curves" in result:
        group = result.get("group_by") or "group"
        return [{group: g, **point} for g, curve in result["curves"].items() for point in curve["points"]]
    if "observed" in result:
        return [{"group": g, "observed": result["observed"][g], "expected": result["expected"][g]}
                for g in result["groups"]]
    if result.get("bins"):
        return [dict(b) for b in result["bins"]]
    return [{k: v for k, v in result.items() if isinstance(v, int | float | str | type(None))}]
