"""The node directory and its TOML config, with every default written out and explained.

A node directory is self-contained so a centre admin can back it up, move it or inspect it:

    node.toml          settings (this module)
    store.sqlite       the SQLite store, WAL mode (oncofed.node.store)
    extension.toml     copy of the federation's dictionary extension, if any
    secrets/           0700: pseudonymisation, perturbation and ledger keys, each 0600
    logs/node.log      structured log; never holds raw identifiers
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncofed.errors import NodeError

CONFIG_NAME = "node.toml"
STORE_NAME = "store.sqlite"
EXTENSION_NAME = "extension.toml"
SECRETS_DIR = "secrets"
PSEUDONYM_KEY = "pseudonym.key"
PERTURBATION_KEY = "perturbation.key"
LEDGER_KEY = "ledger.key"
NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")

TEMPLATE = """\
# oncofed node configuration. Every setting is shown with its default.

[node]
# This centre's id in the federation registry (lower-case letters, digits and '-').
id = "{node_id}"

[dictionary]
# Written at `node init`; the store refuses data for any other dictionary. Do not edit.
name = "{dict_name}"
version = "{dict_version}"
extension_name = "{ext_name}"
extension_version = "{ext_version}"
extension_sha256 = "{ext_sha}"

[ingest]
# Rows validated and written per batch: bounds memory whatever the file size.
batch_rows = {batch_rows}
# Faults printed when a file is rejected (all are counted).
max_faults_shown = {max_faults}
# Worker processes that prepare large files (4 MB and up) while one process writes:
# 0 = one per CPU (at most 4); 1 = never (less memory, slower).
workers = {workers}

[admin]
# The local admin API. Keep it on localhost or a LAN address only you reach.
listen = "{admin_listen}"
"""


@dataclass
class NodeConfig:
    """Settings read from node.toml, with the defaults a fresh `node init` writes."""

    node_id: str
    dictionary: dict[str, str]
    batch_rows: int = 5_000
    max_faults_shown: int = 20
    workers: int = 0
    admin_listen: str = "127.0.0.1:7443"
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        d = self.dictionary
        return TEMPLATE.format(
            node_id=self.node_id, dict_name=d["name"], dict_version=d["version"],
            ext_name=d["extension_name"], ext_version=d["extension_version"],
            ext_sha=d["extension_sha256"], batch_rows=self.batch_rows,
            max_faults=self.max_faults_shown, workers=self.workers, admin_listen=self.admin_listen,
        )


@dataclass(frozen=True)
class NodePaths:
    """Where each part of a node directory lives."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def store(self) -> Path:
        return self.root / STORE_NAME

    @property
    def extension(self) -> Path:
        return self.root / EXTENSION_NAME

    @property
    def secrets(self) -> Path:
        return self.root / SECRETS_DIR

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def secret(self, name: str) -> Path:
        return self.secrets / name


def load_config(root: Path) -> NodeConfig:
    """Read node.toml, or say plainly that this is not a node directory."""
    paths = NodePaths(root)
    if not paths.config.is_file():
        raise NodeError(f"{root} is not an oncofed node directory (no {CONFIG_NAME}); run: oncofed node init {root}")
    try:
        raw = tomllib.loads(paths.config.read_text("utf-8"))
        node, ingest, admin = raw["node"], raw.get("ingest", {}), raw.get("admin", {})
        cfg = NodeConfig(
            node_id=node["id"], dictionary={k: str(v) for k, v in raw["dictionary"].items()},
            batch_rows=int(ingest.get("batch_rows", 5_000)),
            max_faults_shown=int(ingest.get("max_faults_shown", 20)),
            workers=int(ingest.get("workers", 0)),
            admin_listen=str(admin.get("listen", "127.0.0.1:7443")), extra=raw,
        )
    except (tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as exc:
        raise NodeError(f"{paths.config} is malformed: {exc}") from None
    if cfg.batch_rows < 1 or cfg.max_faults_shown < 0 or cfg.workers < 0:
        raise NodeError(f"{paths.config}: batch_rows must be ≥ 1, max_faults_shown and workers ≥ 0")
    return cfg
