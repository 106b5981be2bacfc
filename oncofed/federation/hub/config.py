"""The hub's settings: one TOML file, every setting shown with its default by `oncofed hub config`.

    [hub]
    id = "hub"                      # the hub's member id in the registry
    listen = "127.0.0.1:7800"       # host:port for centres and researchers (mutual TLS only)
    database = "hub.db"             # the queue and metadata (SQLite), relative to this file
    prepare_seconds = 10            # how long centres have to accept or decline a query
    answer_seconds = 60             # how long participants have to answer once the set is fixed

    [credentials]                   # from `oncofed hub init` and the authority's enrolment
    identity_key = "keys/identity.key"
    tls_key = "keys/tls-hub-hub.key.pem"
    cert = "certs/hub-hub.cert.pem"
    root_cert = "root.cert.pem"
    root_fingerprint = "…"          # pinned, read out of band from the authority

    [trust]                         # the authority's published documents, re-read when they change
    registry = "published/registry.bin"
    revocations = "published/revocations.bin"

    [flower]                        # the Flower SuperLink (`oncofed hub flower up`; docs/flower-operations.md)
    listen = "127.0.0.1:9092"       # its one HTTPS port: SuperNodes, `flwr` and the ServerApp
    directory = "flower"            # its database, PID file, logs and Flower home
    supernode_auth = true           # only SuperNodes whose keys were registered may join

Relative paths are relative to the config file's folder. Unknown keys are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oncofed import settings
from oncofed.errors import UsageError

SCHEMA: settings.Schema = {
    "hub": {"id": "hub", "listen": "127.0.0.1:7800", "database": "hub.db", "prepare_seconds": 10,
            "answer_seconds": 60},
    "credentials": {"identity_key": "", "tls_key": "", "cert": "", "root_cert": "", "root_fingerprint": ""},
    "trust": {"registry": "", "revocations": ""},
    "flower": {"listen": "127.0.0.1:9092", "directory": "flower", "supernode_auth": True},
}
TITLE = "oncofed hub settings; see docs/federation.md"
PATHS = {("hub", "database"), ("credentials", "identity_key"), ("credentials", "tls_key"), ("credentials", "cert"),
         ("credentials", "root_cert"), ("trust", "registry"), ("trust", "revocations"), ("flower", "directory")}


@dataclass(frozen=True)
class HubConfig:
    """The hub's settings, paths resolved."""

    hub_id: str
    host: str
    port: int
    database: Path
    prepare_seconds: int
    answer_seconds: int
    identity_key: Path
    tls_key: Path
    cert: Path
    root_cert: Path
    root_fingerprint: str
    registry: Path
    revocations: Path
    flower_host: str = "127.0.0.1"
    flower_port: int = 9092
    flower_dir: Path = Path("flower")
    flower_supernode_auth: bool = True


def render(values: dict[str, dict[str, object]] | None = None) -> str:
    """A hub.toml showing every setting (defaults where `values` gives none)."""
    return settings.render(SCHEMA, TITLE, values)


def load(path: Path) -> HubConfig:
    """Read and check hub.toml; UsageError names the file, the key and what is wrong."""
    v = settings.load(path, SCHEMA, paths=PATHS,
                      required=(PATHS - {("flower", "directory")}) | {("credentials", "root_fingerprint")},
                      what="hub config (make one with `oncofed hub config`)")
    host, port = settings.host_port(v["hub"]["listen"], f"{path}: [hub] listen")
    for key in ("prepare_seconds", "answer_seconds"):
        if not 1 <= v["hub"][key] <= 600:
            raise UsageError(f"{path}: [hub] {key} must be 1 to 600")
    fp = settings.fingerprint(v["credentials"]["root_fingerprint"], f"{path}: [credentials] root_fingerprint")
    fhost, fport = settings.host_port(v["flower"]["listen"], f"{path}: [flower] listen")
    if fport == 0:
        raise UsageError(f"{path}: [flower] listen needs a fixed port (SuperNodes and researchers dial it)")
    h, c, t, f = v["hub"], v["credentials"], v["trust"], v["flower"]
    return HubConfig(h["id"], host, port, h["database"], h["prepare_seconds"], h["answer_seconds"],
                     c["identity_key"], c["tls_key"],
                     c["cert"], c["root_cert"], fp, t["registry"], t["revocations"],
                     fhost, fport, f["directory"] or (path.parent / "flower").resolve(), f["supernode_auth"])
