"""FedAvg on Flower's simulation engine beside the exact Newton fit (issue 11, item 7; D36): the
rounds FedAvg needs to reach the pooled log-likelihood within 10^-3 per row, and what client-side
DP at a stated ε per round leaves after R rounds.

Everything is real, as in bench/analyses.py: a synthetic federation (3 centres × 10^4 rows by
default), every centre's node directory with its keys and store, the researcher-signed runs, one
start of the simulation engine (Ray workers running the deployed ClientApp's handler, the
ServerApp's coordination) for every run. The reference is statsmodels' `Logit` on the pooled
complete cases, and the exact Newton fit of the same model on the same engine start.

- without DP: FedAvg at (step, local epochs) settings, `--rounds` rounds each; the training
  log-likelihood of every round (exact sums at the round's weights) against the pooled one,
  per row; the first round within 10^-3 per row, and within 10^-3 of the whole log-likelihood
  (the issue's "within 1e-3" read strictly: n times tighter);
- with DP: the same model with updates clipped to C and noised at each centre (discrete
  Gaussian, the node's own mechanism) at ε per round, δ 10^-6, the coordinator stepping a quarter
  of the mean update (`[fit] server_learning_rate`) so the noise averages over rounds; the centres release no metrics
  under DP, so the final weights' log-likelihood and accuracy are evaluated here, on the pooled
  rows the bench holds (not a federated release).

    python bench/fedavg.py --out bench/results/fedavg.json [--size 10000] [--centres 3] [--rounds 60]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

LOGISTIC = {"logistic": {"survival": "OS", "cutoff": "2025-12-31", "horizon_days": 1826,
                         "covariates": ["age_at_incidence", "sex", "stage_summary"]}}
#: (step, local epochs) of the runs without DP; the default settings first.
SETTINGS = ((1.0, 5), (2.0, 25))
DP_EPSILONS = (1.0, 10.0)
DP_DELTA, DP_CLIP, DP_ROUNDS, DP_SERVER_STEP = 1e-6, 0.5, 40, 0.25
TOLERANCE = 1e-3


def fedavg(lr: float, epochs: int, **extra: Any) -> dict[str, Any]:
    return {"fedavg": {**LOGISTIC["logistic"], "learning_rate": lr, "local_epochs": epochs, **extra}}


def measure(size: int, n_centres: int, rounds: int, tmp: Path) -> dict[str, Any]:
    import numpy as np
    import statsmodels.api as sm
    from federation_world import make_world
    from flower_world import enable_flower, model_request, run_config
    from regression_reference import node_rows

    from oncofed.flower.simulation import run_fits
    from oncofed.node.query.policy import NodePolicy
    from oncofed.query.textform import analysis_from

    t0 = time.perf_counter()
    centres = tuple(f"centre-{i:03d}" for i in range(n_centres))
    policy = NodePolicy(mode="threshold", min_cell_count=1, rate_per_minute=100_000, rate_per_day=10_000_000,
                        fedavg_max_rounds=10_000)
    world = make_world(tmp / "world", centres=centres, patients=max(int(size / 1.035), 10), policy=policy)
    out: dict[str, Any] = {"centres": n_centres, "rows_per_centre": size,
                           "setup_seconds": round(time.perf_counter() - t0, 1)}
    try:
        query = {"mode": '"threshold"', "min_cell_count": "1", "rate_per_minute": "100000",
                 "rate_per_day": "10000000", "fedavg_max_rounds": "10000", "dp_mechanism": '"gaussian"'}
        dirs = [enable_flower(Path(c.node.paths.root), world.fed, c.centre_id, query=query)
                for c in world.centres.values()]
        targets = list(world.centres)
        permit = next(iter(world.centres.values())).permit
        now = int(time.time())
        _, dp_permit = world.fed.authority.issue_permit(
            researcher_id="res-1", project_title="FedAvg under DP (bench)", analyses=["fedavg"],
            fields=["sex", "age_at_incidence", "stage_summary"], outcomes=["os"], min_cell_count=1,
            not_before=now - 60, not_after=now + 86_400, epsilon=sum(DP_EPSILONS) * DP_ROUNDS + 1)
        for c in world.centres.values():
            c.pipeline.verifier.trust.add_permit(dp_permit.data)
            c.pipeline.verifier.trust.approve(dp_permit.sha256, by="bench")
        d = world.dictionary()
        nodes = {c: world.centres[c].node for c in centres}
        spec, frame = node_rows(nodes, analysis_from(LOGISTIC, "a"), None, d)
        x = np.column_stack([np.ones(len(frame)), frame[spec.design.names()].to_numpy(float)])
        y = frame["y"].to_numpy(float)
        keep = [0] + [1 + i for i, c in enumerate(spec.design.names()) if frame[c].any()]
        t = time.perf_counter()
        ref = sm.Logit(y, x[:, keep]).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
        pooled_seconds = time.perf_counter() - t
        full = np.zeros(x.shape[1])
        full[keep] = ref.params
        n = len(y)

        def evaluate(beta: Any) -> tuple[float, float]:
            """Log-likelihood and (hard) accuracy on the pooled rows the bench holds — the
            classifier evaluated here, not a federated release."""
            eta = x @ np.asarray(beta, dtype=float)
            return float(np.sum(y * eta - np.logaddexp(0.0, eta))), float(np.mean((eta >= 0) == (y == 1)))

        _, pooled_accuracy = evaluate(full)
        p_hat = 1.0 / (1.0 + np.exp(-(x @ full)))
        pooled_expected = float(np.mean(np.where(y == 1, p_hat, 1.0 - p_hat)))   # what a round releases
        runs: list[tuple[str, dict[str, Any]]] = [("newton", {})]
        configs = [run_config(world.fed, tmp, model_request(LOGISTIC, targets, permit), d, tmp / "newton.json")]
        for lr, epochs in SETTINGS:
            name = f"fedavg-lr{lr:g}-e{epochs}"
            runs.append((name, {"learning_rate": lr, "local_epochs": epochs, "dp": False}))
            configs.append(run_config(world.fed, tmp, model_request(fedavg(lr, epochs), targets, permit,
                                                                    max_rounds=rounds), d, tmp / f"{name}.json"))
        lr, epochs = SETTINGS[-1]
        for eps in DP_EPSILONS:
            name = f"fedavg-dp-eps{eps:g}"
            runs.append((name, {"learning_rate": lr, "local_epochs": epochs, "dp": True, "epsilon_per_round": eps,
                                "delta": DP_DELTA, "clip_norm": DP_CLIP, "server_learning_rate": DP_SERVER_STEP}))
            req = model_request(fedavg(lr, epochs, clip_norm=DP_CLIP, dp_delta=DP_DELTA), targets, dp_permit.sha256,
                                max_rounds=DP_ROUNDS)
            req = replace(req, epsilon=eps, options=replace(req.options, server_learning_rate=DP_SERVER_STEP))
            configs.append(run_config(world.fed, tmp, req, d, tmp / f"{name}.json"))
        report = run_fits(dirs, configs)
        out["simulation_seconds"] = round(report.seconds, 1)
        out["pooled"] = {"rows": n, "loglik": float(ref.llf), "loglik_per_row": float(ref.llf) / n,
                         "accuracy": pooled_accuracy, "expected_accuracy": pooled_expected,
                         "statsmodels_seconds": round(pooled_seconds, 3)}
        print(f"  {n_centres} × {size:,}: pooled Logit over {n:,} rows: log-likelihood {ref.llf:.4f} "
              f"({ref.llf / n:.6f} per row), accuracy {pooled_accuracy:.4f}", flush=True)
        out["runs"] = []
        for (name, meta), outcome in zip(runs, report.outcomes, strict=True):
            if outcome.error is not None:
                raise SystemExit(f"the run {name} failed: {outcome.error}")
            res = outcome.result
            doc = outcome.run
            seconds = [r["seconds"] for r in doc["rounds"]]
            row: dict[str, Any] = {"run": name, **meta, "rounds": len(seconds),
                                   "round_seconds_median": round(sorted(seconds)[len(seconds) // 2], 3),
                                   "prepare_seconds": round(doc["prepare_seconds"], 2)}
            if name == "newton":
                row.update({"loglik": res.loglik, "loglik_gap_per_row": (ref.llf - res.loglik) / n,
                            "converged": res.converged})
                print(f"  exact Newton on Flower: {res.rounds} rounds, log-likelihood {res.loglik:.6f} "
                      f"(|Δ| to statsmodels {abs(res.loglik - ref.llf):.1e}); round {row['round_seconds_median']} s",
                      flush=True)
            elif not meta["dp"]:
                gaps = [(ref.llf - r.loglik) / n for r in res.rounds]
                hit = next((r.round for r, g in zip(res.rounds, gaps, strict=True) if g <= TOLERANCE), None)
                last = res.rounds[-1]
                # round r reports the weights after r − 1 updates: within 1e-3 at round r = r − 1 updates
                # and within 1e-3 of the whole log-likelihood (n × 1e-3 tighter than per row)
                whole = next((r.round for r in res.rounds if ref.llf - r.loglik <= TOLERANCE), None)
                row.update({"first_round_within_1e-3_per_row": hit,
                            "updates_to_within_1e-3_per_row": hit - 1 if hit else None,
                            "updates_to_within_1e-3_absolute": whole - 1 if whole else None,
                            "final_loglik_gap_absolute": ref.llf - last.loglik,
                            "loglik_gap_per_row_by_round": [round(g, 7) for g in gaps],
                            "last_loglik": last.loglik, "last_expected_accuracy": last.accuracy})
                print(f"  FedAvg step {meta['learning_rate']:g}, {meta['local_epochs']} epochs: within 1e-3 per "
                      f"row after {hit - 1 if hit else f'more than {len(gaps) - 1}'} updates; after "
                      f"{len(gaps) - 1}: gap {gaps[-1]:.2e} per row ({ref.llf - last.loglik:.2e} in all; within 1e-3 "
                      f"in all after {whole - 1 if whole else f'more than {len(gaps) - 1}'} updates), expected "
                      f"accuracy {last.accuracy:.4f} (pooled {pooled_expected:.4f}); round "
                      f"{row['round_seconds_median']} s", flush=True)
            else:
                ll, acc = evaluate(res.beta)
                row.update({"stopped": res.stopped, "final_loglik_evaluated_here": ll,
                            "final_loglik_gap_per_row": (ref.llf - ll) / n, "final_accuracy_evaluated_here": acc})
                print(f"  FedAvg DP ε {meta['epsilon_per_round']:g}/round, δ {DP_DELTA:g}, C {DP_CLIP:g}, server "
                      f"step {DP_SERVER_STEP:g}: after "
                      f"{len(seconds)} rounds log-likelihood {ll:.4f} (gap {(ref.llf - ll) / n:.4f} per row), "
                      f"accuracy {acc:.4f} (pooled {pooled_accuracy:.4f})", flush=True)
            out["runs"].append(row)
    finally:
        world.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/fedavg.json"))
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--centres", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="oncofed-bench-fedavg-") as tmp:
        result = measure(args.size, args.centres, args.rounds, Path(tmp))
    doc = {"bench": "fedavg", "started": started, "python": platform.python_version(),
           "load_average": os.getloadavg(), "tolerance_per_row": TOLERANCE, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
