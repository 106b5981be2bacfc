"""Ingest throughput and peak memory at 100k and 1M synthetic rows.

Each measurement runs in a fresh child process (so peak RSS is the ingest's own) that creates a
node, loads one synthetic file with full validation and pseudonymisation, and reports rows/s and
its peak RSS. Figures are printed and written as JSON.

    python bench/ingest.py --out bench/results/ingest.json [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_ROWS_PER_S = 200_000
TARGET_RSS_MB = 200


def _kb(pid: int, fields: tuple[str, ...]) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in text.splitlines() if line.split(":")[0] in fields)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


class MemorySampler(threading.Thread):
    """Peak of (writer RSS + each worker's private memory): forked workers share the writer's
    pages, so their own RSS would count those twice."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.done.wait(0.1):
            total = _kb(me, ("Rss",)) + sum(_kb(c, ("Private_Clean", "Private_Dirty")) for c in _children(me))
            self.peak_kb = max(self.peak_kb, total)


def child(csv_path: Path, node_dir: Path) -> None:
    from oncofed.node.node import init_node, open_node

    init_node(node_dir, "bench-centre")
    sampler = MemorySampler()
    with open_node(node_dir) as n:
        sampler.start()
        t0 = time.perf_counter()
        result = n.ingest(csv_path)
        seconds = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
    from oncofed.node.store.parallel import workers_for

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest worker
    workers = workers_for(csv_path.stat().st_size, None, 4 << 20)
    print(json.dumps({"rows": result.rows, "seconds": seconds, "workers": workers,
                      "peak_rss_mb": peak_kb / 1024, "worker_peak_rss_mb": worker_kb / 1024,
                      "total_memory_mb": sampler.peak_kb / 1024}))


def make_csv(directory: Path, rows: int) -> Path:
    """One synthetic centre file with at least `rows` rows (about 3.5 % are second primaries)."""
    from oncofed import dictionary as dictmod
    from oncofed.synth import write_all

    patients = int(rows / 1.035)
    t0 = time.perf_counter()
    files = write_all(directory, 1, patients, 2026, dictmod.load())
    print(f"  generated {files[0].rows:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    return files[0].path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("bench/results/ingest.json"))
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        child(*opts.child)
        return 0
    results = []
    for size in (int(s) for s in opts.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            print(f"ingest of {size:,} rows", flush=True)
            csv_path = make_csv(Path(tmp) / "data", size)
            out = subprocess.run([sys.executable, __file__, "--child", str(csv_path), str(Path(tmp) / "node")],
                                 capture_output=True, text=True, check=True)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            m["rows_per_second"] = m["rows"] / m["seconds"]
            m["file_mb"] = csv_path.stat().st_size / 1e6
            results.append(m)
            print(f"  {m['rows']:,} rows in {m['seconds']:.1f} s = {m['rows_per_second']:,.0f} rows/s "
                  f"({m['workers']} workers), peak RSS {m['peak_rss_mb']:.0f} MB writer + "
                  f"{m['worker_peak_rss_mb']:.0f} MB per worker; writer + workers' own memory "
                  f"{m['total_memory_mb']:.0f} MB "
                  f"(targets: ≥ {TARGET_ROWS_PER_S:,} rows/s, ≤ {TARGET_RSS_MB} MB)", flush=True)
    report = {
        "benchmark": "ingest", "python": platform.python_version(), "machine": platform.machine(),
        "targets": {"rows_per_second": TARGET_ROWS_PER_S, "peak_rss_mb": TARGET_RSS_MB},
        "results": results,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2))
    print(f"written {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
