"""Parallel ingest: worker processes parse, validate, encode and pseudonymise chunks of the file
while the main process only writes, in the same single transaction.

Every per-cell step of an ingest is Python work (decision D9); the one SQLite writer is not. So
the file is cut into chunks at record boundaries (csvread.RecordSplitter: one pass over the file;
bytes past the record limit without a boundary are parsed and refused as the serial path would,
decision D23), workers (forked, so they share the ingestor's tables and keys without pickling
them) each read a chunk with the serial path's reader and run `Ingestor._prepare` on it, and the
main process writes the prepared rows in file order. All-or-nothing, duplicate detection and crash
safety are unchanged: they live in the writer's transaction. The workers never touch the
database: they inherit the connection object, never use it, and exit without finalising it.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from oncofed.errors import IngestRejected
from oncofed.node.store.csvread import (
    MAX_RECORD_BYTES,
    LineSource,
    RecordFault,
    RecordSplitter,
    records,
    resync,
)

if TYPE_CHECKING:
    from oncofed.node.store.ingest import Ingestor, Progress, _Column, _Faults, _HashingReader

# Set in the parent just before the pool forks; read by the workers.
_STATE: tuple[Ingestor, list[_Column], int] | None = None
BLOCK_BYTES = 1 << 20


def workers_for(file_bytes: int, requested: int | None, min_bytes: int) -> int:
    """How many worker processes: none for small files (forking costs more than it saves)."""
    if requested is not None:
        return max(requested, 0) if requested != 1 else 0
    cpus = os.cpu_count() or 1
    if cpus < 2 or file_bytes < min_bytes or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    return min(cpus, 4)


def _worker_init(parent: int) -> None:
    """A worker must not outlive its writer: a SIGKILLed ingest would otherwise leave workers
    blocked on their task queue forever (they hold copies of the queue's pipe, so they never
    see it close). Linux delivers SIGKILL on the parent's death; a watchdog covers the rest."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _prepare_chunk(data: bytes, first_line: int) -> tuple[Any, ...]:
    """In a worker: one chunk of whole records → prepared rows and the chunk's faults."""
    from oncofed.node.store.ingest import _Faults

    assert _STATE is not None
    ing, columns, width = _STATE
    faults = _Faults(ing.max_faults)
    batch: list[list[str]] = []
    lines: list[int] = []
    try:
        for line, record in records(LineSource(io.BytesIO(data), first_line, at_start=False)):
            if len(record) != width:
                faults.add(line, "", f"expected {width} fields, found {len(record)}")
                continue
            batch.append(record)
            lines.append(line)
    except RecordFault as exc:
        return ("fatal", str(exc))
    records_, tids = ing._prepare(batch, lines, columns, faults) if batch else ([], [])
    return ("ok", len(batch), records_, tids, lines, faults.total, faults.items)


def load_parallel(ing: Ingestor, name: str, hashing: _HashingReader, faults: _Faults,
                  progress: Progress | None, workers: int) -> tuple[int, int]:
    """Read, dispatch and write the whole file; returns (rows, rows changed)."""
    global _STATE
    stream = io.BufferedReader(hashing, BLOCK_BYTES)
    source = LineSource(stream)
    try:
        header = next(records(source), (0, []))[1]
    except RecordFault as exc:
        raise IngestRejected(f"{name}: {exc}") from None
    if not header:
        raise IngestRejected(f"{name}: the file is empty (expected a header line)")
    columns = ing._columns(name, header)
    _STATE = (ing, columns, len(header))
    chunk_bytes = ing.chunk_bytes or max(ing.batch_rows * 64, 512)
    rows = changed = 0
    pending: deque[Future[tuple[Any, ...]]] = deque()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_init, initargs=(os.getpid(),))

    def collect(future: Future[tuple[Any, ...]]) -> None:
        nonlocal rows, changed
        result = future.result()
        if result[0] == "fatal":
            raise IngestRejected(f"{name}: {result[1]}")
        _, n, records_, tids, lines, total, items = result
        for item in items:
            faults.add(*item)
        faults.total += total - len(items)
        if records_:
            changed += ing.writer.write(records_, tids, lines, faults.add)
        rows += n
        if progress:
            progress(hashing.bytes_read)

    line = source.line + 1  # the line the splitter's buffer starts on

    def dispatch(chunk: bytes) -> None:
        nonlocal line
        pending.append(pool.submit(_prepare_chunk, chunk, line))
        line += chunk.count(b"\n")
        while len(pending) > workers:
            collect(pending.popleft())

    try:
        splitter = RecordSplitter()
        while block := stream.read(BLOCK_BYTES):
            splitter.feed(block)
            if splitter.tail_bytes > MAX_RECORD_BYTES:
                # One record too long, or a stray quote fooled the parity: parse to know which.
                whole = splitter.take()
                try:
                    boundary = resync(splitter.buf, line + whole.count(b"\n"))
                except RecordFault as exc:
                    if whole:
                        dispatch(whole)
                    while pending:  # a fault earlier in the file is the one to report
                        collect(pending.popleft())
                    raise IngestRejected(f"{name}: {exc}") from None
                dispatch(whole + splitter.take(boundary))
            elif splitter.cut >= chunk_bytes:
                dispatch(splitter.take())
        if splitter.buf:
            dispatch(splitter.take(len(splitter.buf)))
        while pending:
            collect(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _STATE = None
    if rows == 0 and not faults.total:
        raise IngestRejected(f"{name}: the file has a header but no data rows")
    return rows, changed
