"""What the hub operator and a centre admin do with Flower, over the hub's and the node's own
settings: the SuperLink from hub.toml's `[credentials]` and `[flower]`, a SuperNode from the node
directory (its key in `flower/keys/`, the federation root from node.toml's `[tls]`).

The CLI (`oncofed hub flower …`, `oncofed node flower …`) is a thin layer over these functions;
docs/flower-operations.md is the guide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncofed.errors import UsageError
from oncofed.federation.hub.config import HubConfig
from oncofed.flower.deploy import (
    DEFAULT_CLIENTAPP_PORT,
    SUPERLINK,
    SUPERNODE,
    FlowerDown,
    FlowerProcess,
    SuperLinkSpec,
    SuperNodeSpec,
    find,
    start_superlink,
    start_supernode,
)
from oncofed.flower.flwr_cli import FlowerCli
from oncofed.keys.errors import KeyFileError
from oncofed.keys.flower_auth import (
    load_supernode_key,
    new_supernode_key,
    remove_superlink_tls_key,
    superlink_tls_key,
    supernode_public_key,
)
from oncofed.keys.tls import load_tls_files
from oncofed.node.config import load_config
from oncofed.node.keyfiles import load_node_identity, tls_paths

# --- the hub operator ----------------------------------------------------------------------------


def superlink_spec(cfg: HubConfig, passphrase: bytes | None = None) -> SuperLinkSpec:
    """The SuperLink for this hub: the hub's own TLS certificate (issued by the federation root,
    checked here against the pinned fingerprint so a wrong file fails now, not as an opaque TLS
    error at every SuperNode) and `[flower]`'s address and directory."""
    try:
        load_tls_files(cfg.cert, cfg.tls_key, cfg.root_cert, passphrase=passphrase,
                       root_fingerprint=cfg.root_fingerprint)
    except KeyFileError as exc:
        if passphrase is None and "passphrase required" in str(exc):
            raise KeyFileError(f"{exc}: set ONCOFED_KEY_PASSPHRASE for `oncofed hub flower up`") from None
        raise
    key = superlink_tls_key(cfg.tls_key, cfg.flower_dir, passphrase) if passphrase else cfg.tls_key
    return SuperLinkSpec(cfg.flower_dir, cfg.cert, key, cfg.root_cert, cfg.flower_host, cfg.flower_port,
                         cfg.flower_supernode_auth)


def operator_cli(cfg: HubConfig) -> FlowerCli:
    """`flwr` for the operator, with its profile in `[flower] directory/cli` (never ~/.flwr)."""
    wildcard = cfg.flower_host in ("0.0.0.0", "::")  # noqa: S104 - a comparison: a wildcard listen is dialled on loopback
    address = f"127.0.0.1:{cfg.flower_port}" if wildcard else \
        SuperLinkSpec(cfg.flower_dir, cfg.cert, cfg.tls_key, cfg.root_cert, cfg.flower_host, cfg.flower_port).address
    return FlowerCli(cfg.flower_dir / "cli", address, cfg.root_cert)


def hub_up(cfg: HubConfig, passphrase: bytes | None = None, *, timeout: float = 60.0) -> FlowerProcess:
    """Start the SuperLink in the background and return once it accepts connections."""
    running = find(cfg.flower_dir, SUPERLINK)
    if running is not None:
        raise UsageError(f"the SuperLink is already running (pid {running.pid}); `oncofed hub flower down` first")
    spec = superlink_spec(cfg, passphrase)
    try:
        return start_superlink(spec, timeout=timeout)
    except BaseException:
        remove_superlink_tls_key(cfg.flower_dir)
        raise


def hub_down(cfg: HubConfig, *, grace: float = 15.0) -> bool:
    """Stop the SuperLink (SIGTERM, then SIGKILL after `grace`); False when none was running."""
    proc = find(cfg.flower_dir, SUPERLINK)
    remove_superlink_tls_key(cfg.flower_dir)
    if proc is None:
        return False
    proc.stop(grace)
    return True


