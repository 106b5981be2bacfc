"""A log cut short no longer verifies: tampering done to the real SQLite file (rows deleted,
triggers dropped, the recorded head rewound, tables dropped, the tail rewritten) against the
store's recorded head, the head journal beside it and signed heads held outside the node — and
the honest limit: a cut made together with every local record shows only against an outside head."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner
from node_fed_helpers import make_fed

from oncofed.cli import main
from oncofed.keys.identity import Identity
from oncofed.keys.keystore import save_identity
from oncofed.node.audit import GENESIS, AuditError, AuditLog, entry_hash, journal_path
from oncofed.node.audit_heads import HeadError, open_head, sign_head
from oncofed.node.node import open_node
from oncofed.node.trust import NodeTrust
from oncofed.node.trust_audit import centre_keys

TRIGGERS = ("audit_log_no_update", "audit_log_no_delete", "audit_checkpoints_no_update",
            "audit_checkpoints_no_delete", "audit_head_no_delete", "audit_head_forward")


@pytest.fixture
def world(node_dir, tmp_path):
    """A node enrolled in a real federation (root pinned, registry installed: entries 1-3), with
    its identity key in node.toml and checkpoints every 4 entries."""
    fed = make_fed(tmp_path / "fed", centres=("centre-test",), researchers=("res-1",))
    identity = fed.identities["centre-test"]
    save_identity(identity, node_dir / "keys")
    with (node_dir / "node.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[identity]\nkey = "keys/identity.key"\n\n[audit]\ncheckpoint_every = 4\n')
    with open_node(node_dir) as node:
        fed.attach(node.paths.store, "centre-test").close()
    return node_dir, identity, fed


def _open(node_dir, identity):
    with open_node(node_dir) as node:
        return AuditLog.open(node.paths.store, identity, checkpoint_every=4,
                             head_journal=journal_path(node))


def _fill(node_dir, identity, n):
    log = _open(node_dir, identity)
    try:
        for i in range(n):
            log.append(event="query.verify", decision="refused", reason="expired", who="res-1",
                       query_hash=f"{i:064x}", detail={"i": i})
        return log.signed_head()
    finally:
        log.close()


def _verify(node_dir, heads=()):
    with open_node(node_dir) as node:
        keys = centre_keys(NodeTrust(node.db, "centre-test"), "centre-test")
        log = AuditLog(node.conn, head_journal=journal_path(node))
        return log.verify(keys.keys, heads=heads, key_source=keys.source)


def _sql(node_dir, *statements):
    """What an attacker with the file does: drop every trigger that would stop them, then edit."""
    conn = sqlite3.connect(node_dir / "store.sqlite", isolation_level=None)
    try:
        for name in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        for sql, *params in statements:
            conn.execute(sql, *params)
    finally:
        conn.close()


def _entry(node_dir, seq):
    conn = sqlite3.connect(node_dir / "store.sqlite")
    try:
        cur = conn.execute("SELECT * FROM audit_log WHERE seq = ?", (seq,))
        return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
    finally:
        conn.close()


def _cut_after(node_dir, seq, *, rewind_head):
    """Delete every entry after `seq` and every checkpoint covering them; optionally rewind the
    recorded head so the store agrees with itself."""
    statements = [("DELETE FROM audit_log WHERE seq > ?", (seq,)),
                  ("DELETE FROM audit_checkpoints WHERE seq >= ?", (seq,))]
    if rewind_head:
        statements.append(("UPDATE audit_head SET seq = ?, entry_hash = ?",
                           (seq, _entry(node_dir, seq)["entry_hash"])))
    _sql(node_dir, *statements)


def _journal_drop_last(node_dir, n=1):
    path = node_dir / "logs" / "audit-heads.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-n]))


# 3 trust entries, then 9 refusals; a checkpoint after entries 4, 8, 12 (markers 5, 9, 13) and
# a journal line per checkpoint covering its marker: 15 entries, 3 checkpoints, journal → 13.
N = 9


def test_an_intact_log_verifies_against_its_recorded_head_journal_and_a_given_head(world):
    node_dir, identity, _ = world
    head = _fill(node_dir, identity, N)
    report = _verify(node_dir, heads=[head])
    assert report.ok, report.problem
    assert (report.entries, report.checkpoints, report.recorded_head) == (15, 3, 15)
    assert (report.journal, report.journal_heads, report.witnessed_through) == ("kept", 3, 15)
    assert "centre-test's key from registry v1" in report.key_source
    assert "1 given; witnessed through entry 15" in report.summary()


def test_cutting_the_newest_checkpoint_its_marker_and_the_tail_is_found(world):
    node_dir, identity, _ = world
    _fill(node_dir, identity, N)
    _cut_after(node_dir, 12, rewind_head=False)  # checkpoint 3 and its marker 13 go too
    report = _verify(node_dir)
    assert not report.ok and report.first_bad == 13
    assert "the node recorded entry 15 as its newest: 3 entries were cut off" in report.problem


def test_a_cut_with_the_recorded_head_rewound_is_found_by_the_head_journal(world):
    node_dir, identity, _ = world
    _fill(node_dir, identity, N)
    _cut_after(node_dir, 12, rewind_head=True)
    report = _verify(node_dir)
    assert not report.ok and report.first_bad == 13
    assert "head journal line 3 says the log held entry 13; it ends at entry 12" in report.problem


def test_a_cut_with_every_local_record_fixed_shows_only_against_an_outside_head(world):
    """The honest limit: the store and the journal rewound together verify locally; a head the
    node signed into an earlier reply does not."""
    node_dir, identity, _ = world
    head = _fill(node_dir, identity, N)
    _cut_after(node_dir, 12, rewind_head=True)
    _journal_drop_last(node_dir)
    local = _verify(node_dir)
    assert local.ok and local.witnessed_through == 9
    assert "a cut after entry 9 shows only in the store's own head record" in local.summary()
    report = _verify(node_dir, heads=[("the hub's head", head)])
    assert not report.ok and report.first_bad == 13
    assert "the hub's head says the log held entry 15; it ends at entry 12" in report.problem


def test_deleting_the_whole_log_is_found(world):
    node_dir, identity, _ = world
    _fill(node_dir, identity, N)
    _sql(node_dir, ("DELETE FROM audit_log",), ("DELETE FROM audit_checkpoints",))
    report = _verify(node_dir)
    assert not report.ok and report.first_bad == 1 and "ends at entry 0" in report.problem


def test_dropping_and_recreating_the_audit_tables_is_found_by_the_journal(world):
    node_dir, identity, _ = world
    _fill(node_dir, identity, N)
    _sql(node_dir, ("DROP TABLE audit_log",), ("DROP TABLE audit_checkpoints",),
         ("DROP TABLE audit_head",), ("DELETE FROM schema_versions WHERE component = 'audit'",))
    report = _verify(node_dir)  # opening the node re-creates empty tables and a head at 0
    assert not report.ok and report.entries == 0
    assert "head journal line 1 says the log held entry 5; it ends at entry 0" in report.problem


def test_a_deleted_recorded_head_or_journal_is_found(world):
    node_dir, identity, _ = world
    _fill(node_dir, identity, N)
    journal = node_dir / "logs" / "audit-heads.jsonl"
    kept = journal.read_bytes()
    journal.unlink()
    report = _verify(node_dir)
    assert not report.ok and "head journal audit-heads.jsonl is missing" in report.problem
    journal.write_bytes(kept)
    _sql(node_dir, ("DELETE FROM audit_head",))
    report = _verify(node_dir)
    assert not report.ok and "recorded head (table audit_head) is missing" in report.problem


def test_entries_appended_behind_the_nodes_back_are_found(world):
    node_dir, identity, _ = world
    _fill(node_dir, identity, 2)
    last = _entry(node_dir, 6)
    forged = last | {"seq": 7, "who": "res-9", "prev_hash": last["entry_hash"]}
    forged["entry_hash"] = entry_hash(forged)
    names = ", ".join(forged)
    _sql(node_dir, (f"INSERT INTO audit_log ({names}) VALUES ({', '.join('?' * len(forged))})",  # noqa: S608 - fixed column names
                    tuple(forged.values())))
    report = _verify(node_dir)
    assert not report.ok and report.first_bad == 7 and "not appended by the node" in report.problem


def test_a_consistent_rewrite_of_the_unsigned_tail_is_found_by_an_outside_head(world):
    node_dir, identity, _ = world
    head = _fill(node_dir, identity, N)  # entries 14 and 15 come after the last checkpoint
    prev = _entry(node_dir, 13)["entry_hash"]
    statements = []
    for seq in (14, 15):
        row = _entry(node_dir, seq) | {"prev_hash": prev}
        row["reason"] = "replayed_nonce" if seq == 14 else row["reason"]
        row["entry_hash"] = prev = entry_hash(row)
        statements.append(("UPDATE audit_log SET reason = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                           (row["reason"], row["prev_hash"], row["entry_hash"], seq)))
    statements.append(("UPDATE audit_head SET entry_hash = ?", (prev,)))
    _sql(node_dir, *statements)
    assert _verify(node_dir).ok  # locally undetectable: no secret is needed to re-chain
    report = _verify(node_dir, heads=[head])
    assert not report.ok and report.first_bad == 15 and "was rewritten" in report.problem


def test_only_this_nodes_registry_key_makes_a_head(world, tmp_path):
    node_dir, identity, _ = world
    head = _fill(node_dir, identity, 2)
    mallory = Identity.generate("centre", "centre-test")
    forged = sign_head(mallory, 99, "ab" * 32, 0)
    report = _verify(node_dir, heads=[forged])
    assert not report.ok and "not a head signed by centre-test's key" in report.problem
    other = make_fed(tmp_path / "fed2", centres=("centre-other",), researchers=())
    theirs = sign_head(other.identities["centre-other"], 1, GENESIS, 0)
    assert not _verify(node_dir, heads=[theirs]).ok
    keyring = {identity.public.signing_key_id: identity.public}
    assert open_head(head, keyring, "centre-test").seq == 6
    with pytest.raises(HeadError):
        open_head(head[:-1] + bytes([head[-1] ^ 1]), keyring, "centre-test")
    with open_node(node_dir) as node, pytest.raises(AuditError, match="centre's key"):
        AuditLog(node.conn).verify(None, heads=[head])


def test_the_recorded_head_only_moves_forward_for_ordinary_writers(world):
    node_dir, identity, _ = world
    _fill(node_dir, identity, 2)
    conn = sqlite3.connect(node_dir / "store.sqlite")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="only moves forward"):
            conn.execute("UPDATE audit_head SET seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="only moves forward"):
            conn.execute("DELETE FROM audit_head")
    finally:
        conn.close()


def test_a_store_made_before_the_recorded_head_verifies_after_the_upgrade(world):
    node_dir, identity, _ = world
    _fill(node_dir, identity, 3)
    (node_dir / "logs" / "audit-heads.jsonl").unlink()
    _sql(node_dir, ("DROP TABLE audit_head",),  # what an oncofed before it left behind
         ("UPDATE schema_versions SET version = 1 WHERE component = 'audit'",))
    report = _verify(node_dir)  # migration 2 records the newest entry as the head
    assert report.ok and report.recorded_head == report.entries == 7


def test_cli_head_and_verify_head_files(world, tmp_path):
    node_dir, identity, _ = world
    _fill(node_dir, identity, N)
    run = CliRunner().invoke
    saved = tmp_path / "head.hex"
    out = run(main, ["node", "audit", "head", "-n", str(node_dir), "--out", str(saved)])
    assert out.exit_code == 0 and "entry 15" in out.output
    as_json = run(main, ["node", "audit", "head", "-n", str(node_dir), "--json"])
    (tmp_path / "head.json").write_text(as_json.output)
    raw = tmp_path / "head.bin"
    raw.write_bytes(bytes.fromhex(saved.read_text()))
    assert json.loads(as_json.output)["seq"] == 15
    args = ["node", "audit", "verify", "-n", str(node_dir)]
    for f in (saved, tmp_path / "head.json", raw):
        ok = run(main, [*args, "--head", str(f)])
        assert ok.exit_code == 0, ok.output
        assert "1 given; witnessed through entry 15" in ok.output
    _cut_after(node_dir, 12, rewind_head=True)
    _journal_drop_last(node_dir)
    assert run(main, args).exit_code == 0  # the limit, once more
    cut = run(main, [*args, "--head", str(saved), "--json"])
    assert cut.exit_code == 1 and json.loads(cut.output)["first_bad"] == 13
    (tmp_path / "junk").write_text("not a head")
    junk = run(main, [*args, "--head", str(tmp_path / "junk")])
    assert junk.exit_code == 2 and "holds no audit head" in junk.output


def test_cli_head_needs_an_identity_key(node_dir):
    result = CliRunner().invoke(main, ["node", "audit", "head", "-n", str(node_dir)])
    assert result.exit_code == 1 and "no node identity key" in result.output
