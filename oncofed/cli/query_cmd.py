"""`oncofed query` — the researcher's commands: submit a federated query and read its result.

    oncofed query config --out researcher.toml        # fill in hub address and your keys
    oncofed query run q.json --config researcher.toml --permit study.permit --to centre-a,centre-b,centre-c

`run` signs the query, seals it to each target centre, submits it to the hub, shows each centre's
progress (accepted / declined with its coarse reason / answered), verifies and opens the answers,
sums them and prints the result (`--json`, `--csv OUT`, `--plot OUT.png` for Kaplan–Meier).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import click

from oncofed.cli.output import emit_json, json_option
from oncofed.errors import UsageError

config_option = click.option("--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                             default=Path("researcher.toml"), envvar="ONCOFED_RESEARCHER_CONFIG",
                             show_default=True, show_envvar=True,
                             help="Your settings: hub address and keys (see `oncofed query config`).")


@click.group()
def query() -> None:
    """Submit federated queries and read their results (researchers)."""


@query.command("config")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the file here instead of printing it (refuses to overwrite).")
def config_cmd(out: Path | None) -> None:
    """Print a researcher.toml with every setting, to fill in."""
    from oncofed.federation.client.config import render

    text = render()
    if out is None:
        click.echo(text, nl=False)
        return
    if out.exists():
        raise UsageError(f"{out} exists; refusing to overwrite it")
    out.write_text(text, "utf-8")
    click.echo(f"wrote {out}")


def _permit_hash(value: str) -> bytes:
    """A permit file (its SHA-256) or the permit's SHA-256 in hex."""
    path = Path(value)
    if path.is_file():
        from oncofed.keys.permits import permit_sha256

        return bytes.fromhex(permit_sha256(path.read_bytes()))
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise UsageError(f"--permit: {value!r} is neither a permit file nor a SHA-256 in hex")
    return raw


@query.command("run")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@config_option
@click.option("--permit", "permit", required=True, help="The permit file, or its SHA-256 in hex.")
@click.option("--to", "targets", required=True, help="Target centres, comma-separated.")
@click.option("--min-participants", type=click.IntRange(2, 256), default=None,
              help="Smallest set of centres you accept (default: min(3, targets)).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
              help="Seconds to wait for the answers.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the result's main table as CSV.")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Kaplan–Meier only: write the curves, CIs and numbers at risk as a PNG.")
@json_option
def run(file: Path, config_path: Path, permit: str, targets: str, min_participants: int | None, timeout: float,
        csv_out: Path | None, plot_out: Path | None, as_json: bool) -> None:
    """Run the query in FILE (JSON or TOML, see docs/queries.md) across the target centres."""
    from oncofed.federation.client.client import FederationClient, Progress
    from oncofed.federation.client.config import PASSPHRASE_ENV, load
    from oncofed.query import loads

    cfg = load(config_path)
    d = cfg.dictionary()
    body = loads(file.read_bytes(), dictionary=d)
    body.permit_hash = _permit_hash(permit)
    body.target_centres[:] = [t.strip() for t in targets.split(",") if t.strip()]
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
        sub = client.submit(body)
        _remember(cfg.history, sub.query_hash.hex(), file, list(body.target_centres))
        if not as_json:
            click.echo(f"query {sub.query_hash.hex()[:16]} submitted to {', '.join(body.target_centres)}", err=True)
        state = client.follow(sub, timeout=timeout, on_progress=show)
        result = client.collect(sub, state, d)
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
    if len(query_hash) < 64 and cfg.history.exists():
        known = [json.loads(line)["query_hash"] for line in cfg.history.read_text("utf-8").splitlines() if line]
        matches = sorted({h for h in known if h.startswith(query_hash.lower())})
        if len(matches) != 1:
            raise UsageError(f"{query_hash!r} names {len(matches)} of your queries; give more of the hash")
        query_hash = matches[0]
    try:
        qh = bytes.fromhex(query_hash)
    except ValueError:
        raise UsageError("the query hash is hexadecimal") from None
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
