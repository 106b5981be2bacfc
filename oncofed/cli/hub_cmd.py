"""`oncofed hub` — the hub operator's commands (for now: make the hub's keys)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from oncofed.cli.common import hub_report, limit_option, until_signal
from oncofed.cli.keys_cmd import (
    KEY_PASSPHRASE_ENV,
    create_member_keys,
    passphrase_option,
    print_created,
    read_passphrase,
)
from oncofed.cli.output import json_option
from oncofed.cli.settings_cmd import config_command
from oncofed.errors import UsageError


@click.group()
def hub() -> None:
    """Run the hub: the untrusted relay between researchers and centres."""


@hub.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--id", "member_id", default="hub", show_default=True,
              help="The hub's id in the federation registry.")
@passphrase_option
@click.option("--no-passphrase", is_flag=True,
              help="Store the private keys unencrypted (0600) for an unattended service.")
@json_option
def init(directory: Path, member_id: str, passphrase_file: Path | None, no_passphrase: bool,
         as_json: bool) -> None:
    """Create the hub's identity and TLS keys, CSR and enrolment request in DIRECTORY.

    The hub never holds the federation root: the authority enrols it like any member
    (`oncofed authority enroll hub DIRECTORY/enrolment-request.bin`).
    """
    if no_passphrase and passphrase_file:
        raise UsageError("--no-passphrase and --passphrase-file exclude each other")
    passphrase = None if no_passphrase else read_passphrase(
        passphrase_file, KEY_PASSPHRASE_ENV, what=f"the keys of {member_id}", confirm=True)
    print_created(create_member_keys(directory, "hub", member_id, passphrase), as_json)


config_option = click.option("--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                             default=Path("hub.toml"), envvar="ONCOFED_HUB_CONFIG", show_default=True,
                             show_envvar=True, help="The hub's settings file (see `oncofed hub config`).")


config_command(hub, "oncofed.federation.hub.config", "Print a hub.toml with every setting and its default, to fill in.")


@hub.command("serve")
@config_option
@click.option("--grace", type=click.FloatRange(0, 300), default=5.0, show_default=True,
              help="Seconds calls in flight may take to finish at shutdown.")
def serve(config_path: Path, grace: float) -> None:
    """Run the hub relay until SIGTERM or Ctrl-C (mutual TLS on [hub] listen).

    The hub relays sealed queries and sealed, masked answers it cannot read, keeps the queue in
    its SQLite database (a restart loses nothing) and the latest signed audit head of each centre.
    """
    import logging
    import sys

    from oncofed.federation.hub.config import load
    from oncofed.federation.hub.server import start_hub

    cfg = load(config_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with until_signal() as stop, start_hub(cfg) as server:
        click.echo(f"hub {cfg.hub_id} serving oncofed.v1.Hub on {cfg.host}:{server.port} (mutual TLS)")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        server.stop(grace)
    click.echo("stopped")


@hub.command("status")
@config_option
@limit_option("queries")
@json_option
def status(config_path: Path, limit: int, as_json: bool) -> None:
    """Centres online or offline (last seen), queue depth, recent queries — metadata only."""
    from oncofed.cli.output import plural
    from oncofed.federation.hub.status import hub_status

    report = hub_report(config_path, hub_status, limit=limit, as_json=as_json)
    if report is None:
        return
    click.echo(f"hub {report['hub']}: {plural(len(report['centres']), 'centre')} known, "
               f"{plural(report['queued_tasks'], 'task')} queued")
    for c in report["centres"]:
        head = f", signed audit head at entry {c['audit_head_seq']}" if c["audit_head_seq"] is not None else ""
        click.echo(f"  {c['centre']:<20} {'online ' if c['online'] else 'offline'}  last seen {c['last_seen']}"
                   f"  ({c['queued']} queued{head})")
        for r in c["audit_rewrites"]:
            click.echo(f"  {'':<20} its audit log was REWRITTEN at entry {r['entry']} (seen {r['seen']}): it signed "
                       f"two heads for that entry (oncofed hub head {c['centre']} --conflict --out FILE)")
    click.echo("recent queries:" if report["queries"] else "no queries yet")
    for q in report["queries"]:
        took = f"{q['seconds']:.2f} s" if q["seconds"] is not None else "open"
        click.echo(f"  {q['query_hash'][:16]}  {q['researcher']:<12} {q['state']:<10} "
                   f"{q['participants']}/{len(q['targets'])} centres  {took}  {q['created']}")


@hub.command("head")
@click.argument("centre")
@config_option
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the head here (hex) for `oncofed node audit verify --head FILE`.")
@click.option("--conflict", is_flag=True,
              help="Instead, the two heads CENTRE signed for one entry with different hashes, as JSON lines "
                   "(its first rewrite the hub saw; `hub status` lists them all).")
def head_cmd(centre: str, config_path: Path, out: Path | None, conflict: bool) -> None:
    """The newest signed audit head CENTRE sent the hub: evidence, held outside the centre, of
    how long its audit log was (the centre admin checks it with `node audit verify --head`).
    With --conflict, the head the hub kept for an entry and the one CENTRE signed later for the
    same entry with another hash: together, under the centre's own key, the proof that its log
    was rewritten there (`node audit verify --head FILE` checks both; at most one can hold)."""
    from oncofed.federation.hub.config import load
    from oncofed.federation.hub.status import hub_status

    report = hub_status(load(config_path), limit=1)
    held = next((c for c in report["centres"] if c["centre"] == centre), None)
    if conflict:
        rewrites = held["audit_rewrites"] if held is not None else []
        if not rewrites:
            raise UsageError(f"the hub has seen no rewritten entry in the audit log of {centre}")
        r = rewrites[0]
        text = "\n".join(json.dumps({"centre": centre, "entry": r["entry"], "kept": kept, "head": r[f"{kept}_head"]})
                         for kept in ("first", "second"))     # JSON lines, as `node audit verify --head` reads
        what = f"the two heads of {centre} for entry {r['entry']}"
    else:
        if held is None or not held["audit_head"]:
            raise UsageError(f"the hub holds no audit head of {centre}")
        text, what = held["audit_head"], f"the head of {centre} at entry {held['audit_head_seq']}"
    if out is None:
        click.echo(text)
        return
    out.write_text(text + "\n", "utf-8")
    click.echo(f"wrote {what} to {out}")
