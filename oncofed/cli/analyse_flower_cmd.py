"""`oncofed analyse flower` — fit the same model file as `oncofed analyse run`, as a run on a
Flower SuperLink (the hub's deployment engine) instead of over the query plane.

    oncofed analyse flower model.toml -c researcher.toml --superlink HOST:PORT --registry registry.bin
        [--permit study.permit] [--to a,b,c] [--result PATH] [--json] [--csv OUT]

Your client signs the run (the model, targets and permit, in one envelope every centre verifies
itself), bundles oncofed's app and submits it with `flwr run`; the ServerApp at the hub coordinates
the Newton rounds over masked centre vectors and writes the result to --result (a path on the
hub's machine; the default suits a SuperLink on this machine). The table is the same as
`oncofed analyse run` prints. docs/flower-operations.md.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import click

from oncofed.cli.analyse_cmd import analyse, show_result
from oncofed.cli.output import json_option
from oncofed.cli.query_cmd import config_option


@analyse.command("flower")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@config_option
@click.option("--superlink", required=True, envvar="ONCOFED_SUPERLINK", show_envvar=True,
              help="The hub's Flower SuperLink, host:port.")
@click.option("--registry", "registry_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The federation registry the authority published (registry.bin); verified under your root.")
@click.option("--permit", "permit", default=None, help="The permit file, or its SHA-256 in hex (else the file's).")
@click.option("--to", "targets", default=None, help="Target centres, comma-separated (else the file's).")
@click.option("--min-participants", type=click.IntRange(2, 256), default=None,
              help="Smallest set of centres you accept (default: min(3, targets)).")
@click.option("--result", "result_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where the ServerApp writes the result (a path on the hub's machine; default: a new "
                   "temporary folder here).")
@click.option("--timeout", type=click.FloatRange(10, 86400), default=900.0, show_default=True,
              help="Seconds the whole run may take (it is stopped after).")
@click.option("--reference/--no-reference", default=False,
              help="A fedavg model: first fit the exact logistic model of the same outcome, covariates and cohort "
                   "as a Flower run of its own (the permit must allow logistic), then evaluate its coefficients in "
                   "one more round of the FedAvg run (without DP), and print its log-likelihood and accuracy "
                   "beside every round.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the coefficient table as CSV.")
@json_option
def flower(file: Path, config_path: Path, superlink: str, registry_path: Path, permit: str | None,
           targets: str | None, min_participants: int | None, result_path: Path | None, timeout: float,
           reference: bool, csv_out: Path | None, as_json: bool) -> None:
    """Fit the model in FILE (TOML or JSON, as for `analyse run`) as a Flower run; a fedavg model
    is trained round by round (a table per round; --reference puts the pooled exact fit beside)."""
    from oncofed.analyses.fedavg_training import FedAvgResult
    from oncofed.analyses.model_result import ModelResult
    from oncofed.errors import UsageError
    from oncofed.federation.client.analyse import load_request
    from oncofed.federation.client.config import PASSPHRASE_ENV, load
    from oncofed.flower.request import build_run_config, reference_beta_of, reference_request
    from oncofed.flower.submit import fit_on_flower

    cfg = load(config_path)
    d = cfg.dictionary()
    request = load_request(file.read_bytes(), base=file.parent, permit=permit,
                           targets=[t.strip() for t in targets.split(",") if t.strip()] if targets else None,
                           min_participants=min_participants)
    try:
        registry = registry_path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the registry {registry_path}: {exc.strerror}") from None
    passphrase = os.environ.get(PASSPHRASE_ENV)
    creds = cfg.credentials(passphrase.encode() if passphrase else None)
    extension = cfg.extension.read_bytes() if cfg.extension else None
    trains = request.analysis.WhichOneof("kind") == "fedavg"
    if reference and not trains:
        raise UsageError("--reference is for a fedavg model (an exact model is its own reference)")
    with tempfile.TemporaryDirectory(prefix="oncofed-result-") as tmp:
        out = result_path if result_path is not None else Path(tmp) / "result.json"
        ref_config = None
        if reference:
            ref_out = out.with_name(out.stem + "-reference" + out.suffix)
            ref_config = build_run_config(creds, reference_request(request), dictionary=d, registry=registry,
                                          result_path=str(ref_out.resolve()), extension=extension)

        def started(run_id: int) -> None:
            if not as_json:
                click.echo(f"fitting {request.analysis.WhichOneof('kind')} across {', '.join(request.targets)} "
                           f"as Flower run {run_id} on {superlink}", err=True)

        def progress(line: str) -> None:
            text = re.sub(r"^(INFO|WARNING|ERROR|DEBUG)\s*:\s*", "", line).strip()
            if text and not as_json:
                click.echo(f"  {text}", err=True)

        pooled = None
        if ref_config is not None:
            if not as_json:
                click.echo("the pooled exact fit first (logistic, Newton):", err=True)
            pooled = fit_on_flower(ref_config, superlink=superlink, root_cert=cfg.root_cert, timeout=timeout,
                                   on_line=progress).result
        # without DP the pooled coefficients are evaluated in one more round: its accuracy too
        beside = reference_beta_of(request, pooled, dictionary=d) \
            if isinstance(pooled, ModelResult) and not request.epsilon else None
        run_config = build_run_config(creds, request, dictionary=d, registry=registry, result_path=str(out.resolve()),
                                      extension=extension, reference_beta=beside)
        fit = fit_on_flower(run_config, superlink=superlink, root_cert=cfg.root_cert, timeout=timeout,
                            on_line=progress, on_start=started)
    result = fit.result
    if isinstance(pooled, ModelResult) and isinstance(result, FedAvgResult) and result.reference_loglik is None:
        result.reference_loglik = pooled.loglik            # under DP: no round evaluates it, its own fit's
    show_result(result, csv_out, as_json, f"participants: {', '.join(result.participants)}; Flower run "
                f"{fit.run_id}, {fit.status.elapsed:.1f} s")

