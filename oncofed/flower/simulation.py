"""Both apps on Flower's simulation engine, over node directories on this machine — for tests,
the demo and the benchmark (docs/flower.md).

    report = run_fits([node_a, node_b, node_c], [config_1, config_2])    # build_run_config(…)
    report.outcomes[0].result                                            # a ModelResult, or .error

The engine runs in a fresh interpreter of its own (`run_fits` starts it and waits; see there).
Ray takes 15–30 s to start here, so one engine start serves every fit given: the ServerApp of
the simulation coordinates the runs one after the other, each exactly as the deployed ServerApp
would (`serverapp.coordinate`), each with its own result file. Virtual SuperNode i serves
`node_dirs[i]` through the deployed ClientApp's handler: on the deployment engine the node
directory comes from the SuperNode's node config; the simulation engine has no per-node config
to give, so this module's ClientApp maps Flower's partition id to the directory instead — which is
why it is a separate app object and never the deployed one.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before Flower and Ray are imported (they read these then): no telemetry, no update check.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from oncofed.analyses.fedavg_training import FedAvgResult
from oncofed.analyses.model_result import ModelResult
from oncofed.flower.clientapp import handle
from oncofed.flower.runconfig import (
    FlowerRunError,
    parse_run_config,
    read_run,
    result_of,
    write_failure,
)
from oncofed.flower.serverapp import coordinate

log = logging.getLogger("oncofed.flower.simulation")

#: Two actors (the machine's two cores); a fresh local Ray instance, never another user's cluster.
DEFAULT_BACKEND: dict[str, Any] = {
    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    "init_args": {"num_cpus": 2, "address": "local", "logging_level": logging.ERROR, "log_to_driver": False,
                  "object_store_memory": 100 * 1024 * 1024},
}


@dataclass
class FitOutcome:
    """One run of a simulation: its result, or the one-line error it failed with."""

    result_path: Path
    result: ModelResult | FedAvgResult | None
    error: str | None
    run: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimulationReport:
    """Every run of one engine start, and how long the whole took."""

    outcomes: list[FitOutcome]
    seconds: float


def simulation_client(node_dirs: Sequence[Path]) -> ClientApp:
    """A ClientApp whose virtual SuperNode i answers for the node in `node_dirs[i]`."""
    dirs = [str(Path(p).resolve()) for p in node_dirs]
    client = ClientApp()

    @client.query()
    def query(msg: Message, context: Context) -> Message:
        return handle(msg, Path(dirs[int(context.node_config["partition-id"])]))

    return client


def simulation_server(configs: Sequence[Mapping[str, str]]) -> ServerApp:
    """A ServerApp that coordinates each run config in turn, as the deployed one coordinates one."""
    runs = [dict(c) for c in configs]
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        for config in runs:
            try:
                coordinate(grid, parse_run_config(config))
            except FlowerRunError as exc:
                path = config.get("result-path", "")
                if path and not Path(path).exists():
                    write_failure(Path(path), b"", str(exc))

    return server


WORKER_EXIT_SECONDS = 20.0


def _ray_processes() -> set[int]:
    """This user's Ray processes (workers show as `ray::…`, the rest run from ray's package)."""
    found = set()
    uid = os.getuid()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and (cmd[0].startswith(b"ray::") or any(b"/ray/" in part and b"site-packages" in part
                                                        for part in cmd[:2])):
            found.add(int(entry.name))
    return found


def _wait_gone(pids: set[int], seconds: float) -> None:
    """Wait (never kill) until the Ray processes this engine start made have exited: Ray's shutdown
    stops them asynchronously, and a caller must be able to rely on none being left behind."""
    deadline = time.monotonic() + seconds
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists()}
        if pids:
            time.sleep(0.1)
    if pids:
        log.warning("Ray processes %s still running %.0f s after the simulation ended", sorted(pids), seconds)


def run_fits(node_dirs: Sequence[Path], configs: Sequence[Mapping[str, str]], *,
             backend_config: Mapping[str, Any] | None = None, verbose: bool = False,
             timeout: float = 1800.0) -> SimulationReport:
    """Run every config's model fit on one start of the simulation engine over `node_dirs`; the
    outcomes in the order of `configs` (a failed run's error, never an exception: one failure
    must not hide the others).

    The engine runs in a fresh interpreter (`python -m oncofed.flower.simulation`), which waits
    for Ray's processes to exit before it does: Ray forks its helpers at start, and a process that
    already runs gRPC threads (a hub, connectors, a client — the query plane in the same test or
    benchmark) crashes the forked children (grpcio's fork handlers; DESIGN's "create gRPC objects
    after any fork"). A separate process also keeps Ray's global state and signal handlers out of
    the caller's."""
    if not node_dirs:
        raise FlowerRunError("a simulation needs at least one node directory")
    paths = [Path(c.get("result-path", "")) for c in configs]
    if any(not str(p) or str(p) == "." for p in paths) or len(set(paths)) != len(paths):
        raise FlowerRunError("every run config needs its own result-path")
    for p in paths:
        p.unlink(missing_ok=True)
    import json
    import subprocess
    import sys
    import tempfile

    root = str(Path(__file__).resolve().parents[2])          # this oncofed, first on the child's path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
           "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oncofed-sim-") as tmp:
        spec = Path(tmp) / "simulation.json"
        spec.write_text(json.dumps({"node_dirs": [str(Path(d).resolve()) for d in node_dirs],
                                    "configs": [dict(c) for c in configs],
                                    "backend": dict(backend_config or DEFAULT_BACKEND), "verbose": verbose}),
                        "utf-8")
        spec.chmod(0o600)                       # it holds the signed envelopes
        try:
            done = subprocess.run([sys.executable, "-m", "oncofed.flower.simulation", str(spec)], env=env,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise FlowerRunError(f"the simulation did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        tail = " | ".join(line for line in done.stderr.strip().splitlines()[-5:] if line.strip())
        raise FlowerRunError(f"the simulation engine failed (exit {done.returncode}): {tail[-600:]}")
    seconds = time.monotonic() - started
    outcomes = []
    for p in paths:
        try:
            doc = read_run(p)
            outcomes.append(FitOutcome(p, result_of(doc), None, doc))
        except FlowerRunError as exc:
            outcomes.append(FitOutcome(p, None, str(exc), {}))
    return SimulationReport(outcomes, seconds)


def run_here(node_dirs: Sequence[Path], configs: Sequence[Mapping[str, str]], *,
             backend_config: Mapping[str, Any] | None = None, verbose: bool = False) -> None:
    """The engine in this process (what the child of `run_fits` does): only in an interpreter
    that has started no gRPC objects. Returns once Ray's processes have exited."""
    from flwr.simulation import run_simulation

    before = _ray_processes()
    with warnings.catch_warnings():
        # Ray leaves /dev/null handles and Popen objects for the garbage collector: collect them
        # here, where their ResourceWarnings are known noise.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            run_simulation(server_app=simulation_server(configs), client_app=simulation_client(node_dirs),
                           num_supernodes=len(node_dirs), backend_config=dict(backend_config or DEFAULT_BACKEND),
                           verbose_logging=verbose)
        finally:
            gc.collect()
            _wait_gone(_ray_processes() - before, WORKER_EXIT_SECONDS)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m oncofed.flower.simulation SPEC.json` (written by `run_fits`)."""
    import json
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m oncofed.flower.simulation SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text("utf-8"))
    run_here([Path(d) for d in spec["node_dirs"]], spec["configs"], backend_config=spec.get("backend"),
             verbose=bool(spec.get("verbose")))
    return 0


if __name__ == "__main__":
    # Run the module's own copy (not __main__'s), so the apps Ray pickles refer to importable names.
    from oncofed.flower.simulation import main as _main

    raise SystemExit(_main())
