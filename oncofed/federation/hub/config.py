"""The hub's settings: one TOML file, every setting shown with its default by `oncofed hub config`.

    [hub]
    id = "hub"                      # the hub's member id in the registry
    listen = "127.0.0.1:7443"       # host:port for centres and researchers (mutual TLS only)
    database = "hub.db"             # the queue and metadata (SQLite), relative to this file
    prepare_seconds = 10            # how long centres have to accept or decline a query

    [credentials]                   # from `oncofed hub init` and the authority's enrolment
    identity_key = "keys/identity.key"
    tls_key = "keys/tls-hub-hub.key.pem"
    cert = "certs/hub-hub.cert.pem"
    root_cert = "root.cert.pem"
    root_fingerprint = "…"          # pinned, read out of band from the authority

    [trust]                         # the authority's published documents, re-read when they change
    registry = "published/registry.bin"
    revocations = "published/revocations.bin"

Relative paths are relative to the config file's folder. Unknown keys are refused.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncofed.errors import UsageError

SECTIONS: dict[str, dict[str, Any]] = {
    "hub": {"id": "hub", "listen": "127.0.0.1:7443", "database": "hub.db", "prepare_seconds": 10},
    "credentials": {"identity_key": "", "tls_key": "", "cert": "", "root_cert": "", "root_fingerprint": ""},
    "trust": {"registry": "", "revocations": ""},
}
PATHS = {("hub", "database"), ("credentials", "identity_key"), ("credentials", "tls_key"), ("credentials", "cert"),
         ("credentials", "root_cert"), ("trust", "registry"), ("trust", "revocations")}


@dataclass(frozen=True)
class HubConfig:
    """The hub's settings, paths resolved."""

    hub_id: str
    host: str
    port: int
    database: Path
    prepare_seconds: int
    identity_key: Path
    tls_key: Path
    cert: Path
    root_cert: Path
    root_fingerprint: str
    registry: Path
    revocations: Path


def render(values: dict[str, dict[str, Any]] | None = None) -> str:
    """A hub.toml showing every setting (defaults where `values` gives none)."""
    out = ["# oncofed hub settings (every setting is shown; see docs/hub.md)"]
    for section, keys in SECTIONS.items():
        out.append(f"\n[{section}]")
        for key, default in keys.items():
            value = (values or {}).get(section, {}).get(key, default)
            out.append(f"{key} = {_toml(value)}")
    return "\n".join(out) + "\n"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def load(path: Path) -> HubConfig:
    """Read and check hub.toml; UsageError names the file, the key and what is wrong."""
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such hub config (make one with `oncofed hub config`)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a readable TOML file: {exc}") from None
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SECTIONS.items():
        given = raw.pop(section, {})
        if not isinstance(given, dict):
            raise UsageError(f"{path}: [{section}] must be a table")
        extra = sorted(set(given) - set(keys))
        if extra:
            raise UsageError(f"{path}: unknown setting(s) in [{section}]: {', '.join(extra)}")
        values[section] = {}
        for key, default in keys.items():
            value = given.get(key, default)
            if type(value) is not type(default):
                raise UsageError(f"{path}: [{section}] {key} must be {type(default).__name__}")
            if (section, key) in PATHS:
                if not value:
                    raise UsageError(f"{path}: [{section}] {key} is required")
                value = (path.parent / value).resolve()
            values[section][key] = value
    if raw:
        raise UsageError(f"{path}: unknown section(s): {', '.join(sorted(raw))}")
    host, _, port = str(values["hub"]["listen"]).rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"{path}: [hub] listen must be host:port")
    if not 1 <= values["hub"]["prepare_seconds"] <= 600:
        raise UsageError(f"{path}: [hub] prepare_seconds must be 1 to 600")
    fp = str(values["credentials"]["root_fingerprint"]).lower()
    if len(fp) != 64 or any(ch not in "0123456789abcdef" for ch in fp):
        raise UsageError(f"{path}: [credentials] root_fingerprint must be 64 hex digits")
    h, c, t = values["hub"], values["credentials"], values["trust"]
    return HubConfig(h["id"], host, int(port), h["database"], h["prepare_seconds"], c["identity_key"], c["tls_key"],
                     c["cert"], c["root_cert"], fp, t["registry"], t["revocations"])
