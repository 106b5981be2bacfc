"""Flower's deployment engine for real on 127.0.0.1: a SuperLink (TLS from a federation root made
at test time, `--database`, SuperNode authentication) and SuperNodes as processes, on free ports
chosen at run time; `close()` stops them all and returns any process still alive (tests assert
none). The processes get this checkout first on PYTHONPATH and our interpreter's bin on PATH."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from node_fed_helpers import Fed, make_fed

from oncofed.flower.deploy import (
    FlowerProcess,
    SuperLinkSpec,
    SuperNodeSpec,
    _alive,
    flower_env,
    start_superlink,
    start_supernode,
)
from oncofed.flower.flwr_cli import FlowerCli
from oncofed.keys.flower_auth import new_supernode_key

REPO = Path(__file__).resolve().parents[2]
_STARTED: list[FlowerProcess] = []


@atexit.register
def _kill_leftovers() -> None:
    """A last net, should a test be cut short (pytest-timeout) before its teardown ran: kill
    whatever this test process started that still runs (each pid checked against its start time)."""
    for proc in _STARTED:
        for pid, start in proc.all_pids().items():
            if _alive(pid, start):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(home: Path) -> dict[str, str]:
    env = flower_env(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "tests" / "integration"),
                                                      os.environ.get("PYTHONPATH")]))
    return env


@dataclass
class Deployment:
    base: Path
    fed: Fed
    spec: SuperLinkSpec
    superlink: FlowerProcess
    cli: FlowerCli
    nodes: dict[str, FlowerProcess] = field(default_factory=dict)
    node_ids: dict[str, int] = field(default_factory=dict)
    stopped: list[FlowerProcess] = field(default_factory=list)

    def supernode_spec(self, name: str, node_dir: Path, *, key: bool = True, register: bool = True,
                       **config: str) -> SuperNodeSpec:
        folder = self.base / f"sn-{name}"
        auth = None
        if key:
            made = new_supernode_key(folder / "keys")
            if register:
                self.cli.register(made.public_path, name=name)
            auth = made.private_path
        return SuperNodeSpec(folder, self.spec.address, self.fed.directory / "root.cert.pem", auth, node_dir,
                             port=free_port(), extra_config=config)

    def start_node(self, name: str, node_dir: Path, **config: str) -> int:
        spec = self.supernode_spec(name, node_dir, **config)
        proc, node_id = start_supernode(spec, timeout=90, env=process_env(spec.directory / "home"))
        _STARTED.append(proc)
        self.nodes[name], self.node_ids[name] = proc, node_id
        return node_id

    def close(self) -> list[int]:
        """Stop every process; return the pids (with descendants) still alive afterwards."""
        procs = [*self.nodes.values(), self.superlink, *self.stopped]
        for p in procs:
            p.watch()
        for p in procs:
            with contextlib.suppress(Exception):   # one failed stop must not leave the others running
                p.stop(grace=15)
        return [pid for p in procs for pid, start in p.all_pids().items() if _alive(pid, start)]


def deploy(base: Path, *, centres: tuple[str, ...] = ("centre-a", "centre-b", "centre-c"),
           fed: Fed | None = None) -> Deployment:
    """A federation root, a hub certificate for 127.0.0.1, and a SuperLink up on a free port."""
    if fed is None:
        fed = make_fed(base, centres=centres, researchers=("res-1",))
    if "hub" not in fed.identities:
        fed.enroll("hub", "hub")
    (base / "root.cert.pem").write_bytes(fed.root_pem)
    spec = SuperLinkSpec(base / "hub-flower", fed.cert_path("hub", "hub"), fed.tls_keys["hub"],
                         base / "root.cert.pem", port=free_port())
    proc = start_superlink(spec, timeout=90, env=process_env(spec.directory / "home"))
    _STARTED.append(proc)
    cli = FlowerCli(base / "operator-flwr", spec.address, base / "root.cert.pem", timeout=90)
    cli.env = process_env(cli.home)
    return Deployment(base, fed, spec, proc, cli)
