"""How much cell-key perturbation moves a log-rank test on real data, over perturbation keys.

GBSG2 (686 women, German Breast Cancer Study Group 2, shipped with lifelines) is loaded through
the real ingest path (tests/integration/real_data.py maps its columns onto the dictionary and the
breast-network extension) into one node per perturbation key; node i's perturbation and
pseudonymisation keys are SHA-256("oncofed/bench/survival-noise/<i>/<key file>") (real_data.
seeded_node), so runs are reproducible and comparable across code versions. Each node
answers the log-rank test of recurrence-free survival by hormone therapy (yes vs no, the default
30-day lattice to 3,660 days) under its default policy (cell key, k = 10), once per survival
perturbation table the code offers; the answers are finalised as a researcher would. Printed and
written as JSON: χ² and p exact, by lifelines, and per table their mean, SD, min and max over the
keys.

    python bench/survival_noise.py [--keys 30] [--out bench/results/survival_noise.json]

Target (issue 8): SD of χ² ≤ 0.3 over 30 keys. The script runs unchanged on the code before the
change (no `levels`, one table), which is how the "before" figure was measured.

With `--differencing` it also measures what cell-key noise does against a researcher who
differences two releases (RFS Kaplan–Meier of everyone, and of everyone but one patient with a
recurrence): for 40 such patients, how often the first edge where the released cumulative events
differ is that patient's exit interval, per table (decision D19).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from real_data import BREAST_EXTENSION, CUTOFF, gbsg2_rows, seeded_node, write_gbsg2

from oncofed import dictionary as dictmod
from oncofed.analyses import finalise_query
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.query.errors import QueryError
from oncofed.query.textform import from_mapping

TARGET_SD = 0.3
LOGRANK = {"outcome": "RFS", "cutoff": CUTOFF, "by": "hormone_therapy", "levels": ["yes", "no"]}


def query(d: dictmod.Dictionary) -> Any:
    try:
        return from_mapping({"analysis": {"logrank": LOGRANK}}, dictionary=d)
    except QueryError:          # the code before group levels: every level, (missing) left out
        plain = {k: v for k, v in LOGRANK.items() if k != "levels"}
        return from_mapping({"analysis": {"logrank": plain}}, dictionary=d)


def policies() -> dict[str, NodePolicy]:
    try:
        return {table: NodePolicy(survival_table=table) for table in ("survival", "counts")}  # type: ignore[call-arg]
    except TypeError:           # the code before the survival table: one table
        return {"counts": NodePolicy()}


def lifelines_reference() -> dict[str, float]:
    from lifelines.datasets import load_gbsg2
    from lifelines.statistics import logrank_test

    df = load_gbsg2()
    yes, no = df[df.horTh == "yes"], df[df.horTh == "no"]
    ref = logrank_test(yes.time, no.time, yes.cens, no.cens)
    return {"statistic": float(ref.test_statistic), "p_value": float(ref.p_value)}


def spread(xs: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(xs), "sd": statistics.stdev(xs), "min": min(xs), "max": max(xs)}


def run(keys: int) -> dict[str, Any]:
    d = dictmod.load(BREAST_EXTENSION)
    body = query(d)
    tables = policies()
    chi2: dict[str, list[float]] = {t: [] for t in tables}
    p: dict[str, list[float]] = {t: [] for t in tables}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv_path = write_gbsg2(root / "gbsg2.csv")
        exact: dict[str, Any] = {}
        for i in range(keys):
            node = seeded_node(root / f"node-{i}", f"centre-{i}", csv_path, f"oncofed/bench/survival-noise/{i}")
            try:
                if i == 0:
                    out = finalise_query(body, d, answer(node, body, None, policy=NodePolicy(mode="none")).vector)
                    exact = {"statistic": out["statistic"], "p_value": out["p_value"]}
                for table, policy in tables.items():
                    out = finalise_query(body, d, answer(node, body, None, policy=policy).vector)
                    chi2[table].append(out["statistic"])
                    p[table].append(out["p_value"])
            finally:
                node.close()
    return {
        "dataset": f"GBSG2 (lifelines.datasets.load_gbsg2), {len(gbsg2_rows())} patients",
        "analysis": {"logrank": LOGRANK}, "policy": "default: cell key, k = 10, 30-day lattice",
        "keys": keys, "key_derivation": "SHA-256('oncofed/bench/survival-noise/<i>/<key file>')",
        "exact_lattice": exact, "lifelines_exact_times": lifelines_reference(),
        "tables": {t: {"chi2": spread(chi2[t]), "p_value": {"min": min(p[t]), "max": max(p[t])}} for t in tables},
        "target_sd": TARGET_SD, "seconds": round(time.perf_counter() - started, 1),
    }


def differencing(targets: int = 40) -> dict[str, Any]:
    """Naive differencing of two survival releases on one node (see the module docstring)."""
    import random

    from oncofed.analyses import analysis
    from oncofed.analyses.cells import Cell, GroupSurvival
    from oncofed.analyses.survival import tail_censor
    from oncofed.analyses.survival_release import publish_group
    from oncofed.node.query.engine import prepare
    from oncofed.node.store.cohort_reads import StoreReader

    d = dictmod.load(BREAST_EXTENSION)
    body = from_mapping({"analysis": {"kaplan_meier": {"outcome": "RFS", "cutoff": CUTOFF}}}, dictionary=d)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        node = seeded_node(root / "node", "centre-d", write_gbsg2(root / "g.csv"), "oncofed/bench/differencing")
        try:
            spec, cohort = prepare(node, body, None, NodePolicy())
            answer(node, body, None, policy=NodePolicy())               # fills any missing record keys
            reader = StoreReader(node.conn, d, cohort.where, cohort.params, cohort.fields)
            g = analysis("kaplan_meier").local(spec, reader, clamp=False).groups[0]
            rows = sorted(node.conn.execute(  # the bench reads its own node's store directly
                "SELECT record_key, recurrence_date - surgery_start_date FROM tumours "
                "WHERE recurrence_date IS NOT NULL").fetchall())
        finally:
            node.close()
    chosen = random.Random(1).sample(rows, targets)
    e = spec.n_edges
    out: dict[str, Any] = {"targets": targets}
    for table in ("counts", "survival"):
        named = 0
        for key, t in chosen:
            kappa = -(-t // spec.step_days)
            minus = GroupSurvival([c - Cell(1, key) for c in g.entered],
                                  [c - Cell(1, key) if j >= kappa else c for j, c in enumerate(g.events)],
                                  list(g.censored))
            a, _ = publish_group(tail_censor(g, 10), 10, "cell_key", table)
            b, _ = publish_group(tail_censor(minus, 10), 10, "cell_key", table)
            first = next((j for j in range(e) if a[e + j] != b[e + j]), None)
            named += first == kappa
        out[table] = named
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--differencing", action="store_true")
    args = ap.parse_args()
    result = run(args.keys)
    if args.differencing:
        result["differencing_exit_interval_named"] = differencing()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
