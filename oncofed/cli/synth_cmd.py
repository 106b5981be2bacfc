"""`oncofed synth` — placeholder until the synthetic generator lands."""

from __future__ import annotations

import click


@click.command()
def synth() -> None:
    """Write synthetic registry CSVs (one per centre) from a seed."""
    raise click.ClickException("not implemented yet")
