"""`oncofed hub flower …` and `oncofed node flower …` — Flower's deployment engine for the hub
operator (a SuperLink) and a centre admin (a SuperNode); docs/flower-operations.md is the guide.

    oncofed hub flower up [-c hub.toml] [--foreground]     start the SuperLink ([flower] in hub.toml)
    oncofed hub flower status [--json]                     running, address, SuperNodes, recent runs
    oncofed hub flower register CENTRE.pub [--name N]      admit a centre's SuperNode key
    oncofed hub flower down                                stop it (SIGTERM, then SIGKILL)
    oncofed node flower key [-n NODE]                      make this centre's SuperNode key pair
    oncofed node flower serve --superlink HOST:PORT        run this centre's SuperNode (foreground)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from oncofed.cli.common import hub_report, limit_option, until_signal
from oncofed.cli.hub_cmd import config_option
from oncofed.cli.keys_cmd import KEY_PASSPHRASE_ENV
from oncofed.cli.node_serve_cmd import node_dir_option
from oncofed.cli.output import emit_json, json_option, plural


@click.group("flower")
def hub_flower() -> None:
    """Run the federation's Flower SuperLink: TLS from the federation root, SuperNode
    authentication, state in [flower] directory (hub.toml)."""


@hub_flower.command("up")
@config_option
@click.option("--foreground", is_flag=True, help="Stay attached until SIGTERM or Ctrl-C, then stop it (for systemd).")
@click.option("--timeout", type=click.FloatRange(1, 600), default=60.0, show_default=True,
              help="Seconds to wait for the SuperLink to accept connections.")
@json_option
def up(config_path: Path, foreground: bool, timeout: float, as_json: bool) -> None:
    """Start the SuperLink on [flower] listen (default 127.0.0.1:9092) with the hub's TLS
    certificate, `--database` in [flower] directory, and only registered SuperNodes admitted."""
    from oncofed.federation.hub.config import load
    from oncofed.flower.operate import hub_down, hub_up

    cfg = load(config_path)
    phrase = os.environ.get(KEY_PASSPHRASE_ENV)
    proc = hub_up(cfg, phrase.encode() if phrase else None, timeout=timeout)
    info = {"running": True, "pid": proc.pid, "address": f"{cfg.flower_host}:{cfg.flower_port}",
            "database": str(cfg.flower_dir / "superlink.db"), "log": str(proc.log_path),
            "supernode_auth": cfg.flower_supernode_auth}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"SuperLink up on {info['address']} (pid {proc.pid}, TLS, "
                   f"{'SuperNode authentication' if cfg.flower_supernode_auth else 'no SuperNode authentication'}); "
                   f"log {proc.log_path}")
    if not foreground:
        return
    sys.stdout.flush()
    from oncofed.flower.operate import wait_while_running

    with until_signal() as stop:
        try:
            ended = not wait_while_running(proc, stop)
        finally:
            hub_down(cfg)
    if ended:
        from oncofed.flower.deploy import FlowerError

        raise FlowerError(f"the SuperLink stopped on its own; last log line: {proc.last_line()}")
    click.echo("stopped")


@hub_flower.command("down")
@config_option
@click.option("--grace", type=click.FloatRange(0, 300), default=15.0, show_default=True,
              help="Seconds for a clean shutdown before SIGKILL.")
@json_option
def down(config_path: Path, grace: float, as_json: bool) -> None:
    """Stop the SuperLink and every process it started; its database keeps runs and registered
    SuperNodes for the next `up`."""
    from oncofed.federation.hub.config import load
    from oncofed.flower.operate import hub_down

    stopped = hub_down(load(config_path), grace=grace)
    if as_json:
        emit_json({"stopped": stopped})
    else:
        click.echo("SuperLink stopped" if stopped else "no SuperLink was running")


@hub_flower.command("status")
@config_option
@limit_option("runs")
@json_option
def status(config_path: Path, limit: int, as_json: bool) -> None:
    """Whether the SuperLink runs, its address, the SuperNodes it knows and the recent runs."""
    from oncofed.flower.operate import hub_status

    report = hub_report(config_path, hub_status, limit=limit, as_json=as_json)
    if report is None:
        return
    if not report["running"]:
        click.echo(f"SuperLink not running ({report.get('note') or 'start it with `oncofed hub flower up`'})")
        return
    click.echo(f"SuperLink running on {report['address']} (pid {report['pid']}); "
               f"{plural(len(report['nodes']), 'SuperNode')} registered")
    for n in report["nodes"]:
        click.echo(f"  node {n['node_id']:<22} {n['status']:<10} since {n['online_at'] or n['created_at']}")
    click.echo("recent runs:" if report["runs"] else "no runs yet")
    for r in report["runs"]:
        click.echo(f"  run {r['run_id']:<22} {r['status']:<20} {r['elapsed'] or 0:>8.1f} s  {r['pending_at']}")


@hub_flower.command("register")
@click.argument("public_key", type=click.Path(path_type=Path, dir_okay=False))
@config_option
@click.option("--name", default=None, help="A name for the SuperNode (e.g. the centre's id), shown in status.")
@json_option
def register(public_key: Path, config_path: Path, name: str | None, as_json: bool) -> None:
    """Admit a centre's SuperNode: register the public key its admin sent
    (`oncofed node flower key` made it); compare the fingerprint with theirs out of band."""
    from oncofed.federation.hub.config import load
    from oncofed.flower.operate import hub_register

    done = hub_register(load(config_path), public_key, name)
    if as_json:
        emit_json(done)
    else:
        click.echo(f"registered SuperNode {done['node_id']} (key {done['fingerprint']})")


@click.group("flower")
def node_flower() -> None:
    """Run this centre's Flower SuperNode: it dials the hub's SuperLink (outbound only) and runs
    the oncofed ClientApp over this node directory."""


@node_flower.command("key")
@node_dir_option
@json_option
def key(node_dir: Path, as_json: bool) -> None:
    """Make this centre's SuperNode key pair (ECDSA P-384, OpenSSH format) in NODE/flower/keys/:
    send the .pub file to the hub operator; the private key (0600) never leaves."""
    from oncofed.flower.operate import node_key

    made = node_key(node_dir)
    if as_json:
        emit_json(made)
        return
    click.echo(f"private key {made['private_key']} (0600, keep it here)")
    click.echo(f"public key  {made['public_key']}  fingerprint {made['fingerprint']}")
    click.echo("send the public key to the hub operator: oncofed hub flower register FILE --name CENTRE")


@node_flower.command("serve")
@node_dir_option
@click.option("--superlink", required=True, envvar="ONCOFED_SUPERLINK", show_envvar=True,
              help="The hub's SuperLink, host:port (the name must be in the hub's certificate).")
@click.option("--root-cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The federation root certificate (default: node.toml [tls] root).")
@click.option("--port", type=click.IntRange(1, 65535), default=9094, show_default=True,
              help="Loopback port for this SuperNode's ClientApp processes (one per SuperNode on a machine).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
              help="Seconds to wait for the SuperLink to accept this SuperNode.")
def serve(node_dir: Path, superlink: str, root_cert: Path | None, port: int, timeout: float) -> None:
    """Run this centre's SuperNode until SIGTERM or Ctrl-C: it joins the SuperLink with this
    centre's key and answers oncofed analyses from this node directory."""
    from oncofed.flower.deploy import FlowerError
    from oncofed.flower.operate import node_serve, supernode_spec, wait_while_running

    spec = supernode_spec(node_dir, superlink, root_cert=root_cert, port=port)
    with until_signal() as stop:
        proc, node_id = node_serve(spec, timeout=timeout)
        try:
            click.echo(f"SuperNode joined {superlink} as Flower node {node_id} (pid {proc.pid}); log {proc.log_path}")
            sys.stdout.flush()
            ended = not wait_while_running(proc, stop)
        finally:
            proc.stop()
    if ended:
        raise FlowerError(f"the SuperNode stopped on its own; last log line: {proc.last_line()}")
    click.echo("stopped")
