"""`oncofed query` — the researcher's commands: submit a federated query and read its result.

    oncofed query config --out researcher.toml        # fill in hub address and your keys
    oncofed query run q.json --config researcher.toml --permit study.permit --to centre-a,centre-b,centre-c
    oncofed query run q.json --config researcher.toml --permit study.permit --retry-of 3f2a9c0d

`run` signs the query, seals it to each target centre, submits it to the hub, shows each centre's
progress (accepted / declined with its coarse reason / answered), verifies and opens the answers,
sums them and prints the result (`--json`, `--csv OUT`, `--plot OUT.png` for Kaplan–Meier). When
a centre fails after the participant set is fixed, `run` names it and prints the command that
retries without it: a new query naming the failed one (`--retry-of`), answered once the centres
left out have signed abstentions from the failed query (decision D26). Retrying is never automatic.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import click

from oncofed.cli.output import emit_json, json_option
from oncofed.cli.settings_cmd import config_command
from oncofed.errors import UsageError

config_option = click.option("--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                             default=Path("researcher.toml"), envvar="ONCOFED_RESEARCHER_CONFIG",
                             show_default=True, show_envvar=True,
                             help="Your settings: hub address and keys (see `oncofed query config`).")


@click.group()
def query() -> None:
    """Submit federated queries and read their results (researchers)."""


config_command(query, "oncofed.federation.client.config", "Print a researcher.toml with every setting, to fill in.")


def _permit_hash(value: str) -> bytes:
    """A permit file (its SHA-256) or the permit's SHA-256 in hex."""
    path = Path(value)
    if path.is_file():
        from oncofed.keys.permits import permit_sha256

        return bytes.fromhex(permit_sha256(path.read_bytes()))
    raw = _sha256_hex(value)
    if raw is None:
        raise UsageError(f"--permit: {value!r} is neither a permit file nor a SHA-256 in hex")
    return raw


def _sha256_hex(text: str) -> bytes | None:
    """32 bytes written as 64 hexadecimal digits, else None."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def _full_hash(cfg: Any, text: str, what: str) -> str:
    """A query hash in hex, or a prefix of one of yours from `query list`."""
    text = text.strip().lower()
    if len(text) < 64 and cfg.history.exists():
        known = [json.loads(line)["query_hash"] for line in cfg.history.read_text("utf-8").splitlines() if line]
        matches = sorted({h for h in known if h.startswith(text)})
        if len(matches) != 1:
            raise UsageError(f"{what}: {text!r} names {len(matches)} of your queries; give more of the hash")
        text = matches[0]
    if _sha256_hex(text) is None:
        raise UsageError(f"{what}: a query hash is 64 hexadecimal digits (or a prefix from `query list`)")
    return text


@query.command("run")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@config_option
@click.option("--permit", "permit", required=True, help="The permit file, or its SHA-256 in hex.")
@click.option("--to", "targets", default=None,
              help="Target centres, comma-separated (with --retry-of: by default the failed query's "
                   "participants that did not fail).")
@click.option("--retry-of", "retry_of", default=None, metavar="QUERY_HASH",
              help="Retry this failed query of yours (its hash, or a prefix from `query list`) without the "
                   "centres that failed; they must be online to sign their abstentions from it.")
@click.option("--min-participants", type=click.IntRange(2, 256), default=None,
              help="Smallest set of centres you accept (default: min(3, targets)).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
              help="Seconds to wait for the answers.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the result's main table as CSV.")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Kaplan–Meier only: write the curves, CIs and numbers at risk as a PNG.")
@json_option
def run(file: Path, config_path: Path, permit: str, targets: str | None, retry_of: str | None,
        min_participants: int | None, timeout: float, csv_out: Path | None, plot_out: Path | None,
        as_json: bool) -> None:
    """Run the query in FILE (JSON or TOML, see docs/queries.md) across the target centres."""
    from oncofed.federation.client.client import ClientError, FederationClient, Progress, QueryFailed
    from oncofed.federation.client.config import PASSPHRASE_ENV, load
    from oncofed.query import loads

    cfg = load(config_path)
    d = cfg.dictionary()
    body = loads(file.read_bytes(), dictionary=d)
    body.permit_hash = _permit_hash(permit)
    failed = bytes.fromhex(_full_hash(cfg, retry_of, "--retry-of")) if retry_of else None
    if targets is None and failed is None:
        raise UsageError("name the target centres with --to (or retry a failed query with --retry-of)")
    body.target_centres[:] = [t.strip() for t in targets.split(",") if t.strip()] if targets else []
    if min_participants:
        body.min_participants = min_participants
    import os

    passphrase = os.environ.get(PASSPHRASE_ENV)
    creds = cfg.credentials(passphrase.encode() if passphrase else None)
    seen: dict[str, str] = {}

    def show(progress: list[Progress]) -> None:
        if as_json:
            return
        for p in progress:
            line = p.state + (f" ({p.coarse})" if p.coarse else "")
            if seen.get(p.centre) != line:
                seen[p.centre] = line
                click.echo(f"  {p.centre:<20} {line}", err=True)

    with FederationClient.connect(creds, cfg.address, server_name=cfg.server_name) as client:
        if failed is not None and not body.target_centres:
            body.target_centres[:] = client.retry_targets(failed)
        sub = client.submit(body, retry_of=failed)
        _remember(cfg.history, sub.query_hash.hex(), file, list(body.target_centres))
        if not as_json:
            again = f" (retry of {failed.hex()[:16]})" if failed is not None else ""
            click.echo(f"query {sub.query_hash.hex()[:16]} submitted to {', '.join(body.target_centres)}{again}",
                       err=True)
        state = client.follow(sub, timeout=timeout, on_progress=show)
        try:
            result = client.collect(sub, state, d)
        except QueryFailed as exc:
            raise ClientError(f"{exc} — failed: {', '.join(exc.failed_centres)}. To retry without them (they "
                              f"must be online to sign abstentions): oncofed query run {file} --permit {permit} "
                              f"--retry-of {exc.retry_of.hex()}") from None
    if csv_out is not None:
        _write_csv(result.result, csv_out)
    if plot_out is not None:
        from oncofed.federation.client.plot import plot_kaplan_meier

        plot_kaplan_meier(result.result, plot_out)
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(result.text())
    click.echo(f"answered in {result.seconds:.2f} s" + (f"; wrote {plot_out}" if plot_out else ""))


def _remember(history: Path, query_hash: str, file: Path, targets: list[str]) -> None:
    """Append the query's metadata (never a result) to queries.jsonl beside the config."""
    with history.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"query_hash": query_hash, "file": str(file), "targets": targets,
                             "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")


