"""What the audit log records beyond queries, and what hostile text becomes in it, on a real
federation and a real node store: trust pins, registry and revocation installs (and refusals),
permit decisions; a 900 KB field name with terminal escapes through the real verifier; legacy
rows with formulas and escape codes through `audit show` and `audit export`; seen nonces and the
admin API's signed heads as evidence of the log's length."""

from __future__ import annotations

import csv
import sqlite3
import time

import pytest
from click.testing import CliRunner
from node_fed_helpers import DAY, make_fed, query_body, signed

from oncofed.cli import main
from oncofed.keys.errors import TrustError
from oncofed.keys.keystore import save_identity
from oncofed.node.audit import AuditLog, canonical_json
from oncofed.node.audit_heads import open_head
from oncofed.node.node import open_node
from oncofed.node.service import admin_channel, start_admin_server
from oncofed.node.trust import NodeTrust
from oncofed.node.trust_audit import centre_keys
from oncofed.node.verify import QueryVerifier, RequestRefused
from oncofed.v1 import admin_pb2, admin_pb2_grpc, query_pb2

ESC = "\x1b]0;pwned\x07\x1b[2J"


@pytest.fixture
def fed(tmp_path):
    return make_fed(tmp_path / "fed", centres=("centre-test", "centre-b"), researchers=("res-1",))


def _entries(node_dir):
    with open_node(node_dir) as node:
        return AuditLog(node.conn).entries()


def _verify(node_dir, heads=()):
    with open_node(node_dir) as node:
        keys = centre_keys(NodeTrust(node.db, "centre-test"), "centre-test")
        return AuditLog(node.conn).verify(keys.keys, heads=heads)


def test_trust_pins_installs_and_permit_decisions_are_audited(fed, node_dir):
    with open_node(node_dir) as node:
        trust = fed.attach(node.paths.store, "centre-test")
    try:
        approved = fed.permit(trust)                       # add + approve
        refused = fed.permit(trust, approve=False, project_title="Second")
        trust.refuse(refused, by="alice", reason="no ethics vote")
        trust.revoke(approved, by="alice", reason="project ended")
        third = fed.permit(trust, project_title="Third")
        fed.authority.revoke_permit(trust.permit(third).permit.permit_id, "consent withdrawn")
        fed.authority.publish()
        trust.install(fed.published("revocations.bin"))
        other = make_fed(node_dir.parent / "other")
        with pytest.raises(TrustError, match="already pinned"):  # refused before any write
            trust.pin_root(other.root_pem, other.authority.root.fingerprint)
        with pytest.raises(TrustError, match="pinned federation root"):
            trust.update_registry(other.published("registry.bin"))
    finally:
        trust.close()
    got = [(e.event, e.decision, e.who, e.permit_hash, e.reason) for e in _entries(node_dir)]
    assert got == [
        ("trust.pin", "pinned", "local-admin", "", ""),
        ("trust.registry", "installed", "local-admin", "", ""),
        ("trust.revocations", "installed", "local-admin", "", ""),
        ("permit.add", "pending", "local-admin", approved, ""),
        ("permit.approve", "approved", "local-admin", approved, ""),
        ("permit.add", "pending", "local-admin", refused, ""),
        ("permit.refuse", "refused", "local-admin", refused, ""),
        ("permit.revoke", "revoked", "local-admin", approved, ""),
        ("permit.add", "pending", "local-admin", third, ""),
        ("permit.approve", "approved", "local-admin", third, ""),
        ("trust.revocations", "installed", "local-admin", "", ""),
        ("permit.revoke", "revoked", "authority", third, ""),
        ("trust.registry", "refused", "local-admin", "", "not_signed_by_root"),
    ]
    entries = _entries(node_dir)
    assert entries[1].detail["added"] == ["centre-b", "centre-test", "res-1"]
    assert entries[6].detail == {"permit_id": entries[6].detail["permit_id"], "by": "alice",
                                 "was": "pending", "reason": "no ethics vote"}
    assert entries[11].detail["reason"] == "consent withdrawn"
    assert entries[11].detail["revocations"] == entries[10].detail["version"] > 1
    assert _verify(node_dir).ok


