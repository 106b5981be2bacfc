"""Federated models over the query plane: wall time and rounds of a whole fit, against the same
model fitted by statsmodels on the pooled rows in the same run.

Everything is real: an in-process hub (gRPC, mutual TLS), one outbound connector per centre
(each in a process of its own, tests/integration/connector_pool.py, started afresh for every
cold fit; `--threads`: threads of this process, as before), the researcher's client as the
coordinator (oncofed.federation.client.analyse.run_model): every round is a signed, sealed,
secure-aggregated query. The policy releases exact sums (threshold mode, k = 1) so the fits can
be compared; rate limits are lifted. The pooled side reads each centre's complete cases (the
rows the fit rests on) and times statsmodels alone: `Logit(...).fit(method="newton")` and
`PHReg(..., ties="efron", strata=centre).fit(method="newton")` (unstratified for the pooled-equivalent
Cox model on its 30-day lattice, compared against its stated tolerance), and for the piecewise-exponential
model `GLM(family=Poisson, offset=log(exposure))` on the rows expanded to person-period records
(the expansion is not timed).

    python bench/analyses.py --out bench/results/analyses.json [--sizes 10000,100000] [--centres 3,5]
                             [--models logistic,cox,poisson] [--repeats 3] [--flower] [--deployment]

The whole grid of issue 11 is one command: `--sizes 10000,100000 --centres 3,5 --models logistic,cox
--flower --deployment`; each world (size × centres) is measured in turn and the JSON is rewritten
after each, so a run cut short keeps what it measured. Every row carries the 1-minute load
average (`os.getloadavg`) before and after each engine's fits: the machine is shared, round counts
are deterministic, times are not.

With `--flower` the same models are also fitted on Flower's simulation engine over the same node
directories (oncofed.flower.simulation: the deployed ServerApp's coordination, Ray workers running
the ClientApp), `repeats` times each, in one engine start per world: columns `flower_*` (a fit's
seconds leave out the very first run, which waits for the engine). Where the time goes:
`flower_engine_start_seconds` is the first run's prepare (Ray and its workers starting);
per round, `flower_round_seconds_median` against `node_compute_per_round_seconds` (one centre's
later round answered alone, × the centres each of the 2 workers serves) leaves
`flower_engine_overhead_per_round_seconds` (messages, Ray scheduling, the coordinator's polls,
opening the node per message).

With `--deployment` they are fitted once each on Flower's deployment engine too: a SuperLink (TLS,
`--database`, SuperNode authentication) and one SuperNode per centre as processes on 127.0.0.1
over the same node directories (tests/integration/flower_deploy_world.py), columns `deploy_*`.
Every message there starts a fresh ClientApp process that opens its node and reads its rows, so a
round's compute is one centre's *first* round (`one_centre_alone_first_round_seconds`, rows read
and prepared) × the centres each of the machine's cores serves; the rest of
`deploy_round_seconds_median` is `deploy_engine_overhead_per_round_seconds` (the SuperNodes' and
the ServerApp's 3-s polls, the ClientApp process start, SuperExec). `deploy_cold_start_seconds`:
SuperLink up and every SuperNode accepted.

Targets (issue 11): ≤ 8 rounds; the query plane ≤ 2 s for a fit over 5 × 100k rows.
"""

from __future__ import annotations

import os

# The centres run as threads of this one process: one BLAS thread each, or they oversubscribe the
# machine's cores (measured: the Cox step at 100k rows 157 → 93 ms at load 6 on 2 cores).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

MODELS: dict[str, Any] = {
    "logistic": {"logistic": {"survival": "OS", "cutoff": "2025-12-31", "horizon_days": 1826,
                              "covariates": ["age_at_incidence", "sex", "stage_summary"]}},
    "cox": {"cox": {"outcome": "OS", "cutoff": "2025-12-31",
                    "covariates": ["age_at_incidence", "sex", "stage_summary"]}},
    "poisson": {"poisson": {"outcome": "OS", "cutoff": "2025-12-31", "step_days": 365, "horizon_days": 3650,
                            "covariates": ["age_at_incidence", "sex", "stage_summary"]}},
    "cox_pooled": {"cox_pooled": {"outcome": "OS", "cutoff": "2025-12-31", "step_days": 30,
                                  "covariates": ["age_at_incidence", "sex", "stage_summary"]}},
}


