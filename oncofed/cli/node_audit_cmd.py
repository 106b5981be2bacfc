"""`oncofed node audit` — read, verify, export and sign the node's audit log (docs/audit.md).

A thin layer over oncofed.node.audit: `verify` exits 0 when the log is intact and 1, with one
line saying where and what, when it is not. It checks signatures with the centre's keys from the
pinned registry — not a key file named in node.toml, which whoever could edit the log could swap
too — and the log's length against every signed head it is given (`--head FILE`). `head` prints
the node's signed head, for the admin to keep somewhere the node cannot reach.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from oncofed.cli.output import emit_json, json_option
from oncofed.errors import NodeError, UsageError
from oncofed.keys.identity import PublicIdentity
from oncofed.keys.keystore import load_public
from oncofed.node.audit import AuditEntry, AuditLog, journal_path, open_audit
from oncofed.node.audit_heads import open_head, read_head_file
from oncofed.node.audit_text import printable
from oncofed.node.node import Node, open_node
from oncofed.node.trust import NodeTrust
from oncofed.node.trust_audit import CentreKeys, centre_keys

node_dir_option = click.option(
    "--node", "-n", "node_dir", type=click.Path(path_type=Path), default=Path("."),
    envvar="ONCOFED_NODE_DIR", show_default=True, show_envvar=True,
    help="The node directory (made by `oncofed node init`).")


def _line(e: AuditEntry) -> str:
    """One entry for a terminal: every string escaped, so no stored text can drive it."""
    return printable(_raw_line(e))


def _raw_line(e: AuditEntry) -> str:
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


def _keys(node: Node, insecure_key: Path | None, root_fingerprint: str | None) -> CentreKeys:
    """The centre's keys from the pinned registry, or — only when asked by its loud name — a
    public key file."""
    trust = NodeTrust(node.db, node.config.node_id)
    pinned = trust.root_fingerprint()
    if root_fingerprint is not None:
        expected = root_fingerprint.strip().lower().replace(":", "")
        if pinned != expected:
            raise NodeError(f"this store's pinned root is {pinned or 'none'}, not the root you "
                            "expected: its registry, and the keys in it, are not the federation's")
    if insecure_key is None:
        return centre_keys(trust, node.config.node_id)
    public: PublicIdentity = load_public(insecure_key)
    if public.member_id != node.config.node_id:
        raise NodeError(f"the public key is {public.role} {public.member_id!r}'s, not this node's")
    return CentreKeys((public,), f"INSECURE: key file {insecure_key}, not the pinned registry")


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
@click.option("--head", "head_files", multiple=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A signed audit head kept outside the node (from the hub, a reply, or "
                   "`audit head`): the log must still hold its entry. Repeatable.")
@click.option("--root-fingerprint", default=None,
              help="Refuse unless the store's pinned federation root has this SHA-256 "
                   "fingerprint (the registry the keys come from is only as good as the root).")
@click.option("--insecure-public-key", type=click.Path(path_type=Path, exists=True,
                                                       dir_okay=False), default=None,
              help="INSECURE: check signatures with this identity.pub instead of the centre's "
                   "key in the pinned registry (whoever could edit the log could swap the file).")
@node_dir_option
@json_option
def verify(head_files: tuple[Path, ...], root_fingerprint: str | None,
           insecure_public_key: Path | None, node_dir: Path, as_json: bool) -> None:
    """Check the chain, checkpoints and the log's length; exit 1 if anything was altered."""
    heads = [(f"head {i} of {f}", h) for f in head_files for i, h in enumerate(read_head_file(f), 1)]
    with open_node(node_dir) as node:
        keys = _keys(node, insecure_public_key, root_fingerprint)
        if heads and not keys.found:
            raise UsageError(f"cannot check --head: {keys.source}")
        log = AuditLog(node.conn, head_journal=journal_path(node))
        report = log.verify(keys.keys, heads=heads, key_source=keys.source)
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


@audit.command("head")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the signed head (hex) to this file, e.g. on another machine's share.")
@node_dir_option
@json_option
def head(out: Path | None, node_dir: Path, as_json: bool) -> None:
    """Print the node's signed audit head (entry id and hash of the newest entry), to keep
    outside the node and check later with `audit verify --head FILE`."""
    with open_node(node_dir) as node:
        log = open_audit(node)
        try:
            envelope = log.signed_head()
            assert log.signer is not None
            signed = open_head(envelope, {log.signer.public.signing_key_id: log.signer.public},
                               node.config.node_id)
        finally:
            log.close()
    seq, hash_ = signed.seq, signed.entry_hash
    if out is not None:
        out.write_text(envelope.hex() + "\n", encoding="ascii")
    if as_json:
        emit_json({"node_id": node.config.node_id, "seq": seq, "entry_hash": hash_,
                   "head": envelope.hex()})
    elif out is None:
        click.echo(envelope.hex())
    else:
        click.echo(f"head of {node.config.node_id}: entry {seq} hash {hash_}, signed; written to {out}")


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
