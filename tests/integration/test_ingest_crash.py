"""A real ingest process killed with SIGKILL at several moments leaves the store as before or as
after, never between, and the store stays intact and loadable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import valid_row, write_csv

from oncofed.node.node import init_node, open_node

pytestmark = pytest.mark.slow


def _state(root: Path) -> tuple[int, int, str]:
    con = sqlite3.connect(root / "store.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        n = con.execute("SELECT count(*) FROM tumours").fetchone()[0]
        dead = con.execute("SELECT count(*) FROM tumours_labelled WHERE vital_status = 'dead'").fetchone()[0]
        ingests = con.execute("SELECT group_concat(file_name) FROM ingests").fetchone()[0]
        return n, dead, ingests
    finally:
        con.close()


def _wal_size(wal: Path) -> int:
    """The write-ahead log's size, 0 when there is none — including when the ingest ends and its
    last connection removes the file between a look and a stat (seen in CI on a slow machine)."""
    try:
        return wal.stat().st_size
    except FileNotFoundError:
        return 0


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _assert_gone(pids: list[int]) -> None:
    """Worker processes of a killed ingest must not outlive it."""
    deadline = time.monotonic() + 10
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists()
                 and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        time.sleep(0.1)
    assert not alive, f"orphaned ingest workers still running: {alive}"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("crash")
    first = write_csv(d / "first.csv", [valid_row(i) for i in range(20_000)])
    # the second file updates every first-file row (now dead) and adds 60,000 new ones
    dead = {"vital_status": "dead", "death_date": "2024-06-01", "vital_status_date": "2024-06-01"}
    second = write_csv(d / "second.csv", [valid_row(i, **dead) for i in range(80_000)])
    return first, second


@pytest.mark.parametrize("wal_bytes", [0, 2_000_000, 20_000_000, 60_000_000])
def test_sigkill_mid_ingest_leaves_before_or_after(tmp_path: Path, files, wal_bytes: int):
    first, second = files
    root = init_node(tmp_path / "node", "centre-k").root
    with open_node(root) as n:
        n.ingest(first)
    before = _state(root)
    assert before == (20_000, 0, "first.csv")
    wal = root / "store.sqlite-wal"
    start_size = _wal_size(wal)
    proc = subprocess.Popen(
        [sys.executable, "-m", "oncofed", "node", "ingest", str(second), "-n", str(root), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            size = _wal_size(wal)
            if size - start_size >= wal_bytes and (wal_bytes or size > start_size):
                break
            time.sleep(0.005)
        workers = _children(proc.pid)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        rc = proc.wait(timeout=30)
    _assert_gone(workers)
    after = _state(root)
    full = (80_000, 80_000, "first.csv,second.csv")
    assert after in (before, full), after
    if wal_bytes == 2_000_000:  # early in the file: the kill must have interrupted the ingest
        assert rc == -signal.SIGKILL and after == before
        assert workers, "a 19 MB file is prepared by worker processes, which must die with the writer"
    # and the node still works: the same file now loads completely
    with open_node(root) as n:
        n.ingest(second)
    assert _state(root)[:2] == full[:2]


def test_sigkill_mid_first_load_leaves_an_empty_store_with_its_unique_index(tmp_path: Path, files):
    """A first load runs without the tumour-id index (D14): a kill must leave the index in place."""
    _, second = files
    root = init_node(tmp_path / "node", "centre-f").root
    wal = root / "store.sqlite-wal"
    proc = subprocess.Popen(
        [sys.executable, "-m", "oncofed", "node", "ingest", str(second), "-n", str(root), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _wal_size(wal) >= 5_000_000:
                break
            time.sleep(0.005)
        workers = _children(proc.pid)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        rc = proc.wait(timeout=30)
    _assert_gone(workers)
    assert rc == -signal.SIGKILL, "the kill must interrupt the load"
    assert _state(root) == (0, 0, None)
    con = sqlite3.connect(root / "store.sqlite")
    try:
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tumours_tumour_id'").fetchone() == (1,)
    finally:
        con.close()
    with open_node(root) as n:
        assert n.ingest(second).inserted == 80_000