def hub_status(cfg: HubConfig, *, limit: int = 10) -> dict[str, Any]:
    """Running or not, where, the SuperNodes Flower knows (registered, online, offline) and the
    recent runs: what the operator sees, which is all metadata (docs/flower-operations.md)."""
    proc = find(cfg.flower_dir, SUPERLINK)
    report: dict[str, Any] = {"running": proc is not None, "pid": proc.pid if proc else None,
                              "address": f"{cfg.flower_host}:{cfg.flower_port}",
                              "directory": str(cfg.flower_dir), "database": str(cfg.flower_dir / "superlink.db"),
                              "supernode_auth": cfg.flower_supernode_auth, "nodes": [], "runs": []}
    if proc is None:
        return report
    cli = operator_cli(cfg)
    try:
        report["nodes"] = [{"node_id": str(n["node-id"]), "status": n["status"], "online_at": n.get("online-at"),
                            "created_at": n.get("created-at")} for n in cli.nodes()]
        report["runs"] = [{"run_id": str(r["run-id"]), "status": r["status"], "app": r.get("fab-id"),
                           "elapsed": r.get("elapsed"), "pending_at": r.get("pending-at"),
                           "finished_at": r.get("finished-at"), "details": r.get("status-details")}
                          for r in cli.runs(limit)]
    except FlowerDown:
        report["running"] = False
        report["note"] = "the process runs but its port does not answer (starting, or stuck: see logs/superlink.log)"
    return report


def hub_register(cfg: HubConfig, public_key: Path, name: str | None = None) -> dict[str, Any]:
    """Register a centre's SuperNode public key with the running SuperLink (SuperNode
    authentication admits only registered keys); returns Flower's node id and the key's
    fingerprint, for the centre admin to compare with `oncofed node flower key`."""
    fingerprint = supernode_public_key(public_key)
    if find(cfg.flower_dir, SUPERLINK) is None:
        raise FlowerDown("the SuperLink is not running: `oncofed hub flower up` first")
    node_id = operator_cli(cfg).register(public_key, name=name)
    return {"node_id": str(node_id), "fingerprint": fingerprint, "name": name}


# --- a centre admin ------------------------------------------------------------------------------


def node_flower_dir(node_dir: Path) -> Path:
    return Path(node_dir).resolve() / "flower"


def node_key(node_dir: Path) -> dict[str, str]:
    """Make this centre's SuperNode key pair in `<node>/flower/keys/` (refuses to overwrite)."""
    load_config(Path(node_dir))                                   # a node directory, or a clear error
    made = new_supernode_key(node_flower_dir(node_dir) / "keys")
    return {"private_key": str(made.private_path), "public_key": str(made.public_path),
            "fingerprint": made.fingerprint}


def supernode_spec(node_dir: Path, superlink: str, *, root_cert: Path | None = None,
                   port: int = DEFAULT_CLIENTAPP_PORT, max_retries: int | None = None) -> SuperNodeSpec:
    """A SuperNode for this node directory: its key, the federation root (node.toml's [tls] root
    unless given) to check the SuperLink's certificate, and the node directory for the ClientApp."""
    node_dir = Path(node_dir).resolve()
    cfg = load_config(node_dir)
    if load_node_identity(cfg, node_dir) is None:          # each ClientApp signs this centre's replies with it
        raise UsageError("node.toml: a centre in Flower runs needs its identity key ([identity] key)")
    if root_cert is None:
        paths = tls_paths(cfg, node_dir)
        if paths is None:
            raise UsageError("no federation root: give --root-cert, or set [tls] root in node.toml")
        root_cert = paths[2]
    if not Path(root_cert).is_file():
        raise UsageError(f"root certificate not found: {root_cert}")
    key = load_supernode_key(node_flower_dir(node_dir) / "keys")
    return SuperNodeSpec(node_flower_dir(node_dir), superlink, Path(root_cert), key.private_path, node_dir,
                         port=port, max_retries=max_retries, extra_config={"centre": cfg.node_id})


def node_serve(spec: SuperNodeSpec, *, timeout: float = 120.0) -> tuple[FlowerProcess, int]:
    """Start the SuperNode and return once the SuperLink accepted it (with its Flower node id)."""
    running = find(spec.directory, SUPERNODE)
    if running is not None:
        raise UsageError(f"this node's SuperNode is already running (pid {running.pid})")
    return start_supernode(spec, timeout=timeout)


def wait_while_running(proc: FlowerProcess, stop: Any, poll: float = 0.5) -> bool:
    """Block until `stop` (a threading.Event) is set — True — or the process ends — False."""
    while not stop.wait(poll):
        proc.watch()
        if not proc.alive():
            return False
    return True