def policy() -> Any:
    from oncofed.node.query.policy import NodePolicy

    return NodePolicy(mode="threshold", min_cell_count=1, rate_per_minute=100_000, rate_per_day=10_000_000,
                      max_rounds=10_000, allow_pooled_cox=True)


def pooled_fit(kind: str, frame: Any, columns: list[str]) -> tuple[float, Any]:
    import numpy as np
    import statsmodels.api as sm

    if kind == "poisson":
        step, intervals = 365, 10
        pp, x = person_period(frame, columns, step, intervals)
        t = time.perf_counter()
        fit = sm.GLM(pp["d"], x, family=sm.families.Poisson(), offset=np.log(pp["exposure"])).fit(
            method="newton", tol=1e-10)
        return time.perf_counter() - t, fit
    t = time.perf_counter()
    if kind == "logistic":
        x = sm.add_constant(frame[columns].to_numpy(float), has_constant="add")
        fit = sm.Logit(frame["y"].to_numpy(float), x).fit(method="newton", tol=1e-10, disp=0)
    else:
        entry = frame["entry"].to_numpy(float)
        fit = sm.PHReg(frame["time"].to_numpy(float), frame[columns].to_numpy(float),
                       status=frame["event"].to_numpy(float), ties="efron",
                       strata=frame["centre"].to_numpy() if kind == "cox" else None,
                       entry=np.where(entry > 0, entry + 0.5, 0.0)).fit(method="newton", tol=1e-10)
    return time.perf_counter() - t, fit


