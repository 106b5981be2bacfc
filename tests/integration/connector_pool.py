"""Centres' connectors in processes of their own, for a World (federation_world.py) whose nodes
are on disk: each process opens its centres' node directories, loads their identity and TLS
files, and runs one outbound connector per centre to the hub over real mutual-TLS gRPC.

Why: connectors as threads of one Python process share one interpreter lock. Every
signature check, X25519 product, SQLite statement and gRPC call releases it and must win it
back, and with tens of threads each such call waits behind the others (measured at 100
centres: a 100 µs Ed25519 check took 2.4 ms of wall time inside an answer). A centre is its
own process, usually its own machine, in a federation; the benchmarks measure that.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation_world import World

from oncofed.keys.keystore import save_identity
from oncofed.node.query.policy import NodePolicy


@dataclass(frozen=True)
class CentreFiles:
    """What a connector process needs to run one centre: its node directory and key files."""

    centre_id: str
    root: Path
    identity_key: Path
    cert: Path
    tls_key: Path
    root_cert: Path
    policy: NodePolicy


def _serve(centres: list[CentreFiles], target: str, conn: multiprocessing.connection.Connection) -> None:
    """A connector process: start every centre's connector, say "ready" once all are connected
    (or why not), and stop them all when the parent says so."""
    from oncofed.keys.keystore import load_identity
    from oncofed.keys.tls import load_tls_files
    from oncofed.node.answering import AnsweringPipeline
    from oncofed.node.audit import AuditLog, journal_path
    from oncofed.node.connector import Connector, HubLink
    from oncofed.node.keyfiles import checkpoint_every
    from oncofed.node.node import open_node
    from oncofed.node.verify import QueryVerifier

    running: list[Any] = []
    try:
        for c in centres:
            node = open_node(c.root)
            identity = load_identity(c.identity_key)
            # the node's audit log signing with its identity key, as `oncofed node serve` opens it
            # (checkpoints, head journal): every pull and push carries the signed head, which the
            # hub checks and keeps
            audit = AuditLog.open(node.paths.store, identity, checkpoint_every=checkpoint_every(node.config),
                                  head_journal=journal_path(node))
            pipeline = AnsweringPipeline(node, QueryVerifier.for_node(node, audit), c.policy)
            connector = Connector(pipeline, identity, load_tls_files(c.cert, c.tls_key, c.root_cert), HubLink(target),
                                  min_participants=2, audit_head=pipeline.verifier.audit.signed_head).start()
            running.append((node, pipeline, connector))
        late = [c.centre_id for c, (_, _, k) in zip(centres, running, strict=True) if not k.connected.wait(120)]
        conn.send(f"not connected: {', '.join(late)}" if late else "ready")
        conn.recv()
    except EOFError:
        pass                                  # the parent went away: stop
    finally:
        for node, pipeline, connector in running:
            connector.stop()
            pipeline.verifier.close()
            node.close()
        conn.send("stopped")


class ConnectorProcesses:
    """`processes` processes running the world's centres' connectors, split evenly in centre order.

    The world's own in-process connectors must not run meanwhile (each centre answers once);
    its nodes stay open in this process, unused, and `World.close` closes them afterwards."""

    def __init__(self, world: World, processes: int) -> None:
        self.world = world
        ids = list(world.centres)
        processes = max(1, min(processes, len(ids)))
        files = [self._files(cid) for cid in ids]
        self.groups = [files[i::processes] for i in range(processes)]
        self._procs: list[tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]] = []

    def _files(self, centre_id: str) -> CentreFiles:
        w = self.world
        folder = w.base / f"identity-{centre_id}"
        if not folder.exists():
            folder.mkdir()
            save_identity(w.fed.identities[centre_id], folder)
        centre = w.centres[centre_id]
        return CentreFiles(centre_id, centre.node.paths.root, folder, w.fed.cert_path("centre", centre_id),
                           w.fed.tls_keys[centre_id], w.base / "root.cert.pem", centre.pipeline.policy)

    def start(self, timeout: float = 300) -> ConnectorProcesses:
        """Start every process and wait until each centre is connected to the hub."""
        ctx = multiprocessing.get_context("spawn")      # never fork a process that runs gRPC
        for group in self.groups:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(group, self.world.target, child), daemon=True)
            proc.start()
            child.close()
            self._procs.append((proc, parent))
        for started, parent in self._procs:
            if not parent.poll(timeout):
                raise RuntimeError(f"connector process {started.pid} did not start in {timeout:g} s")
            said = parent.recv()
            if said != "ready":
                raise RuntimeError(f"connector process {started.pid}: {said}")
        return self

    def cpu_seconds(self) -> float | None:
        """CPU seconds the connector processes have used so far, user and system (Linux's /proc;
        None elsewhere): what the centres spend, for a benchmark to set beside its wall time."""
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0
        if not tick:
            return None
        total = 0.0
        for proc, _ in self._procs:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / tick     # utime, stime (fields 14, 15)
        return total

    def stop(self, timeout: float = 30) -> None:
        """Stop every connector and wait for each process to end (killed if it will not)."""
        for _, parent in self._procs:
            with contextlib.suppress(BrokenPipeError, OSError):
                parent.send("stop")
        for proc, parent in self._procs:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            parent.close()
        self._procs.clear()

    def __enter__(self) -> ConnectorProcesses:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
