"""`oncofed dictionary` — show the data dictionary a federation agrees on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from oncofed import dictionary as dictmod
from oncofed.cli.output import emit_json, json_option
from oncofed.errors import UsageError


@click.group()
def dictionary() -> None:
    """The data dictionary: fields, types, codes and their editions."""


@dictionary.command("show")
@click.option("--extension", type=click.Path(path_type=Path), default=None,
              help="A federation extension file to load on top of the core dictionary.")
@click.option("--field", "only", multiple=True,
              help="Show only these fields, by CSV column or stored name (repeatable).")
@json_option
def show(extension: Path | None, only: tuple[str, ...], as_json: bool) -> None:
    """Print every field as a CSV must name it, with its type, codes or range, unit and description.

    Fields are listed under their CSV column; identifiers are pseudonymised on ingest (the store
    keeps a keyed hash, under the stored name shown); derived fields are computed, not read.
    """
    try:
        d = dictmod.load(extension)
    except dictmod.DictionaryError as exc:
        raise UsageError(str(exc)) from None
    by_name = {**{f.column: f for f in d.input_fields}, **d.fields}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise UsageError(f"unknown {'field' if len(unknown) == 1 else 'fields'}: {', '.join(unknown)}")
    wanted = {by_name[n].name for n in only}
    data = d.to_json()
    for f in data["fields"]:
        field = d.fields[f["name"]]
        f["csv_column"] = field.column if field.input else None
        f["pseudonymised"] = field.type == "id"
    if only:
        data["fields"] = [f for f in data["fields"] if f["name"] in wanted]
    if as_json:
        emit_json(data)
        return
    click.echo(f"{d.label()}" + (f"  (extension sha256 {d.extension_sha256[:16]}…)" if d.extension_sha256 else ""))
    click.echo("A CSV file names its columns as shown; optional columns may be left out.")
    for f in data["fields"]:
        click.echo(f"\n{f['csv_column'] or f['name']}  ({', '.join(_tags(f))}){_range(f)}")
        click.echo(f"    {f['description']}")
        if "code_set" in f:
            click.echo(f"    code set: {f['code_set']}")
        if "codes" in f and f["type"] != "boolean":
            codes = ", ".join(f"{k}={v}" for k, v in f["codes"].items())
            click.echo(f"    codes: {codes}")


def _tags(f: dict[str, Any]) -> list[str]:
    tags = [f["type"]]
    if f["required"]:
        tags.append("required")
    if "derived_at_query_from_outcome" in f:
        tags.append("derived per query, never stored, not a CSV column")
    elif f["derived"]:
        tags.append("derived at ingest, not a CSV column")
    if f["pseudonymised"]:
        stored = f" named {f['name']}" if f["name"] != f["csv_column"] else ""
        tags.append(f"pseudonymised on ingest: stored as a keyed hash{stored}, never as written")
    if not f["stored"] and "derived_at_query_from_outcome" not in f:
        tags.append("not stored")
    if f["extension"]:
        tags.append("extension")
    return tags


def _range(f: dict[str, Any]) -> str:
    rng = f"  range {f.get('min', '')}..{f.get('max', '')}" if "min" in f or "max" in f else ""
    return rng + (f"  [{f['unit']}]" if "unit" in f else "")
