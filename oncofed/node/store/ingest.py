"""Validated, pseudonymised, all-or-nothing ingest of one registry CSV file.

The whole file is loaded inside one IMMEDIATE transaction: a file with any fault, or a process
killed at any moment, leaves the store exactly as it was. Records are read within fixed limits
and with their true line numbers (csvread.py) and stream through in batches, so memory stays
bounded whatever the file holds; the SQL side is tumour_writer.py. Each column is validated *and* encoded by one
lookup in a table built from the dictionary (see encoding.py); only rows that fail a lookup take
the slow path that explains the fault. Raw patient and tumour identifiers are replaced by keyed
pseudonyms before anything is written, and never appear in a fault message or a log line.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import heapq
import io
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from oncofed.dictionary import Dictionary, Field
from oncofed.errors import IngestRejected, UsageError
from oncofed.keys.cellkey import RecordKeyer
from oncofed.keys.pseudonym import Pseudonymiser
from oncofed.node.store import meta
from oncofed.node.store.csvread import LineSource, RecordFault, records
from oncofed.node.store.db import begin_immediate
from oncofed.node.store.encoding import MISSING, code_ordinals, value_table
from oncofed.node.store.outcomes import followup_warnings
from oncofed.node.store.parallel import load_parallel, workers_for
from oncofed.node.store.tumour_writer import TumourWriter

Progress = Callable[[int], None]  # called with bytes read so far
MAX_ID_LENGTH = 128
_SECRET_COLUMNS = {"patient_id", "tumour_id", "birth_date"}  # never echoed in fault messages


@dataclass
class IngestResult:
    """What one ingest did, as recorded in the store's ingest log."""

    file_name: str
    file_sha256: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    seconds: float
    ingest_id: int = 0
    warnings: list[str] = field(default_factory=list)   # the store is loaded, but an analysis should know

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Faults:
    """Counts every fault and keeps the `limit` lowest-numbered lines, whatever order the
    column-wise checks find them in (a max-heap on the line number)."""

    limit: int
    heap: list[tuple[int, int, str, str]] = field(default_factory=list)
    total: int = 0
    lines: set[int] = field(default_factory=set)  # faulty lines of the current batch

    def add(self, line: int, column: str, reason: str) -> None:
        self.total += 1
        self.lines.add(line)
        entry = (-line, -self.total, column, reason)
        if len(self.heap) < self.limit:
            heapq.heappush(self.heap, entry)
        elif self.limit and entry > self.heap[0]:
            heapq.heapreplace(self.heap, entry)

    @property
    def items(self) -> list[tuple[int, str, str]]:
        return [(-ln, col, why) for ln, _, col, why in sorted(self.heap, reverse=True)]


