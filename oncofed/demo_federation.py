"""The README demo's federated part: hub + three centres + a researcher on 127.0.0.1.

Runs the real commands — `oncofed hub serve`, `oncofed node serve` (whose connector dials out
to the hub), `oncofed query run` — as separate processes with keys made for the run, and stops
every process it started, whatever happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oncofed.keys.tls import cert_fingerprint

CENTRES = ("a", "b", "c")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _start(procs: list[subprocess.Popen[str]], args: list[str], ready: str, log: Path,
           timeout: float = 60) -> subprocess.Popen[str]:
    """Start `oncofed ARGS` in the background and wait for its ready line."""
    p = _spawn(procs, args, log)
    _wait_ready(p, args, ready, log, timeout)
    return p


def _spawn(procs: list[subprocess.Popen[str]], args: list[str], log: Path) -> subprocess.Popen[str]:
    print(f"\n$ oncofed {' '.join(args)} &", flush=True)
    fh = log.open("w", encoding="utf-8")
    p = subprocess.Popen([sys.executable, "-m", "oncofed", *args], stdout=subprocess.PIPE, stderr=fh, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    procs.append(p)
    return p


def _wait_ready(p: subprocess.Popen[str], args: list[str], ready: str, log: Path, timeout: float) -> None:
    assert p.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line:
            print(f"  {line.rstrip()}", flush=True)
            if ready in line:
                return
        elif p.poll() is not None:
            raise SystemExit(f"demo: oncofed {' '.join(args)} exited {p.returncode}; see {log}")
    raise SystemExit(f"demo: oncofed {' '.join(args)} did not start in time; see {log}")


def run_federation(out: Path, oncofed: Callable[..., Any], ext: Path) -> None:
    auth = out / "authority"
    root = auth / "root.cert.pem"
    fingerprint = cert_fingerprint(root.read_bytes())   # the demo read it at step 5; a centre reads it out of band
    port = _free_port()
    print("\n== 11. the hub operator starts the relay (it holds no root and reads no query or answer)")
    hub = out / "hub.toml"
    hub.write_text(
        f'[hub]\nid = "hub"\nlisten = "127.0.0.1:{port}"\ndatabase = "hub-data/hub.db"\nprepare_seconds = 5\n'
        f'answer_seconds = 30\n\n[credentials]\nidentity_key = "hub-keys/identity.key"\n'
        f'tls_key = "hub-keys/tls-hub-hub.key.pem"\ncert = "authority/certs/hub-hub.cert.pem"\n'
        f'root_cert = "authority/root.cert.pem"\nroot_fingerprint = "{fingerprint}"\n\n[trust]\n'
        'registry = "authority/published/registry.bin"\nrevocations = "authority/published/revocations.bin"\n',
        "utf-8")
    print("\n== 12. a second permit (HER2 × stage), approved by all three centres")
    permit2 = out / "her2-study.permit"
    oncofed("authority", "permits", "issue", "-a", str(auth), "--researcher", "res-1", "--title", "HER2 by stage",
            "--analysis", "count", "--analysis", "crosstab", "--field", "topography", "--field", "stage_summary",
            "--field", "her2", "--field", "incidence_date", "--min-cell-count", "10", "--valid-until", "2027-12-31",
            "--out", str(permit2))
    for c in CENTRES:
        oncofed("node", "permits", "approve", str(permit2), "-n", str(out / f"node-{c}"), quiet=True)
        node_toml = out / f"node-{c}" / "node.toml"
        with node_toml.open("a", encoding="utf-8") as cfg:
            cfg.write(f'\n[tls]\ncert = "{auth / "certs" / f"centre-centre-{c}.cert.pem"}"\n'
                      f'key = "{out / f"keys-{c}" / f"tls-centre-centre-{c}.key.pem"}"\nroot = "{root}"\n\n'
                      f'[hub]\naddress = "127.0.0.1:{port}"\nmin_participants = 2\n')
    researcher = out / "researcher.toml"
    researcher.write_text(
        f'[hub]\naddress = "127.0.0.1:{port}"\n\n[dictionary]\nextension = "{ext}"\n\n'
        '[credentials]\nidentity_key = "keys-res-1/identity.key"\n'
        'tls_key = "keys-res-1/tls-researcher-res-1.key.pem"\ncert = "authority/certs/researcher-res-1.cert.pem"\n'
        f'root_cert = "authority/root.cert.pem"\nroot_fingerprint = "{fingerprint}"\n', "utf-8")
    queries = out / "queries"
    queries.mkdir(exist_ok=True)
    (queries / "count-breast.json").write_text(
        '{"cohort": {"field": "topography", "prefix": "C50"}, "analysis": "count"}\n', "utf-8")
    examples = Path(__file__).resolve().parent.parent / "examples" / "queries"
    her2 = examples / "her2-by-stage.toml" if examples.is_dir() else out / "queries" / "her2-by-stage.toml"
    km = examples / "breast-survival-by-stage.json" if examples.is_dir() else \
        out / "queries" / "breast-survival-by-stage.json"
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    with _processes() as procs:
        _start(procs, ["hub", "serve", "--config", str(hub)], "serving", logs / "hub.log")
        print("\n== 13. each centre starts its node: the connector dials OUT to the hub (no inbound port)")
        for c in CENTRES:
            _start(procs, ["node", "serve", "-n", str(out / f"node-{c}"), "--listen", "unix:admin.sock"],
                   "connecting out", logs / f"node-{c}.log")
        time.sleep(1.0)
        print("\n== 14. the researcher runs federated queries: sealed to each centre, answers masked, only the sum")
        to = "--to", "centre-a,centre-b,centre-c"
        oncofed("query", "run", str(queries / "count-breast.json"), "-c", str(researcher), "--permit", str(permit2),
                *to)
        oncofed("query", "run", str(her2), "-c", str(researcher), "--permit", str(permit2), *to)
        print("\n   centre C refused the survival permit: it declines (coarse reason only) and is left out")
        oncofed("query", "run", str(km), "-c", str(researcher), "--permit", str(out / "survival-study.permit"),
                *to, "--min-participants", "2", "--plot", str(out / "km-by-stage.png"))
        print("\n== 15. what the hub operator sees: metadata only")
        oncofed("hub", "status", "--config", str(hub))
        oncofed("query", "list", "-c", str(researcher))
        model, permit3 = cox_study(out, oncofed, auth)
        print("\n== 17. Cox over the query plane: the researcher's client is the coordinator, each Newton round one "
              "sealed, masked query")
        oncofed("analyse", "run", str(model), "-c", str(researcher), "--permit", str(permit3),
                "--csv", str(out / "cox-query-plane.csv"))
        on_flower(out, oncofed, procs, hub, researcher, model, permit3, auth)
    print("\n   every process stopped; the Kaplan–Meier plot is in", out / "km-by-stage.png")
    same_numbers(out / "cox-query-plane.csv", out / "cox-flower.csv")


COX_MODEL = (
    'model = { cox = { outcome = "OS", cutoff = "2025-12-31", covariates = ["age_at_incidence", "stage_summary"] } }\n'
    'targets = ["centre-a", "centre-b", "centre-c"]\n'
)


def cox_study(out: Path, oncofed: Callable[..., Any], auth: Path) -> tuple[Path, Path]:
    """A third permit, for a Cox model of breast cancer survival, approved by all three centres."""
    print("\n== 16. a permit for a Cox model (overall survival by age and stage, all sites), approved by all three "
          "centres")
    permit = out / "cox-study.permit"
    oncofed("authority", "permits", "issue", "-a", str(auth), "--researcher", "res-1", "--title",
            "Cancer survival: age and stage", "--analysis", "cox", "--outcome", "os", "--field", "age_at_incidence",
            "--field", "stage_summary", "--min-cell-count", "10", "--valid-until", "2027-12-31", "--out", str(permit))
    for c in CENTRES:
        oncofed("node", "permits", "approve", str(permit), "-n", str(out / f"node-{c}"), quiet=True)
    model = out / "models" / "cox-survival.toml"
    model.parent.mkdir(exist_ok=True)
    model.write_text(COX_MODEL, "utf-8")
    print(f"\n$ cat {model}\n" + "\n".join(f"  {ln}" for ln in COX_MODEL.splitlines()), flush=True)
    return model, permit


def on_flower(out: Path, oncofed: Callable[..., Any], procs: list[subprocess.Popen[str]], hub: Path,
              researcher: Path, model: Path, permit: Path, auth: Path) -> None:
    """The same model as a Flower run: the hub operator's SuperLink (TLS from the federation root,
    SuperNode authentication), each centre's SuperNode on its node directory, the researcher's run."""
    port = _free_port()
    with hub.open("a", encoding="utf-8") as cfg:
        cfg.write(f'\n[flower]\nlisten = "127.0.0.1:{port}"\ndirectory = "hub-flower"\n')
    print("\n== 18. the same model on Flower: the hub operator starts a SuperLink (TLS, only registered SuperNodes)")
    oncofed("hub", "flower", "up", "-c", str(hub))
    supernodes: list[subprocess.Popen[str]] = []
    try:
        print("\n== 19. each centre makes a SuperNode key; the hub operator registers it; the SuperNodes dial out")
        for c in CENTRES:
            node = out / f"node-{c}"
            oncofed("node", "flower", "key", "-n", str(node))
            oncofed("hub", "flower", "register", str(node / "flower" / "keys" / "supernode-auth.pub"), "--name",
                    f"centre-{c}", "-c", str(hub))
        started = []
        for c in CENTRES:                    # all three at once: each waits for the SuperLink's acceptance
            args = ["node", "flower", "serve", "-n", str(out / f"node-{c}"), "--superlink", f"127.0.0.1:{port}",
                    "--port", str(_free_port())]
            log = out / "logs" / f"supernode-{c}.log"
            supernodes.append(_spawn(procs, args, log))
            started.append((args, log))
        for p, (args, log) in zip(supernodes, started, strict=True):
            _wait_ready(p, args, "SuperNode joined", log, timeout=180)
        print("\n== 20. the researcher submits the model as a Flower run: the ServerApp coordinates, each "
              "ClientApp answers through its node's own checks")
        oncofed("analyse", "flower", str(model), "-c", str(researcher), "--permit", str(permit), "--superlink",
                f"127.0.0.1:{port}", "--registry", str(auth / "published" / "registry.bin"),
                "--csv", str(out / "cox-flower.csv"))
        oncofed("hub", "flower", "status", "-c", str(hub))
    finally:
        for p in supernodes:                 # the SuperNodes first, then the SuperLink
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
        oncofed("hub", "flower", "down", "-c", str(hub))


def same_numbers(plane: Path, flower: Path) -> None:
    """Both transports drive the same analysis module: the tables must agree."""
    import csv

    def coefs(path: Path) -> dict[str, float]:
        with path.open(newline="", encoding="utf-8") as fh:
            return {r["coefficient"]: float(r["coef"]) for r in csv.DictReader(fh)}

    a, b = coefs(plane), coefs(flower)
    if a.keys() != b.keys():
        raise SystemExit(f"demo: the two fits name different coefficients: {sorted(a)} vs {sorted(b)}")
    worst = max(abs(a[k] - b[k]) for k in a)
    print(f"\n   query plane and Flower: the same {len(a)} coefficients, largest difference {worst:.1e}")
    if worst > 1e-9:
        raise SystemExit("demo: the query plane and Flower disagree")
