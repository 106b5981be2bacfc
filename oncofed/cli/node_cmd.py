"""`oncofed node` — a centre admin's commands for the node and its store."""

from __future__ import annotations

import click


@click.group()
def node() -> None:
    """Run and administer this centre's node: store, ingest, status."""
