"""The release ledger (issue 8, differencing): its storage, the cost of its check at 10,000 earlier
releases, its overhead per answered query, and the differencing attacks' success rates.

    python bench/differencing.py --out bench/results/differencing.json [--releases 10000]
    PYTHONPATH=<older checkout> python bench/differencing.py --attack-only --out before.json

1. **Storage per release**: bytes the ledger adds per row set (entry) and per stored answer,
   from SQLite's page count after 10,000 entries.
2. **The check** (`ReleaseLedger.resolve`: the decision, then its durable write) against
   10,000 earlier releases in one permit's scope, for a far cohort, a near duplicate and the
   same rows again: (a) sizes spread over 50 … 50,000 rows, (b) the worst case, every release
   within the size window of the cohort (2,000 ± 10 rows), so only the sketches tell them apart.
   Warm (the serving node's in-process cache) and cold (the first query after a restart).
   Target: the decision ≤ 5 ms.
3. **Per query**: the row set's digest and sketch for cohorts of 10^3 … 10^6 rows, and the
   engine's answer with and without the ledger on a 20,000-patient node (real SQLite, a permit).
4. **Attacks** (tests/integration/differencing_attack.py: 24 targets, one synthetic centre): the
   crosstab, count and summary attacks per setting — cell key, threshold, DP — through the
   answering pipeline of whichever oncofed is imported (`--attack-only` with PYTHONPATH at an
   older checkout gives the "before" figures), the ledger bypassed (this code's control) and the
   ledger's own threshold probed with a known set of k − 1 rows (keyed radius vs a fixed one).
Figures are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

TARGET_CHECK_MS = 5.0
K = 10


def ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 3)


# ---------------------------------------------------------------- 1–2: storage and the check
def ledger_bench(releases: int, tmp: Path) -> dict[str, Any]:
    import numpy as np

    from oncofed.keys.ledger import LedgerKeys
    from oncofed.node.store import db as dbmod
    from oncofed.node.store import ledger as ledgermod
    from oncofed.node.store.rowsets import RowSet

    keys = LedgerKeys(os.urandom(32))
    rng = np.random.default_rng(7)
    out: dict[str, Any] = {"releases": releases, "k": K}
    for scenario, sizes in (("spread", rng.integers(50, 50_000, releases)),
                            ("worst_case_same_size", rng.integers(1_990, 2_011, releases))):
        path = tmp / f"ledger-{scenario}.sqlite"
        store = dbmod.connect(path, create=True)
        dbmod.migrate(store, ["ledger"])
        led = ledgermod.ReleaseLedger(store.conn, keys)
        page = store.conn.execute("PRAGMA page_size").fetchone()[0]
        pages0 = store.conn.execute("PRAGMA page_count").fetchone()[0]
        kept: list[RowSet] = []
        t = time.perf_counter()
        with dbmod.immediate(store.conn):
            for i, n in enumerate(sizes.tolist()):
                rs = RowSet.of(random_set(rng, n), keys)
                led._insert(rs, "permit:bench", None, ledgermod.NO_CHANGE, 0)   # the earlier releases
                if i < 3:
                    kept.append(rs)
        fill_s = time.perf_counter() - t
        pages1 = store.conn.execute("PRAGMA page_count").fetchone()[0]
        entry_bytes = (pages1 - pages0) * page / releases
        far = RowSet.of(random_set(rng, 2_000), keys)
        near_ids = np.delete(kept[0].ids, [3])                      # one row fewer than a release
        near = RowSet.of(near_ids, keys)
        cases = {"far": far, "near_duplicate": near, "same_rows": kept[1]}
        res: dict[str, Any] = {"entry_bytes": round(entry_bytes, 1), "fill_seconds": round(fill_s, 2)}
        ledgermod._caches.clear()
        t = time.perf_counter()
        cache = ledgermod._cache(store.conn, "permit:bench")
        cache.refresh(store.conn, "permit:bench")
        res["cold_cache_load_ms"] = round((time.perf_counter() - t) * 1e3, 2)
        for name, rs in cases.items():
            found = decide(led, cache, rs)
            res[f"{name}_decision_ms"] = ms(functools.partial(decide, led, cache, rs), 25)
            res[f"{name}_found"] = ("same_rows" if isinstance(found, tuple) and len(found) == 1 else
                                    "near" if found is not None else "far")
        # the whole resolve, durable write included (synchronous=FULL): grows the ledger by one entry
        fresh = [RowSet.of(random_set(rng, 2_000), keys) for _ in range(10)]
        res["resolve_with_durable_write_ms"] = ms(functools.partial(resolve_next, led, iter(fresh)), 10)
        answer_vec = [int(x) for x in rng.integers(0, 500, 25)] + [1, 0]
        r = led.resolve("permit:bench", far, K)
        p0 = store.conn.execute("PRAGMA page_count").fetchone()[0]
        for i in range(200):
            led.keep(r, i.to_bytes(4, "big"), answer_vec, f"q{i}")
        p1 = store.conn.execute("PRAGMA page_count").fetchone()[0]
        res["answer_bytes_25_values"] = round((p1 - p0) * page / 200, 1)
        out[scenario] = res
        store.conn.close()
    return out


def random_set(rng: Any, n: int) -> Any:
    """n distinct row ids, sorted, spread over a store of a few million rows."""
    import numpy as np

    return (int(rng.integers(1, 1 << 20)) + np.cumsum(rng.integers(1, 40, n))).astype(np.int64)


def decide(led: Any, cache: Any, rs: Any) -> Any:
    """The ledger's decision alone (what `resolve` does before its write), as `resolve` makes it."""
    with cache.lock:
        cache.refresh(led.conn, "permit:bench")
        same = led.conn.execute("SELECT entry_id FROM ledger_entries WHERE scope = ? AND digest = ?",
                                ("permit:bench", rs.digest)).fetchone()
        return same if same is not None else led._nearest(cache, rs, K)


