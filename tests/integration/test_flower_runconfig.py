"""The run config of a Flower fit, with real keys: what the researcher builds (build_run_config)
is what the ServerApp accepts (parse_run_config), and everything else is refused with one line —
a registry under another root, an envelope not signed by a registry researcher or made for the
query plane, a dictionary that is not the envelope's; the result file reads back or says why the
run failed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from flower_world import model_request, researcher, run_config
from node_fed_helpers import Fed, make_fed
from regression_data import EXTENSION

from oncofed import dictionary as dictmod
from oncofed.analyses.newton import FitError
from oncofed.flower.request import build_run_config, read_result
from oncofed.flower.runconfig import FlowerRunError, parse_run_config, write_failure, write_result
from oncofed.keys.envelope import sign, unverified_body
from oncofed.query import QUERY_TAG
from oncofed.v1 import query_pb2 as pb

MODEL = {"cox": {"outcome": "OS", "cutoff": "2025-12-31", "covariates": ["age_at_incidence", "x1"]}}
PERMIT = "ab" * 32


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Fed:
    return make_fed(tmp_path_factory.mktemp("runconfig"), centres=("centre-a", "centre-b", "centre-c"),
                    researchers=("res-1",))


def config(fed: Fed, tmp: Path, **kw: object) -> dict[str, str]:
    d = dictmod.load(EXTENSION)
    req = model_request(MODEL, ["centre-a", "centre-b", "centre-c"], PERMIT, max_rounds=12)
    return run_config(fed, fed.directory, req, d, tmp / "result.json", extension=EXTENSION, **kw)  # type: ignore[arg-type]


def test_what_the_researcher_builds_the_serverapp_accepts(fed: Fed, tmp_path: Path) -> None:
    req = parse_run_config(config(fed, tmp_path, round_timeout=7.5))
    assert req.body.HasField("flower") and req.body.flower.max_rounds == 12 and req.options.max_rounds == 12
    assert list(req.body.analysis.cox.beta) == [] and req.body.analysis.cox.round == 0
    assert req.body.researcher_key_id == fed.identities["res-1"].public.signing_fingerprint
    assert req.dictionary.extension_sha256 == req.body.dictionary.extension_sha256 != ""
    assert req.result_path == tmp_path / "result.json" and req.round_timeout == 7.5
    assert {m.member_id for m in req.registry.members if m.role == "centre"} == {"centre-a", "centre-b", "centre-c"}
    assert req.body.expires_at - req.body.issued_at <= 24 * 3600


def test_a_registry_root_or_envelope_that_does_not_verify_is_refused(fed: Fed, tmp_path: Path) -> None:
    good = config(fed, tmp_path)
    other = make_fed(tmp_path / "other", centres=("centre-a", "centre-b"), researchers=("res-1",))
    cases = {
        "registry": {"registry": base64.b64encode(other.published("registry.bin")).decode()},
        "root": {"root-cert": base64.b64encode(other.root_pem).decode()},
        "fingerprint": {"root-fingerprint": other.authority.root.fingerprint},
        "base64": {"envelope": "not base64!"},
        "missing": {"envelope": ""},
        "result": {"result-path": ""},
        "timeout": {"round-timeout": "-1"},
        "options": {"fit-options": json.dumps({"l3": 1})},
    }
    for name, change in cases.items():
        with pytest.raises(FlowerRunError, match="run config"):
            parse_run_config({**good, **change})
        print(name, "refused")
    by_centre = sign(fed.identities["centre-a"], QUERY_TAG, pb.QueryBody().SerializeToString())
    with pytest.raises(FlowerRunError, match="not a query signed by a researcher"):
        parse_run_config({**good, "envelope": base64.b64encode(by_centre).decode()})


def test_a_query_plane_envelope_or_another_dictionary_is_refused(fed: Fed, tmp_path: Path) -> None:
    from oncofed.flower.request import signed_run

    good = config(fed, tmp_path)
    d = dictmod.load(EXTENSION)
    env = signed_run(researcher(fed, fed.directory), model_request(MODEL, ["centre-a"], PERMIT), dictionary=d)
    body = pb.QueryBody.FromString(unverified_body(env, tag=QUERY_TAG))
    body.ClearField("flower")
    plain = sign(fed.identities["res-1"], QUERY_TAG, body.SerializeToString())
    with pytest.raises(FlowerRunError, match="query-plane query"):
        parse_run_config({**good, "envelope": base64.b64encode(plain).decode()})
    with pytest.raises(FlowerRunError, match="written for dictionary"):
        parse_run_config({**good, "extension": ""})
    with pytest.raises(FitError, match="SHA-256 differs"):
        build_run_config(researcher(fed, fed.directory), model_request(MODEL, ["centre-a"], PERMIT), dictionary=d,
                         registry=fed.published("registry.bin"), result_path=str(tmp_path / "r.json"),
                         extension=b"[extension]\n")
    with pytest.raises(FitError, match="not shipped"):
        build_run_config(researcher(fed, fed.directory), model_request(MODEL, ["centre-a"], PERMIT), dictionary=d,
                         registry=fed.published("registry.bin"), result_path=str(tmp_path / "r.json"))


def test_the_result_file_reads_back_or_says_why_the_run_failed(tmp_path: Path) -> None:
    from oncofed.analyses.model_result import ModelResult

    result = ModelResult(model="Cox", outcome="OS", coefficients=["x"], beta=[0.5], se=[0.1], ratio_name="hazard ratio",
                         loglik=-10.0, loglik_null=-12.0, lr_df=1, n=100, events=40, centres=3, iterations=5,
                         rounds=6, converged=True, participants=["a", "b", "c"])
    write_result(tmp_path / "ok.json", {"query_hash": "00", "result": result.to_json(), "rounds": []})
    back = read_result(tmp_path / "ok.json")
    assert back == result
    write_failure(tmp_path / "failed.json", b"\x01" * 32, "round 3: centre-b refused it (BUDGET)")
    with pytest.raises(FlowerRunError, match=r"round 3: centre-b refused it \(BUDGET\)"):
        read_result(tmp_path / "failed.json")
    with pytest.raises(FlowerRunError, match="no result"):
        read_result(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("[1, 2]", "utf-8")
    with pytest.raises(FlowerRunError, match="not a result file"):
        read_result(tmp_path / "junk.json")


FEDAVG = {"fedavg": {"outcome": "b1", "covariates": ["age_at_incidence", "x1"], "clip_norm": 0.5,
                     "learning_rate": 2.0, "local_epochs": 10}}


def test_a_fedavg_run_signs_its_settings_epsilon_and_rounds_and_reads_back_as_a_training_result(
        fed: Fed, tmp_path: Path) -> None:
    from dataclasses import replace

    from oncofed.analyses.fedavg_training import FedAvgResult, FedAvgRound

    d = dictmod.load(EXTENSION)
    req = replace(model_request(FEDAVG, ["centre-a", "centre-b", "centre-c"], PERMIT, max_rounds=80), epsilon=0.25)
    cfg = run_config(fed, fed.directory, req, d, tmp_path / "result.json", extension=EXTENSION)
    parsed = parse_run_config(cfg)
    body = parsed.body
    assert body.epsilon == 0.25 and body.flower.max_rounds == 80
    msg = body.analysis.fedavg
    assert (msg.learning_rate, msg.local_epochs, msg.clip_norm) == (2.0, 10, 0.5)
    assert list(msg.beta) == [] and msg.round == 0 and msg.beta_scale_bits > 0   # the coordinator picks them
    result = FedAvgResult(model="m", outcome="b1", coefficients=["(intercept)", "age_at_incidence", "x1"],
                          beta=[0.1, 0.01, -0.2], rounds=[FedAvgRound(1, 300, -200.0, 0.6, 0.4)],
                          participants=["centre-a", "centre-b", "centre-c"], centres=3)
    write_result(parsed.result_path, {"query_hash": parsed.query_hash.hex(), "result": result.to_json()})
    assert read_result(parsed.result_path) == result


def test_analyse_flower_reference_is_for_a_fedavg_model_one_line(fed: Fed, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from flower_deploy_world import REPO
    from test_flower_cli import researcher_toml

    (tmp_path / "root.cert.pem").write_bytes(fed.root_pem)
    model = tmp_path / "cox.toml"
    model.write_text('model = { cox = { outcome = "OS", cutoff = "2025-12-31", covariates = ["age_at_incidence"] } }\n'
                     f'targets = ["centre-a", "centre-b"]\npermit = "{PERMIT}"\n', "utf-8")
    done = subprocess.run([sys.executable, "-m", "oncofed", "analyse", "flower", str(model), "-c",
                           str(researcher_toml(tmp_path, fed)), "--superlink", "127.0.0.1:1", "--registry",
                           str(fed.authority.dir / "published" / "registry.bin"), "--reference"], capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode != 0 and done.stderr.count("\n") == 1, done.stderr
    assert "--reference is for a fedavg model" in done.stderr


def test_a_reference_is_signed_as_one_more_round_and_only_for_fedavg_without_dp(fed: Fed, tmp_path: Path) -> None:
    from dataclasses import replace

    d = dictmod.load(EXTENSION)
    req = model_request(FEDAVG, ["centre-a", "centre-b", "centre-c"], PERMIT, max_rounds=30)
    ref = [0.5, 0.01, -0.2]
    cfg = run_config(fed, fed.directory, req, d, tmp_path / "r.json", extension=EXTENSION, reference_beta=ref)
    parsed = parse_run_config(cfg)
    assert parsed.reference_beta == tuple(ref) and parsed.body.flower.max_rounds == 31
    for bad in ("[1, 2", '["a"]', '{"b": 1}', "[NaN]"):
        with pytest.raises(FlowerRunError, match="reference-beta"):
            parse_run_config({**cfg, "reference-beta": bad})
    with pytest.raises(FitError, match="without DP only"):
        run_config(fed, fed.directory, replace(req, epsilon=0.5), d, tmp_path / "r.json", extension=EXTENSION,
                   reference_beta=ref)
    with pytest.raises(FitError, match="without DP only"):
        run_config(fed, fed.directory, model_request(MODEL, ["centre-a", "centre-b"], PERMIT), d, tmp_path / "r.json",
                   extension=EXTENSION, reference_beta=ref)
