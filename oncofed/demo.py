"""The README demo: three synthetic centres, each with its own node, loaded and inspected.

It runs the real `oncofed` commands as a centre admin would type them, printing each one, so the
output doubles as a walkthrough. It grows with each capability towards a hub, three centres, a
federated query and an analysis on loopback.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from oncofed import dictionary as dictmod

CENTRES = ("a", "b", "c")


# Demo only: real deployments type the root passphrase at a prompt on the offline machine.
DEMO_ENV = {"ONCOFED_AUTHORITY_PASSPHRASE": "demo root passphrase - never use in production"}


def oncofed(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    if not quiet:
        print(f"\n$ oncofed {shlex.join(args)}", flush=True)
    env = {**os.environ, **DEMO_ENV}
    proc = subprocess.run([sys.executable, "-m", "oncofed", *args], text=True, capture_output=True, env=env)
    out = (proc.stdout + proc.stderr).rstrip()
    if out and not quiet:
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
    trust(out)
    queries(out)
    federation(out)
    print(f"\ndemo finished: node directories and data are in {out}")
    return 0


def trust(out: Path) -> None:
    """The federation authority enrols the hub, the centres and a researcher; each centre pins
    the root and decides on a data permit for itself."""
    auth = out / "authority"
    print("\n== 5. the federation authority (offline) creates the root; members make their own keys")
    created = json.loads(oncofed("authority", "init", str(auth), "--federation", "demo-federation",
                                 "--json").stdout)
    fingerprint = created["root_fingerprint"]
    oncofed("hub", "init", str(out / "hub-keys"), "--no-passphrase")
    for c in CENTRES:
        oncofed("keys", "new", "--role", "centre", "--id", f"centre-{c}", "--out", str(out / f"keys-{c}"),
                "--no-passphrase")
        # the node signs its audit checkpoints with the centre's identity key
        with (out / f"node-{c}" / "node.toml").open("a", encoding="utf-8") as cfg:
            cfg.write(f'\n[identity]\nkey = "{out / f"keys-{c}" / "identity.key"}"\n')
    oncofed("keys", "new", "--role", "researcher", "--id", "res-1", "--out", str(out / "keys-res-1"),
            "--no-passphrase")
    print("\n== 6. the authority enrols each member (certificate + registry entry) and publishes the registry")
    oncofed("authority", "enroll", "hub", str(out / "hub-keys" / "enrolment-request.bin"), "-a", str(auth))
    for c in CENTRES:
        oncofed("authority", "enroll", "centre", str(out / f"keys-{c}" / "enrolment-request.bin"), "-a", str(auth))
    oncofed("authority", "enroll", "researcher", str(out / "keys-res-1" / "enrolment-request.bin"), "-a", str(auth))
    oncofed("authority", "registry", "publish", "-a", str(auth))
    published = auth / "published"
    print("\n== 7. each centre pins the root fingerprint (read out of band) and installs the registry")
    for c in CENTRES:
        node = str(out / f"node-{c}")
        oncofed("node", "trust", "pin", str(auth / "root.cert.pem"), "--fingerprint", fingerprint, "-n", node)
        oncofed("node", "trust", "update", str(published / "registry.bin"), str(published / "revocations.bin"),
                "-n", node)
    oncofed("node", "trust", "members", "--new", "-n", str(out / "node-a"))
    print("\n== 8. a data permit: issued by the authority, decided by each centre for itself")
    permit = out / "survival-study.permit"
    oncofed("authority", "permits", "issue", "-a", str(auth), "--researcher", "res-1",
            "--title", "Breast cancer survival by stage", "--analysis", "count", "--analysis", "kaplan_meier",
            "--outcome", "os",
            "--field", "topography", "--field", "stage_summary", "--field", "incidence_date",
            "--min-cell-count", "10", "--valid-until", "2027-12-31", "--out", str(permit))
    for c in ("a", "b"):
        oncofed("node", "permits", "approve", str(permit), "-n", str(out / f"node-{c}"))
    oncofed("node", "permits", "add", str(permit), "-n", str(out / "node-c"))
    oncofed("node", "permits", "refuse", permit_ref(out / "node-c"), "--reason",
            "awaiting our ethics committee", "-n", str(out / "node-c"))
    for c in CENTRES:
        oncofed("node", "permits", "list", "-n", str(out / f"node-{c}"))
    oncofed("node", "trust", "status", "-n", str(out / "node-a"))


def queries(out: Path) -> None:
    """What centre A would release for two research questions, through the same engine,
    disclosure control and finaliser a federated answer takes; each preview is audited."""
    examples = Path(__file__).resolve().parent.parent / "examples" / "queries"
    if not examples.is_dir():  # installed without the repository's examples: write them here
        examples = out / "queries"
        examples.mkdir(exist_ok=True)
        for name, text in EXAMPLE_QUERIES.items():
            (examples / name).write_text(text, "utf-8")
    node_a = str(out / "node-a")
    print("\n== 9. centre A previews what it would release (cell-key perturbation, k = 10)")
    oncofed("node", "query", str(examples / "her2-by-stage.toml"), "-n", node_a)
    oncofed("node", "query", str(examples / "breast-survival-by-stage.json"), "-n", node_a)
    print("\n== 10. every decision is in the node's hash-chained audit log")
    oncofed("node", "audit", "show", "--limit", "3", "-n", node_a)
    oncofed("node", "audit", "checkpoint", "-n", node_a)
    oncofed("node", "audit", "verify", "-n", node_a)


EXAMPLE_QUERIES = {
    "her2-by-stage.toml": (
        '[cohort]\nand = [\n  { field = "topography", prefix = "C50" },\n'
        '  { field = "incidence_date", from = "2015-01" },\n]\n\n'
        '[analysis.crosstab]\nfields = ["stage_summary", "her2"]\n'
    ),
    "breast-survival-by-stage.json": (
        '{"cohort": {"and": [{"field": "topography", "prefix": "C50"}, '
        '{"field": "incidence_date", "from": "2010-01"}]}, '
        '"analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "step_days": 365, '
        '"horizon_days": 3650, "by": "stage_summary"}}}\n'
    ),
}


def federation(out: Path) -> None:
    """A hub and three centres on 127.0.0.1 with mutual TLS; a researcher runs federated queries.
    Every process is started here and stopped at the end, whatever happens."""
    from oncofed.demo_federation import run_federation

    run_federation(out, oncofed, dictmod.bundled_extensions()[0])


def permit_ref(node: Path) -> str:
    listed = json.loads(oncofed("node", "permits", "list", "-n", str(node), "--json", quiet=True).stdout)
    return str(listed[0]["sha256"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
