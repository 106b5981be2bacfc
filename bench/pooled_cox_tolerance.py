"""How far the pooled-equivalent Cox model moves from the exact pooled fit when times are coarsened:
the figures behind `oncofed.analyses.cox_pooled.TOLERANCE_SE` (decision D27, docs/analyses.md).

Public datasets shipped with lifelines (gbsg2 and lung in days, rossi in weeks read as days) are
split over three real nodes (real ingest, each round through every node's answering pipeline,
as tests/integration/test_regression_pooled_cox.py does) and fitted on lattices of several steps
with each centre's k at 1 and 10; the reference is statsmodels' `PHReg(ties=…)` on the dataset as
loaded (exact times, no strata). Printed per fit, and written as JSON: the largest
|β − β_exact| / SE_exact and |SE − SE_exact| / SE_exact, the tolerance the output stated and
whether it held (a stated 0 — exact times, nothing coarsened — within 1e-6).

    python bench/pooled_cox_tolerance.py --out bench/results/pooled_cox_tolerance.json [--steps 7,30,91]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
warnings.filterwarnings("ignore")

CUTOFF = "2025-12-31"


def datasets() -> dict[str, dict[str, Any]]:
    """Each dataset as loaded, how it maps onto registry rows, and the model in both namings."""
    import lifelines.datasets as ld
    import numpy as np

    g = ld.load_gbsg2()
    g["horTh"] = (g["horTh"] == "yes").astype(int)
    g["menostat"] = (g["menostat"] == "Post").astype(int)
    lung = ld.load_lung()
    lung = lung.dropna(subset=["age", "ph.karno", "wt.loss"]).reset_index(drop=True)
    lung["dead"] = (lung["status"] == lung["status"].max()).astype(int)
    lung["female"] = (lung["sex"] == 2).astype(int)
    rossi = ld.load_rossi()
    out = {
        "gbsg2": {"frame": g, "time": "time", "event": "cens", "age": "age",
                  "mapping": {"horTh": "b1", "menostat": "b2", "tsize": "s1", "pnodes": "h2", "progrec": "k1",
                              "estrec": "k2"},
                  "model": ["age_at_incidence", "b1", "b2", "s1", "h2", "k1", "k2"],
                  "columns": ["age", "horTh", "menostat", "tsize", "pnodes", "progrec", "estrec"]},
        "lung": {"frame": lung, "time": "time", "event": "dead", "age": "age",
                 "mapping": {"female": "b1", "ph.karno": "h1", "wt.loss": "w1"},
                 "model": ["age_at_incidence", "b1", "h1", "w1"], "columns": ["age", "female", "ph.karno", "wt.loss"]},
        "rossi (weeks as days)": {"frame": rossi, "time": "week", "event": "arrest", "age": "age",
                                  "mapping": {"fin": "b1", "race": "b2", "wexp": "b3", "paro": "b5", "prio": "h1"},
                                  "model": ["b1", "age_at_incidence", "b2", "b3", "b5", "h1"],
                                  "columns": ["fin", "age", "race", "wexp", "paro", "prio"]},
    }
    for d in out.values():
        d["frame"]["centre"] = np.arange(len(d["frame"])) % 3
    return out


def measure(steps: list[int], ks: list[int], tmp: Path) -> list[dict[str, Any]]:
    import numpy as np
    import statsmodels.api as sm
    from regression_world import POOLED, fit, network, split

    from oncofed.analyses.newton import FitError

    rows = []
    for name, ds in datasets().items():
        frame = ds["frame"]
        net = network(tmp / name.split()[0], split(frame, frame["centre"], time=ds["time"], event=ds["event"],
                                                     age=ds["age"], mapping=ds["mapping"]),
                      policy=POOLED, exact_dates=True)
        try:
            horizon = int(frame[ds["time"]].max())
            for ties in ("efron", "breslow"):
                exact = sm.PHReg(frame[ds["time"]].to_numpy(float), frame[ds["columns"]].to_numpy(float),
                                 status=frame[ds["event"]].to_numpy(float), ties=ties).fit(method="newton", tol=1e-12)
                for step in (s for s in steps if s <= horizon):
                    for k in ks:
                        policy = replace(POOLED, min_cell_count=k, min_step_days=1)
                        model = {"cox_pooled": {"outcome": "OS", "cutoff": CUTOFF, "covariates": ds["model"],
                                                "ties": ties.upper(), "step_days": step, "horizon_days": horizon}}
                        t = time.perf_counter()
                        try:
                            result = fit(net, model, pipelines=net.with_policy(policy))
                        except FitError as exc:                     # e.g. a centre's gates at this k
                            print(f"{name:<22} {ties:<8} step {step:>3}  k {k:>2}  not fitted: {exc}", flush=True)
                            rows.append({"dataset": name, "ties": ties, "step_days": step, "k": k, "error": str(exc)})
                            continue
                        seconds = time.perf_counter() - t
                        gap = float((np.abs(np.asarray(result.beta) - exact.params) / exact.bse).max())
                        se_gap = float((np.abs(np.asarray(result.se) - exact.bse) / exact.bse).max())
                        row = {"dataset": name, "ties": ties, "step_days": step, "k": k, "rows": result.n,
                               "rounds": result.rounds, "seconds": round(seconds, 2),
                               "max_coef_gap_in_se": gap, "max_se_relative_gap": se_gap,
                               "stated_tolerance_se": result.tolerance_se,
                               "stated_holds": result.tolerance_se is None or gap <= result.tolerance_se + 1e-6}
                        rows.append(row)
                        print(f"{name:<22} {ties:<8} step {step:>3}  k {k:>2}  |Δβ|/SE {gap:.4f}  |ΔSE|/SE {se_gap:.4f}"
                              f"  stated {result.tolerance_se} {'holds' if row['stated_holds'] else 'MISSED'}"
                              f"  ({result.rounds} rounds, {seconds:.1f} s)", flush=True)
        finally:
            net.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/pooled_cox_tolerance.json"))
    ap.add_argument("--steps", default="1,7,30,91")
    ap.add_argument("--k", default="1,10")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure([int(s) for s in opts.steps.split(",")], [int(k) for k in opts.k.split(",")], Path(tmp))
    worst: dict[int, float] = {}
    for r in rows:
        if "error" in r:
            continue
        worst[r["step_days"]] = max(worst.get(r["step_days"], 0.0), r["max_coef_gap_in_se"])
    for step, gap in sorted(worst.items()):
        print(f"step {step:>3} days: largest |Δβ|/SE over datasets, ties and k: {gap:.4f}")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps({"benchmark": "pooled_cox_tolerance", "fits": rows,
                                    "worst_by_step": {str(s): g for s, g in sorted(worst.items())}}, indent=2), "utf-8")
    print(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
