"""`oncofed node serve` — run the node's local admin API in the foreground.

SIGTERM or Ctrl-C drains: health turns NOT_SERVING, calls in flight get `--grace` seconds, the
audit log is checkpointed when the node has an identity key, and the command exits 0.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from oncofed.cli.common import until_signal
from oncofed.errors import NodeError, OncofedError
from oncofed.node.audit import NODE, open_audit
from oncofed.node.config import NodePaths
from oncofed.node.node import Node, open_node
from oncofed.node.service import start_admin_server

if TYPE_CHECKING:
    from oncofed.node.connector import Connector

node_dir_option = click.option(
    "--node", "-n", "node_dir", type=click.Path(path_type=Path), default=Path("."),
    envvar="ONCOFED_NODE_DIR", show_default=True, show_envvar=True,
    help="The node directory (made by `oncofed node init`).")


def _log_to_node(paths: NodePaths) -> logging.Logger:
    """Everything oncofed logs while serving goes to logs/node.log in the node directory."""
    log = logging.getLogger("oncofed")
    if paths.logs.is_dir() and not any(isinstance(h, logging.FileHandler) for h in log.handlers):
        handler = logging.FileHandler(paths.logs / "node.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    return logging.getLogger("oncofed.node.serve")


def start_connector(node_dir: Path, node: Node) -> Connector | None:
    """The outbound hub connector when node.toml has [hub], on its own store connections."""
    from oncofed.keys.tls import load_tls_files
    from oncofed.node.answering import AnsweringPipeline
    from oncofed.node.connector import Connector, HubLink
    from oncofed.node.keyfiles import hub_settings, load_node_identity, tls_paths
    from oncofed.node.query.engine import load_policy
    from oncofed.node.verify import QueryVerifier

    hub = hub_settings(node.config)
    if hub is None:
        return None
    identity = load_node_identity(node.config, Path(node.paths.root))
    paths = tls_paths(node.config, Path(node.paths.root))
    if identity is None or paths is None:
        raise NodeError("node.toml: [hub] needs [identity] key and [tls] cert, key and root")
    if (identity.public.role, identity.public.member_id) != ("centre", node.config.node_id):
        raise NodeError(f"[identity] key is {identity.public.role}/{identity.public.member_id}, "
                        f"not centre/{node.config.node_id}")
    own = open_node(node_dir)
    verifier = QueryVerifier.for_node(own)
    try:
        tls = load_tls_files(*paths, root_fingerprint=verifier.trust.root_fingerprint())
        pipeline = AnsweringPipeline(own, verifier, load_policy(own))
    except BaseException:
        verifier.close()
        own.close()
        raise
    return Connector(pipeline, identity, tls, HubLink(hub["address"], hub["server_name"]),
                     min_participants=hub["min_participants"],
                     audit_head=verifier.audit.signed_head).start()  # on every reply (docs/audit.md)


@click.command("serve")
@click.option("--listen", default=None,
              help="Override node.toml [admin] listen: host:port (mutual TLS) or unix:PATH.")
@click.option("--grace", type=click.FloatRange(0, 300), default=10.0, show_default=True,
              help="Seconds calls in flight may take to finish at shutdown.")
@node_dir_option
def serve(listen: str | None, grace: float, node_dir: Path) -> None:
    """Serve the local admin API (NodeAdmin, health, reflection) until SIGTERM or Ctrl-C,
    and, with [hub] in node.toml, connect out to the hub and answer federated queries.

    With [tls] cert/key/root in node.toml it listens on [admin] listen with mutual TLS;
    otherwise on the Unix socket admin.sock in the node directory (never plaintext TCP).
    """
    log = _log_to_node(NodePaths(node_dir))
    with until_signal(lambda sig: log.info("received %s: draining", sig.name)) as stop, open_node(node_dir) as node:
        audit = open_audit(node)  # fails early on a bad [identity] key
        try:
            server = start_admin_server(node, listen=listen)
            connector = None
            try:
                click.echo(f"serving oncofed.v1.NodeAdmin on {server.address} "
                           f"({server.endpoint.note})")
                connector = start_connector(node_dir, node)
                if connector is not None:
                    click.echo(f"connecting out to the hub at {connector.link.target}")
                sys.stdout.flush()
                while not stop.wait(0.5):
                    pass
            finally:
                if connector is not None:
                    connector.stop(grace)
                    connector.pipeline.verifier.close()
                    connector.pipeline.node.close()
                drained = server.stop(grace)
                log.info("admin API stopped (%s)", "drained" if drained else "grace expired")
            if audit.signer is not None and audit.entries(limit=1):
                try:
                    audit.checkpoint(who=NODE)
                except OncofedError as exc:
                    log.warning("no checkpoint at shutdown: %s", exc)
        finally:
            audit.close()
    click.echo("stopped")
