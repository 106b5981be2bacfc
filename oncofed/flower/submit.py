"""The researcher's side of a model fit on a running SuperLink: build the signed run config
(oncofed.flower.request), bundle the app, `flwr run` it, follow it, and read the result back.

The ServerApp (the coordinator, at the hub) writes the result to `result_path` on *its* machine:
on one machine — the demo, the tests, a researcher who runs the SuperLink — that is a file the
researcher reads; with a remote hub, the path must be one both can reach (docs/flower-operations.md).
A run that Flower reports as failed, or whose result file says it failed, is an error here, never a
silent exit 0.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oncofed.flower.fab import write_app
from oncofed.flower.flwr_cli import FlowerCli, RunFailed, RunStatus

if TYPE_CHECKING:
    from oncofed.analyses.fedavg_training import FedAvgResult
    from oncofed.analyses.model_result import ModelResult


@dataclass(frozen=True)
class FlowerFit:
    """A finished fit on Flower: the model's result and the run's own record."""

    result: ModelResult | FedAvgResult
    run_id: int
    status: RunStatus


def run_app(superlink: str, root_cert: Path, run_config: Mapping[str, str], *, home: Path,
            timeout: float = 900.0, on_line: Callable[[str], None] | None = None,
            on_start: Callable[[int], None] | None = None) -> RunStatus:
    """Submit oncofed's app with `run_config` to the SuperLink at `superlink` (TLS checked against
    `root_cert`), using `home` for the bundle and `flwr`'s profile, and wait for its outcome."""
    app = write_app(home / "app", dict(run_config))
    cli = FlowerCli(home / "flwr", superlink, root_cert, timeout=min(timeout, 120.0))
    run_id = cli.submit(app, run_config)
    if on_start is not None:
        on_start(run_id)
    return cli.wait(run_id, timeout=timeout, on_line=on_line)


def fit_on_flower(run_config: Mapping[str, str], *, superlink: str, root_cert: Path, timeout: float = 900.0,
                  on_line: Callable[[str], None] | None = None,
                  on_start: Callable[[int], None] | None = None) -> FlowerFit:
    """Run one model fit whose run config came from `build_run_config` and return its result;
    the run config's `result-path` is where the ServerApp writes it."""
    from oncofed.flower.request import read_result

    result_path = Path(run_config["result-path"])
    started: list[int] = []

    def remember(run_id: int) -> None:
        started.append(run_id)
        if on_start is not None:
            on_start(run_id)

    with tempfile.TemporaryDirectory(prefix="oncofed-flower-") as tmp:
        try:
            status = run_app(superlink, root_cert, run_config, home=Path(tmp), timeout=timeout, on_line=on_line,
                             on_start=remember)
        except RunFailed:
            if result_path.is_file():
                read_result(result_path)        # the coordinator's own reason, when it wrote one
            raise
    return FlowerFit(read_result(result_path), started[0], status)
