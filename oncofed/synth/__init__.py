"""Synthetic registry data: one CSV per centre, reproducible byte for byte from a seed.

Centres need realistic data to exercise ingest, disclosure control and the federated statistics
without any real patient ever being involved. Each centre draws from its own random streams
(derived from the run seed, the centre's index and a fixed-size chunk of its patients), so the
same arguments always give the same files, adding a centre leaves the others unchanged, and
large runs can use several processes without changing a byte. Rows are streamed to disk: memory
stays bounded however many patients are asked for.

    from oncofed import dictionary
    from oncofed.synth import write_centres
    write_centres(Path("out"), centres=3, patients=1000, seed=42, dictionary=dictionary.load())
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TextIO

from oncofed.dictionary import Dictionary
from oncofed.dictionary import load as load_dictionary
from oncofed.errors import UsageError
from oncofed.synth.centres import CentreProfile, centre_letter
from oncofed.synth.days import parse_today
from oncofed.synth.draws import derive_seed
from oncofed.synth.generator import CHUNK_PATIENTS, CentreGenerator
from oncofed.synth.state import MAX_CENTRES

DEFAULT_TODAY = date(2026, 6, 30)
# Below this many patients in a run, starting worker processes costs more than it saves.
PARALLEL_MIN_PATIENTS = 100_000

__all__ = [
    "CHUNK_PATIENTS",
    "DEFAULT_TODAY",
    "MAX_CENTRES",
    "CentreFile",
    "CentreProfile",
    "centre_filename",
    "centre_letter",
    "centre_profile",
    "derive_seed",
    "generate_centre",
    "generate_rows",
    "parse_today",
    "validate_counts",
    "write_all",
    "write_centre",
    "write_centres",
]


@dataclass(frozen=True)
class CentreFile:
    """What one written centre file holds (for summaries and tests)."""

    centre: str
    path: Path
    patients: int
    rows: int
    bytes: int
    kind: str


def centre_filename(centre_index: int) -> str:
    """`centre-a.csv` for centre 0, `centre-b.csv` for centre 1, ..."""
    return f"centre-{centre_letter(centre_index).lower()}.csv"


def centre_profile(centre_index: int, seed: int,
                   dictionary: Dictionary | None = None) -> CentreProfile:
    """The case-mix and follow-up profile a centre is generated with (for reports and tests)."""
    gen = CentreGenerator(centre_index, 0, seed, dictionary or load_dictionary(), DEFAULT_TODAY)
    return gen.profile


def generate_rows(centre_index: int, n_patients: int, seed: int,
                  dictionary: Dictionary | None = None, *,
                  today: date | str = DEFAULT_TODAY) -> Iterator[list[str]]:
    """Rows as lists in `dictionary.input_columns` order: the fast path the writer uses."""
    gen = CentreGenerator(centre_index, n_patients, seed, dictionary or load_dictionary(), today)
    return gen.rows()


def generate_centre(centre_index: int, n_patients: int, seed: int,
                    dictionary: Dictionary | None = None, *,
                    today: date | str = DEFAULT_TODAY) -> Iterator[dict[str, str]]:
    """Rows as dicts keyed by input column ('' = missing), one per primary tumour, lazily.

    `n_patients` counts patients: a patient with a second primary yields two rows.
    """
    gen = CentreGenerator(centre_index, n_patients, seed, dictionary or load_dictionary(), today)
    columns = gen.columns
    return (dict(zip(columns, row, strict=True)) for row in gen.rows())


def _write_rows(fh: TextIO, rows: Iterator[list[str]]) -> int:
    """Stream rows through the csv module in batches (`writerows` is cheaper per row)."""
    writer = csv.writer(fh, delimiter=",", lineterminator="\n")
    n = 0
    batch: list[list[str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == 4096:
            writer.writerows(batch)
            n += 4096
            batch = []
    writer.writerows(batch)
    return n + len(batch)


def _open(path: Path) -> TextIO:
    """UTF-8, `\n` line endings (the csv module writes them; no newline translation)."""
    return open(path, "w", encoding="utf-8", newline="", buffering=1 << 20)


def _write_chunk(centre_index: int, n_patients: int, seed: int, dictionary: Dictionary,
                 today: date, chunk: int, part: Path) -> int:
    """Worker: one chunk of one centre to its own part file (no header)."""
    gen = CentreGenerator(centre_index, n_patients, seed, dictionary, today)
    with _open(part) as fh:
        return _write_rows(fh, gen.chunk_rows(chunk))


def write_centre(path: Path, centre_index: int, n_patients: int, seed: int,
                 dictionary: Dictionary | None = None, *,
                 today: date | str = DEFAULT_TODAY) -> CentreFile:
    """Write one centre's CSV in this process, streaming; the file appears only once complete."""
    d = dictionary or load_dictionary()
    gen = CentreGenerator(centre_index, n_patients, seed, d, today)
    tmp = path.with_name(path.name + ".partial")
    try:
        with _open(tmp) as fh:
            csv.writer(fh, lineterminator="\n").writerow(gen.columns)
            rows = _write_rows(fh, gen.rows())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _summary(gen, path, rows)


