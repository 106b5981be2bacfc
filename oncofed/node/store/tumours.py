"""Statements over the `tumours` table that the query engine needs besides the analyses' own."""

from __future__ import annotations

import sqlite3
from typing import Any

from oncofed.node.store.schema import TUMOURS, quote


def max_rowid(conn: sqlite3.Connection) -> int:
    """An upper bound on the number of rows that costs O(log n), not a scan; 0 when empty."""
    return int(conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {TUMOURS}").fetchone()[0])


def per_patient_restriction(where: str, params: tuple[Any, ...], limit: int) -> tuple[str, tuple[Any, ...]]:
    """A WHERE fragment, with its bound parameters, keeping at most `limit` rows per patient of
    the cohort `where`/`params`, ranked by tumour_seq then tumour id (why: engine.per_patient_limit)."""
    pid, seq, tid = quote("patient_pid"), quote("tumour_seq"), quote("tumour_id")
    # Identifiers are dictionary names via quote(); the cohort's values stay bound parameters.
    sql = ("rowid IN (SELECT rid FROM (SELECT rowid AS rid, row_number() OVER "
           f"(PARTITION BY {pid} ORDER BY {seq}, {tid}) AS rank FROM {TUMOURS} WHERE {where}) "
           "WHERE rank <= ?)")
    return sql, (*params, limit)
