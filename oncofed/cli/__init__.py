"""`oncofed` — one command line for every role; each subcommand is a thin layer over a library.

Every failure oncofed anticipates is an OncofedError: printed as one line on stderr with its exit
code, or with `--json` as a JSON object on stdout (oncofed.cli.output) with the same exit code.
Anything else is a bug and keeps its traceback.

Exit codes: 0 done; 1 refused (node, trust, keys); 2 the command line, a file argument or a
query is wrong; 3 an ingest file was rejected (nothing loaded); 4 `node trust status`: the node
may not answer.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from oncofed import __version__
from oncofed.cli.output import emit_error, wants_json
from oncofed.errors import OncofedError

ARGV_META = "oncofed.argv"


class OncofedGroup(click.Group):
    """A click group that turns OncofedError into one readable line and its exit code (with
    `--json`: a JSON error object, same exit code)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta.setdefault(ARGV_META, list(args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OncofedError as exc:
            self._fail(ctx, str(exc), exc.exit_code, type(exc).__name__)
        except click.ClickException as exc:
            if not wants_json(ctx, ctx.meta.get(ARGV_META, ())):
                raise
            self._fail(ctx, exc.format_message(), exc.exit_code, type(exc).__name__)

    @staticmethod
    def _fail(ctx: click.Context, message: str, exit_code: int, kind: str) -> NoReturn:
        if wants_json(ctx, ctx.meta.get(ARGV_META, ())):
            emit_error(message, exit_code, kind)
        else:
            click.echo(f"error: {message}", err=True)
        sys.exit(exit_code)


@click.group(cls=OncofedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="oncofed")
def main() -> None:
    """oncofed: federated aggregate queries and analyses across cancer centres.

    Patient data stays at each centre; only aggregates that passed the centre's own disclosure
    control leave it.
    """


def _register() -> None:
    from oncofed.cli import (
        analyse_cmd,
        analyse_flower_cmd,  # noqa: F401 - registers `analyse flower` on the analyse group
        authority_cmd,
        dictionary_cmd,
        flower_cmd,
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
    main.add_command(analyse_cmd.analyse)
    node_cmd.node.add_command(node_permits_cmd.permits)
    node_cmd.node.add_command(node_permits_cmd.trust)
    node_cmd.node.add_command(node_audit_cmd.audit)
    node_cmd.node.add_command(node_serve_cmd.serve)
    hub_cmd.hub.add_command(flower_cmd.hub_flower)
    node_cmd.node.add_command(flower_cmd.node_flower)


_register()
