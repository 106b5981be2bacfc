"""`oncofed node permits` and `oncofed node trust` — a centre admin's trust decisions.

`trust` pins the federation root and installs registry and revocation-list versions;
`permits` records, approves, refuses and revokes data permits at this centre. Both are thin
layers over oncofed.node.trust, which keeps everything in the node's store.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from oncofed.cli.output import emit_json, json_option
from oncofed.errors import NodeError, UsageError
from oncofed.keys.registry import RevocationList, iso
from oncofed.node.config import NodePaths, load_config
from oncofed.node.trust import NodeTrust, PermitRecord

#: `node trust status` exits with this when the node may not answer (documented in its help).
NOT_ANSWERING_EXIT = 4

node_dir_option = click.option(
    "--node", "-n", "node_dir", type=click.Path(path_type=Path), default=Path("."),
    envvar="ONCOFED_NODE_DIR", show_default=True, show_envvar=True,
    help="The node directory (made by `oncofed node init`).")


@contextmanager
def _trust(node_dir: Path) -> Iterator[NodeTrust]:
    cfg = load_config(node_dir)
    store = NodePaths(node_dir).store
    if not store.exists():
        raise NodeError(f"{node_dir}: the store {store.name} is missing")
    t = NodeTrust.open(store, cfg.node_id)
    try:
        yield t
    finally:
        t.close()


def _admin() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _show_record(rec: PermitRecord, as_json: bool) -> None:
    if as_json:
        emit_json(rec.to_json())
        return
    p = rec.permit
    click.echo(f"{p.permit_id}  {rec.status.upper()}"
               + (f" by {rec.decided_by} at {iso(rec.decided_at)}" if rec.decided_at else "")
               + (f" ({rec.reason})" if rec.reason else ""))
    click.echo(f"  sha256           {rec.sha256}")
    click.echo(f"  project          {p.project_title}")
    click.echo(f"  researcher       {p.researcher.member_id} "
               f"(ed25519 {p.researcher.signing_fingerprint[:16]}…)")
    click.echo(f"  valid            {iso(p.not_before)} – {iso(p.not_after)}")
    click.echo(f"  analyses         {', '.join(p.allowed_analyses)}")
    click.echo(f"  fields           {', '.join(p.allowed_fields)}")
    click.echo(f"  outcomes         {', '.join(p.allowed_outcomes) or '— (no survival)'}")
    click.echo(f"  min cell count   {p.min_cell_count}")
    click.echo(f"  ε                {p.epsilon if p.epsilon is not None else '— (cell-key)'}")
    click.echo(f"  exact dates      {'allowed' if p.allow_exact_dates else 'month precision'}")
    click.echo(f"  data holders     {', '.join(p.data_holders) or 'every centre'}")


@click.group()
def permits() -> None:
    """Data permits at this centre: review, approve, refuse, revoke."""


@permits.command("add")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@node_dir_option
@json_option
def add(file: Path, node_dir: Path, as_json: bool) -> None:
    """Record a root-signed permit file as pending, to review before approving."""
    with _trust(node_dir) as t:
        _show_record(t.add_permit(file.read_bytes()), as_json)


@permits.command("list")
@node_dir_option
@json_option
def list_(node_dir: Path, as_json: bool) -> None:
    """Every permit known here with this centre's decision."""
    with _trust(node_dir) as t:
        recs = t.permits()
    if as_json:
        emit_json([r.to_json() for r in recs])
        return
    if not recs:
        click.echo("no permits; add one with: oncofed node permits add FILE")
    for r in recs:
        click.echo(f"{r.sha256[:12]}  {r.permit.permit_id:20} {r.status:9} "
                   f"{r.permit.researcher.member_id:16} until {iso(r.permit.not_after)}  "
                   f"{r.permit.project_title}")


@permits.command("show")
@click.argument("ref")
@node_dir_option
@json_option
def show(ref: str, node_dir: Path, as_json: bool) -> None:
    """Show a permit by id, SHA-256 or hash prefix."""
    with _trust(node_dir) as t:
        _show_record(t.permit(ref), as_json)


@permits.command("approve")
@click.argument("ref")
@click.option("--min-cell-count", "centre_min", type=click.IntRange(1), default=None,
              help="This centre's own minimum; refuse to approve a permit allowing less.")
@node_dir_option
@json_option
def approve(ref: str, centre_min: int | None, node_dir: Path, as_json: bool) -> None:
    """Approve a permit (id, hash, or a permit file to add first): pins its SHA-256."""
    with _trust(node_dir) as t:
        path = Path(ref)
        if path.is_file():
            ref = t.add_permit(path.read_bytes()).sha256
        _show_record(t.approve(ref, by=_admin(), centre_min_cells=centre_min), as_json)


