"""Flower's deployment engine: cold start, and per-round engine overhead against compute.

Everything is real and on 127.0.0.1: a SuperLink (TLS, `--database`, SuperNode authentication)
and one SuperNode per centre as processes (oncofed.flower.deploy), each centre a real node
directory with synthetic data; oncofed's ServerApp and ClientApp; the same fit over the query
plane (a real hub, the centres' connectors) as the baseline. Measured:

- cold start: SuperLink spawn → port open; each SuperNode spawn → accepted (`SuperNode ID`);
- a Cox fit (stratified by centre) as a Flower run: submit → final status (wall), the ServerApp's
  per-round seconds (the result file), Flower's own accounting of ServerApp and ClientApp compute
  (`flwr ls` `compute-time`), and the engine's overhead per round = Flower round − query-plane
  round (the same rounds, the same sums, the same node code);
- a one-round probe app that does no work (tests/integration/flower_probe_app.py): the engine's
  floor for one message exchange.

    python bench/flower.py --out bench/results/flower.json [--centres 3] [--patients 500]

Figures are printed and written as JSON. Run it on a quiet machine: each SuperNode polls every
3 s and each message starts a fresh ClientApp process, so load moves the figures a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

COX = {"cox": {"outcome": "OS", "cutoff": "2025-12-31", "covariates": ["age_at_incidence", "sex", "stage_summary"]}}


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/flower.json"))
    ap.add_argument("--centres", type=int, default=3)
    ap.add_argument("--patients", type=int, default=500, help="synthetic patients per centre")
    args = ap.parse_args(argv)

    from federation_world import make_world
    from flower_deploy_world import deploy, process_env
    from flower_world import enable_flower, model_request, run_config
    from test_regression_federated import request

    from oncofed.federation.client.analyse import run_model
    from oncofed.flower.deploy import start_supernode
    from oncofed.flower.fab import write_app
    from oncofed.flower.submit import fit_on_flower

    report: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "centres": args.centres, "patients_per_centre": args.patients,
                              "load_before": load()}
    with tempfile.TemporaryDirectory(prefix="bench-flower-") as tmp:
        base = Path(tmp)
        centres = tuple(f"centre-{chr(97 + i)}" for i in range(args.centres))
        w = make_world(base / "fed", centres=centres, patients=args.patients)
        d = None
        try:
            for c in w.centres.values():
                enable_flower(Path(c.node.paths.root), w.fed, c.centre_id)
            t = time.perf_counter()
            d = deploy(base, fed=w.fed)
            report["superlink_start_s"] = time.perf_counter() - t
            joins = []
            for name, c in w.centres.items():
                spec = d.supernode_spec(name, Path(c.node.paths.root))
                t = time.perf_counter()
                proc, node_id = start_supernode(spec, timeout=180, env=process_env(spec.directory / "home"))
                joins.append(time.perf_counter() - t)
                d.nodes[name], d.node_ids[name] = proc, node_id
            report["supernode_join_s"] = joins

            # the engine's floor: one round of a probe app that does no work
            probe = (Path(__file__).resolve().parent.parent / "tests" / "integration" / "flower_probe_app.py")
            out = base / "probe.json"
            cfg: dict[str, Any] = {"nodes": args.centres, "out": str(out), "fail": False}
            app = write_app(base / "probe-app", cfg, serverapp="probe_app:server", clientapp="probe_app:client",
                            files={"probe_app.py": probe.read_text()})
            t = time.perf_counter()
            run_id = d.cli.submit(app, cfg)
            submitted = time.perf_counter() - t
            status = d.cli.wait(run_id, timeout=600)
            report["probe_one_round"] = {"submit_s": submitted, "wall_s": time.perf_counter() - t,
                                         "flower_elapsed_s": status.elapsed}

            targets, permit = list(w.centres), w.centres["centre-a"].permit
            config = run_config(w.fed, base / "fed", model_request(COX, targets, permit), w.dictionary(),
                                base / "cox.json")
            t = time.perf_counter()
            fit = fit_on_flower(config, superlink=d.spec.address, root_cert=base / "root.cert.pem", timeout=1800)
            wall = time.perf_counter() - t
            run = json.loads((base / "cox.json").read_text())
            rounds = [r["seconds"] for r in run["rounds"]]
            listed = next(r for r in d.cli.runs() if str(r["run-id"]) == str(fit.run_id))
            report["cox_flower"] = {"wall_s": wall, "flower_elapsed_s": fit.status.elapsed,
                                    "prepare_s": run.get("prepare_seconds"), "rounds": len(rounds),
                                    "round_s": rounds, "compute_time": listed.get("compute-time"),
                                    "n": fit.result.n, "loglik": fit.result.loglik}

            w.start_hub()
            for c in w.centres.values():
                c.start(w.fed, w.target)
            w.wait_connected()
            t = time.perf_counter()
            plane = run_model(w.client(), request(w, COX), dictionary=w.dictionary(), timeout=120)
            plane_wall = time.perf_counter() - t
            report["cox_query_plane"] = {"wall_s": plane_wall, "rounds": plane.rounds,
                                         "round_s": plane_wall / max(plane.rounds, 1)}
            same = max(abs(a - b) for a, b in zip(plane.beta, fit.result.beta, strict=True))
            report["max_abs_beta_difference"] = same
            flower_round = statistics.mean(rounds) if rounds else float("nan")
            report["per_round"] = {"flower_s": flower_round, "query_plane_s": report["cox_query_plane"]["round_s"],
                                   "engine_overhead_s": flower_round - report["cox_query_plane"]["round_s"]}
        finally:
            left = d.close() if d is not None else []
            w.close()
        report["processes_left"] = left
    report["load_after"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    pr = report["per_round"]
    print(f"SuperLink up {report['superlink_start_s']:.1f} s; SuperNodes joined in "
          f"{', '.join(f'{j:.1f}' for j in report['supernode_join_s'])} s")
    print(f"probe app, one round: {report['probe_one_round']['wall_s']:.1f} s wall "
          f"(submit {report['probe_one_round']['submit_s']:.1f} s)")
    c = report["cox_flower"]
    print(f"Cox on Flower: {c['rounds']} rounds, {c['wall_s']:.1f} s wall, prepare {c['prepare_s']:.1f} s, "
          f"round {min(c['round_s']):.1f}–{max(c['round_s']):.1f} s; compute {c['compute_time']}")
    print(f"Cox over the query plane: {report['cox_query_plane']['rounds']} rounds, "
          f"{report['cox_query_plane']['wall_s']:.2f} s; max |Δβ| {report['max_abs_beta_difference']:.1e}")
    print(f"per round: Flower {pr['flower_s']:.2f} s, query plane {pr['query_plane_s']:.3f} s, "
          f"engine overhead {pr['engine_overhead_s']:.2f} s; load {report['load_before']:.1f} → "
          f"{report['load_after']:.1f}; processes left {left}")
    print(f"wrote {args.out}")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
