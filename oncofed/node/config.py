"""The node directory and its TOML config, with every default written out and explained.

A node directory is self-contained so a centre admin can back it up, move it or inspect it:

    node.toml          settings (this module)
    store.sqlite       the SQLite store, WAL mode (oncofed.node.store)
    extension.toml     copy of the federation's dictionary extension, if any
    secrets/           0700: pseudonymisation, perturbation and ledger keys, each 0600
    logs/node.log      structured log; never holds raw identifiers

Every setting is checked when the node opens, by its key and its type, so a typo or a quoted
number stops the command with a message naming the key ("[ingest] workers must be a whole number
from 0 to 64, not '4' (text)") instead of a Python error at the first query.
"""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
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
MAX_WORKERS = 64

TEMPLATE = """\
# oncofed node configuration. Every setting is shown with its default; edit the values in place.

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
# The local admin API (`oncofed node serve`): host:port with mutual TLS when [tls] is set,
# else the Unix socket admin.sock in this directory. Keep it on localhost or a LAN address
# only you reach.
listen = "{admin_listen}"

[query]
# What this centre releases to researchers (docs/queries.md, "Centre policy"). A permit can
# only tighten these; unknown keys are refused.
{query}
# Optional sections, off until you add them (uncomment and fill in):
#
# [identity]
# # The centre's identity key (`oncofed keys new`): signs audit-log checkpoints.
# key = "keys/identity.key"
#
# [tls]
# # Federation TLS files from enrolment: with all three, the admin API listens on
# # [admin] listen with mutual TLS.
# cert = "keys/tls-centre-{node_id}.cert.pem"
# key = "keys/tls-centre-{node_id}.key.pem"
# root = "keys/root.pem"
#
# [audit]
# # Sign an audit checkpoint after every N entries (needs [identity]).
# checkpoint_every = 100
#
# [hub]
# # Where `oncofed node serve` connects out to answer federated queries (needs [identity] and
# # [tls]); no inbound port is opened here.
# address = "hub.example.org:7443"
# server_name = ""            # the name in the hub's certificate, when not the host
# min_participants = 3        # answer only in participant sets at least this large
"""

#: One comment per [query] setting, written above it in node.toml (a test checks every
#: NodePolicy field has one).
QUERY_COMMENTS: dict[str, str] = {
    "min_cell_count": "k, the minimum cell count: a cohort (in threshold mode, a cell) below it is "
                      "withheld; a permit may only raise it.",
    "mode": "cell_key (every count carries small, repeatable noise), threshold (tables with a cell "
            "0 < n < k are withheld whole) or none (exact: for the local admin only, never a permit).",
    "survival_counts": "Survival counts: auto (cell_key; rounding in threshold mode), cell_key or round.",
    "survival_table": "Cell-key table of survival series: survival (deviations within 1, variance 0.2) or "
                      "counts (the tables' own: within 2, variance 1). See docs/decisions.md D19.",
    "allowed_analyses": "The analyses this centre answers at all.",
    "max_values": "The largest answer vector (values) this centre sends.",
    "min_step_days": "The finest survival lattice step (days) a permit holder may ask for.",
    "allow_exact_survival_times": "Allow a 1-day lattice (exact event times; the permit must also "
                                  "allow exact dates).",
    "rate_per_minute": "Queries per researcher per minute.",
    "rate_per_day": "Queries per researcher per day.",
    "dp_mechanism": "Differential privacy (permits with a budget): laplace (ε-DP) or gaussian "
                    "((ε, δ)-DP).",
    "dp_delta": "δ of the gaussian mechanism.",
    "dp_rows_per_patient": "In DP mode, at most this many cohort rows per patient count.",
    "max_depth": "The deepest cohort tree accepted (and/or/not levels), at most {max_depth}.",
    "max_nodes": "The largest cohort tree accepted (predicates and combinations).",
    "max_rows": "The public maximum rows at this centre: overflow and DP range checks use it, never "
                "the store's actual size.",
    "max_rounds": "The rounds (distinct coefficients) this centre answers of one model fit (logistic, "
                  "Cox, Poisson) per permit.",
    "fedavg_max_rounds": "The same for FedAvg training runs on Flower (many small steps; docs/flower.md, "
                         "D36).",
    "allow_pooled_cox": "Answer the pooled-equivalent Cox model: risk-set sums at this centre's event times, "
                        "coarsened so each released step removes at least k tumours (docs/analyses.md). Off: "
                        "this centre withholds those rounds inside the masked vector.",
    "model_max_linear_predictor": "Refuse a model round whose coefficients could give any row a linear "
                                  "predictor beyond ± this (Cox: a spread), from the dictionary's ranges: a "
                                  "steep β would make the round's sums exact counts (docs/decisions.md D30).",
}

#: Inclusive bounds of the numeric [query] settings (None: unbounded above).
QUERY_BOUNDS: dict[str, tuple[float, float | None]] = {
    "min_cell_count": (1, None), "max_values": (1, None), "min_step_days": (1, None),
    "rate_per_minute": (0, None), "rate_per_day": (0, None), "dp_rows_per_patient": (1, None),
    "max_nodes": (1, None), "max_rows": (1, None), "dp_delta": (0, 1), "max_rounds": (1, None),
    "fedavg_max_rounds": (1, None),
    "model_max_linear_predictor": (1, 4096),
}


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
            query=render_query_defaults(),
        )