def _summary(gen: CentreGenerator, path: Path, rows: int) -> CentreFile:
    return CentreFile(centre=gen.profile.letter, path=path, patients=gen.n_patients, rows=rows,
                      bytes=path.stat().st_size, kind=gen.profile.kind)


def validate_counts(centres: int, patients: int) -> None:
    """Refuse impossible requests before any file is touched."""
    if not 1 <= centres <= MAX_CENTRES:
        raise UsageError(f"--centres must be between 1 and {MAX_CENTRES}, got {centres}")
    if patients < 1:
        raise UsageError(f"--patients must be at least 1, got {patients}")


def default_workers(centres: int, patients: int) -> int:
    """Processes worth starting: one per CPU (at most 8), none extra for small runs."""
    if centres * patients < PARALLEL_MIN_PATIENTS:
        return 1
    chunks = centres * -(-patients // CHUNK_PATIENTS)
    return max(1, min(os.cpu_count() or 1, 8, chunks))


def write_all(out_dir: Path, centres: int, patients: int, seed: int,
              dictionary: Dictionary | None = None, *,
              today: date | str = DEFAULT_TODAY, workers: int | None = None) -> list[CentreFile]:
    """Write `centre-a.csv` ... for `centres` centres of `patients` patients each.

    `workers` > 1 generates chunks in that many processes; the files are identical either way.
    """
    validate_counts(centres, patients)
    when = parse_today(today)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    d = dictionary or load_dictionary()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out_dir}: {exc.strerror}") from None
    n_workers = workers or default_workers(centres, patients)
    if n_workers == 1:
        return [
            write_centre(out_dir / centre_filename(i), i, patients, seed, d, today=when)
            for i in range(centres)
        ]
    return _write_parallel(out_dir, centres, patients, seed, d, when, n_workers)


def _write_parallel(out_dir: Path, centres: int, patients: int, seed: int, d: Dictionary,
                    today: date, workers: int) -> list[CentreFile]:
    """Chunks in worker processes; each centre file is its header plus its parts in order.

    Parts are appended (and deleted) as soon as every earlier part of the centre is done, so
    disk use stays near the size of the output.
    """
    gens = [CentreGenerator(i, patients, seed, d, today) for i in range(centres)]
    tmps = [out_dir / (centre_filename(i) + ".partial") for i in range(centres)]
    parts: list[list[tuple[Path, Future[int]]]] = []
    files: list[CentreFile] = []
    pool = ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context(_start_method()))
    try:
        for i, gen in enumerate(gens):
            parts.append([
                (part, pool.submit(_write_chunk, i, patients, seed, d, today, k, part))
                for k in range(gen.n_chunks)
                for part in [out_dir / f"{centre_filename(i)}.part{k:05d}"]
            ])
        for i, gen in enumerate(gens):
            rows = 0
            with _open(tmps[i]) as out:
                csv.writer(out, lineterminator="\n").writerow(gen.columns)
                for part, fut in parts[i]:
                    rows += fut.result()
                    with open(part, encoding="utf-8", newline="") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                    part.unlink()
            path = out_dir / centre_filename(i)
            os.replace(tmps[i], path)
            files.append(_summary(gen, path, rows))
    except BaseException:
        # Stop queued chunks, let running ones finish, then leave no partial files behind.
        pool.shutdown(wait=True, cancel_futures=True)
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        for centre_parts in parts:
            for part, _ in centre_parts:
                part.unlink(missing_ok=True)
        raise
    pool.shutdown(wait=True)
    return files


def _start_method() -> str:
    """`fork` when it is safe (one thread: no lock can be copied while held) because `spawn`
    re-imports the caller's main module, which breaks scripts without a main guard; `spawn`
    otherwise (a process with threads, or a platform without fork)."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def write_centres(out_dir: Path, centres: int, patients: int, seed: int,
                  dictionary: Dictionary | None = None, *,
                  today: date | str = DEFAULT_TODAY, workers: int | None = None) -> list[Path]:
    """Write every centre's CSV and return their paths (see `write_all` for row counts)."""
    files = write_all(out_dir, centres, patients, seed, dictionary, today=today, workers=workers)
    return [f.path for f in files]
