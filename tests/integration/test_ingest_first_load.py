"""A first load (empty store) inserts without the tumour-id unique index and builds it after, in
the same transaction (decision D22): repeats are still refused with their lines, a rejected load
leaves the index in place, and later loads upsert on it. Both ingest modes, real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import test_ingest
from conftest import valid_row, write_csv
from test_ingest import dump, ingest

from oncofed.errors import IngestRejected
from oncofed.node.node import open_node
from oncofed.node.store.schema import TUMOUR_ID_INDEX, create_indexes, create_labelled_view

ingest_mode = test_ingest.ingest_mode  # autouse: every test here runs serial and parallel


def unique_indexes(root: Path) -> list[tuple[str, list[str]]]:
    con = sqlite3.connect(root / "store.sqlite")
    try:
        out = []
        for _, name, unique, *_ in con.execute("PRAGMA index_list(tumours)"):
            if unique:
                out.append((name, [r[2] for r in con.execute(f"PRAGMA index_info({name!r})")]))
        return out
    finally:
        con.close()


def first_load(root: Path, path: Path, batch_rows: int = 10):
    with open_node(root) as n:
        ing = n.ingestor()
        ing.batch_rows = batch_rows
        return ing.ingest(path)


def test_first_load_refuses_repeats_with_the_line_they_repeat(node_dir: Path, tmp_path: Path):
    rows = [valid_row(i) for i in range(200, 230)]
    rows[5] = valid_row(200)   # line 7, same batch as line 2
    rows[25] = valid_row(201)  # line 27, a later batch than line 3
    before = dump(node_dir)
    with pytest.raises(IngestRejected) as info:
        first_load(node_dir, write_csv(tmp_path / "dup.csv", rows))
    assert dump(node_dir) == before
    assert [(ln, col, why) for ln, col, why in info.value.faults] == [
        (7, "tumour_id", "duplicate tumour_id (same as line 2)"),
        (27, "tumour_id", "duplicate tumour_id (same as line 3)"),
    ]
    assert unique_indexes(node_dir) == [(TUMOUR_ID_INDEX, ["tumour_id"])], "the rollback restores the index"


def test_first_load_reports_repeats_together_with_other_faults(node_dir: Path, tmp_path: Path):
    rows = [valid_row(i) for i in range(300, 330)]
    rows[3] = valid_row(303, sex="7")
    rows[20] = valid_row(301)  # line 22 repeats line 3 (another batch)
    with pytest.raises(IngestRejected) as info:
        first_load(node_dir, write_csv(tmp_path / "f.csv", rows))
    assert [(ln, col) for ln, col, _ in info.value.faults] == [(5, "sex"), (22, "tumour_id")]


def test_after_a_first_load_the_index_is_unique_and_loads_upsert_on_it(node_dir: Path, tmp_path: Path):
    path = write_csv(tmp_path / "a.csv", [valid_row(i) for i in range(1, 40)])
    result = first_load(node_dir, path)
    assert (result.inserted, result.updated, result.unchanged) == (39, 0, 0)
    assert unique_indexes(node_dir) == [(TUMOUR_ID_INDEX, ["tumour_id"])]
    again = first_load(node_dir, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 39)
    fix = [valid_row(i) for i in range(1, 40)]
    fix[0] = valid_row(1, sex="1")
    fix.append(valid_row(40))
    third = first_load(node_dir, write_csv(tmp_path / "b.csv", fix))
    assert (third.inserted, third.updated, third.unchanged) == (1, 1, 38)
    con = sqlite3.connect(node_dir / "store.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO tumours (patient_pid, tumour_id, tumour_seq) SELECT patient_pid, tumour_id, 1 "
                    "FROM tumours LIMIT 1")


def _as_made_before_d22(root: Path) -> None:
    """Recreate the (empty) tumour table as stores made before D22 have it: uniqueness as a
    column constraint, whose automatic index cannot be dropped."""
    con = sqlite3.connect(root / "store.sqlite", isolation_level=None)
    try:
        sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'tumours'").fetchone()[0]
        old = sql.replace('"tumour_id" TEXT NOT NULL', '"tumour_id" TEXT UNIQUE NOT NULL')
        assert old != sql
        con.execute("BEGIN")
        con.execute("DROP VIEW tumours_labelled")
        con.execute("DROP TABLE tumours")
        con.execute(old)
        from oncofed import dictionary as dictmod

        create_indexes(con, dictmod.load())
        create_labelled_view(con, dictmod.load())
        con.execute("COMMIT")
    finally:
        con.close()


def test_a_store_made_before_keeps_its_live_unique_index(node_dir: Path, tmp_path: Path):
    _as_made_before_d22(node_dir)
    assert [name for name, _ in unique_indexes(node_dir)] == ["sqlite_autoindex_tumours_1"]
    rows = [valid_row(i) for i in range(200, 230)]
    rows[25] = valid_row(201)
    with pytest.raises(IngestRejected) as info:
        first_load(node_dir, write_csv(tmp_path / "dup.csv", rows))
    assert [(ln, col) for ln, col, _ in info.value.faults] == [(27, "tumour_id")]
    rows[25] = valid_row(225)
    assert first_load(node_dir, write_csv(tmp_path / "ok.csv", rows)).inserted == 30
    assert ingest(node_dir, tmp_path / "ok.csv").unchanged == 30
