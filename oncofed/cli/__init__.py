"""`oncofed` — one command line for every role; each subcommand is a thin layer over a library.

Every failure oncofed anticipates is an OncofedError: printed as one line on stderr with its exit
code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from oncofed import __version__
from oncofed.errors import OncofedError


class OncofedGroup(click.Group):
    """A click group that turns OncofedError into one readable line and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OncofedError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=OncofedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="oncofed")
def main() -> None:
    """oncofed: federated aggregate queries and analyses across cancer centres.

    Patient data stays at each centre; only aggregates that passed the centre's own disclosure
    control leave it.
    """


def _register() -> None:
    from oncofed.cli import (
        authority_cmd,
        dictionary_cmd,
        hub_cmd,
        keys_cmd,
        node_audit_cmd,
        node_cmd,
        node_permits_cmd,
        node_serve_cmd,
        query_cmd,
        synth_cmd,
    )

    main.add_command(dictionary_cmd.dictionary)
    main.add_command(node_cmd.node)
    main.add_command(synth_cmd.synth)
    main.add_command(authority_cmd.authority)
    main.add_command(keys_cmd.keys)
    main.add_command(hub_cmd.hub)
    main.add_command(query_cmd.query)
    node_cmd.node.add_command(node_permits_cmd.permits)
    node_cmd.node.add_command(node_permits_cmd.trust)
    node_cmd.node.add_command(node_audit_cmd.audit)
    node_cmd.node.add_command(node_serve_cmd.serve)


_register()