def test_a_trust_change_and_its_entry_commit_together(fed, node_dir):
    with open_node(node_dir) as node:
        trust = fed.attach(node.paths.store, "centre-test")
        sha = fed.permit(trust, approve=False)
        conn = sqlite3.connect(node.paths.store)
        conn.execute("DROP TABLE audit_head")  # the next append fails
        conn.close()
        with pytest.raises(sqlite3.OperationalError):
            trust.approve(sha, by="alice")
        assert trust.permit(sha).status == "pending"
        trust.close()


def test_an_older_registry_from_the_hub_is_refused_and_the_attempt_logged(fed, node_dir):
    with open_node(node_dir) as node:
        trust = fed.attach(node.paths.store, "centre-test")
        old = fed.published("registry.bin")
        fed.enroll("researcher", "res-2")
        fed.authority.publish()
        trust.install(fed.published("registry.bin"))
        with pytest.raises(TrustError, match="older than the version 2"):
            trust.install(old)
        trust.close()
    last = _entries(node_dir)[-1]
    assert (last.event, last.decision, last.reason) == ("trust.registry", "refused", "older_version")


def test_cli_permit_decisions_are_audited_with_the_admins_name(fed, node_dir, tmp_path):
    with open_node(node_dir) as node:
        trust = fed.attach(node.paths.store, "centre-test")
        now = int(time.time())
        _, permit = fed.authority.issue_permit(
            researcher_id="res-1", project_title="CLI", analyses=["count"], fields=["sex"],
            min_cell_count=10, not_before=now - 60, not_after=now + DAY)
        trust.close()
    (tmp_path / "permit.bin").write_bytes(permit.data)
    run = CliRunner().invoke
    assert run(main, ["node", "permits", "approve", str(tmp_path / "permit.bin"), "-n", str(node_dir)]).exit_code == 0
    assert run(main, ["node", "permits", "revoke", permit.sha256, "--reason", "done",
                      "-n", str(node_dir)]).exit_code == 0
    events = [(e.event, e.decision) for e in _entries(node_dir)][-3:]
    assert events == [("permit.add", "pending"), ("permit.approve", "approved"), ("permit.revoke", "revoked")]
    assert _entries(node_dir)[-1].detail["by"]  # the OS user who ran the command


@pytest.fixture
def answering(fed, node_dir):
    with open_node(node_dir) as node:
        trust = fed.attach(node.paths.store, "centre-test")
        sha = fed.permit(trust, analyses=["count"], fields=["sex", "topography"])
        trust.close()
        verifier = QueryVerifier.for_node(node)
        try:
            yield node, verifier, sha
        finally:
            verifier.close()


def test_a_900_kb_field_name_with_escape_codes_is_stored_bounded_and_inert(fed, answering, node_dir):
    node, verifier, sha = answering
    body = query_body(sha, targets=("centre-test",))
    huge = "=HYPERLINK(" + "x" * 900_000 + ESC
    body.cohort.all_of.items.add().equals.CopyFrom(query_pb2.Equals(field=huge, value="1"))
    body.cohort.all_of.items.add().equals.CopyFrom(query_pb2.Equals(field=ESC, value="1"))
    envelope = signed(fed.identities["res-1"], body)
    assert len(envelope) > 900_000
    with pytest.raises(RequestRefused) as info:
        verifier.verify(envelope)
    assert info.value.reason == "field_not_allowed"
    row = node.conn.execute("SELECT fields, detail, length(fields) + length(detail) FROM audit_log "
                            "ORDER BY seq DESC LIMIT 1").fetchone()
    assert row[2] < 20_000  # not 900 KB
    assert "\x1b" not in row[0] + row[1] and "\x07" not in row[0] + row[1]
    entry = AuditLog(node.conn).entries(limit=1)[0]
    tokens = [f for f in entry.fields if f.startswith("?")]
    assert len(tokens) == 2 and f":{len(huge)}" in " ".join(tokens)
    assert {"sex", "topography"} <= set(entry.fields)
    assert len(entry.detail["message"]) < 600 and "\\x1b" in entry.detail["message"]
    assert _verify(node_dir).ok


def _legacy_entry(node):
    """An entry as an oncofed before sanitising stored it: researcher text verbatim."""
    log = AuditLog(node.conn)
    with log.transaction():
        log._insert({"event": "query.verify", "who": "@SUM(1+1)", "permit_hash": "", "query_hash": "",
                     "analysis": "count", "fields": canonical_json(["=HYPERLINK(\"http://x\")", ESC]),
                     "decision": "refused", "reason": "field_not_allowed", "cells_suppressed": 0,
                     "cells_perturbed": 0, "epsilon_spent": 0.0,
                     "detail": canonical_json({"message": "-1+2" + ESC}), "at_ms": 0})


