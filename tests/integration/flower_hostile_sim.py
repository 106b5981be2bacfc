"""A hostile coordinator on Flower's simulation engine, for the tests (D30): run as
`python flower_hostile_sim.py SPEC.json` (the spec oncofed.flower.simulation's child reads, plus
"beta"), it starts the real engine with oncofed's ClientApp, but its ServerApp — the attacker's —
runs the real prepare and then one round at the spec's β instead of Newton's proposal, writing
the outcome (a failure line, or that the round was answered) to each run's result path."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flwr.serverapp import Grid, ServerApp

from oncofed.flower import simulation
from oncofed.flower.runconfig import FlowerRunError, parse_run_config, write_failure
from oncofed.flower.serverapp import RunLog, prepare, run_round
from oncofed.v1 import query_pb2 as pb


def hostile_server(configs: Sequence[Mapping[str, str]], beta: list[int]) -> ServerApp:
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Any) -> None:
        for config in configs:
            req = parse_run_config(config)
            path = Path(config["result-path"])
            try:
                s, node_of = prepare(grid, req, RunLog())
                analysis = pb.Analysis()
                analysis.CopyFrom(req.body.analysis)
                msg = getattr(analysis, analysis.WhichOneof("kind"))
                msg.beta[:] = beta
                msg.round = 1
                run_round(grid, req, s, node_of, analysis)
                write_failure(path, req.query_hash, "the hostile round was answered")
            except FlowerRunError as exc:
                write_failure(path, req.query_hash, str(exc))

    return server


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    simulation.simulation_server = lambda configs: hostile_server(configs, spec["beta"])
    simulation.run_here([Path(d) for d in spec["node_dirs"]], spec["configs"], backend_config=spec.get("backend"))
