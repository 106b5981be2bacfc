"""`oncofed node audit` — read, verify, export and sign the node's audit log (docs/audit.md).

A thin layer over oncofed.node.audit: `verify` exits 0 when the log is intact and 1, with one
line saying where and what, when it is not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from oncofed.cli.output import emit_json, json_option
from oncofed.errors import NodeError
from oncofed.keys.identity import PublicIdentity
from oncofed.keys.keystore import PUBLIC_NAME, load_public
from oncofed.node.audit import AuditEntry, AuditLog, open_audit
from oncofed.node.keyfiles import identity_key_path, load_node_identity
from oncofed.node.node import Node, open_node

node_dir_option = click.option(
    "--node", "-n", "node_dir", type=click.Path(path_type=Path), default=Path("."),
    envvar="ONCOFED_NODE_DIR", show_default=True, show_envvar=True,
    help="The node directory (made by `oncofed node init`).")


def _line(e: AuditEntry) -> str:
    parts = [f"{e.seq:>6}", e.at, e.event, e.decision]
    if e.reason:
        parts.append(f"reason={e.reason}")
    parts.append(f"who={e.who}")
    if e.permit_hash:
        parts.append(f"permit={e.permit_hash[:12]}")
    if e.query_hash:
        parts.append(f"query={e.query_hash[:12]}")
    if e.analysis:
        parts.append(f"analysis={e.analysis}")
    if e.fields:
        parts.append(f"fields={','.join(e.fields)}")
    if e.cells_suppressed or e.cells_perturbed:
        parts.append(f"cells suppressed/perturbed={e.cells_suppressed}/{e.cells_perturbed}")
    if e.epsilon_spent:
        parts.append(f"ε={e.epsilon_spent:g}")
    return "  ".join(parts)


def _public_key(node: Node, given: Path | None) -> PublicIdentity | None:
    """The key checkpoints are checked with: --public-key, else the node's identity.pub (or
    its identity key) named in node.toml; None when the node has no identity."""
    if given is not None:
        public = load_public(given)
    else:
        key = identity_key_path(node.config, node.paths.root)
        if key is None:
            return None
        pub = (key if key.is_dir() else key.parent) / PUBLIC_NAME
        identity = None if pub.exists() else load_node_identity(node.config, node.paths.root)
        public = load_public(pub) if identity is None else identity.public
    if public.member_id != node.config.node_id:
        raise NodeError(f"the public key is {public.role} {public.member_id!r}'s, not this node's")
    return public


@click.group()
def audit() -> None:
    """The node's audit log: every request and decision, hash-chained and signed."""


@audit.command("show")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True,
              help="Show the newest N entries.")
@node_dir_option
@json_option
def show(limit: int, node_dir: Path, as_json: bool) -> None:
    """Show the newest audit entries, oldest first."""
    with open_node(node_dir) as node:
        entries = AuditLog(node.conn).entries(limit=limit)
    if as_json:
        emit_json([e.to_json() for e in entries])
        return
    if not entries:
        click.echo("the audit log is empty")
    for e in entries:
        click.echo(_line(e))


@audit.command("verify")
@click.option("--public-key", type=click.Path(path_type=Path, exists=True), default=None,
              help="The node's identity.pub to check checkpoints with (default: from node.toml).")
@node_dir_option
@json_option
def verify(public_key: Path | None, node_dir: Path, as_json: bool) -> None:
    """Check the chain and the signed checkpoints; exit 1 if anything was altered."""
    with open_node(node_dir) as node:
        key = _public_key(node, public_key)
        report = AuditLog(node.conn).verify(key)
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@audit.command("export")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True, help="jsonl keeps checkpoints (with signatures); csv is entries only.")
@node_dir_option
def export(file: Path, fmt: str, node_dir: Path) -> None:
    """Write the whole audit log to FILE for archiving or review."""
    with open_node(node_dir) as node:
        count = AuditLog(node.conn).export(file, fmt)
    click.echo(f"exported {count} entries to {file}")


@audit.command("checkpoint")
@node_dir_option
@json_option
def checkpoint(node_dir: Path, as_json: bool) -> None:
    """Sign the newest entry now with the node's identity key (e.g. before a backup)."""
    with open_node(node_dir) as node:
        log = open_audit(node)
        try:
            cp = log.checkpoint()
        finally:
            log.close()
    if as_json:
        emit_json(cp.to_json())
        return
    click.echo(f"checkpoint {cp.id}: entry {cp.seq} hash {cp.entry_hash} signed by key {cp.signer_key_id[:16]}…")
