"""Ingest under hostile files and a hostile store, against real node directories: every case
ends in one readable line, exit code ≠ 0, nothing changed, bounded memory and a bounded wait.
Every test runs in one process and with worker processes (the `ingest_mode` fixture)."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import test_ingest
from click.testing import CliRunner
from conftest import CORE, valid_row, write_csv
from test_ingest import dump, ingest, rejected

from oncofed.cli import main
from oncofed.errors import IngestRejected
from oncofed.node.node import open_node
from oncofed.node.store import db
from oncofed.node.store.csvread import MAX_RECORD_BYTES

ingest_mode = test_ingest.ingest_mode  # autouse: every test here runs serial and parallel
loaded = test_ingest.loaded


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, exit_code: int) -> str:
    """The command failed with `exit_code` and said so in one line, without a traceback."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def with_line(path: Path, number: int, line: bytes) -> Path:
    """Replace line `number` (the header is line 1) of a CSV file."""
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = line
    path.write_bytes(b"\n".join(lines))
    return path


def rows_file(tmp_path: Path, n: int, name: str = "f.csv", start: int = 1000) -> Path:
    return write_csv(tmp_path / name, [valid_row(i) for i in range(start, start + n)])


# ---------------------------------------------------------------- quotes and long fields


def test_unclosed_quote_in_a_4_mib_file_is_refused_not_hung(node_dir: Path, tmp_path: Path, ingest_mode):
    """The file is ≥ 4 MiB, so the CLI's own choice is the parallel path, where this hung."""
    from oncofed.node.store.ingest import Ingestor
    from oncofed.node.store.parallel import workers_for

    if ingest_mode == "parallel":
        pytest.skip("the CLI process below makes its own choice of mode")
    path = rows_file(tmp_path, 18_000)
    assert workers_for(path.stat().st_size, None, Ingestor.parallel_min_bytes) >= 2
    line6 = path.read_bytes().split(b"\n")[5]
    with_line(path, 6, line6.replace(b"diagnosed_here", b'"diagnosed_here', 1))
    before = dump(node_dir)
    # A hang guard, not a speed test: quadratic quote recounting never finished on this file.
    out = subprocess.run([sys.executable, "-m", "oncofed", "node", "ingest", str(path), "-n", str(node_dir),
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 3, out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: f.csv: line 6: a field is longer than 131,072 characters (the most oncofed reads; "
        "is a quote left open?)"]
    assert dump(node_dir) == before


@pytest.fixture
def resyncs(monkeypatch, ingest_mode) -> list[int]:
    """Counts the parallel splitter's calls to resync (the real function still runs)."""
    from oncofed.node.store import parallel

    calls: list[int] = []
    real = parallel.resync

    def counted(tail: bytes, first_line: int) -> int:
        calls.append(first_line)
        return real(tail, first_line)

    monkeypatch.setattr(parallel, "resync", counted)
    return calls


def test_unclosed_quote_both_modes(loaded: Path, tmp_path: Path, resyncs, ingest_mode):
    path = rows_file(tmp_path, 5_000)  # > 1 MiB after the quote: the parallel splitter must give up
    with_line(path, 6, path.read_bytes().split(b"\n")[5].replace(b"diagnosed_here", b'"diagnosed_here', 1))
    assert str(rejected(loaded, path)) == (
        "f.csv: line 6: a field is longer than 131,072 characters (the most oncofed reads; is a quote left open?)")
    assert resyncs == ([6] if ingest_mode == "parallel" else [])


def test_header_field_over_128_kib(loaded: Path, tmp_path: Path):
    path = rows_file(tmp_path, 3)
    with_line(path, 1, ",".join(CORE.input_columns).encode() + b"," + b"x" * (130 << 10))
    assert "line 1: a field is longer than 131,072 characters" in str(rejected(loaded, path))
    line = one_line_error(cli("node", "ingest", str(path), "-n", str(loaded), "--no-progress"), 3)
    assert "line 1: a field is longer than 131,072 characters" in line


def test_header_with_huge_names_and_many_empty_columns_gives_a_short_line(loaded: Path, tmp_path: Path):
    path = rows_file(tmp_path, 2)
    with_line(path, 1, ",".join(CORE.input_columns).encode() + b",\x1b[31m" + b"y" * 100_000 + b"," * 200_000)
    message = str(rejected(loaded, path))
    assert len(message) < 1_000 and "\x1b" not in message, message[:300]
    assert "duplicate column(s): (empty)" in message and "\\x1b[31myyy" in message and "and 1 more" not in message


# ---------------------------------------------------------------- long lines and memory


def test_a_line_of_commas_over_the_limit_is_refused_with_bounded_memory(loaded: Path, tmp_path: Path):
    """Before: a 100 MB line of commas was read whole, split into 10^8 empty fields (1–1.7 GB),
    skipped as blank, and the file loaded. Now it is refused once it passes MAX_RECORD_BYTES."""
    size = 16 * MAX_RECORD_BYTES
    path = rows_file(tmp_path, 5)
    lines = path.read_bytes().split(b"\n")
    lines.insert(3, b"," * size)
    path.write_bytes(b"\n".join(lines))
    before = dump(loaded)
    with open_node(loaded) as n:
        ing = n.ingestor()
        tracemalloc.start()
        try:
            with pytest.raises(IngestRejected) as info:
                ing.ingest(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert dump(loaded) == before
    assert str(info.value).startswith("f.csv: line 4: the record is longer than 1,048,576 bytes")
    # The 16 MiB line is never held whole, let alone split (csv's list of 16 * 2^20 fields: 128 MiB).
    assert peak < size, f"peak {peak / 2**20:.1f} MiB while refusing an {size / 2**20:.0f} MiB line"


def test_a_short_line_of_commas_is_a_fault_not_a_blank_line(loaded: Path, tmp_path: Path):
    path = rows_file(tmp_path, 5)
    lines = path.read_bytes().split(b"\n")
    lines.insert(3, b"," * 100)
    path.write_bytes(b"\n".join(lines))
    err = rejected(loaded, path)
    assert err.faults == [(4, "", f"expected {len(CORE.input_columns)} fields, found 101")]


def test_a_file_with_cr_only_line_ends_is_refused_not_misnumbered(loaded: Path, tmp_path: Path):
    path = rows_file(tmp_path, 5)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    assert str(rejected(loaded, path)).startswith("f.csv: line 1: lines end in CR only")


def test_blank_lines_are_still_skipped(node_dir: Path, tmp_path: Path):
    path = rows_file(tmp_path, 5)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\n\n", 3) + b"\r\n\n")
    assert ingest(node_dir, path).inserted == 5


def test_stray_quote_in_an_unquoted_field_is_the_same_fault_in_both_modes(loaded: Path, tmp_path: Path, resyncs,
                                                                           ingest_mode):
    """csv reads `2"` as text (then sex refuses it); the parallel splitter's quote parity is
    fooled for the rest of the file and must recover by parsing, not refuse the file."""
    path = write_csv(tmp_path / "s.csv", [valid_row(i, sex="x" if i == 1003 else "2") for i in range(1000, 6000)])
    path.write_bytes(path.read_bytes().replace(b",x,", b',2",', 1))
    err = rejected(loaded, path)
    assert [(ln, col) for ln, col, _ in err.faults] == [(5, "sex")], err.faults
    assert len(resyncs) == (1 if ingest_mode == "parallel" else 0)


# ---------------------------------------------------------------- UTF-8


@pytest.mark.parametrize("line", [4, 500])
def test_bad_utf8_is_reported_on_its_true_line_and_character(loaded: Path, tmp_path: Path, line: int):
    path = rows_file(tmp_path, 600)
    raw = path.read_bytes().split(b"\n")[line - 1]
    at = raw.index(b"diagnosed_here") + len(b"diagnosed_h")
    with_line(path, line, raw.replace(b"diagnosed_here", b"diagnosed_h\xe9re", 1))
    assert str(rejected(loaded, path)) == (
        f"f.csv: line {line}, character {at + 1}: not valid UTF-8 text (byte 0xE9); save the file as UTF-8")


def test_bad_utf8_in_the_header(loaded: Path, tmp_path: Path):
    path = rows_file(tmp_path, 3)
    with_line(path, 1, b"patient_\xffid," + ",".join(CORE.input_columns[1:]).encode())
    assert "line 1, character 9: not valid UTF-8 text (byte 0xFF)" in str(rejected(loaded, path))


# ---------------------------------------------------------------- the store


def test_store_that_is_not_a_database_gives_one_line_on_every_command(node_dir: Path, tmp_path: Path):
    (node_dir / "store.sqlite").write_bytes(b"this is not an SQLite file, it was overwritten by mistake\n" * 20)
    for suffix in ("-wal", "-shm"):
        (node_dir / f"store.sqlite{suffix}").unlink(missing_ok=True)
    path = rows_file(tmp_path, 2)
    for args in (["status"], ["summary"], ["ingest", str(path), "--no-progress"], ["permits", "list"],
                 ["trust", "status"], ["audit", "show"]):
        line = one_line_error(cli("node", *args, "-n", str(node_dir)), 1)
        assert "store.sqlite is not a usable oncofed store" in line and "restore it from your backup" in line, args


@pytest.fixture
def locker(node_dir: Path):
    """Another process holding the store's write lock, as a running ingest does."""
    def hold(how: str) -> subprocess.Popen[str]:
        code = ("import sqlite3, sys, time\n"
                f"c = sqlite3.connect({str(node_dir / 'store.sqlite')!r}, isolation_level=None)\n"
                + ("c.execute('BEGIN IMMEDIATE')\n" if how == "write" else
                   "c.execute('PRAGMA locking_mode=EXCLUSIVE'); c.execute('BEGIN EXCLUSIVE')\n")
                + "print('locked', flush=True)\nsys.stdin.read()\n")
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    procs: list[subprocess.Popen[str]] = []
    yield hold
    for proc in procs:
        proc.communicate(timeout=30)  # closing stdin ends it


def test_store_locked_by_a_writer_waits_then_says_who(loaded: Path, tmp_path: Path, locker, monkeypatch):
    monkeypatch.setattr(db, "LOCK_WAIT_SECONDS", 1.0)
    path = rows_file(tmp_path, 3)
    before = dump(loaded)
    proc = locker("write")
    started = time.monotonic()
    result = CliRunner().invoke(main, ["node", "ingest", str(path), "-n", str(loaded), "--no-progress"])
    waited = time.monotonic() - started
    assert result.exit_code == 1 and "Traceback" not in result.output
    notice, error = result.output.strip().splitlines()
    store = loaded / "store.sqlite"
    assert notice.startswith(f"waiting up to 1 s: the store {store} is locked by another process (pid {proc.pid}: ")
    assert error.startswith(f"error: the store {store} is locked by another process (pid {proc.pid}: ")
    assert "gave up after 1 s" in error and "try again when it has finished" in error
    assert 1.0 <= waited < 20, "the wait is bounded by LOCK_WAIT_SECONDS"
    proc.communicate(timeout=30)
    assert dump(loaded) == before
    assert ingest(loaded, path).inserted == 3, "once the lock is gone the same file loads"


def test_store_locked_exclusively_fails_every_command_in_one_line(node_dir: Path, locker, monkeypatch):
    monkeypatch.setattr(db, "LOCK_WAIT_SECONDS", 0.5)
    proc = locker("exclusive")
    line = one_line_error(cli("node", "status", "-n", str(node_dir)), 1)
    assert f"is locked by another process (pid {proc.pid}: " in line and "gave up after 0.5 s" in line


# ---------------------------------------------------------------- the dictionary and the header


def test_dictionary_show_names_the_columns_ingest_reads(node_dir: Path, tmp_path: Path):
    import json

    shown = json.loads(cli("dictionary", "show", "--json").output)["fields"]
    columns = [f["csv_column"] for f in shown if f["csv_column"]]
    assert "patient_id" in columns and "patient_pid" not in columns
    pid = next(f for f in shown if f["name"] == "patient_pid")
    assert pid["csv_column"] == "patient_id" and pid["pseudonymised"] is True
    # a file with exactly the columns shown loads
    assert ingest(node_dir, write_csv(tmp_path / "d.csv", [valid_row(1)], columns=columns)).inserted == 1
    text = cli("dictionary", "show", "--field", "patient_id").output
    assert "\npatient_id  (id, required, pseudonymised on ingest: stored as a keyed hash named patient_pid" in text
    assert "patient_pid  (" not in cli("dictionary", "show").output


def test_header_naming_the_stored_field_says_which_column_to_write(loaded: Path, tmp_path: Path):
    cols = ["patient_pid" if c == "patient_id" else c for c in CORE.input_columns]
    rows = [{**valid_row(1), "patient_pid": "P1"}]
    err = str(rejected(loaded, write_csv(tmp_path / "h.csv", rows, columns=cols)))
    assert "unknown column(s): patient_pid (the CSV column is patient_id)" in err
    assert "missing required column(s): patient_id" in err


def test_a_lock_that_outlasts_the_wait_is_still_busy_for_the_servers():
    """StoreLocked is also an sqlite3.OperationalError: the servers' catalogue answers "busy",
    without the path or the holder."""
    from oncofed.errors import StoreLocked
    from oncofed.node.service.errors import public_error

    err = public_error(StoreLocked("the store /secret/path/store.sqlite is locked by another process (pid 1)"))
    assert (err.code.name, err.message) == ("UNAVAILABLE", "the node is busy; retry later")


def test_dictionary_show_tells_derived_fields_from_csv_columns(ingest_mode):
    if ingest_mode == "parallel":
        pytest.skip("no ingest here")
    text = CliRunner().invoke(main, ["dictionary", "show"]).output
    assert "\nbirth_year  (integer, derived at ingest, not a CSV column)" in text
    assert "\nos_status_at_cutoff  (code, derived per query, never stored, not a CSV column)" in text
    assert "\nbirth_date  (date, required, not stored)" in text
