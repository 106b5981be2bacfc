"""Ingest throughput and peak memory at 100k and 1M synthetic rows.

Each measurement runs in a fresh child process (so peak RSS is the ingest's own) that creates a
node, loads one synthetic file with full validation and pseudonymisation (a first load), and
reports rows/s and its peak RSS. Figures are printed and written as JSON.

    python bench/ingest.py --out bench/results/ingest.json [--sizes 100000,1000000] [--workers 1]
    python bench/ingest.py --before /tmp/ingest-old   # the same files, older code, alternating

With `--before TREE` every file is loaded by the oncofed source tree TREE (e.g. `git worktree add
TREE main`) and by this one, one after the other, so both sets of figures come from the same run
on the same machine load. The child then imports oncofed only from TREE: it drops any editable
install's import hook first.
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
from typing import Any

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


def child(csv_path: Path, node_dir: Path, workers: int | None) -> None:
    tree = os.environ.get("ONCOFED_BENCH_TREE")
    if tree:  # import oncofed from that tree only, never from an editable install of another
        sys.meta_path[:] = [f for f in sys.meta_path if "Editable" not in getattr(f, "__name__", type(f).__name__)]
        sys.path.insert(0, tree)
    from oncofed.node.node import init_node, open_node
    from oncofed.node.store.ingest import Ingestor

    if workers is not None:
        Ingestor.workers = workers

    init_node(node_dir, "bench-centre")
    sampler = MemorySampler()
    start = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = start.ru_utime + start.ru_stime
    with open_node(node_dir) as n:
        sampler.start()
        t0 = time.perf_counter()
        result = n.ingest(csv_path)
        seconds = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
    from oncofed.node.store.parallel import workers_for

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = me.ru_maxrss
    worker_kb = kids.ru_maxrss  # the largest worker
    used = workers_for(csv_path.stat().st_size, Ingestor.workers, Ingestor.parallel_min_bytes)
    import oncofed

    print(json.dumps({"rows": result.rows, "seconds": seconds, "workers": used, "code": oncofed.__file__,
                      # CPU seconds (open and load), steadier than wall time on a shared machine
                      "writer_cpu_s": me.ru_utime + me.ru_stime - cpu0, "workers_cpu_s": kids.ru_utime + kids.ru_stime,
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
    ap.add_argument("--workers", type=int, default=None,
                    help="worker processes (1: one process; default: the ingest's own choice)")
    ap.add_argument("--before", type=Path, default=None,
                    help="an older oncofed source tree to measure on the same files, alternating")
    ap.add_argument("--repeat", type=int, default=1, help="measure each tree this many times, alternating")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        child(*opts.child, opts.workers)
        return 0
    here = Path(__file__).resolve().parents[1]
    trees = {"before": opts.before.resolve(), "after": here} if opts.before else {"current": here}
    results = []
    for size in (int(s) for s in opts.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            print(f"ingest of {size:,} rows", flush=True)
            csv_path = make_csv(Path(tmp) / "data", size)
            for run, (label, tree) in ((r, t) for r in range(opts.repeat) for t in trees.items()):
                m = _measure(csv_path, Path(tmp) / f"node-{label}-{run}", tree, opts.workers)
                m.update(code=label, tree=str(tree), run=run)
                results.append(m)
                print(f"  {label:>7}: {m['rows']:,} rows in {m['seconds']:.1f} s = {m['rows_per_second']:,.0f} "
                      f"rows/s ({m['workers']} workers; CPU {m['writer_cpu_s']:.1f} s writer + "
                      f"{m['workers_cpu_s']:.1f} s workers), peak RSS {m['peak_rss_mb']:.0f} MB writer + "
                      f"{m['worker_peak_rss_mb']:.0f} MB per worker; writer + workers' own memory "
                      f"{m['total_memory_mb']:.0f} MB "
                      f"(targets: ≥ {TARGET_ROWS_PER_S:,} rows/s, ≤ {TARGET_RSS_MB} MB)", flush=True)
    report = {
        "benchmark": "ingest", "python": platform.python_version(), "machine": platform.machine(),
        "load_average": os.getloadavg(), "workers_option": opts.workers,
        "targets": {"rows_per_second": TARGET_ROWS_PER_S, "peak_rss_mb": TARGET_RSS_MB},
        "results": results,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2))
    print(f"written {opts.out}")
    return 0


def _measure(csv_path: Path, node_dir: Path, tree: Path, workers: int | None) -> dict[str, Any]:
    env = {**os.environ, "ONCOFED_BENCH_TREE": str(tree), "PYTHONPATH": str(tree)}
    args = [sys.executable, __file__, "--child", str(csv_path), str(node_dir)]
    if workers is not None:
        args += ["--workers", str(workers)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    m: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if not str(m["code"]).startswith(str(tree)):
        raise SystemExit(f"the child imported oncofed from {m['code']}, not from {tree}")
    m["rows_per_second"] = m["rows"] / m["seconds"]
    m["file_mb"] = csv_path.stat().st_size / 1e6
    return m


if __name__ == "__main__":
    sys.exit(main())
