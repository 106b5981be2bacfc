"""The README demo: three synthetic centres, each with its own node, loaded and inspected.

It runs the real `oncofed` commands as a centre admin would type them, printing each one, so the
output doubles as a walkthrough. It grows with each capability towards a hub, three centres, a
federated query and an analysis on loopback.
"""

from __future__ import annotations

import csv
import shlex
import subprocess
import sys
from pathlib import Path

from oncofed import dictionary as dictmod

CENTRES = ("a", "b", "c")


def oncofed(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"\n$ oncofed {shlex.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "oncofed", *args], text=True, capture_output=True)
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        print("\n".join(f"  {line}" for line in out.splitlines()), flush=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo step failed (exit {proc.returncode}): oncofed {shlex.join(args)}")
    return proc


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "demo-out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    ext = dictmod.bundled_extensions()[0]
    print(f"oncofed demo in {out}")
    print("\n== 1. synthetic registry extracts, one per centre (seeded: same bytes every run)")
    oncofed("synth", "--centres", "3", "--patients", "2000", "--seed", "42", "--out", str(data),
            "--extension", str(ext))
    print("\n== 2. each centre admin creates a node and loads their extract")
    for c in CENTRES:
        node = out / f"node-{c}"
        oncofed("node", "init", str(node), "--id", f"centre-{c}", "--extension", str(ext))
        oncofed("node", "ingest", str(data / f"centre-{c}.csv"), "--node", str(node))
    print("\n== 3. a re-delivery changes nothing; a faulty file is refused whole")
    node_a = out / "node-a"
    oncofed("node", "ingest", str(data / "centre-a.csv"), "--node", str(node_a))
    faulty = out / "faulty.csv"
    with (data / "centre-a.csv").open(newline="", encoding="utf-8") as src:
        rows = list(csv.reader(src))
    header = rows[0]
    rows[3][header.index("sex")] = "3"                      # not a code of sex
    rows[5][header.index("vital_status_date")] = "2031-01-01"  # in the future
    with faulty.open("w", newline="", encoding="utf-8") as dst:
        csv.writer(dst).writerows(rows)
    refused = oncofed("node", "ingest", str(faulty), "--node", str(node_a), check=False)
    if refused.returncode == 0:
        raise SystemExit("demo: the faulty file should have been refused")
    print("\n== 4. what each node holds")
    for c in CENTRES:
        oncofed("node", "status", "--node", str(out / f"node-{c}"))
    oncofed("node", "summary", "--node", str(node_a))
    print(f"\ndemo finished: node directories and data are in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
