"""The hub as a witness (DESIGN §10): through a real hub on 127.0.0.1 with mutual TLS, every
connector reply carries the node's signed audit head, the hub keeps the newest per centre, and a
log cut short afterwards — with every record inside the node rewound — fails `verify` against it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from federation_world import make_world

from oncofed.keys.tls import load_tls_files
from oncofed.node.audit import AuditLog
from oncofed.node.audit_heads import open_head, read_head_file
from oncofed.node.connector import Connector, HubLink
from oncofed.node.trust import NodeTrust
from oncofed.node.trust_audit import centre_keys


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path / "fed", centres=("centre-a", "centre-b"), patients=60)
    w.start_hub()
    logs = []
    for c in w.centres.values():
        identity = w.fed.identities[c.centre_id]
        log = AuditLog.open(c.node.paths.store, identity)  # what `node serve` gives its connector
        logs.append(log)
        tls = load_tls_files(w.fed.cert_path("centre", c.centre_id), w.fed.tls_keys[c.centre_id],
                             w.fed.directory / "root.cert.pem")
        c.connector = Connector(c.pipeline, identity, tls, HubLink(w.target), min_participants=2,
                                audit_head=log.signed_head).start()
    w.wait_connected()
    yield w
    w.close()
    for log in logs:
        log.close()


def _stop_and_drain(world, centre_id):
    """Stop a centre's connector and wait until the hub has handled its last call: a pull sent
    just before the stop still reaches the hub, which records it (and its head) a moment later."""
    world.centres[centre_id].stop()
    service = world.hub.service
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with service._seen_lock:
            before = service._last_seen.get(centre_id)
        time.sleep(0.3)
        with service._seen_lock:
            if service._last_seen.get(centre_id) == before:
                return
    raise AssertionError(f"the hub still hears from {centre_id} after its connector stopped")


def _verify(node, heads=()):
    keys = centre_keys(NodeTrust(node.db, node.config.node_id), node.config.node_id)
    return AuditLog(node.conn).verify(keys.keys, heads=heads)


def test_the_hub_keeps_each_centres_head_and_a_later_cut_fails_against_it(world):
    client = world.client()
    sub = client.submit(world.body("count"))
    assert client.follow(sub, timeout=60) is not None
    centre = world.centres["centre-a"]
    node = centre.node
    keyring = {k.signing_key_id: k for k in centre_keys(NodeTrust(node.db, "centre-a"), "centre-a").keys}
    newest = AuditLog(node.conn).head()[0]
    deadline = time.monotonic() + 30
    while True:  # the next poll after the answer carries the head that covers it
        held = {c: h for c, _, h, _seq in world.hub.store.centres() if h}
        head = open_head(held["centre-a"], keyring, "centre-a") if "centre-a" in held else None
        if (head is not None and head.seq >= newest) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert head is not None and head.seq >= newest > 3
    entries = AuditLog(node.conn).entries()
    assert {"query.verify", "query.answer"} <= {e.event for e in entries if e.seq <= head.seq}
    assert _verify(node, heads=[held["centre-a"]]).ok
    from oncofed.federation.hub.status import hub_status  # what the operator sees and hands out
    shown = {c["centre"]: c for c in hub_status(world.hub_config)["centres"]}
    assert shown["centre-a"]["audit_head_seq"] >= head.seq      # polls go on: the same or a newer head
    assert open_head(bytes.fromhex(shown["centre-a"]["audit_head"]), keyring, "centre-a").seq >= head.seq
    world.centres["centre-a"].stop()  # nothing appends while we cut
    conn = sqlite3.connect(node.paths.store, isolation_level=None)
    for name in ("audit_log_no_delete", "audit_head_forward"):
        conn.execute(f"DROP TRIGGER {name}")
    keep = 3  # the trust entries; the query's entries go
    kept_hash = conn.execute("SELECT entry_hash FROM audit_log WHERE seq = ?", (keep,)).fetchone()[0]
    conn.execute("DELETE FROM audit_log WHERE seq > ?", (keep,))
    conn.execute("UPDATE audit_head SET seq = ?, entry_hash = ?", (keep, kept_hash))
    conn.execute("DELETE FROM seen_nonces")
    conn.close()
    assert _verify(node).ok  # nothing inside the node remembers the query any more
    report = _verify(node, heads=[("the hub's head for centre-a", held["centre-a"])])
    assert not report.ok and report.first_bad == keep + 1
    assert f"the hub's head for centre-a says the log held entry {head.seq}" in report.problem


def test_a_new_head_is_kept_at_once_and_the_same_call_again_writes_nothing_for_a_second(world):
    """Every pull and push carries the centre's head, most often the one it sent last; the hub
    writes such a call at most once a second and keeps a new head at once (the witness's
    evidence never waits)."""
    centre = world.centres["centre-a"]
    _stop_and_drain(world, "centre-a")                # its own polls would write meanwhile
    service, store = world.hub.service, world.hub.store
    log = AuditLog.open(centre.node.paths.store, world.fed.identities["centre-a"])
    try:
        def held() -> tuple[int, int | None]:
            row = next(r for r in store.centres() if r[0] == "centre-a")
            return row[1], row[3]                     # last seen (ms), head seq

        assert log.signed_head() == log.signed_head()  # the log has not moved: the same head
        service._seen("centre-a", log.signed_head())
        seen, seq = held()
        assert seq == log.head()[0]
        time.sleep(0.05)
        service._seen("centre-a", log.signed_head())  # the same head, within the second: no write
        service._seen("centre-a", b"")
        assert held() == (seen, seq)
        log.append(event="test.entry", decision="recorded", who="local-admin")
        service._seen("centre-a", log.signed_head())  # a new head: kept at once
        assert held()[1] == seq + 1 and held()[0] > seen
        last, _ = held()
        with service._seen_lock:                      # a second later, the same head is written
            head, at = service._last_seen["centre-a"]
            service._last_seen["centre-a"] = (head, at - 1_000)
        time.sleep(0.01)
        service._seen("centre-a", log.signed_head())
        assert held()[0] > last and held()[1] == seq + 1
    finally:
        log.close()


def test_a_second_head_for_the_same_entry_with_another_hash_never_replaces_the_first(world, caplog, tmp_path):
    """A centre that rewrites its newest entry and signs a head for it (same length, another
    hash) must not overwrite the hub's evidence of what that entry was."""
    centre = world.centres["centre-a"]
    _stop_and_drain(world, "centre-a")
    service, store = world.hub.service, world.hub.store
    identity = world.fed.identities["centre-a"]
    keyring = {identity.public.signing_key_id: identity.public}

    def kept() -> bytes | None:
        return next(r[2] for r in store.centres() if r[0] == "centre-a")

    log = AuditLog.open(centre.node.paths.store, identity)
    try:
        log.append(event="test.entry", decision="recorded", who="local-admin")
        service._seen("centre-a", log.signed_head())
        first = kept()
        assert first is not None
        seq, kept_hash = open_head(first, keyring, "centre-a").seq, open_head(first, keyring, "centre-a").entry_hash
    finally:
        log.close()
    conn = sqlite3.connect(centre.node.paths.store, isolation_level=None)
    for name in ("audit_log_no_delete", "audit_head_forward"):
        conn.execute(f"DROP TRIGGER {name}")
    for trigger in [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                                "AND tbl_name = 'audit_log'")]:
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("UPDATE audit_log SET entry_hash = ? WHERE seq = ?", ("ab" * 32, seq))
    conn.execute("UPDATE audit_head SET entry_hash = ?", ("ab" * 32,))
    conn.close()
    log = AuditLog.open(centre.node.paths.store, identity)
    try:
        forked = log.signed_head()
        assert open_head(forked, keyring, "centre-a").seq == seq
        assert open_head(forked, keyring, "centre-a").entry_hash != kept_hash
        with caplog.at_level("WARNING", logger="oncofed.hub"):
            service._seen("centre-a", forked)
        assert kept() == first          # the first head stays
        assert sum("rewritten" in r.getMessage() for r in caplog.records) == 1
        with service._seen_lock:                                  # a hub restarted: it reads the kept head
            service._kept.clear()
            service._last_seen.clear()
        with caplog.at_level("WARNING", logger="oncofed.hub"):
            service._seen("centre-a", forked)
        assert kept() == first
        assert sum("rewritten" in r.getMessage() for r in caplog.records) == 2
        assert len(store.conflicts()["centre-a"]) == 1           # one rewrite, recorded once
        log.append(event="test.entry", decision="recorded", who="local-admin")
        newer = log.signed_head()
        service._seen("centre-a", newer)                         # a longer head is kept as always ...
        assert open_head(kept(), keyring, "centre-a").seq == seq + 1
        # ... and the rewrite's evidence outlives it: both heads for entry `seq` stay
        _the_operator_sees_both_heads(world, tmp_path, forked, first, seq, newer)
    finally:
        log.close()