def person_period(frame: Any, columns: list[str], step: int, intervals: int) -> tuple[Any, Any]:
    """The rows as person-period records (the lattice rules of oncofed.analyses.poisson at k = 1,
    vectorised): records and their design (interval baselines, then the covariates)."""
    import numpy as np

    t, e, en = (frame[c].to_numpy(float) for c in ("time", "event", "entry"))
    kappa = np.maximum(1, np.ceil(t / step)).astype(int)
    alpha = np.where(en > 0, np.floor(en / step) + 1, 1).astype(int)
    counts = np.clip(np.minimum(kappa, intervals) - alpha + 1, 0, None)
    row = np.repeat(np.arange(len(t)), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    j = alpha[row] + np.arange(len(row)) - start
    leaving = j == kappa[row]
    pp = {"d": np.where(leaving, e[row], 0.0), "exposure": np.where(leaving, step / 2, float(step))}
    x = np.column_stack([np.eye(intervals)[j - 1], frame[columns].to_numpy(float)[row]])
    return pp, x


def one_centre_alone(world: Any, analysis: Any) -> tuple[float, float]:
    """One centre answering one round by itself (its whole pipeline: verify, round cap, release
    ledger, local step, audit), nothing else running: the first round of a fit (its rows read and
    prepared) and a later one — what a round costs a centre on its own machine."""
    import os as _os

    from oncofed.keys.envelope import sign
    from oncofed.node.store.design_reads import DESIGNS
    from oncofed.query import QUERY_TAG

    centre = next(iter(world.centres.values()))
    out = []
    DESIGNS.clear()
    for beta_shift in (0, 1):
        body = world.body({"count": {}})
        body.analysis.CopyFrom(analysis)
        msg = getattr(body.analysis, body.analysis.WhichOneof("kind"))
        msg.beta[:] = [b + beta_shift for b in msg.beta] if msg.beta else []
        body.nonce = _os.urandom(16)
        body.issued_at = int(time.time())
        body.expires_at = body.issued_at + 600
        env = sign(world.fed.identities["res-1"], QUERY_TAG, body.SerializeToString())
        t = time.perf_counter()
        centre.pipeline.answer_envelope(env)
        out.append(time.perf_counter() - t)
    return out[0], out[1]


def load() -> float:
    """The 1-minute load average, beside every figure (the machine is shared)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def flower_dirs(world: Any) -> list[Path]:
    """The world's node directories as a SuperNode opens them: identity key, [flower], and the
    benchmark's exact policy in node.toml [query] (threshold, k = 1, limits lifted)."""
    from flower_world import enable_flower

    return [enable_flower(Path(c.node.paths.root), world.fed, c.centre_id, min_participants=2,
                          query={"mode": '"threshold"', "min_cell_count": "1", "rate_per_minute": "100000",
                                 "rate_per_day": "10000000", "max_rounds": "10000", "allow_pooled_cox": "true"})
            for c in world.centres.values()]


def deployment_columns(world: Any, tmp: Path, models: tuple[str, ...], rows: dict[str, dict[str, Any]],
                       plane: dict[str, Any]) -> list[int]:
    """Fit `models` once each on Flower's deployment engine over the world's node directories (a
    SuperLink and a SuperNode per centre, processes on 127.0.0.1); add the `deploy_*` columns to
    `rows` and return the pids still alive after the teardown (none expected)."""
    import numpy as np
    from flower_deploy_world import deploy
    from flower_world import model_request, run_config

    from oncofed.flower.submit import fit_on_flower

    dirs = flower_dirs(world)
    targets = list(world.centres)
    permit = next(iter(world.centres.values())).permit
    d = world.dictionary()
    (tmp / "deploy").mkdir(exist_ok=True)
    t = time.perf_counter()
    dep = deploy(tmp / "deploy", fed=world.fed)
    try:
        for name, node_dir in zip(targets, dirs, strict=True):
            dep.start_node(name, node_dir)
        cold = time.perf_counter() - t
        cores = os.cpu_count() or 1
        for kind in models:
            row = rows[kind]
            out = tmp / f"deploy-{kind}.json"
            config = run_config(world.fed, tmp, model_request(MODELS[kind], targets, permit), d, out)
            before = load()
            t = time.perf_counter()
            fit = fit_on_flower(config, superlink=dep.spec.address, root_cert=dep.base / "root.cert.pem",
                                timeout=3600)
            wall = time.perf_counter() - t
            run = json.loads(out.read_text("utf-8"))
            rounds = [r["seconds"] for r in run["rounds"]]
            listed = next((r for r in dep.cli.runs() if str(r.get("run-id")) == str(fit.run_id)), {})
            compute = row["one_centre_alone_first_round_seconds"] * -(-len(targets) // min(cores, len(targets)))
            diff = max(float(np.abs(np.asarray(fit.result.beta) - np.asarray(plane[kind].beta)).max()),
                       float(np.abs(np.asarray(fit.result.se) - np.asarray(plane[kind].se)).max()))
            median = statistics.median(rounds)
            row.update({
                "deploy_rounds": fit.result.rounds, "deploy_wall_seconds": round(wall, 2),
                "deploy_prepare_seconds": round(float(run.get("prepare_seconds") or 0.0), 2),
                "deploy_round_seconds_median": round(median, 3),
                "deploy_round_seconds_all": [round(x, 2) for x in rounds],
                "deploy_node_compute_per_round_seconds": round(compute, 3),
                "deploy_engine_overhead_per_round_seconds": round(median - compute, 3),
                "deploy_flower_compute_time": listed.get("compute-time"),
                "ratio_deploy_to_pooled": round(wall / max(row["pooled_statsmodels_seconds"], 1e-9), 2),
                "deploy_max_abs_difference_to_query_plane": diff,
                "deploy_load_before_after": [before, load()],
                "deploy_cold_start_seconds": round(cold, 1),
            })
            print(f"  deploy    {kind:<9} rounds {fit.result.rounds}  wall {wall:.1f} s (prepare "
                  f"{row['deploy_prepare_seconds']} s, round {median:.2f} s = compute ≈ {compute:.3f} + engine ≈ "
                  f"{median - compute:.2f})  |Δ| to the query plane {diff:.1e}  load {before} → {load()}", flush=True)
    finally:
        left = dep.close()
    print(f"  deploy    SuperLink and {len(targets)} SuperNodes up in {cold:.1f} s; processes left {left}", flush=True)
    return left


def flower_columns(world: Any, tmp: Path, models: tuple[str, ...], repeats: int, rows: dict[str, dict[str, Any]],
                   plane: dict[str, Any]) -> float:
    """Fit `models` on the simulation engine over the world's node directories (one engine start);
    add the Flower columns to `rows` (by model) and return the engine's whole wall time."""
    import numpy as np
    from flower_world import model_request, run_config

    from oncofed.flower.simulation import run_fits

    dirs = flower_dirs(world)
    targets = list(world.centres)
    permit = next(iter(world.centres.values())).permit
    d = world.dictionary()
    runs = [(kind, i) for kind in models for i in range(repeats)]
    configs = [run_config(world.fed, tmp, model_request(MODELS[kind], targets, permit), d,
                          tmp / f"flower-{kind}-{i}.json") for kind, i in runs]
    before = load()
    report = run_fits(dirs, configs)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for (kind, _), outcome in zip(runs, report.outcomes, strict=True):
        if outcome.error is not None:
            raise SystemExit(f"Flower run of {kind} failed: {outcome.error}")
        by_kind.setdefault(kind, []).append(outcome.run)
    first = report.outcomes[0].run["prepare_seconds"]
    workers = min(2, len(targets))
    for kind, docs in by_kind.items():
        row = rows[kind]
        row["flower_load_before_after"] = [before, load()]
        # the very first run also waits for Ray and its workers: it is the engine start, not a fit
        fit_seconds = [doc["result"]["seconds"] for doc in docs if doc is not report.outcomes[0].run] or \
            [doc["result"]["seconds"] for doc in docs]
        rounds = [r["seconds"] for doc in docs for r in doc["rounds"]]
        later_prepares = [doc["prepare_seconds"] for doc in docs if doc is not report.outcomes[0].run]
        compute = row["one_centre_alone_later_round_seconds"] * len(targets) / workers
        result = docs[-1]["result"]
        diff = max(float(np.abs(np.asarray(result["beta"]) - np.asarray(plane[kind].beta)).max()),
                   float(np.abs(np.asarray(result["se"]) - np.asarray(plane[kind].se)).max()))
        row.update({
            "flower_rounds": result["rounds"],
            "flower_seconds_median": round(statistics.median(fit_seconds), 3),
            "ratio_flower_to_pooled": round(statistics.median(fit_seconds) / max(row["pooled_statsmodels_seconds"],
                                                                                  1e-9), 2),
            "flower_seconds_all": [round(x, 3) for x in fit_seconds],
            "flower_prepare_seconds_median": round(statistics.median(later_prepares), 3) if later_prepares else None,
            "flower_round_seconds_median": round(statistics.median(rounds), 3),
            "node_compute_per_round_seconds": round(compute, 3),
            "flower_engine_overhead_per_round_seconds": round(statistics.median(rounds) - compute, 3),
            "flower_max_abs_difference_to_query_plane": diff,
        })
        print(f"  flower    {kind:<9} rounds {result['rounds']}  fit {row['flower_seconds_median']:.2f} s "
              f"(prepare {row['flower_prepare_seconds_median']} s, round {row['flower_round_seconds_median']:.3f} s"
              f" = compute ≈ {compute:.3f} + engine ≈ {row['flower_engine_overhead_per_round_seconds']:.3f})  "
              f"|Δ| to the query plane {diff:.1e}", flush=True)
    for row in rows.values():
        row["flower_engine_start_seconds"] = round(first, 1)
    print(f"  flower    engine start (Ray, workers, first prepare) {first:.1f} s; whole simulation "
          f"{report.seconds:.1f} s", flush=True)
    return report.seconds


def measure(size: int, n_centres: int, repeats: int, tmp: Path, models: tuple[str, ...] = tuple(MODELS),
            flower: bool = False, deployment: bool = False, processes: bool = False) -> dict[str, Any]:
    import numpy as np
    from connector_pool import ConnectorProcesses
    from federation_world import make_world
    from regression_reference import node_rows, observed

    from oncofed.analyses.fitting import ModelFit
    from oncofed.federation.client.analyse import ModelRequest, run_model
    from oncofed.node.store.design_reads import DESIGNS
    from oncofed.query.textform import analysis_from

    t0 = time.perf_counter()
    centres = tuple(f"centre-{i:03d}" for i in range(n_centres))
    world = make_world(tmp / "world", centres=centres, patients=max(int(size / 1.035), 10), policy=policy())
    setup = time.perf_counter() - t0
    out: dict[str, Any] = {"centres": n_centres, "rows_per_centre": size, "setup_seconds": round(setup, 1),
                           "connectors": "one process per centre" if processes else "threads of this process",
                           "models": []}
    pool: Any = None

    def connect() -> None:
        """The centres' connectors: threads of this process, or (`processes`) one process each,
        started afresh with an empty row cache and warmed by one count (record keys, page cache)."""
        nonlocal pool
        if processes:
            if pool is not None:
                pool.stop()
            pool = ConnectorProcesses(world, n_centres).start()
        elif pool is None:
            for c in world.centres.values():
                c.start(world.fed, world.target)
            world.wait_connected(timeout=120)
            pool = True
        client.run(world.body("count"), dictionary=d, timeout=600)

    try:
        world.start_hub()
        client = world.client()
        d = world.dictionary()
        connect()
        permit = bytes.fromhex(next(iter(world.centres.values())).permit)
        plane: dict[str, Any] = {}
        rows: dict[str, dict[str, Any]] = {}
        for kind, model in MODELS.items():
            if kind not in models:
                continue
            req = ModelRequest(analysis_from(model, "model"), centres, permit, min_participants=n_centres)
            cold: list[float] = []
            warm: list[float] = []
            result = None
            before = load()
            for _ in range(repeats):
                DESIGNS.clear()                                    # every centre reads its rows afresh
                if processes:
                    connect()
                t = time.perf_counter()
                result = run_model(client, req, dictionary=d, timeout=600)
                cold.append(time.perf_counter() - t)

                t = time.perf_counter()
                run_model(client, req, dictionary=d, timeout=600)   # the rows already read (a refit)
                warm.append(time.perf_counter() - t)
            assert result is not None
            last = ModelFit(analysis_from(model, "model"), d)
            alone = one_centre_alone(world, last.next_analysis())
            nodes = {c: world.centres[c].node for c in centres}
            spec, frame = node_rows(nodes, analysis_from(model, "a"), None, d)
            columns = observed(frame, spec.design.names())
            pooled_s, ref = pooled_fit(kind, frame, columns)
            diff = float(np.abs(np.asarray(result.beta) - np.asarray(ref.params)).max())
            sdiff = float(np.abs(np.asarray(result.se) - np.asarray(ref.bse)).max())
            row = {"model": kind, "rows_in_fit": result.n, "rounds": result.rounds, "iterations": result.iterations,
                   "converged": result.converged, "federated_seconds_median": round(statistics.median(cold), 3),
                   "federated_seconds_all": [round(x, 3) for x in cold],
                   "refit_seconds_median": round(statistics.median(warm), 3),
                   "one_centre_alone_first_round_seconds": round(alone[0], 3),
                   "one_centre_alone_later_round_seconds": round(alone[1], 3),
                   "seconds_per_round": round(statistics.median(cold) / result.rounds, 3),
                   "pooled_statsmodels_seconds": round(pooled_s, 3),
                   "ratio_federated_to_pooled": round(statistics.median(cold) / max(pooled_s, 1e-9), 2),
                   "max_abs_coef_difference": diff, "max_abs_se_difference": sdiff,
                   "max_coef_gap_in_se": float((np.abs(np.asarray(result.beta) - np.asarray(ref.params))
                                                / np.asarray(ref.bse)).max()),
                   "tolerance_se": result.tolerance_se, "load_before_after": [before, load()]}
            out["models"].append(row)
            plane[kind], rows[kind] = result, row
            print(f"  {n_centres} × {size:>7,}  {kind:<9} rounds {result.rounds}  "
                  f"federated {row['federated_seconds_median']:.3f} s (refit {row['refit_seconds_median']:.3f} s)  "
                  f"one centre alone: first round {alone[0]:.3f} s, later {alone[1]:.3f} s  "
                  f"pooled statsmodels {pooled_s:.3f} s  "
                  f"|Δβ| {diff:.1e}  |ΔSE| {sdiff:.1e}  load {before} → {load()}", flush=True)
        if flower and rows:
            out["flower_simulation_seconds"] = round(flower_columns(world, tmp, tuple(rows), repeats, rows, plane), 1)
        if deployment and rows:
            out["deploy_processes_left"] = deployment_columns(world, tmp, tuple(rows), rows, plane)
    finally:
        if processes and pool is not None:
            pool.stop()
        world.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/analyses.json"))
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--centres", default="3,5")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--flower", action="store_true", help="also fit on Flower's simulation engine (Ray)")
    ap.add_argument("--deployment", action="store_true",
                    help="also fit on Flower's deployment engine (a SuperLink and SuperNodes as processes)")
    ap.add_argument("--threads", action="store_true",
                    help="run the centres' connectors as threads of this process (default: one process each)")
    opts = ap.parse_args()
    results: list[dict[str, Any]] = []
    for size in (int(s) for s in opts.sizes.split(",") if s):
        for n in (int(c) for c in opts.centres.split(",") if c):
            print(f"{n} centres × {size:,} rows (load {load()})", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                results.append(measure(size, n, opts.repeats, Path(tmp), tuple(opts.models.split(",")), opts.flower,
                                       opts.deployment, processes=not opts.threads))
            write(opts.out, results, checks_of(results))            # what is measured survives a stop
    checks = checks_of(results)
    for c in checks:
        print(f"{'PASS' if c['ok'] else 'MISS'}  {c['check']}: {c['value']}")
    write(opts.out, results, checks)
    print(f"wrote {opts.out}")
    return 0


def write(out: Path, results: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "analyses", "python": platform.python_version(),
                               "machine": platform.machine(), "cpus": os.cpu_count(), "results": results,
                               "checks": checks}, indent=2), "utf-8")