def resolve_next(led: Any, rowsets: Any) -> Any:
    return led.resolve("permit:bench", next(rowsets), K)


def rowset_costs() -> dict[str, Any]:
    import numpy as np

    from oncofed.keys.ledger import LedgerKeys
    from oncofed.node.store.rowsets import RowSet

    keys, rng, out = LedgerKeys(os.urandom(32)), np.random.default_rng(3), {}
    for n in (1_000, 10_000, 100_000, 1_000_000):
        ids = random_set(rng, n)
        out[str(n)] = ms(lambda ids=ids: RowSet.of(ids, keys), 5)
    return out


# ---------------------------------------------------------------- 3 and 4: real nodes
def make_centre(tmp: Path, patients: int, seed: int) -> dict[str, Any]:
    from node_fed_helpers import make_fed

    from oncofed import dictionary as dictmod
    from oncofed.node.node import init_node, open_node
    from oncofed.node.verify import QueryVerifier
    from oncofed.synth import write_all

    ext = dictmod.bundled_extensions()[0]
    d = dictmod.load(ext)
    f = write_all(tmp / f"csv-{patients}", 1, patients, seed, d)[0]
    node = open_node(init_node(tmp / f"centre-{patients}", "centre-a", extension=ext).root)
    node.ingest(f.path)
    cur = node.conn.execute("SELECT * FROM tumours_labelled")
    names = [c[0] for c in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    fed = make_fed(tmp / f"fed-{patients}", centres=("centre-a",), researchers=("res-1",))
    trust = fed.attach(node.paths.store, "centre-a")
    return {"node": node, "rows": rows, "fed": fed, "trust": trust, "d": d,
            "verifier": QueryVerifier.for_node(node)}


FIELDS = ["sex", "age_at_incidence", "incidence_date", "topography", "stage_summary", "tumour_size_mm", "tumour_seq"]


def asker(c: dict[str, Any], mode: str, *, epsilon: float | None = None, ledger: bool = True) -> Any:
    from node_fed_helpers import query_body, signed

    from oncofed.analyses import finalise_query
    from oncofed.node.answering import AnsweringPipeline
    from oncofed.node.query.engine import answer
    from oncofed.node.query.policy import NodePolicy
    from oncofed.query.textform import analysis_from, cohort_from

    permit = c["fed"].permit(c["trust"], analyses=["count", "crosstab", "summary", "kaplan_meier"], fields=FIELDS,
                             outcomes=["os", "rfs"], min_cell_count=K, epsilon=None if epsilon is None else 100_000.0)
    pipeline = AnsweringPipeline(c["node"], c["verifier"], NodePolicy(mode=mode, rate_per_minute=10**6,
                                                                      rate_per_day=10**7))

    def ask(cohort: Any, analysis: Any) -> tuple[list[int], dict[str, Any]]:
        body = query_body(permit, targets=("centre-a",), d=c["d"])
        body.ClearField("cohort")
        if cohort is not None:
            body.cohort.CopyFrom(cohort_from(cohort, "cohort"))
        body.analysis.CopyFrom(analysis_from(analysis, "analysis"))
        if epsilon is not None:
            body.epsilon = epsilon
        env = signed(c["fed"].identities["res-1"], body)
        if ledger:
            vec = pipeline.answer_envelope(env).vector
        else:
            v = pipeline.verifier.verify(env)
            vec = answer(c["node"], v.body, v.permit, policy=pipeline.policy, query_hash=v.query_hash,
                         differencing=False).vector
        return vec, finalise_query(body, c["d"], vec)

    return ask


def overhead(tmp: Path) -> dict[str, Any]:
    c = make_centre(tmp, 20_000, 11)
    bc = {"field": "topography", "prefix": "C50"}
    cases = {"count (all)": (None, "count"),
             "crosstab stage (C50)": (bc, {"crosstab": {"fields": ["stage_summary"]}}),
             "summary size (C50)": (bc, {"summary": {"field": "tumour_size_mm"}}),
             "kaplan_meier OS (all)": (None, {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31"}})}
    out: dict[str, Any] = {"tumours": len(c["rows"])}
    on, off = asker(c, "cell_key"), asker(c, "cell_key", ledger=False)
    for name, (cohort, analysis) in cases.items():
        out[name] = {"with_ledger_ms": ms(functools.partial(on, cohort, analysis), 7),
                     "without_ledger_ms": ms(functools.partial(off, cohort, analysis), 7)}
    c["verifier"].close()
    c["node"].close()
    return out


def attacks(tmp: Path, *, controls: bool) -> dict[str, Any]:
    import differencing_attack as atk

    c = make_centre(tmp, 3_000, 8)
    rows = c["rows"]
    breast = [r for r in rows if r["topography"].startswith("C50")]
    mode_stage = Counter(r["stage_summary"] for r in rows).most_common(1)[0][0]
    mode_size = Counter(r["tumour_size_mm"] for r in breast if r["tumour_size_mm"] is not None).most_common(1)[0][0]
    any_t = atk.unique_targets(rows, 24, lambda r: True)
    crc_t = atk.unique_targets(rows, 24, lambda r: r["topography"].startswith("C18"))
    size_t = atk.unique_targets(rows, 24, lambda r: r["topography"].startswith("C50")
                                and r["tumour_size_mm"] is not None)
    stages = ["localised", "regional", "distant"]
    bc = {"field": "topography", "prefix": "C50"}

    pad_level = "localised"
    by_month = Counter(r["incidence_date"][:7] for r in rows if r["stage_summary"] == pad_level)
    pads, months = [], sorted(by_month)
    while months and len(pads) < len(any_t):          # disjoint runs of months, ≥ 2k known-level rows each
        run_of, n = [], 0
        while months and n < 2 * K:
            run_of.append(months.pop(0))
            n += by_month[run_of[-1]]
        if n >= 2 * K:
            pads.append({"and": [{"field": "stage_summary", "equals": pad_level},
                                 {"field": "incidence_date", "from": run_of[0], "to": run_of[-1]}]})
    assert len(pads) == len(any_t)

    def run(ask: Any) -> dict[str, Any]:
        return {"crosstab": atk.crosstab_attack(ask, None, any_t, "stage_summary", mode_stage).to_json(),
                "crosstab_padded": atk.padded_crosstab_attack(ask, None, any_t, "stage_summary", pads,
                                                              pad_level).to_json(),
                "count": atk.count_attack(ask, None, crc_t, "stage_summary", stages, mode_stage).to_json(),
                "summary": atk.summary_attack(ask, bc, size_t, "tumour_size_mm", mode_size).to_json()}

    out: dict[str, Any] = {}
    for setting, mode, eps in (("cell_key", "cell_key", None), ("threshold", "threshold", None),
                               ("dp", "cell_key", 1.0)):
        out[setting] = {"pipeline": run(asker(c, mode, epsilon=eps))}
        if controls:
            out[setting]["ledger_bypassed"] = run(asker(c, mode, epsilon=eps, ledger=False))
    if controls:
        out["ledger_threshold_probe"] = threshold_probe(c, any_t, mode_stage, stages)
    c["verifier"].close()
    c["node"].close()
    return out


def threshold_probe(c: dict[str, Any], targets: list[dict[str, Any]], mode_stage: str,
                    stages: list[str]) -> dict[str, Any]:
    """Is the ledger's own threshold an oracle? count(C) against count(C ∖ S ∖ (U ∧ ℓ)) with S a
    known set of k − 1 other unique rows: Δ = k − 1 + [target in ℓ]. A fixed radius k would name
    ℓ every time; the keyed radius in [k, 2k) turns a fresh answer at Δ = k into a 1-in-k event."""
    import differencing_attack as atk

    from oncofed.keys import ledger as keymod

    taken = {t["tumour_id"] for t in targets}
    spare = [r for r in atk.unique_targets(c["rows"], 1_000, lambda r: True) if r["tumour_id"] not in taken]
    out: dict[str, Any] = {}
    real_radius = keymod.LedgerKeys.radius
    for variant in ("keyed_radius", "fixed_radius_counterfactual"):
        if variant.startswith("fixed"):
            keymod.LedgerKeys.radius = lambda self, k, a, b: k       # type: ignore[method-assign]
        try:
            ask, wins, base = asker(c, "cell_key"), 0, 0
            pool = iter(spare)
            for t in targets:
                v1, _ = ask(None, "count")
                guess = mode_stage
                for level in stages:
                    known = [next(pool) for _ in range(K - 1)]
                    drop = {"or": [atk.u_of(s) for s in known] +
                            [{"and": [atk.u_of(t), {"field": "stage_summary", "equals": level}]}]}
                    v2, _ = ask({"not": drop}, "count")
                    if v2 != v1:
                        guess = level
                        break
                wins += guess == t["stage_summary"]
                base += mode_stage == t["stage_summary"]
            out[variant] = {"targets": len(targets), "success_rate": round(wins / len(targets), 4),
                            "most_common_guess_rate": round(base / len(targets), 4)}
        finally:
            keymod.LedgerKeys.radius = real_radius                  # type: ignore[method-assign]
    return out


def git_commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/differencing.json"))
    ap.add_argument("--releases", type=int, default=10_000)
    ap.add_argument("--attack-only", action="store_true", help="only the attacks (runs on older checkouts too)")
    opts = ap.parse_args()
    import oncofed
    from oncofed.node.query import engine

    code = Path(oncofed.__file__).resolve().parents[1]
    has_ledger = "differencing" in inspect.signature(engine.answer).parameters
    report: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(),
                              "oncofed": str(code), "commit": git_commit(code), "has_ledger": has_ledger}
    with tempfile.TemporaryDirectory(prefix="oncofed-diff-bench-") as tmp:
        base = Path(tmp)
        if not opts.attack_only:
            report["ledger"] = ledger_bench(opts.releases, base)
            report["rowset_ms"] = rowset_costs()
            report["overhead"] = overhead(base)
        report["attacks"] = attacks(base, controls=has_ledger and not opts.attack_only)
    print(json.dumps(report, indent=2))
    if "ledger" in report:
        worst = max(v for s in ("spread", "worst_case_same_size") for key, v in report["ledger"][s].items()
                    if key.endswith("_decision_ms"))
        print(f"largest decision at {opts.releases} releases: {worst} ms (target ≤ {TARGET_CHECK_MS} ms)")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
