"""Per-analysis latency of the node's query engine at 100k and 1M synthetic rows, against the very
same SQL run directly on the SQLite file in the same run.

For each size: one synthetic centre file is generated (oncofed.synth), loaded into a fresh node
(Node.ingest) in a temporary directory (nothing is cached in the repository), and the first query
fills the record keys (timed separately). Then every analysis is answered by `engine.answer` with
the default node policy (cell-key perturbation), and its statement (what the analysis' local step
asks of the store's reader) is run on a separate plain sqlite3 connection; each is repeated and the
median taken. The ratio is
engine / direct SQL: the engine's own overhead (checks, compile, disclosure, vector). Figures are
printed and written as JSON.

    python bench/query_local.py --out bench/results/query_local.json [--sizes 100000,1000000]

Targets: overhead ≤ 1.3× for count and crosstab at 1M rows; count on an indexed cohort ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.3
TARGET_INDEXED_COUNT_MS = 20.0

BREAST_2018 = {"and": [{"field": "topography", "prefix": "C50"},
                       {"field": "incidence_date", "from": "2018-01", "to": "2018-12"}]}
CASES = [
    ("count (all tumours)", {"analysis": "count"}, 15),
    ("count (indexed cohort: C50, 2018)", {"cohort": BREAST_2018, "analysis": "count"}, 101),
    ("count (scanned cohort: HER2+, stage II–IV)",
     {"cohort": {"and": [{"field": "her2", "equals": "pos"},
                         {"field": "stage_summary", "in": ["regional", "distant"]}]}, "analysis": "count"}, 9),
    ("crosstab (stage × HER2)", {"analysis": {"crosstab": {"fields": ["stage_summary", "her2"]}}}, 5),
    ("crosstab (C50 2018: stage × ER × HER2)",
     {"cohort": BREAST_2018, "analysis": {"crosstab": {"fields": ["stage_summary", "er", "her2"]}}}, 15),
    ("summary (age, unit bins)", {"analysis": {"summary": {"field": "age_at_incidence", "unit_bins": True}}}, 5),
    ("histogram (age)", {"analysis": {"histogram": {"field": "age_at_incidence"}}}, 5),
    ("kaplan_meier (OS by stage, 30-day lattice)",
     {"analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}}}, 3),
    ("logrank (OS by stage, 30-day lattice)",
     {"analysis": {"logrank": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}}}, 3),
]


def median_ms(fn, repeats: int) -> float:
    return paired_ms([fn], repeats)[0]


def paired_ms(fns, repeats: int) -> list[float]:
    """Median ms of each function, run in alternation (A B A B …) so that the load of a shared
    machine falls on both sides of a ratio alike."""
    for fn in fns:
        fn()  # warm the page cache and any lazily built state
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1000)
    return [statistics.median(ts) for ts in times]


def measure(size: int, tmp: Path) -> dict:
    from oncofed import dictionary as dictmod
    from oncofed.analyses import analysis, finalise_query, parse_analysis
    from oncofed.node.node import init_node, open_node
    from oncofed.node.query.compiler import compile_cohort
    from oncofed.node.query.engine import answer
    from oncofed.node.query.policy import NodePolicy
    from oncofed.node.store.cohort_reads import StoreReader
    from oncofed.query import loads
    from oncofed.synth import write_all

    d = dictmod.load()
    t0 = time.perf_counter()
    f = write_all(tmp / "csv", 1, int(size / 1.035), 2026, d)[0]
    print(f"  generated {f.rows:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    node = open_node(init_node(tmp / "node", "bench-centre").root)
    t0 = time.perf_counter()
    node.ingest(f.path)
    ingest_s = time.perf_counter() - t0
    f.path.unlink()
    policy = NodePolicy()
    t0 = time.perf_counter()
    answer(node, loads('{"analysis": "count"}', dictionary=d), None, policy=policy)
    keys_s = time.perf_counter() - t0
    print(f"  ingested in {ingest_s:.1f} s; first query (record keys, covering indexes) {keys_s:.1f} s", flush=True)
    direct = sqlite3.connect(str(node.paths.store))
    cache = node.conn.execute("PRAGMA cache_size").fetchone()[0]
    direct.execute(f"PRAGMA cache_size={int(cache)}")  # same page cache as the node's connection: a fair ratio
    rows = []
    for name, doc, repeats in CASES:
        body = loads(json.dumps(doc), dictionary=d)
        spec = parse_analysis(body.analysis, d)
        cohort = compile_cohort(body.cohort if body.HasField("cohort") else None, d, None)
        # The very statement the engine runs: the analysis' local step on a reader that records it.
        reader = StoreReader(node.conn, d, cohort.where, cohort.params, cohort.fields)
        analysis(spec.kind).local(spec, reader, clamp=False)
        (sql, params), = reader.statements
        ans = answer(node, body, None, policy=policy)
        engine_ms, sql_ms = paired_ms([lambda body=body: answer(node, body, None, policy=policy),
                                       lambda sql=sql, params=params: direct.execute(sql, params).fetchall()], repeats)
        final_ms = median_ms(lambda body=body, ans=ans: finalise_query(body, d, ans.vector), 3)
        row = {"analysis": name, "engine_ms": round(engine_ms, 2), "direct_sql_ms": round(sql_ms, 2),
               "ratio": round(engine_ms / sql_ms, 3), "finalise_ms": round(final_ms, 2),
               "vector_length": len(ans.vector), "repeats": repeats}
        rows.append(row)
        print(f"  {name:48} engine {engine_ms:9.2f} ms  SQL {sql_ms:9.2f} ms  ratio {row['ratio']:5.2f}  "
              f"(finalise {final_ms:.2f} ms, {len(ans.vector)} values)", flush=True)
    direct.close()
    node.close()
    return {"rows": f.rows, "ingest_seconds": round(ingest_s, 2), "record_keys_seconds": round(keys_s, 2),
            "analyses": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/query_local.json"))
    ap.add_argument("--sizes", default="100000,1000000")
    opts = ap.parse_args()
    results = []
    for size in (int(s) for s in opts.sizes.split(",")):
        print(f"queries at {size:,} rows", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            results.append(measure(size, Path(tmp)))
    checks = []
    for r in results:
        if r["rows"] < 900_000:
            continue
        for a in r["analyses"]:
            if a["analysis"].startswith(("count", "crosstab")):
                checks.append({"check": f"ratio ≤ {TARGET_RATIO}: {a['analysis']}", "value": a["ratio"],
                               "ok": a["ratio"] <= TARGET_RATIO})
            if a["analysis"].startswith("count (indexed"):
                checks.append({"check": f"indexed count ≤ {TARGET_INDEXED_COUNT_MS} ms", "value": a["engine_ms"],
                               "ok": a["engine_ms"] <= TARGET_INDEXED_COUNT_MS})
    for c in checks:
        print(f"  {'ok ' if c['ok'] else 'MISS'} {c['check']} (measured {c['value']})")
    report = {"benchmark": "query_local", "python": platform.python_version(), "machine": platform.machine(),
              "sqlite": sqlite3.sqlite_version,
              "targets": {"ratio_count_crosstab_1m": TARGET_RATIO, "indexed_count_ms": TARGET_INDEXED_COUNT_MS},
              "results": results, "checks": checks}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2))
    print(f"written {opts.out}")
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
