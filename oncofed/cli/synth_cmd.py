"""`oncofed synth` — synthetic registry CSVs, one per centre, reproducible from a seed.

A thin layer over `oncofed.synth`: it parses options, turns bad ones into UsageError (exit 2)
and prints one line per file (or a JSON summary for scripts).
"""

from __future__ import annotations

from pathlib import Path

import click

from oncofed import dictionary as dictmod
from oncofed.cli.output import emit_json, json_option
from oncofed.errors import UsageError
from oncofed.synth import DEFAULT_TODAY, MAX_CENTRES, parse_today, validate_counts, write_all


@click.command()
@click.option("--centres", type=int, default=3, show_default=True,
              help=f"Number of centres (1-{MAX_CENTRES}); centre A is a comprehensive cancer "
                   "centre, the others district hospitals.")
@click.option("--patients", type=int, default=1000, show_default=True,
              help="Patients per centre (a patient with two primaries has two rows).")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Seed: the same arguments always give byte-identical files.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Directory for centre-a.csv, centre-b.csv, ... (created if missing).")
@click.option("--extension", type=click.Path(path_type=Path), default=None,
              help="A federation extension TOML: also write its columns.")
@click.option("--today", "today", default=DEFAULT_TODAY.isoformat(), show_default=True,
              help="Data extraction date YYYY-MM-DD: no generated date is later.")
@click.option("--workers", type=int, default=None,
              help="Processes to generate with (default: one per CPU for large runs). "
                   "The files are identical for any number.")
@json_option
def synth(centres: int, patients: int, seed: int, out_dir: Path, extension: Path | None,
          today: str, workers: int | None, as_json: bool) -> None:
    """Write synthetic registry CSVs (one per centre) from a seed."""
    validate_counts(centres, patients)
    when = parse_today(today)
    try:
        d = dictmod.load(extension)
    except dictmod.DictionaryError as exc:
        raise UsageError(str(exc)) from None
    files = write_all(out_dir, centres, patients, seed, d, today=when, workers=workers)
    if as_json:
        emit_json({
            "seed": seed,
            "today": when.isoformat(),
            "dictionary": d.label(),
            "patients_per_centre": patients,
            "files": [
                {"centre": f.centre, "kind": f.kind, "path": str(f.path), "patients": f.patients,
                 "rows": f.rows, "bytes": f.bytes}
                for f in files
            ],
        })
        return
    for f in files:
        click.echo(f"{f.path}  centre {f.centre} ({f.kind})  {f.patients} patients  "
                   f"{f.rows} rows")