def _write_csv(result: dict[str, Any], out: Path) -> None:
    from oncofed.federation.client.tables import rows_of

    rows = rows_of(result)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})


def _cell(v: Any) -> Any:
    """Spreadsheet-safe: a text starting like a formula is quoted."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


@query.command("list")
@config_option
@json_option
def list_cmd(config_path: Path, as_json: bool) -> None:
    """The queries you submitted from this configuration (metadata only)."""
    from oncofed.federation.client.config import load

    cfg = load(config_path)
    items = [json.loads(line) for line in cfg.history.read_text("utf-8").splitlines() if line.strip()] \
        if cfg.history.exists() else []
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo("no queries submitted from this configuration yet")
    for it in items:
        click.echo(f"{it['query_hash'][:16]}  {it['submitted']}  {it['file']}  → {', '.join(it['targets'])}")


@query.command("status")
@click.argument("query_hash")
@config_option
@json_option
def status_cmd(query_hash: str, config_path: Path, as_json: bool) -> None:
    """What the hub says of one of your queries (a prefix of its hash from `query list` will do)."""
    from oncofed.federation.client.client import FederationClient
    from oncofed.federation.client.config import load
    from oncofed.v1 import federation_pb2 as fpb

    cfg = load(config_path)
    query_hash = _full_hash(cfg, query_hash, "QUERY_HASH")
    qh = bytes.fromhex(query_hash)
    with FederationClient.connect(cfg.credentials(), cfg.address, server_name=cfg.server_name) as client:
        state = client._call(client.stub.Watch, fpb.WatchRequest(query_hash=qh, wait_ms=0))
    out = {"query_hash": query_hash, "state": state.state, "error": state.error,
           "centres": [{"centre": c.centre, "state": c.state, "coarse": c.coarse} for c in state.centres]}
    if as_json:
        emit_json(out)
        return
    click.echo(f"{query_hash[:16]}: {state.state}" + (f" ({state.error})" if state.error else ""))
    for c in out["centres"]:
        click.echo(f"  {c['centre']:<20} {c['state']}" + (f" ({c['coarse']})" if c["coarse"] else ""))
