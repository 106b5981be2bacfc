"""Federated models end to end on 127.0.0.1: a real hub, three centres' nodes with outbound
connectors, and the researcher's client as the coordinator (oncofed.federation.client.analyse).
Every round is a signed, sealed, secure-aggregated query; the fits equal statsmodels' and
lifelines' on the pooled rows to 1e-6, a declining centre is left out and named, the hub sees
no model, and `oncofed analyse run` prints the same table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from federation_world import World, make_world
from regression_reference import assert_matches, lifelines_strata, logit, node_rows, observed, phreg

from oncofed.analyses.newton import FitOptions
from oncofed.federation.client.analyse import ModelRequest, RoundDone, run_model
from oncofed.query.textform import analysis_from, cohort_from

#: Death within five years of diagnosis (a derived event), by age, sex and stage, over all tumours.
LOGISTIC = {"logistic": {"survival": "OS", "cutoff": "2025-12-31", "horizon_days": 1826,
                         "covariates": ["age_at_incidence", "sex", "stage_summary"]}}
COX = {"cox": {"outcome": "OS", "cutoff": "2025-12-31", "covariates": ["age_at_incidence", "stage_summary", "er"]}}
BREAST = {"and": [{"field": "sex", "equals": "2"}, {"field": "topography", "prefix": "C50"}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("fedreg"), patients=500)
    w.start_hub()
    for c in w.centres.values():
        c.start(w.fed, w.target)
    w.wait_connected()
    yield w
    w.close()


def request(world: World, model: Any, *, cohort: Any = None, targets: tuple[str, ...] | None = None,
            permit: str | None = None, **options: Any) -> ModelRequest:
    targets = targets or tuple(world.centres)
    permit_hash = bytes.fromhex(permit or world.centres[targets[0]].permit)
    return ModelRequest(analysis_from(model, "model"), targets, permit_hash,
                        min_participants=len(targets), cohort=cohort_from(cohort, "cohort") if cohort else None,
                        options=FitOptions(**options))


def nodes(world: World, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {c: world.centres[c].node for c in names or world.centres}


def test_logistic_over_the_query_plane_equals_the_pooled_logit(world: World) -> None:
    seen: list[RoundDone] = []
    result = run_model(world.client(), request(world, LOGISTIC), dictionary=world.dictionary(),
                       timeout=60, on_round=seen.append)
    spec, frame = node_rows(nodes(world), analysis_from(LOGISTIC, "a"), None, world.dictionary())
    columns = observed(frame, spec.design.names())
    ref = logit(frame, columns)
    assert result.coefficients == ["(intercept)", *columns] and "sex[9]" not in columns
    assert any("sex[9] left out" in note for note in result.notes)
    assert_matches(result, ref.params, ref.bse, ref.llf)
    assert result.converged and result.rounds <= 8 and result.rounds == len(seen)
    assert [s.step.round for s in seen] == list(range(1, result.rounds + 1))
    assert result.participants == sorted(world.centres) and result.centres == 3
    assert result.n == len(frame) and result.events == int(frame["y"].sum())
    assert result.lr_stat == pytest.approx(ref.llr, rel=1e-6) and result.lr_p == pytest.approx(ref.llr_pvalue, rel=1e-4)
    assert result.loglik_null == pytest.approx(ref.llnull, rel=1e-9)
    text = result.summary()
    assert "logistic regression" in text and "odds ratio" in text and "stage_summary[distant]" in text


def test_cox_stratified_by_centre_equals_lifelines_and_statsmodels(world: World) -> None:
    result = run_model(world.client(), request(world, COX, cohort=BREAST), dictionary=world.dictionary(), timeout=60)
    spec, frame = node_rows(nodes(world), analysis_from(COX, "a"), cohort_from(BREAST, "c"), world.dictionary())
    names = observed(frame, spec.design.names())
    sm_fit = phreg(frame, names)
    assert_matches(result, sm_fit.params, sm_fit.bse, sm_fit.llf)
    renamed = frame.rename(columns={n: f"c{i}" for i, n in enumerate(names)})
    ll = lifelines_strata(renamed, [f"c{i}" for i in range(len(names))])
    assert_matches(result, ll.params_.to_numpy(), ll.standard_errors_.to_numpy(), ll.log_likelihood_)
    assert result.converged and result.rounds <= 8
    assert "stratified by centre" in result.model and "stratified by centre" in result.summary()
    assert result.ratio_name == "hazard ratio" and result.ties == "efron"


def test_a_declining_centre_is_left_out_and_the_fit_is_over_the_others(world: World) -> None:
    """A permit centre C has not approved: the fit runs over A and B only, every round."""
    now = int(time.time())
    _, doc = world.fed.authority.issue_permit(
        researcher_id="res-1", project_title="Models at A and B", analyses=["logistic"],
        fields=["sex", "age_at_incidence", "stage_summary"], outcomes=["os"], min_cell_count=1, not_before=now - 60,
        not_after=now + 86_400)
    for centre in world.centres:
        trust = world.centres[centre].pipeline.verifier.trust
        trust.add_permit(doc.data)
        if centre != "centre-c":
            trust.approve(doc.sha256, by="test-admin")
    req = request(world, LOGISTIC, permit=doc.sha256)
    req = ModelRequest(req.analysis, req.targets, req.permit_hash, min_participants=2)
    result = run_model(world.client(), req, dictionary=world.dictionary(), timeout=60)
    assert result.participants == ["centre-a", "centre-b"] and result.centres == 2
    spec, frame = node_rows(nodes(world, ("centre-a", "centre-b")), analysis_from(LOGISTIC, "a"), None,
                            world.dictionary())
    ref = logit(frame, observed(frame, spec.design.names()))
    assert_matches(result, ref.params, ref.bse, ref.llf)


def test_a_step_beta_is_refused_by_every_centre_before_anything_is_computed(world: World) -> None:
    """The red team's counting query (D28): a logistic β = (−t·b, b) on the integer age makes p a
    step at age t, and the round's sums would count the rows aged ≥ t exactly. |η| reaches
    b·max(t, 120 − t) over age's dictionary range, far beyond 40: every centre refuses it (coarse
    INVALID, from β and the dictionary alone), before its round cap, its rows or its ledger."""
    from oncofed.federation.client.analyse import round_body
    from oncofed.federation.client.client import ClientError

    t, b = 24, 1000
    step = {"logistic": {"survival": "OS", "cutoff": "2025-12-31", "horizon_days": 1826,
                         "covariates": ["age_at_incidence"], "beta_scale_bits": 40,
                         "beta": [-t * b * 2**40, b * 2**40], "round": 2}}
    req = request(world, step)
    d = world.dictionary()
    before = {c: len(world.centres[c].pipeline.verifier.audit.entries()) for c in world.centres}
    with pytest.raises(ClientError) as failed:
        world.client().run(round_body(req, req.analysis, d), dictionary=d, timeout=60)
    assert "0 accepted" in str(failed.value)                  # every centre declined (coarse INVALID)
    for c in world.centres:
        new = world.centres[c].pipeline.verifier.audit.entries()[before[c]:]
        mine = [e for e in new if e.event == "query.answer"]
        assert [e.decision for e in mine] == ["refused"], c
        assert "linear predictor up to 9.6e+04" in json.dumps(mine[0].detail, ensure_ascii=False) + mine[0].reason
    # a gentle β on the same covariate (|η| ≤ 0.05 · 120 + 1 = 7) is answered as before
    gentle = {"logistic": {**step["logistic"], "beta": [-2**40, 2**40 // 20]}}
    req = request(world, gentle)
    answer = world.client().run(round_body(req, req.analysis, d), dictionary=d, timeout=60)
    assert answer.participants == tuple(sorted(world.centres)) or len(answer.participants) == 3


def test_the_hub_never_sees_the_model(world: World) -> None:
    """Everything the hub stored over a whole fit: no covariate name, no outcome, no coefficient."""
    assert world.hub is not None
    result = run_model(world.client(), request(world, COX, cohort=BREAST), dictionary=world.dictionary(), timeout=60)
    stored = b"\x00".join(world.hub.store.dump())
    for secret in (b"age_at_incidence", b"stage_summary", b"her2", b"covariates", b"2025-12-31"):
        assert secret not in stored
    for b in result.beta:                        # the final coefficients at the query's scale (2^40)
        assert abs(round(b * 2**40)).to_bytes(8, "little") not in stored


@pytest.mark.slow
def test_oncofed_analyse_run_prints_the_table(world: World, tmp_path: Path) -> None:
    """The CLI as a researcher runs it, against the live hub: progress per round, then the table;
    --json and --csv give the same numbers as the Python client."""
    cfg = tmp_path / "researcher.toml"
    cfg.write_text(
        f'[hub]\naddress = "{world.target}"\n[credentials]\nidentity_key = "{world.keys["res-1"]}"\n'
        f'tls_key = "{world.fed.tls_keys["res-1"]}"\ncert = "{world.fed.cert_path("researcher", "res-1")}"\n'
        f'root_cert = "{world.base / "root.cert.pem"}"\nroot_fingerprint = "{world.fed.authority.root.fingerprint}"\n',
        "utf-8")
    model = tmp_path / "model.toml"
    model.write_text('targets = ["centre-a", "centre-b", "centre-c"]\n'
                     f'permit = "{world.centres["centre-a"].permit}"\n'
                     '[model.cox]\noutcome = "OS"\ncutoff = 2025-12-31\n'
                     'covariates = ["age_at_incidence", "stage_summary", "er"]\n'
                     '[cohort]\nand = [{field = "sex", equals = "2"}, {field = "topography", prefix = "C50"}]\n',
                     "utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "oncofed", "analyse", "run", str(model), "-c", str(cfg)]
    text = subprocess.run([*cmd, "--csv", str(tmp_path / "coef.csv")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert text.returncode == 0, text.stderr
    assert "stratified by centre" in text.stdout and "hazard ratio" in text.stdout
    assert "round  1" in text.stderr and "converged" in text.stderr
    out = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    py = run_model(world.client(), request(world, COX, cohort=BREAST), dictionary=world.dictionary(), timeout=60)
    assert doc["beta"] == pytest.approx(py.beta, abs=1e-12) and doc["se"] == pytest.approx(py.se, abs=1e-12)
    assert (tmp_path / "coef.csv").read_text("utf-8").splitlines()[0].startswith("coefficient,coef,se,z,p")
    bad = subprocess.run([sys.executable, "-m", "oncofed", "analyse", "run", str(tmp_path / "researcher.toml"),
                          "-c", str(cfg)], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
