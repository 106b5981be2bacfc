"""The ingest writer's own SQLite work, with the tumour-id unique index live or built after (D22).

Replays what the single writer does in a first load — batches of 5,000 rows, each sorted by tumour
id, `executemany` into an empty tumour table of the project's schema (WAL, synchronous=FULL,
16 MiB cache), then the index builds and the commit — once with the unique index live during the
insert (stores made before D22, and every load into a non-empty table) and once with it built
after. Rows come from a store loaded beforehand (made here from a synthetic file unless --store is
given), so no validation or pseudonymisation is timed: CPU seconds of the SQL calls only.

    python bench/ingest_writer.py --out bench/results/ingest_writer.json [--rows 1000000] [--store S]
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH = 5_000


def loaded_store(directory: Path, rows: int) -> Path:
    from oncofed import dictionary as dictmod
    from oncofed.node.node import init_node, open_node
    from oncofed.synth import write_all

    files = write_all(directory / "data", 1, int(rows / 1.035), 2026, dictmod.load())
    root = init_node(directory / "node", "bench-writer").root
    with open_node(root) as n:
        n.ingest(files[0].path)
    return root / "store.sqlite"


def replay(source: Path, rows: int, mode: str, work: Path) -> dict[str, Any]:
    con = sqlite3.connect(source)
    schema = con.execute("SELECT sql FROM sqlite_master WHERE name = 'tumours'").fetchone()[0]
    indexes = [r[0] for r in con.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tumours' AND sql IS NOT NULL")]
    columns = [r[1] for r in con.execute("PRAGMA table_info(tumours)")]
    key = columns.index("tumour_id")
    # record_key is a PRF of the pseudonym: this order is as random as a registry file's
    data = con.execute("SELECT * FROM tumours ORDER BY record_key LIMIT ?", (rows,)).fetchall()
    con.close()
    batches = [sorted(data[i:i + BATCH], key=lambda r: r[key]) for i in range(0, len(data), BATCH)]
    del data
    unique = [s for s in indexes if s.startswith("CREATE UNIQUE")]
    partial = [s for s in indexes if " WHERE " in s]
    secondary = [s for s in indexes if s not in unique and s not in partial]
    if not unique:
        raise SystemExit(f"{source}: no named unique tumour-id index (a store made before D22)")
    w = sqlite3.connect(work, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "cache_size=-16384"):
        w.execute(f"PRAGMA {pragma}")
    w.execute(schema)
    for sql in partial + (unique if mode == "live" else []):
        w.execute(sql)
    insert = f"INSERT INTO tumours VALUES ({', '.join('?' * len(columns))})"  # noqa: S608 (only placeholders)
    w.execute("BEGIN IMMEDIATE")
    t0 = time.process_time()
    for batch in batches:
        w.executemany(insert, batch)
    t1 = time.process_time()
    for sql in unique if mode == "after" else []:
        w.execute(sql)
    t2 = time.process_time()
    for sql in secondary:
        w.execute(sql)
    t3 = time.process_time()
    w.execute("COMMIT")
    t4 = time.process_time()
    n = w.execute("SELECT count(*) FROM tumours").fetchone()[0]
    w.close()
    return {"mode": mode, "rows": n, "insert_cpu_s": t1 - t0, "unique_index_build_cpu_s": t2 - t1,
            "secondary_index_builds_cpu_s": t3 - t2, "commit_cpu_s": t4 - t3, "total_cpu_s": t4 - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("bench/results/ingest_writer.json"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--store", type=Path, default=None, help="a loaded store to take the rows from")
    ap.add_argument("--repeat", type=int, default=2)
    opts = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        source = opts.store or loaded_store(Path(tmp), opts.rows)
        for run in range(opts.repeat):
            for mode in ("live", "after"):
                work = Path(tmp) / f"replay-{mode}-{run}.sqlite"
                m = replay(source, opts.rows, mode, work)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{work}{suffix}").unlink(missing_ok=True)
                results.append(m)
                print(f"  unique index {mode:>5}: {m['rows']:,} rows: insert {m['insert_cpu_s']:.1f} s + unique "
                      f"index {m['unique_index_build_cpu_s']:.1f} s + secondary indexes "
                      f"{m['secondary_index_builds_cpu_s']:.1f} s + commit {m['commit_cpu_s']:.1f} s = "
                      f"{m['total_cpu_s']:.1f} s CPU", flush=True)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps({"benchmark": "ingest_writer", "python": platform.python_version(),
                                    "sqlite": sqlite3.sqlite_version, "results": results}, indent=2))
    print(f"written {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