def _the_operator_sees_both_heads(world, tmp_path, forked, first, seq, newest):
    """`oncofed hub status` says the log was rewritten, `hub head` hands out the newest head and
    `hub head --conflict` the two heads the centre signed for the rewritten entry, as the JSON
    lines `node audit verify --head` reads."""
    from click.testing import CliRunner

    from oncofed.cli import main
    from oncofed.federation.hub.config import render

    cfg = world.hub_config
    toml = tmp_path / "hub.toml"
    toml.write_text(render({
        "hub": {"id": cfg.hub_id, "listen": f"127.0.0.1:{cfg.port}", "database": str(cfg.database)},
        "credentials": {"identity_key": str(cfg.identity_key), "tls_key": str(cfg.tls_key), "cert": str(cfg.cert),
                        "root_cert": str(cfg.root_cert), "root_fingerprint": cfg.root_fingerprint},
        "trust": {"registry": str(cfg.registry), "revocations": str(cfg.revocations)}}), "utf-8")
    status = CliRunner().invoke(main, ["hub", "status", "-c", str(toml)])
    assert status.exit_code == 0, status.output
    assert f"its audit log was REWRITTEN at entry {seq}" in status.output
    out = tmp_path / "head.hex"
    result = CliRunner().invoke(main, ["hub", "head", "centre-a", "-c", str(toml), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_head_file(out) == [newest]
    pair = tmp_path / "rewrite.jsonl"
    result = CliRunner().invoke(main, ["hub", "head", "centre-a", "-c", str(toml), "--out", str(pair), "--conflict"])
    assert result.exit_code == 0, result.output
    assert f"the two heads of centre-a for entry {seq}" in result.output
    assert read_head_file(pair) == [first, forked]
    missing = CliRunner().invoke(main, ["hub", "head", "centre-b", "-c", str(toml), "--conflict"])
    assert missing.exit_code != 0 and "no rewritten entry in the audit log of centre-b" in missing.output


def test_an_answer_carries_a_head_naming_its_own_entry_committed_with_a_full_sync(world, monkeypatch):
    """A federated answer carries the node's signed audit head, which names the answer's own
    `query.answer` entry; a head may never name an entry a power loss could take. The entry is
    therefore committed with synchronous=FULL, and nothing fsyncs the store apart: left unsynced
    (as D34 first had it), signing that head fsynced the log, the file and its directory apart on
    every answer — three fsyncs more than the commit's one."""
    from node_fed_helpers import record_fsyncs

    from oncofed.node.store import audit_table
    from oncofed.node.store import db as dbmod

    client = world.client()
    assert client.follow(client.submit(world.body("count")), timeout=60).state == "complete"   # warm
    synced_at_insert: list[tuple[str, bool]] = []
    insert = audit_table.append_entry

    def spying(conn, row):
        synced_at_insert.append((row["event"], dbmod.commits_synced(conn)))
        insert(conn, row)

    monkeypatch.setattr(audit_table, "append_entry", spying)
    fsynced = record_fsyncs(monkeypatch)
    for _ in range(3):
        state = client.follow(client.submit(world.body("count")), timeout=60)
        assert state.state == "complete"
    answers = [ok for event, ok in synced_at_insert if event == "query.answer"]
    assert len(answers) == 3 * len(world.centres) and all(answers), synced_at_insert
    stores = [str(Path(c.node.paths.store).resolve()) for c in world.centres.values()]
    assert [p for p in fsynced if any(p.startswith(s) for s in stores)] == []      # the store, its WAL
    for c in world.centres.values():        # each head the hub kept names the newest answer's entry
        log = AuditLog(c.node.conn)
        answers = [e for e in log.entries(limit=5) if e.event == "query.answer"]
        assert answers and world.hub.store.audit_head_of(c.centre_id)[1] >= answers[-1].seq