def test_show_and_export_neutralise_what_old_entries_hold(node_dir, tmp_path):
    with open_node(node_dir) as node:
        _legacy_entry(node)
    run = CliRunner().invoke
    shown = run(main, ["node", "audit", "show", "-n", str(node_dir)])
    assert shown.exit_code == 0 and "\x1b" not in shown.output and "\x07" not in shown.output
    assert "\\x1b]0;pwned\\x07" in shown.output
    as_json = run(main, ["node", "audit", "show", "-n", str(node_dir), "--json"])
    assert "\x1b" not in as_json.output
    out = tmp_path / "log.csv"
    assert run(main, ["node", "audit", "export", str(out), "--format", "csv", "-n", str(node_dir)]).exit_code == 0
    text = out.read_text()
    assert "\x1b" not in text
    with out.open(newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["who"] == "'@SUM(1+1)" and row["fields"].startswith("'=HYPERLINK")
    jsonl = tmp_path / "log.jsonl"
    run(main, ["node", "audit", "export", str(jsonl), "-n", str(node_dir)])
    assert "\x1b" not in jsonl.read_text()


def test_a_cut_that_removes_a_queries_entries_is_found_by_its_seen_nonce(fed, answering, node_dir):
    node, verifier, sha = answering
    before = AuditLog(node.conn).head()
    verifier.verify(signed(fed.identities["res-1"], query_body(sha, targets=("centre-test",))))
    conn = sqlite3.connect(node.paths.store, isolation_level=None)
    for name in ("audit_log_no_delete", "audit_head_forward"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DELETE FROM audit_log WHERE seq > ?", (before[0],))
    conn.execute("UPDATE audit_head SET seq = ?, entry_hash = ?", before)
    conn.close()
    report = _verify(node_dir)
    assert not report.ok and "remembers 1 query (seen nonces" in report.problem


def test_every_admin_api_reply_carries_a_signed_head_that_outlives_a_cut(fed, node_dir):
    identity = fed.identities["centre-test"]
    save_identity(identity, node_dir / "keys")
    with (node_dir / "node.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[identity]\nkey = "keys/identity.key"\n')
    keyring = {identity.public.signing_key_id: identity.public}
    with open_node(node_dir) as node:
        fed.attach(node.paths.store, "centre-test").close()
        server = start_admin_server(node)
        try:
            with admin_channel(server.endpoint) as ch:
                stub = admin_pb2_grpc.NodeAdminStub(ch)
                described = stub.Describe(admin_pb2.DescribeRequest(), timeout=5).audit_head
                status = stub.Status(admin_pb2.StatusRequest(), timeout=5).audit_head
                AuditLog(node.conn).append(event="query.local", decision="answered", who="local-admin")
                alone = stub.AuditHead(admin_pb2.AuditHeadRequest(), timeout=5).audit_head
        finally:
            server.stop(grace=1)
    heads = [open_head(h, keyring, "centre-test") for h in (described, status, alone)]
    assert [h.seq for h in heads] == [3, 3, 4]
    assert _verify(node_dir, heads=[alone]).ok
    conn = sqlite3.connect(node_dir / "store.sqlite", isolation_level=None)
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DROP TRIGGER audit_head_forward")
    conn.execute("DELETE FROM audit_log WHERE seq = 4")
    conn.execute("UPDATE audit_head SET seq = 3, entry_hash = ?", (heads[0].entry_hash,))
    conn.close()
    assert _verify(node_dir).ok  # nothing local remembers entry 4
    report = _verify(node_dir, heads=[("the reply's head", alone)])
    assert not report.ok and "the reply's head says the log held entry 4" in report.problem


def test_without_an_identity_key_replies_carry_no_head(node_dir):
    with open_node(node_dir) as node:
        server = start_admin_server(node)
        try:
            with admin_channel(server.endpoint) as ch:
                reply = admin_pb2_grpc.NodeAdminStub(ch).AuditHead(admin_pb2.AuditHeadRequest(), timeout=5)
        finally:
            server.stop(grace=1)
    assert reply.audit_head == b""