def render_query_defaults() -> str:
    """The [query] settings of a default NodePolicy, each under its comment, as TOML lines."""
    from oncofed.node.query.policy import NodePolicy
    from oncofed.query.nesting import MAX_COHORT_DEPTH

    lines: list[str] = []
    for f in dataclasses.fields(NodePolicy):
        comment = QUERY_COMMENTS[f.name].format(max_depth=MAX_COHORT_DEPTH)
        lines += textwrap.wrap(comment, width=96, initial_indent="# ", subsequent_indent="# ",
                               break_on_hyphens=False)
        lines.append(f"{f.name} = {_toml_value(getattr(NodePolicy(), f.name))}")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, tuple | list):
        one = "[" + ", ".join(_toml_value(x) for x in v) + "]"
        if len(one) <= 76:
            return one
        return "[\n" + "".join(f"    {_toml_value(x)},\n" for x in v) + "]"   # one item a line
    return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string is a JSON string


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


def init_hint(root: Path) -> str:
    """The command that makes `root` a node directory, with its required option."""
    return f"run: oncofed node init {root} --id CENTRE_ID (or pass -n NODE_DIR / set ONCOFED_NODE_DIR)"


def load_config(root: Path) -> NodeConfig:
    """Read node.toml, or say plainly that this is not a node directory or which setting is wrong."""
    paths = NodePaths(root)
    if not paths.config.is_file():
        raise NodeError(f"{root} is not an oncofed node directory (no {CONFIG_NAME}); {init_hint(root)}")
    try:
        raw = tomllib.loads(paths.config.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NodeError(f"{paths.config} is not valid TOML: {exc}") from None
    try:
        return _read(raw)
    except _Bad as exc:
        raise NodeError(f"{paths.config}: {exc}") from None


class _Bad(Exception):
    """A setting that is missing or wrong; the message names it."""


def _read(raw: dict[str, Any]) -> NodeConfig:
    node, ingest, admin = _table(raw, "node"), _table(raw, "ingest"), _table(raw, "admin")
    dictionary = _table(raw, "dictionary")
    node_id = _text(node, "node", "id", None)
    if not NODE_ID_RE.match(node_id):
        raise _Bad(f"[node] id {node_id!r} must be 2-63 lower-case letters, digits or '-'")
    if "name" not in dictionary or "version" not in dictionary:
        raise _Bad("[dictionary] needs name and version (written at `node init`; do not edit)")
    for key, value in dictionary.items():
        if not isinstance(value, str):
            raise _Bad(f"[dictionary] {key} must be text, not {_shown(value)}")
    if "query" in raw:
        check_query_table(raw["query"])
    return NodeConfig(
        node_id=node_id, dictionary=dict(dictionary),
        batch_rows=_whole(ingest, "ingest", "batch_rows", 5_000, 1, 10_000_000),
        max_faults_shown=_whole(ingest, "ingest", "max_faults_shown", 20, 0, 100_000),
        workers=_whole(ingest, "ingest", "workers", 0, 0, MAX_WORKERS),
        admin_listen=_text(admin, "admin", "listen", "127.0.0.1:7443"), extra=raw,
    )


def check_query_table(table: Any) -> None:
    """Check node.toml's [query] against NodePolicy: every key known, of its type and in range."""
    from oncofed.node.query.policy import NodePolicy
    from oncofed.query.nesting import MAX_COHORT_DEPTH

    if not isinstance(table, dict):
        raise _Bad("[query] must be a table")
    types = {f.name: str(f.type) for f in dataclasses.fields(NodePolicy)}
    for key, value in table.items():
        if key not in types:
            raise _Bad(f"unknown [query] setting {key!r} (known: {', '.join(types)})")
        kind = types[key]
        if kind == "bool" and not isinstance(value, bool):
            raise _Bad(f"[query] {key} must be true or false, not {_shown(value)}")
        if kind == "str" and not isinstance(value, str):
            raise _Bad(f"[query] {key} must be text, not {_shown(value)}")
        if kind.startswith("tuple") and not (isinstance(value, list)
                                             and all(isinstance(x, str) for x in value)):
            raise _Bad(f"[query] {key} must be a list of names, not {_shown(value)}")
        if kind in ("int", "float"):
            lo, hi = QUERY_BOUNDS.get(key, (0, None))
            if key == "max_depth":
                lo, hi = 1, MAX_COHORT_DEPTH
            whole = kind == "int"
            number = isinstance(value, int) or (not whole and isinstance(value, float))
            if isinstance(value, bool) or not number or value < lo or (hi is not None and value > hi):
                what = "a whole number" if whole else "a number"
                span = f"from {lo:g} to {hi:g}" if hi is not None else f"≥ {lo:g}"
                raise _Bad(f"[query] {key} must be {what} {span}, not {_shown(value)}")
    try:
        NodePolicy.from_mapping(table)
    except (TypeError, ValueError) as exc:
        raise _Bad(f"[query] {exc}") from None


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise _Bad(f"[{name}] must be a table, not {_shown(value)}")
    return value


def _text(table: dict[str, Any], section: str, key: str, default: str | None) -> str:
    if key not in table:
        if default is None:
            raise _Bad(f"missing [{section}] {key}")
        return default
    value = table[key]
    if not isinstance(value, str):
        raise _Bad(f"[{section}] {key} must be text, not {_shown(value)}")
    return value


def _whole(table: dict[str, Any], section: str, key: str, default: int, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _Bad(f"[{section}] {key} must be a whole number from {lo} to {hi}, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A setting's value as the admin wrote it, with its TOML type when that is the problem."""
    if isinstance(value, str):
        return f"{value!r} (text)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float):
        return f"{value!r} (a decimal number)"
    return repr(value)
