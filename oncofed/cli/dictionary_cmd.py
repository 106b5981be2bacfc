"""`oncofed dictionary` — show the data dictionary a federation agrees on."""

from __future__ import annotations

from pathlib import Path

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
@click.option("--field", "only", multiple=True, help="Show only these fields (repeatable).")
@json_option
def show(extension: Path | None, only: tuple[str, ...], as_json: bool) -> None:
    """Print every field with its type, codes or range, unit and description."""
    try:
        d = dictmod.load(extension)
    except dictmod.DictionaryError as exc:
        raise UsageError(str(exc)) from None
    unknown = [n for n in only if n not in d.fields]
    if unknown:
        raise UsageError(f"unknown {'field' if len(unknown) == 1 else 'fields'}: {', '.join(unknown)}")
    data = d.to_json()
    if only:
        data["fields"] = [f for f in data["fields"] if f["name"] in only]
    if as_json:
        emit_json(data)
        return
    click.echo(f"{d.label()}" + (f"  (extension sha256 {d.extension_sha256[:16]}…)" if d.extension_sha256 else ""))
    for f in data["fields"]:
        tags = [f["type"]]
        if f["required"]:
            tags.append("required")
        if f["derived"]:
            tags.append("derived")
        if not f["stored"]:
            tags.append("not stored")
        if f["extension"]:
            tags.append("extension")
        rng = ""
        if "min" in f or "max" in f:
            rng = f"  range {f.get('min', '')}..{f.get('max', '')}"
        unit = f"  [{f['unit']}]" if "unit" in f else ""
        click.echo(f"\n{f['name']}  ({', '.join(tags)}){rng}{unit}")
        click.echo(f"    {f['description']}")
        if "code_set" in f:
            click.echo(f"    code set: {f['code_set']}")
        if "codes" in f and f["type"] != "boolean":
            codes = ", ".join(f"{k}={v}" for k, v in f["codes"].items())
            click.echo(f"    codes: {codes}")
