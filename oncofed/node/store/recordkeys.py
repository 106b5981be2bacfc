"""Each tumour's record key, kept beside the row so a cell key costs one SUM in the same scan.

Computing keyed hashes at query time would cost ~1.5 µs per row (1.5 s at a million rows), and a
side table joined per row ~0.3 µs; a column of `tumours` costs nothing extra in a scan. The query
store has a `record_key` column written at ingest (schema.py); this module only fills keys that
are missing (stores made before keys were written at ingest), finding them through a partial
index that holds only rows without a key. Updates by ingest never touch the column, and a tumour's pseudonym never
changes, so a key once written stays right.

The store's secondary indexes end in incidence_date; a count over an indexed cohort would still
visit every selected row to read its key. Covering indexes (the store's columns + record_key)
answer such counts from the index alone (≈ 14 ms instead of ≈ 70 ms for 8,000 of 10^6 rows).
Their cost is paid at ingest (≈ 1.5 µs per row and index). See docs/queries.md.
"""

from __future__ import annotations

import sqlite3

from oncofed.dictionary import Dictionary
from oncofed.keys.cellkey import RecordKeyer
from oncofed.node.store.db import immediate
from oncofed.node.store.schema import RECORD_KEY, RECORD_KEY_MISSING_INDEX, TUMOURS, index_definitions, quote

RECORD_KEY_COLUMN = RECORD_KEY
_MISSING_INDEX = RECORD_KEY_MISSING_INDEX
_FUNCTION = "oncofed_record_key"


def has_record_keys(conn: sqlite3.Connection) -> bool:
    """Whether `tumours` has the column. (Not by selecting it: SQLite reads a double-quoted name that
    matches no column as a string literal, so such a SELECT succeeds either way.)"""
    row = conn.execute("SELECT 1 FROM pragma_table_info(?) WHERE name = ?", (TUMOURS, RECORD_KEY_COLUMN)).fetchone()
    return row is not None


def covering_indexes(d: Dictionary) -> dict[str, tuple[str, ...]]:
    """The store's own indexes, which end in record_key (schema.index_definitions); stores made
    before record keys were written at ingest get them here on first use."""
    return index_definitions(d)


def ensure_record_keys(conn: sqlite3.Connection, d: Dictionary, keyer: RecordKeyer) -> int:
    """Make sure every tumour has its record key; return how many keys were written now.

    Order matters at first use: keys are filled before the covering indexes exist, so the
    indexes are built once by a sort instead of being updated row by row.
    """
    if not has_record_keys(conn):
        _write(conn, [f"ALTER TABLE {TUMOURS} ADD COLUMN {quote(RECORD_KEY_COLUMN)} INTEGER",
                      f"CREATE INDEX IF NOT EXISTS {_MISSING_INDEX} ON {TUMOURS} ({quote(RECORD_KEY_COLUMN)}) "
                      f"WHERE {quote(RECORD_KEY_COLUMN)} IS NULL"], recheck=True)
    missing = f"{quote(RECORD_KEY_COLUMN)} IS NULL"
    written = 0
    # Identifiers below are module constants and dictionary names via quote(); nothing is user text.
    if conn.execute(f"SELECT EXISTS (SELECT 1 FROM {TUMOURS} WHERE {missing})").fetchone()[0]:
        conn.create_function(_FUNCTION, 1, keyer.record_key, deterministic=True)
        written = _write(conn, [f"UPDATE {TUMOURS} SET {quote(RECORD_KEY_COLUMN)} = "
                                f"{_FUNCTION}({quote('tumour_id')}) WHERE {missing}"])
    if not _indexes_present(conn, d):
        _write(conn, [f"CREATE INDEX IF NOT EXISTS {name} ON {TUMOURS} ({', '.join(map(quote, cols))})"
                      for name, cols in covering_indexes(d).items()])
    return written


def _write(conn: sqlite3.Connection, statements: list[str], *, recheck: bool = False) -> int:
    """Run statements in one IMMEDIATE transaction; return the last statement's row count."""
    count = 0
    with immediate(conn):
        if not (recheck and has_record_keys(conn)):        # another connection may have won the race
            for sql in statements:
                count = conn.execute(sql).rowcount
    return count


def _indexes_present(conn: sqlite3.Connection, d: Dictionary) -> bool:
    names = [_MISSING_INDEX, *covering_indexes(d)]
    marks = ", ".join("?" * len(names))
    found = conn.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ({marks})",
                         names).fetchone()[0]
    return int(found) == len(names)