def checks_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets and the exactness checks, for every measured row."""
    checks = []
    for r in results:
        for m in r["models"]:
            if m["model"] in ("logistic", "cox", "poisson"):          # the target (Poisson: D32)
                checks.append({"check": f"≤ 8 rounds: {m['model']} {r['centres']} × {r['rows_per_centre']:,}",
                               "value": m["rounds"], "ok": m["rounds"] <= 8})
            if r["centres"] == 5 and r["rows_per_centre"] >= 100_000:
                checks.append({"check": f"≤ 2 s at 5 × 100k: {m['model']}", "value": m["federated_seconds_median"],
                               "ok": m["federated_seconds_median"] <= 2.0})
            where = f"{m['model']} {r['centres']} × {r['rows_per_centre']:,}"
            if m["model"] == "cox_pooled":                 # a 30-day lattice: a stated tolerance, not 1e-6
                checks.append({"check": f"within the stated tolerance of the exact pooled fit: {where}",
                               "value": m["max_coef_gap_in_se"],
                               "ok": m["tolerance_se"] is None or m["max_coef_gap_in_se"] <= m["tolerance_se"],
                               "stated": m["tolerance_se"]})
                continue
            checks.append({"check": f"equals statsmodels to 1e-6: {where}",
                           "value": max(m["max_abs_coef_difference"], m["max_abs_se_difference"]),
                           "ok": max(m["max_abs_coef_difference"], m["max_abs_se_difference"]) < 1e-6})
            for engine, key in (("Flower simulation", "flower_max_abs_difference_to_query_plane"),
                                ("Flower deployment", "deploy_max_abs_difference_to_query_plane")):
                if key in m:
                    checks.append({"check": f"{engine} equals the query plane to 1e-12: {where}", "value": m[key],
                                   "ok": m[key] <= 1e-12})
    return checks


if __name__ == "__main__":
    sys.exit(main())
