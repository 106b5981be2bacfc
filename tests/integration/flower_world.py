"""Helpers for the Flower tests: node directories a ClientApp can open on its own (identity key
and minimum participants in node.toml, as `oncofed node flower` would leave them), run configs
signed by the researcher, and the node-side participant opened on a directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node_fed_helpers import Fed

from oncofed import dictionary as dictmod
from oncofed.analyses.newton import FitOptions
from oncofed.federation.client.analyse import ModelRequest
from oncofed.flower.request import build_run_config
from oncofed.keys.keystore import save_identity
from oncofed.keys.member import MemberCredentials
from oncofed.keys.tls import load_tls_files
from oncofed.query.textform import analysis_from, cohort_from

#: The query-plane worlds' policy (federation_world, regression_world), as node.toml says it.
EXACT_QUERY = {"mode": '"threshold"', "min_cell_count": "1", "rate_per_minute": "100000", "rate_per_day": "1000000"}


def set_query_policy(node_root: Path, settings: dict[str, str]) -> None:
    """Write `settings` (TOML values) into node.toml's [query] table, replacing what is there."""
    path = node_root / "node.toml"
    text = path.read_text("utf-8")
    start = text.index("\n[query]\n") + len("\n[query]\n")
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end
    lines = [ln for ln in text[start:end].split("\n") if ln.split(" = ")[0].strip() not in settings]
    table = "\n".join([*(f"{k} = {v}" for k, v in settings.items()), *lines])
    path.write_text(text[:start] + table + text[end:], "utf-8")


def enable_flower(node_root: Path, fed: Fed, centre: str, *, min_participants: int = 2,
                  query: dict[str, str] | None = None) -> Path:
    """Give the node directory its identity key, a [flower] section and (by default) the query
    plane worlds' exact policy in [query]; return the directory."""
    set_query_policy(node_root, EXACT_QUERY if query is None else query)
    keys = node_root / "keys"
    keys.mkdir(exist_ok=True)
    if not (keys / "identity.key").exists():
        save_identity(fed.identities[centre], keys)
    text = (node_root / "node.toml").read_text("utf-8")
    if "\n[identity]" not in text:
        with (node_root / "node.toml").open("a", encoding="utf-8") as fh:
            fh.write(f'\n[identity]\nkey = "keys/identity.key"\n\n[flower]\nmin_participants = {min_participants}\n')
    return node_root


def researcher(fed: Fed, base: Path, member: str = "res-1") -> MemberCredentials:
    """The researcher's credentials as a client loads them (identity, TLS files, pinned root)."""
    root = base / "root.cert.pem"
    if not root.exists():
        root.write_bytes(fed.root_pem)
    tls = load_tls_files(fed.cert_path("researcher", member), fed.tls_keys[member], root)
    return MemberCredentials(fed.identities[member], tls, fed.authority.root.fingerprint)


def model_request(model: Any, targets: Sequence[str], permit: str, *, cohort: Any = None,
                  min_participants: int = 0, **options: Any) -> ModelRequest:
    return ModelRequest(analysis_from(model, "model"), tuple(targets), bytes.fromhex(permit),
                        min_participants=min_participants or len(targets),
                        cohort=cohort_from(cohort, "cohort") if cohort else None, options=FitOptions(**options))


def run_config(fed: Fed, base: Path, request: ModelRequest, d: dictmod.Dictionary, result: Path, *,
               extension: Path | None = None, **kw: Any) -> dict[str, str]:
    return build_run_config(researcher(fed, base), request, dictionary=d, registry=fed.published("registry.bin"),
                            result_path=str(result), extension=extension.read_bytes() if extension else None, **kw)
