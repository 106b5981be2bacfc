"""`oncofed analyse` — fit a federated model (logistic or Cox) over the query plane.

    oncofed analyse run model.toml -c researcher.toml [--permit study.permit] [--to a,b,c] [--json] [--csv OUT]

Your client is the coordinator: each round is one signed, sealed, secure-aggregated query
carrying the current coefficients; the hub relays sealed bytes and never sees the model. Each
round's progress is shown (its Newton step and log-likelihood), then the coefficient table.
The model file is described in docs/analyses.md.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from oncofed.cli.output import emit_json, json_option
from oncofed.cli.query_cmd import config_option

if TYPE_CHECKING:
    from oncofed.analyses.fedavg_training import FedAvgResult
    from oncofed.analyses.model_result import ModelResult


@click.group()
def analyse() -> None:
    """Fit federated models — logistic regression, Cox stratified by centre (researchers)."""


@analyse.command("run")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@config_option
@click.option("--permit", "permit", default=None, help="The permit file, or its SHA-256 in hex (else the file's).")
@click.option("--to", "targets", default=None, help="Target centres, comma-separated (else the file's).")
@click.option("--min-participants", type=click.IntRange(2, 256), default=None,
              help="Smallest set of centres you accept (default: min(3, targets)).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
              help="Seconds to wait for each round's answers.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the coefficient table as CSV.")
@json_option
def run(file: Path, config_path: Path, permit: str | None, targets: str | None, min_participants: int | None,
        timeout: float, csv_out: Path | None, as_json: bool) -> None:
    """Fit the model in FILE (TOML or JSON) across the target centres."""
    from oncofed.federation.client.analyse import RoundDone, load_request, run_model
    from oncofed.federation.client.client import FederationClient
    from oncofed.federation.client.config import PASSPHRASE_ENV, load

    cfg = load(config_path)
    d = cfg.dictionary()
    request = load_request(file.read_bytes(), base=file.parent, permit=permit,
                           targets=[t.strip() for t in targets.split(",") if t.strip()] if targets else None,
                           min_participants=min_participants)
    passphrase = os.environ.get(PASSPHRASE_ENV)
    creds = cfg.credentials(passphrase.encode() if passphrase else None)

    def show(r: RoundDone) -> None:
        if as_json:
            return
        s = r.step
        change = f"  max|Δθ| {s.change:.3g}" if s.change is not None else ""
        click.echo(f"  round {s.round:>2}  {s.action:<9}  log-likelihood {s.loglik:.8f}{change}  ({r.seconds:.2f} s, "
                   f"{len(r.participants)} centres)", err=True)

    if not as_json:
        click.echo(f"fitting {request.analysis.WhichOneof('kind')} across {', '.join(request.targets)}", err=True)
    with FederationClient.connect(creds, cfg.address, server_name=cfg.server_name) as client:
        result = run_model(client, request, dictionary=d, timeout=timeout, on_round=show)
    show_result(result, csv_out, as_json,
                f"participants: {', '.join(result.participants)}; fitted in {result.seconds:.2f} s")


def show_result(result: ModelResult | FedAvgResult, csv_out: Path | None, as_json: bool, footer: str) -> None:
    """The coefficient table (or its JSON), and the CSV when asked: the same for every transport,
    so a fit over the query plane and on Flower print alike."""
    if csv_out is not None:
        rows = result.rows()
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with csv_out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(result.summary())
    click.echo(footer + (f"; wrote {csv_out}" if csv_out else ""))
