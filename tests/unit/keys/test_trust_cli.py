"""The trust commands as a centre admin, the authority and a researcher use them, on real files:
authority init → keys new → enroll → publish → node pin/update → permits issue/approve/revoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from oncofed.cli import main

ENV = {"ONCOFED_AUTHORITY_PASSPHRASE": "cli test root passphrase",
       "ONCOFED_KEY_PASSPHRASE": "cli test key passphrase"}


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], env=ENV)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_json(*args):
    return json.loads(run(*args, "--json").stdout)


@pytest.fixture
def world(tmp_path):
    """Authority with centre-a and res-1 enrolled, registry published, node pinned and current."""
    auth, node = tmp_path / "auth", tmp_path / "node"
    fp = run_json("authority", "init", auth, "--federation", "cli-test")["root_fingerprint"]
    run("keys", "new", "--role", "centre", "--id", "centre-a", "--out", tmp_path / "ka",
        "--no-passphrase")
    created = run_json("keys", "new", "--role", "researcher", "--id", "res-1",
                       "--out", tmp_path / "kr")
    assert created["encrypted"]
    run("authority", "enroll", "centre", tmp_path / "ka" / "enrolment-request.bin", "-a", auth)
    run("authority", "enroll", "researcher", tmp_path / "kr" / "enrolment-request.bin",
        "-a", auth)
    run("authority", "registry", "publish", "-a", auth)
    run("node", "init", node, "--id", "centre-a")
    run("node", "trust", "pin", auth / "root.cert.pem", "--fingerprint", fp, "-n", node)
    run("node", "trust", "update", auth / "published" / "registry.bin",
        auth / "published" / "revocations.bin", "-n", node)
    return tmp_path, auth, node


def test_keys_new_writes_private_files_0600_and_a_request(world):
    tmp, _, _ = world
    for name in ("identity.key", "tls-centre-centre-a.key.pem"):
        assert os.stat(tmp / "ka" / name).st_mode & 0o777 == 0o600
    shown = run_json("keys", "show", tmp / "ka" / "enrolment-request.bin")
    assert shown["member_id"] == "centre-a"
    public = run_json("keys", "show", tmp / "ka")
    assert public["ed25519_sha256"] == shown["ed25519_sha256"]
    assert public["x25519_sha256"] == shown["x25519_sha256"]


def test_node_is_ready_and_shows_new_members(world):
    _, _, node = world
    status = run_json("node", "trust", "status", "-n", node)
    assert status["ready"], status
    assert status["registry_version"] == 1
    new = run_json("node", "trust", "members", "--new", "-n", node)
    assert [m["member_id"] for m in new["added"]] == ["centre-a", "res-1"]


def test_permit_lifecycle(world):
    tmp, auth, node = world
    issued = run_json("authority", "permits", "issue", "-a", auth, "--researcher", "res-1",
                      "--title", "Survival by sex", "--analysis", "count", "--field", "sex",
                      "--min-cell-count", "10", "--valid-until", "2099-01-01",
                      "--out", tmp / "p.permit")
    sha = issued["sha256"]
    listed = run_json("node", "permits", "list", "-n", node)
    assert listed == []
    approved = run_json("node", "permits", "approve", tmp / "p.permit", "-n", node)
    assert (approved["sha256"], approved["status"]) == (sha, "approved")
    shown = run_json("node", "permits", "show", sha[:10], "-n", node)
    assert shown["allowed_fields"] == ["sex"]
    run("authority", "permits", "revoke", issued["permit_id"], "--reason", "ended", "-a", auth)
    run("node", "trust", "update", auth / "published" / "revocations.bin", "-n", node)
    assert run_json("node", "permits", "list", "-n", node)[0]["status"] == "revoked"
    assert run_json("authority", "permits", "list", "-a", auth)[issued["permit_id"]]["revoked"]


def test_refusals_are_one_line_with_a_nonzero_exit(world):
    _, auth, node = world
    bad_field = run("authority", "permits", "issue", "-a", auth, "--researcher", "res-1",
                    "--title", "t", "--analysis", "count", "--field", "no_such_field",
                    "--min-cell-count", "5", "--valid-until", "2099-01-01", ok=False)
    assert bad_field.exit_code == 2
    assert "not dictionary fields: no_such_field" in bad_field.output
    old = auth / "published" / "registry-v000001.bin"
    run("authority", "registry", "publish", "-a", auth)
    run("node", "trust", "update", auth / "published" / "registry.bin", "-n", node)
    older = run("node", "trust", "update", old, "-n", node, ok=False)
    assert older.exit_code == 1
    assert older.stderr.strip().splitlines() == [
        "error: registry version 1 is older than the version 2 this node holds; refused"]
    unknown = run("node", "permits", "approve", "deadbeefdeadbeef", "-n", node, ok=False)
    assert unknown.exit_code == 1
    assert "no permit" in unknown.stderr


def test_hub_init_and_enrol_as_hub(world):
    tmp, auth, _ = world
    run("hub", "init", tmp / "hub", "--no-passphrase")
    enrolled = run_json("authority", "enroll", "hub", tmp / "hub" / "enrolment-request.bin",
                        "-a", auth)
    assert (enrolled["role"], enrolled["member_id"]) == ("hub", "hub")
    members = run_json("authority", "members", "list", "-a", auth)
    assert {m["member_id"] for m in members} == {"centre-a", "res-1", "hub"}


def test_loading_a_world_readable_key_fails_in_a_real_process(world):
    """A subprocess, as an admin would run it: the error is one readable line, exit 1."""
    tmp, _, _ = world
    key = tmp / "ka" / "identity.key"
    os.chmod(key, 0o644)
    code = ("from pathlib import Path; from oncofed.keys.keystore import load_identity; "
            f"load_identity(Path({str(key)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "accessible by other users" in out.stderr
    assert f"chmod 600 {key}" in out.stderr


def test_status_exits_4_while_not_answering_and_0_when_ready(world, tmp_path):
    run("node", "init", tmp_path / "n", "--id", "centre-a")
    for extra in ((), ("--check",)):  # --check is kept for old scripts; the code is the same
        result = run("node", "trust", "status", *extra, "-n", tmp_path / "n", ok=False)
        assert result.exit_code == 4
        assert result.output.startswith("NOT ANSWERING (not pinned): no federation root pinned")
    as_json = run("node", "trust", "status", "--json", "-n", tmp_path / "n", ok=False)
    assert as_json.exit_code == 4 and json.loads(as_json.stdout)["state"] == "not-pinned"
    _, _, node = world
    ready = run("node", "trust", "status", "-n", node)
    assert ready.output.startswith("READY: registry v1 until ") and "(ready)" not in ready.output
    missing = run("node", "trust", "status", "-n", tmp_path / "nowhere", ok=False)
    assert missing.exit_code == 1 and "--id CENTRE_ID" in missing.output


def test_a_survival_permit_names_its_outcomes_and_keeps_field_case(world):
    tmp, auth, node = world
    args = ("authority", "permits", "issue", "-a", auth, "--researcher", "res-1", "--title", "RFS by cT",
            "--analysis", "kaplan_meier", "--field", "cT", "--field", "pN", "--min-cell-count", "10",
            "--valid-until", "2099-01-01")
    missing = run(*args, ok=False)
    assert missing.exit_code != 0 and "must name the outcome(s)" in missing.output
    assert len(missing.output.strip().splitlines()) == 1 and "Traceback" not in missing.output
    issued = run_json(*args, "--outcome", "rfs", "--out", tmp / "s.permit")
    run("node", "permits", "approve", tmp / "s.permit", "-n", node)
    shown = run_json("node", "permits", "show", issued["sha256"][:10], "-n", node)
    assert shown["allowed_fields"] == ["cT", "pN"] and shown["allowed_outcomes"] == ["rfs"]
    text = run("node", "permits", "show", issued["sha256"][:10], "-n", node).output
    assert "outcomes         rfs" in text
    wrong = run(*args, "--outcome", "dfs", ok=False)
    assert wrong.exit_code == 2 and "dfs" in wrong.output
