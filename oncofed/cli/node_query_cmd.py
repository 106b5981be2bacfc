"""`oncofed node query FILE` — the centre admin's preview of a query on its own data.

It runs the same engine a researcher's query would (the centre's disclosure policy from node.toml,
k, perturbation), as the local admin (every field allowed, no permit, no budget), and finalises this
one centre's vector with the researcher's finaliser. Nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import click

from oncofed.cli.output import emit_json, json_option, plural


def disclosure_notes(disclosure: dict[str, Any]) -> list[str]:
    """What a newcomer needs to read the figures: small counts under cell key are noise."""
    from oncofed.analyses.ptable import MAX_DEVIATION

    k, mode, withheld = disclosure.get("k"), disclosure.get("mode"), disclosure.get("cells_suppressed") or 0
    notes = [f"{plural(withheld, 'value')} withheld (shown as 0) under k = {k}"] if withheld else []
    if mode == "cell_key":
        notes.append(f"cell-key perturbation: every count is the true count plus noise of at most "
                     f"±{MAX_DEVIATION} (0 stays 0), the same each time for the same patients; a small "
                     f"value such as 2–4 is perturbed noise released by design, not an exact small cell")
    elif mode == "threshold":
        notes.append(f"threshold mode: exact counts; a table with any cell from 1 to {k} − 1 is withheld whole")
    return notes


@click.command("query")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--node", "-n", "node_dir", type=click.Path(path_type=Path), default=Path("."),
              envvar="ONCOFED_NODE_DIR", show_default=True, show_envvar=True,
              help="The node directory (made by `oncofed node init`).")
@click.option("--format", "fmt", type=click.Choice(["auto", "json", "toml"]), default="auto", show_default=True,
              help="How FILE is written (auto: JSON when it starts with '{', else TOML).")
@click.option("--exact", is_flag=True,
              help="Skip disclosure control: the exact figures, for your own checks only — never release them.")
@click.option("--vector", "show_vector", is_flag=True, help="Also print the answer vector (values, then flags).")
@json_option
def query(file: Path, node_dir: Path, fmt: str, exact: bool, show_vector: bool, as_json: bool) -> None:
    """Preview a query (JSON or TOML) on this centre's data, as this centre would release it.

    See docs/queries.md for the query format. The preview applies the centre's disclosure policy
    ([query] in node.toml) unless --exact is given.
    """
    from oncofed.analyses import render
    from oncofed.node.answering import preview
    from oncofed.node.node import open_node
    from oncofed.node.query.engine import finalise_local, load_policy
    from oncofed.query import loads

    text = file.read_bytes()
    with open_node(node_dir) as node:
        body = loads(text, fmt, dictionary=node.dictionary)
        policy = load_policy(node)
        if exact:
            policy = dataclasses.replace(policy, mode="none")
        ans = preview(node, body, policy=policy, detail={"exact": exact})
        result = finalise_local(node, body, ans)
    disclosure = {"mode": ans.meta.get("mode"), "k": ans.meta.get("k"),
                  "cells_perturbed": ans.cells_perturbed, "cells_suppressed": ans.cells_suppressed,
                  "tail_censored_at_day": ans.meta.get("tail_censored_at_day")}
    if as_json:
        out: dict[str, Any] = {"result": result,
                               "disclosure": {k: v for k, v in disclosure.items() if v is not None}
                               | {"notes": disclosure_notes(disclosure)}}
        if show_vector:
            out["vector"] = [str(v) for v in ans.vector]
        emit_json(out)
        return
    click.echo(render(result))
    mode = "exact (not for release)" if disclosure["mode"] == "none" else f"{disclosure['mode']}, k = {disclosure['k']}"
    click.echo(f"disclosure control: {mode}")
    for note in disclosure_notes(disclosure):
        click.echo(textwrap.fill(note, width=100, initial_indent="  ", subsequent_indent="    ",
                                 break_on_hyphens=False))
    if show_vector:
        click.echo("vector: " + " ".join(str(v) for v in ans.vector))