@permits.command("refuse")
@click.argument("ref")
@click.option("--reason", required=True, help="Why, for this centre's records.")
@node_dir_option
@json_option
def refuse(ref: str, reason: str, node_dir: Path, as_json: bool) -> None:
    """Refuse a pending permit (it can still be approved later)."""
    with _trust(node_dir) as t:
        _show_record(t.refuse(ref, by=_admin(), reason=reason), as_json)


@permits.command("revoke")
@click.argument("ref")
@click.option("--reason", required=True, help="Why, for this centre's records.")
@node_dir_option
@json_option
def revoke(ref: str, reason: str, node_dir: Path, as_json: bool) -> None:
    """Withdraw this centre's approval at once (final)."""
    with _trust(node_dir) as t:
        _show_record(t.revoke(ref, by=_admin(), reason=reason), as_json)


@click.group()
def trust() -> None:
    """This node's trust state: pinned root, registry and revocation list."""


@trust.command("pin")
@click.argument("root_cert", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--fingerprint", required=True,
              help="The root's SHA-256 fingerprint, as the authority gave it to you out of band.")
@node_dir_option
def pin(root_cert: Path, fingerprint: str, node_dir: Path) -> None:
    """Pin the federation root certificate (once; a node belongs to one federation)."""
    with _trust(node_dir) as t:
        fp = t.pin_root(root_cert.read_bytes(), fingerprint)
    click.echo(f"pinned federation root {fp}")


@trust.command("update")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(path_type=Path, exists=True, dir_okay=False))
@node_dir_option
@json_option
def update(files: tuple[Path, ...], node_dir: Path, as_json: bool) -> None:
    """Install newer registry and/or revocation-list files; show the members that changed."""
    out = []
    with _trust(node_dir) as t:
        for f in files:
            kind, result = t.install(f.read_bytes())
            item: dict[str, Any] = {"file": str(f), "kind": kind,
                                    "installed": result is not None}
            if isinstance(result, RevocationList):
                item["version"] = result.version
            else:
                reg = t.registry()
                item |= {"version": reg.version if reg else None,
                         "changes": result.to_json() if result else None}
            out.append(item)
    if as_json:
        emit_json(out)
        return
    for o in out:
        verb = "installed" if o["installed"] else "already held"
        click.echo(f"{verb} {o['kind']} v{o['version']} from {o['file']}")
        for kind, rows in (o.get("changes") or {}).items():
            for m in rows:
                click.echo(f"  {kind:8} {m['role']:10} {m['member_id']:24} "
                           f"ed25519 {m['ed25519_sha256'][:16]}…")


@trust.command("status")
@click.option("--check", is_flag=True, hidden=True,
              help="Kept for old scripts: status always exits 4 when the node may not answer.")
@node_dir_option
@json_option
def status(check: bool, node_dir: Path, as_json: bool) -> None:
    """Whether this node may answer: root pinned, registry and revocation list fresh.

    Exit codes: 0 the node may answer; 4 it may not (no root pinned, no or stale registry or
    revocation list, not a centre in the registry), with the reason printed; 1 the node
    directory or its store cannot be read.
    """
    with _trust(node_dir) as t:
        st = t.status()
    if as_json:
        emit_json(st.to_json())
    elif st.ready:
        click.echo(f"READY: {st.message}")
    else:
        click.echo(f"NOT ANSWERING ({st.state.replace('-', ' ')}): {st.message}")
    if not as_json and st.root_fingerprint:
        click.echo(f"  root {st.root_fingerprint}")
    if not st.ready:
        raise click.exceptions.Exit(NOT_ANSWERING_EXIT)


@trust.command("members")
@click.option("--new", "only_new", is_flag=True,
              help="Only what the newest registry changed against the one before.")
@node_dir_option
@json_option
def members(only_new: bool, node_dir: Path, as_json: bool) -> None:
    """Members of the federation in the installed registry."""
    with _trust(node_dir) as t:
        reg = t.registry()
        if reg is None:
            raise UsageError("no registry installed; run: oncofed node trust update FILE")
        changes = t.changes_in_latest()
    if only_new:
        data = changes.to_json() if changes else {}
        if as_json:
            emit_json(data)
            return
        for kind, rows in data.items():
            for m in rows:
                click.echo(f"{kind:8} {m['role']:10} {m['member_id']}")
        return
    rows = [m.to_json() for m in reg.members]
    if as_json:
        emit_json(rows)
        return
    for m in rows:
        click.echo(f"{m['role']:10} {m['member_id']:24} since v{m['added_in_version']:<4} "
                   f"ed25519 {str(m['ed25519_sha256'])[:16]}…")
