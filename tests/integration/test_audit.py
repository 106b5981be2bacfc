"""The audit log on a real node store: tampering done to the SQLite file with sqlite3 — edits,
deletions, insertions, reorders, consistent rewrites, forged checkpoints — is found, an intact
log verifies, and the CLI's exit codes say which."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner
from node_fed_helpers import make_fed

from oncofed.cli import main
from oncofed.keys.envelope import sign
from oncofed.keys.identity import Identity
from oncofed.keys.keystore import save_identity
from oncofed.node.audit import (
    COLUMNS,
    TAG_CHECKPOINT,
    AuditError,
    AuditLog,
    checkpoint_body,
    entry_hash,
)
from oncofed.node.node import open_node


@pytest.fixture
def federation(tmp_path):
    """A real federation in which the node's centre is enrolled (its key in the registry)."""
    return make_fed(tmp_path / "fed", centres=("centre-test",), researchers=("res-1",))


def _attach(node_dir, federation):
    """Pin the root and install the registry: what `audit verify` takes the centre's key from."""
    with open_node(node_dir) as node:
        federation.attach(node.paths.store, "centre-test").close()


@pytest.fixture
def signed_node(node_dir, federation):
    """A node with an identity key named in node.toml ([identity] key), enrolled in `federation`."""
    identity = federation.identities["centre-test"]
    save_identity(identity, node_dir / "keys")
    with (node_dir / "node.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[identity]\nkey = "keys/identity.key"\n\n[audit]\ncheckpoint_every = 4\n')
    return node_dir, identity


def _fill(node_dir, identity, n=10, every=4):
    with open_node(node_dir) as node:
        log = AuditLog.open(node.paths.store, identity, checkpoint_every=every)
        for i in range(n):
            log.append(event="query.verify", decision="accepted" if i % 3 else "refused",
                       reason="" if i % 3 else "expired", who=f"res-{i % 2 + 1}",
                       permit_hash=f"{i:064x}", query_hash=f"{i + 100:064x}", analysis="count",
                       fields=["sex", "er"], detail={"i": i})
        log.close()


def _verify(node_dir, identity):
    with open_node(node_dir) as node:
        return AuditLog(node.conn).verify(identity.public if identity else None)


def _tamper(node_dir, *statements, params=()):
    """What an attacker with file access does: drop the append-only triggers and edit."""
    conn = sqlite3.connect(node_dir / "store.sqlite", isolation_level=None)
    try:
        for name in ("audit_log_no_update", "audit_log_no_delete", "audit_checkpoints_no_update",
                     "audit_checkpoints_no_delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        for i, sql in enumerate(statements):
            conn.execute(sql, params[i] if i < len(params) else ())
    finally:
        conn.close()


def _row(node_dir, seq):
    conn = sqlite3.connect(node_dir / "store.sqlite")
    try:
        cur = conn.execute("SELECT * FROM audit_log WHERE seq = ?", (seq,))
        return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
    finally:
        conn.close()


def _insert(row):
    names = [*COLUMNS, "prev_hash", "entry_hash"]
    return (f"INSERT INTO audit_log ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",  # noqa: S608 - fixed column names
            [row[n] for n in names])


def test_an_intact_log_verifies_with_its_checkpoints(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    report = _verify(node_dir, identity)
    assert report.ok, report.problem
    # 10 entries, and every 4th entry is signed and followed by its checkpoint entry (5, 9, 13)
    assert (report.entries, report.checkpoints, report.signatures) == (13, 3, "verified")
    assert report.signed_through == 12 and report.unsigned_tail == 1
    assert _verify(node_dir, None).signatures == "unchecked"


def test_an_edited_entry_is_found(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    _tamper(node_dir, "UPDATE audit_log SET decision = 'refused' WHERE seq = 7")
    report = _verify(node_dir, identity)
    assert not report.ok and report.first_bad == 7 and "does not match its hash" in report.problem


def test_an_edit_with_a_recomputed_hash_breaks_the_link_to_the_next_entry(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    row = _row(node_dir, 7) | {"who": "someone-else"}
    _tamper(node_dir, "UPDATE audit_log SET who = ?, entry_hash = ? WHERE seq = 7",
            params=[(row["who"], entry_hash(row))])
    report = _verify(node_dir, identity)
    assert not report.ok and report.first_bad == 8 and "does not follow entry 7" in report.problem


def test_a_deleted_entry_is_found(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    _tamper(node_dir, "DELETE FROM audit_log WHERE seq = 3")
    report = _verify(node_dir, identity)
    assert not report.ok and report.first_bad == 3 and "missing" in report.problem


def test_an_inserted_entry_is_found_even_with_a_correct_hash(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    prev = _row(node_dir, 2)
    forged = prev | {"seq": 3, "who": "res-9", "decision": "accepted", "prev_hash": prev["entry_hash"]}
    forged["entry_hash"] = entry_hash(forged)
    sql, values = _insert(forged)
    # make room at 3 by shifting every later entry up by one, then put the forgery in the gap
    _tamper(node_dir, "UPDATE audit_log SET seq = -seq WHERE seq >= 3",
            "UPDATE audit_log SET seq = 1 - seq WHERE seq < 0", sql, params=[(), (), values])
    report = _verify(node_dir, identity)
    assert not report.ok and report.first_bad == 4


def test_reordered_entries_are_found(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    _tamper(node_dir, "UPDATE audit_log SET seq = -1 WHERE seq = 5",
            "UPDATE audit_log SET seq = 5 WHERE seq = 6", "UPDATE audit_log SET seq = 6 WHERE seq = -1")
    report = _verify(node_dir, identity)
    assert not report.ok and report.first_bad == 5 and "moved" in report.problem


def test_a_consistent_rewrite_is_caught_by_a_signed_checkpoint(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    rows = [_row(node_dir, s) for s in range(1, 14)]
    statements, params = [], []
    prev = rows[1]["entry_hash"]
    for row in rows[2:]:  # rewrite entries 3.. and re-chain them, as a careful attacker would
        row = row | {"prev_hash": prev}
        if row["seq"] == 3:
            row["who"] = "nobody"
        row["entry_hash"] = prev = entry_hash(row)
        statements.append("UPDATE audit_log SET who = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?")
        params.append((row["who"], row["prev_hash"], row["entry_hash"], row["seq"]))
    _tamper(node_dir, *statements, params=params)
    report = _verify(node_dir, identity)
    assert not report.ok and report.first_bad == 4 and "rewritten" in report.problem


def test_a_forged_checkpoint_signature_is_found(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    _tamper(node_dir, "UPDATE audit_checkpoints SET envelope = ? WHERE id = 2",
            params=[(_checkpoint_bytes(node_dir, 2, flip=True),)])
    report = _verify(node_dir, identity)
    assert not report.ok and report.first_bad == 8 and "signature does not verify" in report.problem


def test_a_checkpoint_re_signed_by_another_key_is_found(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    cp = _row_cp(node_dir, 1)
    mallory = Identity.generate("centre", "centre-test")
    forged = sign(mallory, TAG_CHECKPOINT, checkpoint_body("centre-test", 1, cp["seq"],
                                                            cp["entry_hash"], cp["at_ms"]))
    _tamper(node_dir, "UPDATE audit_checkpoints SET envelope = ? WHERE id = 1", params=[(forged,)])
    assert "signature does not verify" in _verify(node_dir, identity).problem


@pytest.mark.parametrize(("checkpoint", "message"), [(2, "checkpoint 2 is missing"),
                                                      (3, "checkpoint 3, which is missing")])
def test_a_deleted_checkpoint_is_found(signed_node, checkpoint, message):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    _tamper(node_dir, "DELETE FROM audit_checkpoints WHERE id = ?", params=[(checkpoint,)])
    report = _verify(node_dir, identity)
    assert not report.ok and message in report.problem


def test_truncating_entries_a_checkpoint_covers_is_found(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity)
    _tamper(node_dir, "DELETE FROM audit_log WHERE seq >= 11")
    report = _verify(node_dir, identity)
    assert not report.ok and "truncated" in report.problem


def test_the_tables_are_append_only_for_ordinary_writers(signed_node):
    node_dir, identity = signed_node
    _fill(node_dir, identity, n=5)
    conn = sqlite3.connect(node_dir / "store.sqlite")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_log SET who = 'x' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_checkpoints")
    finally:
        conn.close()


def test_concurrent_appenders_on_separate_connections_keep_one_chain(signed_node):
    node_dir, identity = signed_node
    with open_node(node_dir) as node:
        logs = [AuditLog.open(node.paths.store, identity, checkpoint_every=7) for _ in range(4)]
    barrier = threading.Barrier(len(logs))

    def run(log):
        barrier.wait()
        for _ in range(15):
            log.append(event="query.verify", decision="refused", reason="expired", who="res-1")

    threads = [threading.Thread(target=run, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for log in logs:
        log.close()
    report = _verify(node_dir, identity)
    assert report.ok, report.problem
    assert report.entries == 60 + report.checkpoints


def test_without_an_identity_nothing_is_signed_and_verify_says_so(node_dir):
    with open_node(node_dir) as node:
        log = AuditLog(node.conn)
        log.append(event="query.local", decision="answered", who="local-admin")
        with pytest.raises(AuditError, match="no node identity key"):
            log.checkpoint()
        report = log.verify()
    assert report.ok and report.signatures == "none" and "not signed" in report.summary()


def test_cli_verify_exit_codes_show_export_and_checkpoint(signed_node, federation, tmp_path):
    node_dir, identity = signed_node
    _fill(node_dir, identity, n=5)  # entries 1-6 (a checkpoint after the 4th)
    run = CliRunner().invoke
    unchecked = run(main, ["node", "audit", "verify", "-n", str(node_dir)])
    assert unchecked.exit_code == 0 and "NOT checked (no federation root pinned" in unchecked.output
    _attach(node_dir, federation)  # entries 7-9: trust.pin, trust.registry, trust.revocations
    ok = run(main, ["node", "audit", "verify", "-n", str(node_dir)])
    assert ok.exit_code == 0 and ok.output.startswith("intact: 9 entries")
    assert "signed through entry 4" in ok.output and "centre-test's key from registry v1" in ok.output
    cp = run(main, ["node", "audit", "checkpoint", "-n", str(node_dir), "--json"])
    assert cp.exit_code == 0 and json.loads(cp.output)["seq"] == 9
    shown = run(main, ["node", "audit", "show", "-n", str(node_dir), "--limit", "3", "--json"])
    assert [e["seq"] for e in json.loads(shown.output)] == [8, 9, 10]
    assert run(main, ["node", "audit", "export", str(tmp_path / "a.csv"), "--format", "csv",
                      "-n", str(node_dir)]).exit_code == 0
    with (tmp_path / "a.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 10
    run(main, ["node", "audit", "export", str(tmp_path / "a.jsonl"), "-n", str(node_dir)])
    kinds = [json.loads(line)["type"] for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert kinds.count("entry") == 10 and kinds.count("checkpoint") == 2
    _tamper(node_dir, "UPDATE audit_log SET analysis = 'crosstab' WHERE seq = 2")
    out = subprocess.run([sys.executable, "-m", "oncofed", "node", "audit", "verify", "-n", str(node_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stdout.strip().splitlines() == [out.stdout.strip()] and "TAMPERED at entry 2" in out.stdout
    as_json = run(main, ["node", "audit", "verify", "-n", str(node_dir), "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.output)["first_bad"] == 2


def test_cli_verify_with_a_foreign_public_key_is_refused(signed_node, tmp_path):
    node_dir, identity = signed_node
    _fill(node_dir, identity, n=5)
    other = Identity.generate("centre", "centre-other")
    _, pub = save_identity(other, tmp_path / "other")
    result = CliRunner().invoke(main, ["node", "audit", "verify", "-n", str(node_dir),
                                       "--insecure-public-key", str(pub)])
    assert result.exit_code == 1 and "not this node's" in result.output


def test_verify_trusts_the_registry_not_the_key_file_next_to_the_node(signed_node, federation):
    """Whoever can rewrite the log can also swap keys/identity.pub (and re-sign with their own
    key): `verify` takes the centre's key from the root-signed registry instead."""
    node_dir, identity = signed_node
    _fill(node_dir, identity, n=5)
    _attach(node_dir, federation)
    mallory = Identity.generate("centre", "centre-test")
    for name in ("identity.key", "identity.pub"):
        (node_dir / "keys" / name).unlink()
    save_identity(mallory, node_dir / "keys")  # the attacker's key where node.toml points
    cp = _row_cp(node_dir, 1)
    forged = sign(mallory, TAG_CHECKPOINT, checkpoint_body("centre-test", 1, cp["seq"],
                                                            cp["entry_hash"], cp["at_ms"]))
    _tamper(node_dir, "UPDATE audit_checkpoints SET envelope = ? WHERE id = 1", params=[(forged,)])
    run = CliRunner().invoke
    result = run(main, ["node", "audit", "verify", "-n", str(node_dir)])
    assert result.exit_code == 1 and "checkpoint 1: the signature does not verify" in result.output
    loud = run(main, ["node", "audit", "verify", "-n", str(node_dir), "--insecure-public-key",
                      str(node_dir / "keys" / "identity.pub")])
    assert loud.exit_code == 0 and "INSECURE: key file" in loud.output
    wrong_root = run(main, ["node", "audit", "verify", "-n", str(node_dir),
                            "--root-fingerprint", "ab" * 32])
    assert wrong_root.exit_code == 1 and "not the root you expected" in wrong_root.output
    right_root = run(main, ["node", "audit", "verify", "-n", str(node_dir),
                            "--root-fingerprint", federation.authority.root.fingerprint])
    assert right_root.exit_code == 1 and "TAMPERED" in right_root.output


def _row_cp(node_dir, cid):
    conn = sqlite3.connect(node_dir / "store.sqlite")
    try:
        cur = conn.execute("SELECT * FROM audit_checkpoints WHERE id = ?", (cid,))
        return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
    finally:
        conn.close()


def _checkpoint_bytes(node_dir, cid, *, flip):
    data = bytearray(_row_cp(node_dir, cid)["envelope"])
    if flip:
        data[-1] ^= 0x01
    return bytes(data)
