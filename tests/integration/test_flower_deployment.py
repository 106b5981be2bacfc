"""Flower's deployment engine for real: a SuperLink (TLS, `--database`, SuperNode authentication)
and SuperNodes as processes on 127.0.0.1, driven through `flwr`.

- With a tiny probe app of the tests' own: a registered node joins, an unregistered key is
  refused, a run completes with the right answer, a failing run is reported as failed (not exit 0).
- With oncofed's apps: a Cox model (stratified by centre) over three SuperNodes, each on a real node
  directory, equals the pooled statsmodels `PHReg(ties='efron')` and lifelines fits to 1e-6, and the
  query-plane driver over a real hub on the same centres to 1e-12; FedAvg training on the same
  SuperNodes takes the pure local step at every centre and improves on every round.
Teardown leaves no process behind (asserted over every pid seen below the ones we started)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pytest
from federation_world import make_world
from flower_deploy_world import deploy
from flower_world import enable_flower, model_request, run_config
from regression_reference import assert_matches, fedavg_updates, lifelines_strata, node_rows, observed, phreg

from oncofed.analyses import parse_analysis
from oncofed.analyses.fedavg_training import FedAvgResult
from oncofed.federation.client.analyse import run_model
from oncofed.flower.deploy import SUPERLINK, SupernodeRefused, find, start_supernode
from oncofed.flower.fab import write_app
from oncofed.flower.flwr_cli import RunFailed
from oncofed.flower.request import FlowerRunError
from oncofed.flower.submit import fit_on_flower
from oncofed.query.textform import analysis_from, cohort_from

# Each round on the deployment engine costs a 3 s poll at the SuperNode and at the ServerApp and a
# fresh ClientApp process per message: minutes per fit on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
COX = {"cox": {"outcome": "OS", "cutoff": "2025-12-31", "covariates": ["age_at_incidence", "stage_summary", "er"]}}
BREAST = {"and": [{"field": "sex", "equals": "2"}, {"field": "topography", "prefix": "C50"}]}
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


def test_cox_on_a_superlink_with_three_supernodes_equals_pooled_and_query_plane_fits(tmp_path):
    w = make_world(tmp_path / "fed", patients=500)
    d = None
    try:
        for c in w.centres.values():
            enable_flower(Path(c.node.paths.root), w.fed, c.centre_id)
        d = deploy(tmp_path, fed=w.fed)
        for name, c in w.centres.items():
            d.start_node(name, Path(c.node.paths.root))
        stranger = d.supernode_spec("stranger", Path(w.centres["centre-a"].node.paths.root), register=False)
        with pytest.raises(SupernodeRefused):
            start_supernode(stranger, timeout=90)

        targets, permit = list(w.centres), w.centres["centre-a"].permit
        config = run_config(w.fed, tmp_path / "fed", model_request(COX, targets, permit, cohort=BREAST),
                            w.dictionary(), tmp_path / "cox.json")
        fit = fit_on_flower(config, superlink=d.spec.address, root_cert=tmp_path / "root.cert.pem", timeout=1500)
        result = fit.result
        assert fit.status.completed and result.participants == sorted(targets) and result.converged

        spec, frame = node_rows({k: c.node for k, c in w.centres.items()}, analysis_from(COX, "a"),
                                cohort_from(BREAST, "c"), w.dictionary())
        names = observed(frame, spec.design.names())
        sm = phreg(frame, names)
        assert_matches(result, sm.params, sm.bse, sm.llf)
        ll = lifelines_strata(frame.rename(columns={n: f"c{i}" for i, n in enumerate(names)}),
                              [f"c{i}" for i in range(len(names))])
        assert_matches(result, ll.params_.to_numpy(), ll.standard_errors_.to_numpy(), ll.log_likelihood_)
        assert "stratified by centre" in result.model

        # FedAvg training (D36) on the same SuperNodes: the deployed ClientApp runs the pure local
        # step on each centre's rows; round 1 is at w = 0 and its mean update is the mean of the
        # pure local steps; each later round's weights fit better
        from test_flower_simulation import FEDAVG, LOGISTIC

        avg_config = run_config(w.fed, tmp_path / "fed", model_request(FEDAVG, targets, permit, max_rounds=3),
                                w.dictionary(), tmp_path / "fedavg.json")
        avg = fit_on_flower(avg_config, superlink=d.spec.address, root_cert=tmp_path / "root.cert.pem",
                            timeout=1500).result
        assert isinstance(avg, FedAvgResult) and avg.participants == sorted(targets) and not avg.stopped
        _lspec, lframe = node_rows({k: c.node for k, c in w.centres.items()}, analysis_from(LOGISTIC, "a"), None,
                                  w.dictionary())
        n = len(lframe)
        assert [r.round for r in avg.rounds] == [1, 2, 3] and all(r.n == n for r in avg.rounds)
        assert avg.rounds[0].loglik == pytest.approx(n * np.log(0.5), abs=3 * 2.0**-16)
        fspec = parse_analysis(analysis_from(FEDAVG, "a"), w.dictionary())
        first = np.mean(fedavg_updates(fspec, lframe), axis=0)
        assert avg.rounds[0].update_norm == pytest.approx(float(np.linalg.norm(first)), rel=1e-6)
        lls = [r.loglik for r in avg.rounds]
        assert all(b > a for a, b in itertools.pairwise(lls)), lls

        # a run no centre may answer (a permit nobody approved) fails, and says so
        now = int(time.time())
        _, doc = w.fed.authority.issue_permit(
            researcher_id="res-1", project_title="never approved", analyses=["cox"],
            fields=["age_at_incidence", "stage_summary", "er"], outcomes=["os"], min_cell_count=1,
            not_before=now - 60, not_after=now + 86_400)
        bad = run_config(w.fed, tmp_path / "fed", model_request(COX, targets, doc.sha256), w.dictionary(),
                         tmp_path / "refused.json")
        with pytest.raises((RunFailed, FlowerRunError), match=r"NOT_APPROVED|accepted"):
            fit_on_flower(bad, superlink=d.spec.address, root_cert=tmp_path / "root.cert.pem", timeout=900)

        # the same model over the query plane: a real hub, the centres' connectors
        from test_regression_federated import request

        w.start_hub()
        for c in w.centres.values():
            c.start(w.fed, w.target)
        w.wait_connected()
        plane = run_model(w.client(), request(w, COX, cohort=BREAST), dictionary=w.dictionary(), timeout=60)
        assert plane.coefficients == result.coefficients and plane.rounds == result.rounds
        assert np.abs(np.array(plane.beta) - np.array(result.beta)).max() <= 1e-12
        assert np.abs(np.array(plane.se) - np.array(result.se)).max() <= 1e-12
    finally:
        left = d.close() if d is not None else []
        w.close()
    assert left == []
