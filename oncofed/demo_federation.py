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


def _start(procs: list[subprocess.Popen[str]], args: list[str], ready: str, log: Path) -> subprocess.Popen[str]:
    """Start `oncofed ARGS` in the background and wait for its ready line."""
    print(f"\n$ oncofed {' '.join(args)} &", flush=True)
    fh = log.open("w", encoding="utf-8")
    p = subprocess.Popen([sys.executable, "-m", "oncofed", *args], stdout=subprocess.PIPE, stderr=fh, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    procs.append(p)
    assert p.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line:
            print(f"  {line.rstrip()}", flush=True)
            if ready in line:
                return p
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
    print("\n   every process stopped; the Kaplan–Meier plot is in", out / "km-by-stage.png")
