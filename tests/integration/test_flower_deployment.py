"""Flower's deployment engine for real: a SuperLink (TLS, `--database`, SuperNode authentication)
and SuperNodes as processes on 127.0.0.1, driven through `flwr` — a registered node joins, an
unregistered key is refused, a run completes with the right answer, a failing run is reported as
failed (not exit 0), and teardown leaves no process behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flower_deploy_world import deploy

from oncofed.flower.deploy import SUPERLINK, SupernodeRefused, find, start_supernode
from oncofed.flower.fab import write_app
from oncofed.flower.flwr_cli import RunFailed

pytestmark = pytest.mark.slow
PROBE = (Path(__file__).parent / "flower_probe_app.py").read_text()


def probe_app(base: Path, **config: object) -> Path:
    return write_app(base / "probe-app", config, serverapp="probe_app:server", clientapp="probe_app:client",
                     files={"probe_app.py": PROBE})


def test_superlink_with_authenticated_supernodes_runs_an_app_and_leaves_nothing(tmp_path):
    d = deploy(tmp_path)
    try:
        assert find(d.spec.directory, SUPERLINK).pid == d.superlink.pid       # the PID file names it
        ids = [d.start_node(c, tmp_path / c, value=str(v)) for c, v in (("centre-a", 2), ("centre-b", 3.5))]
        assert len(set(ids)) == 2
        online = {int(n["node-id"]): n["status"] for n in d.cli.nodes()}
        assert all(online[i] == "online" for i in ids), online

        stranger = d.supernode_spec("stranger", tmp_path / "stranger", register=False, value="100")
        with pytest.raises(SupernodeRefused, match="refused this SuperNode"):
            start_supernode(stranger, timeout=90)

        out = tmp_path / "probe.json"
        config = {"nodes": 2, "out": str(out), "fail": False}
        run_id = d.cli.submit(probe_app(tmp_path, **config), config)
        lines: list[str] = []
        status = d.cli.wait(run_id, timeout=240, on_line=lines.append)
        assert status.completed
        result = json.loads(out.read_text())
        assert result == {"sum": 5.5, "replies": 2, "nodes": 2}              # the stranger never joined

        config = {**config, "fail": True}
        failing = d.cli.submit(probe_app(tmp_path, **config), config)
        with pytest.raises(RunFailed, match=r"failed: .*asked to fail"):
            d.cli.wait(failing, timeout=240)
        assert {r["run-id"] for r in d.cli.runs()} >= {str(run_id), str(failing)}
    finally:
        left = d.close()
    assert left == []
    assert find(d.spec.directory, SUPERLINK) is None