class _HashingReader(io.RawIOBase):
    """Counts and hashes the bytes as they stream past, so the file is read only once."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.bytes_read += n
        return n


@dataclass
class _Column:
    """How one input field is read: its position in the file and its validating table."""

    field: Field
    position: int
    table: Mapping[str, int] | None


class Ingestor:
    """Loads CSV files into one store under one dictionary and one pseudonymisation key."""

    #: Files at least this large are prepared by worker processes (parallel.py); smaller ones
    #: load faster in one process than it takes to fork.
    parallel_min_bytes = 4 << 20
    #: None: one worker per CPU (at most 4) for large files; 0 or 1: never use workers.
    workers: int | None = None
    #: Bytes per chunk handed to a worker; None: about one batch (batch_rows × 256 bytes).
    chunk_bytes: int | None = None
    #: Told who holds the store when another process's lock makes the load wait (db.begin_immediate).
    on_lock_wait: Callable[[str], None] | None = None

    def __init__(self, conn: sqlite3.Connection, dictionary: Dictionary, pseudonymiser: Pseudonymiser,
                 *, batch_rows: int = 5_000, max_faults: int = 20,
                 today: dt.date | None = None, record_keyer: RecordKeyer | None = None) -> None:
        self.conn = conn
        self.d = dictionary
        self.pseudo = pseudonymiser
        self.record_keyer = record_keyer  # None: keys are filled later by the query engine
        self.batch_rows = batch_rows
        self.max_faults = max_faults
        self.today = today or dt.date.today()
        self.stored = [f for f in dictionary.stored_fields]
        self._tables = {f.name: value_table(f, dictionary, self.today) for f in dictionary.input_fields}
        self._ordinals = {f.name: code_ordinals(f) for f in dictionary.fields.values() if f.type == "code"}
        self._labels = {name: {v: k for k, v in o.items()} for name, o in self._ordinals.items()}
        self.writer = TumourWriter(conn, dictionary, self.stored)
        self._tid_index = self.writer.key

    # ------------------------------------------------------------------ public

    def ingest(self, path: Path, progress: Progress | None = None) -> IngestResult:
        """Validate and load `path`; raise IngestRejected (store untouched) on any fault."""
        try:
            raw = path.open("rb")
        except FileNotFoundError:
            raise UsageError(f"file not found: {path}") from None
        except IsADirectoryError:
            raise UsageError(f"{path} is a directory, not a CSV file") from None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        started = time.perf_counter()
        started_at = _now()
        # A batch holds ~10^6 live strings and every rule allocates tuples: the cyclic GC would
        # rescan them all again and again (5x slower). Nothing here makes reference cycles.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._ingest_file(path, raw, started, started_at, progress)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _ingest_file(self, path: Path, raw: BinaryIO, started: float, started_at: str,
                     progress: Progress | None) -> IngestResult:
        with raw:
            if os.fstat(raw.fileno()).st_size == 0:
                raise IngestRejected(f"{path.name}: the file is empty (expected a header line)")
            hashing = _HashingReader(raw)
            workers = workers_for(os.fstat(raw.fileno()).st_size, self.workers, self.parallel_min_bytes)
            faults = _Faults(self.max_faults)
            begin_immediate(self.conn, self.on_lock_wait)
            try:
                before = self.writer.begin(os.fstat(raw.fileno()).st_size)
                if workers:
                    rows, changed = load_parallel(self, path.name, hashing, faults, progress, workers)
                else:
                    source = LineSource(io.BufferedReader(hashing, 1 << 20))
                    rows, changed = self._load(path.name, records(source), faults, hashing, progress)
                if not self.writer.finish(faults.total, faults.add):
                    raise self._rejection(path.name, faults)
                inserted = self.writer.count() - before
                result = IngestResult(
                    file_name=path.name, file_sha256=hashing.sha256.hexdigest(), rows=rows,
                    inserted=inserted, updated=changed - inserted, unchanged=rows - changed,
                    seconds=0.0,
                )
                result.warnings = followup_warnings(self.conn, self.d)
                result.seconds = time.perf_counter() - started
                result.ingest_id = meta.record_ingest(self.conn, {
                    **result.__dict__, "started_at": started_at, "finished_at": _now(),
                })
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return result

    # ------------------------------------------------------------------ reading

    def _load(self, name: str, reader: Iterator[tuple[int, list[str]]], faults: _Faults,
              hashing: _HashingReader, progress: Progress | None) -> tuple[int, int]:
        try:
            header = next(reader, (0, []))[1]
            if not header:
                raise IngestRejected(f"{name}: the file is empty (expected a header line)")
            columns = self._columns(name, header)
            width = len(header)
            rows = changed = 0
            while True:
                batch: list[list[str]] = []
                lines: list[int] = []
                for line, record in reader:
                    if len(record) != width:
                        faults.add(line, "", f"expected {width} fields, found {len(record)}")
                        continue
                    batch.append(record)
                    lines.append(line)
                    if len(batch) >= self.batch_rows:
                        break
                if not batch:
                    break
                changed += self._batch(batch, lines, columns, faults)
                rows += len(batch)
                if progress:
                    progress(hashing.bytes_read)
                if len(batch) < self.batch_rows:
                    break
        except RecordFault as exc:
            raise IngestRejected(f"{name}: {exc}") from None
        if rows == 0 and not faults.total:
            raise IngestRejected(f"{name}: the file has a header but no data rows")
        return rows, changed

    def _columns(self, name: str, header: list[str]) -> list[_Column]:
        if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
            sep = next(s for s in (";", "\t", "|") if s in header[0])
            shown = {"\t": "tab"}.get(sep, repr(sep))
            raise IngestRejected(f"{name}: the file is separated by {shown}; oncofed reads comma-separated UTF-8 CSV")
        header = [h.strip() for h in header]
        positions = {h: i for i, h in enumerate(header)}
        problems = []
        dupes = sorted(h for h, n in Counter(header).items() if n > 1)
        if dupes:
            problems.append(f"duplicate column(s): {_names(dupes)}")
        known = set(self.d.input_columns)
        unknown = list(dict.fromkeys(h for h in header if h not in known))
        if unknown:
            renamed = {f.name: f.column for f in self.d.input_fields if f.column != f.name}
            problems.append("unknown column(s): " + _names(
                unknown, lambda h: f" (the CSV column is {renamed[h]})" if h in renamed else ""))
        missing = [f.column for f in self.d.input_fields if f.required and f.column not in positions]
        if missing:
            problems.append(f"missing required column(s): {', '.join(missing)}")
        if problems:
            raise IngestRejected(f"{name}: header: {'; '.join(problems)} (see: oncofed dictionary show)")
        return [_Column(f, positions.get(f.column, -1), self._tables[f.name]) for f in self.d.input_fields]

    # ------------------------------------------------------------------ one batch

    def _batch(self, batch: list[list[str]], lines: list[int], columns: list[_Column],
               faults: _Faults) -> int:
        records, tids = self._prepare(batch, lines, columns, faults)
        return self.writer.write(records, tids, lines, faults.add)

    def _prepare(self, batch: list[list[str]], lines: list[int], columns: list[_Column],
                 faults: _Faults) -> tuple[list[tuple[Any, ...]], list[str]]:
        """Validate, encode, derive and pseudonymise one batch: no database access, so worker
        processes can run it (parallel.py). Returns the rows to write, without faulty ones."""
        n = len(batch)
        line_of = lines.__getitem__
        raw_cols = list(zip(*batch, strict=True))
        enc: dict[str, Sequence[Any]] = {}
        raw: dict[str, Sequence[str]] = {}
        for col in columns:
            f = col.field
            values: Sequence[str] = raw_cols[col.position] if col.position >= 0 else ("",) * n
            raw[f.name] = values
            enc[f.name] = self._encode(col, values, faults, line_of)
        self._check_rows(enc, raw, faults, line_of, n)
        derived = self._derive(enc, raw, n)
        pids = list(map(self.pseudo.patient, raw["patient_pid"]))
        tids = list(map(self.pseudo.tumour, raw["tumour_id"]))
        first_of: dict[str, int] = {}
        for i, t in enumerate(tids):
            j = first_of.setdefault(t, i)
            if j != i:
                faults.add(line_of(i), "tumour_id", f"duplicate tumour_id (same as line {line_of(j)})")
        out_cols: list[Sequence[Any]] = []
        for f in self.stored:
            if f.name == "patient_pid":
                out_cols.append(pids)
            elif f.name == "tumour_id":
                out_cols.append(tids)
            elif f.name in derived:
                out_cols.append(derived[f.name])
            else:
                out_cols.append(enc[f.name])
        out_cols.append(list(map(self.record_keyer.record_key, tids)) if self.record_keyer else [None] * n)
        key = self._tid_index
        records = sorted(zip(*out_cols, strict=True), key=lambda r: r[key])  # local B-tree inserts
        if faults.lines:
            bad = {tids[i] for i in range(n) if line_of(i) in faults.lines}
            records = [r for r in records if r[key] not in bad]
            faults.lines.clear()
        return records, tids

    def _encode(self, col: _Column, values: Sequence[str], faults: _Faults,
                line_of: Callable[[int], int]) -> Sequence[Any]:
        f, table = col.field, col.table
        if f.type == "id":
            bad = [i for i, v in enumerate(values) if not v or len(v) > MAX_ID_LENGTH or not v.isprintable()]
            for i in bad:
                reason = ("missing (required)" if not values[i]
                          else "not a usable identifier (over 128 characters or control characters)")
                faults.add(line_of(i), f.column, reason)
            return values
        if table is not None:
            lookup = table if (f.required or "" in table) else {**table, "": MISSING}
            if not f.required and "" not in table:
                col.table = lookup  # cache the widened table for the next batches
            try:
                return list(map(lookup.__getitem__, values))
            except KeyError:
                out = []
                for i, v in enumerate(values):
                    got = lookup.get(v)
                    if got is None:
                        faults.add(line_of(i), f.column, self._explain(f, v))
                        got = MISSING
                    out.append(got)
                return out
        return self._parse_numbers(f, values, faults, line_of)

    def _parse_numbers(self, f: Field, values: Sequence[str], faults: _Faults,
                       line_of: Callable[[int], int]) -> list[Any]:
        conv: Callable[[str], Any] = float if f.type == "decimal" else int
        lo, hi = f.minimum, f.maximum
        out: list[Any] = []
        for i, v in enumerate(values):
            if v == "":
                if f.required:
                    faults.add(line_of(i), f.column, "missing (required)")
                out.append(MISSING)
                continue
            shown = "value" if f.column in _SECRET_COLUMNS else f"'{_printable(v)}'"
            try:
                x = conv(v)
            except ValueError:
                faults.add(line_of(i), f.column, f"{shown} is not a number")
                out.append(MISSING)
                continue
            if (lo is not None and x < lo) or (hi is not None and x > hi):
                faults.add(line_of(i), f.column, f"{shown} is outside {lo}..{hi}")
            out.append(x)
        return out

    def _explain(self, f: Field, v: str) -> str:
        """Why value v is not in field f's table (slow path, only for faulty cells)."""
        if v == "":
            return "missing (required)"
        shown = "value" if f.column in _SECRET_COLUMNS else f"'{_printable(v)}'"
        if f.type == "date":
            try:
                d = dt.date.fromisoformat(v)
            except ValueError:
                return f"{shown} is not a date in YYYY-MM-DD form"
            if len(v) != 10:
                return f"{shown} is not a date in YYYY-MM-DD form"
            if d > self.today:
                return f"{shown} is in the future"
            return f"{shown} is before {f.minimum or self.d.earliest_date}"
        if f.type in ("code", "boolean"):
            allowed = ", ".join(list(f.codes)[:12]) + (", …" if len(f.codes) > 12 else "")
            return f"{shown} is not a code of {f.name} (allowed: {allowed})"
        if f.type == "topography":
            return f"{shown} is not an ICD-O-3 topography code (Cdd.d, e.g. C50.4)"
        if f.type in ("integer", "morphology"):
            if not v.lstrip("-").isdigit():
                return f"{shown} is not a whole number"
            return f"{shown} is outside {f.minimum}..{f.maximum}"
        return f"{shown} is not valid"

    # ------------------------------------------------------------------ rules across fields

    def _check_rows(self, enc: dict[str, Sequence[Any]], raw: dict[str, Sequence[str]],
                    faults: _Faults, line_of: Callable[[int], int], n: int) -> None:
        from oncofed.node.store.rules import check_rows

        check_rows(self, enc, raw, faults.add, line_of, n)

    def _derive(self, enc: dict[str, Sequence[Any]], raw: dict[str, Sequence[str]], n: int) -> dict[str, list[Any]]:
        from oncofed.node.store.rules import derive_fields

        return derive_fields(self, enc, raw, n)

    # ------------------------------------------------------------------ the verdict

    def _rejection(self, name: str, faults: _Faults) -> IngestRejected:
        more = f" (showing the first {len(faults.items)})" if faults.total > len(faults.items) else ""
        return IngestRejected(
            f"{name}: rejected, {faults.total} fault(s){more}; nothing was loaded",
            faults.items, faults.total,
        )



def _names(names: Sequence[str], note: Callable[[str], str] = lambda _: "", most: int = 10) -> str:
    """Column names from a file, for one line on a terminal: each cut to 40 characters, control
    characters escaped, at most `most` of them."""
    shown = [f"{_printable(n)}{note(n)}" if n else "(empty)" for n in names[:most]]
    more = f" and {len(names) - most:,} more" if len(names) > most else ""
    return ", ".join(shown) + more


def _printable(text: str, width: int = 40) -> str:
    cut = text[:width]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cut)
    return cut + ("…" if len(text) > width else "")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
