"""Verification of every query at a node, against a real federation (root CA, registry, permits)
and a real node store: each refusal has its own audited reason and only a coarse public code;
nonces are single-use even under concurrency and across restarts."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from node_fed_helpers import DAY, make_fed, query_body, signed

from oncofed.keys.envelope import sign
from oncofed.keys.identity import Identity
from oncofed.node.audit import AuditLog
from oncofed.node.node import init_node, open_node
from oncofed.node.verify import (
    CLOCK_SKEW,
    QUERY_TAG,
    QueryVerifier,
    RequestRefused,
    referenced_fields,
)
from oncofed.query.refusals import REASONS, Coarse
from oncofed.v1 import query_pb2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("verify")
    fed = make_fed(base / "fed")
    root = init_node(base / "node", "centre-a").root
    node = open_node(root)
    trust = fed.attach(node.paths.store, "centre-a")
    yield fed, node, trust
    trust.close()
    node.close()


@pytest.fixture
def verifier(world):
    _, node, _ = world
    v = QueryVerifier.for_node(node)
    yield v
    v.close()


def _refused(verifier, envelope, **kw) -> RequestRefused:
    with pytest.raises(RequestRefused) as info:
        verifier.verify(envelope, **kw)
    return info.value


def _last_entry(node):
    return AuditLog(node.conn).entries(limit=1)[0]


def test_a_valid_query_is_accepted_and_audited(world, verifier):
    fed, node, trust = world
    sha = fed.permit(trust)
    envelope = signed(fed.identities["res-1"], query_body(sha))
    vq = verifier.verify(envelope)
    assert vq.researcher_id == "res-1" and vq.permit_hash == sha
    assert vq.query_hash == hashlib.sha256(envelope).hexdigest()
    assert vq.analysis == "count" and vq.fields == ("sex", "topography")
    assert vq.permit.allowed_analyses == ("count", "crosstab")
    entry = _last_entry(node)
    assert (entry.seq, entry.decision, entry.who, entry.query_hash) == (
        vq.audit_seq, "accepted", "res-1", vq.query_hash)
    assert entry.fields == ("sex", "topography") and entry.permit_hash == sha


def _body_case(name):
    """(mutate body, sign as, expected reason) for refusals decided by the body's content."""
    now = int(time.time())

    def target(b):
        del b.target_centres[:]
        b.target_centres.append("centre-b")

    def dictionary(b):
        b.dictionary.version = "9.9.9"

    def analysis(b):
        b.analysis.summary.field = "age_at_incidence"

    def field(b):
        b.cohort.all_of.items.add().equals.CopyFrom(query_pb2.Equals(field="grade", value="2"))

    def exact(b):
        b.exact_dates = True

    def skew(b):
        b.issued_at, b.expires_at = now + CLOCK_SKEW + 60, now + 3600

    def expired(b):
        b.issued_at, b.expires_at = now - 7200, now - 10

    def lifetime(b):
        b.issued_at, b.expires_at = now - 60, now - 60 + DAY + 1

    def short_nonce(b):
        b.nonce = b"\x00" * 8

    def no_analysis(b):
        b.ClearField("analysis")

    def key_id(b):
        b.researcher_key_id = "00" * 32

    return {"not_a_target": target, "dictionary_mismatch": dictionary,
            "analysis_not_allowed": analysis, "field_not_allowed": field,
            "exact_dates_not_allowed": exact, "clock_skew": skew, "expired": expired,
            "bad_lifetime": lifetime, "malformed_body": short_nonce, "no_analysis": no_analysis,
            "key_id_mismatch": key_id}[name]


BODY_REASONS = ["not_a_target", "dictionary_mismatch", "analysis_not_allowed", "field_not_allowed",
                "exact_dates_not_allowed", "clock_skew", "expired", "bad_lifetime",
                "malformed_body", "no_analysis", "key_id_mismatch"]


@pytest.mark.parametrize("reason", BODY_REASONS)
def test_each_body_refusal_has_its_own_reason_and_a_coarse_code(world, verifier, reason):
    fed, node, trust = world
    sha = fed.permit(trust)
    body = query_body(sha)
    _body_case(reason)(body)
    err = _refused(verifier, signed(fed.identities["res-1"], body))
    assert err.reason == reason
    assert err.public == REASONS[reason].coarse.value and err.public in {c.value for c in Coarse}
    entry = _last_entry(node)
    assert (entry.decision, entry.reason, entry.seq) == ("refused", reason, err.audit_seq)
    assert entry.detail["coarse"] == err.public


def test_forged_unknown_and_malformed_envelopes_are_refused_before_parsing(world, verifier, monkeypatch):
    fed, node, trust = world
    sha = fed.permit(trust)
    good = signed(fed.identities["res-1"], query_body(sha))
    parsed = []

    def no_parse(raw, ctx):
        parsed.append(raw)
        raise AssertionError("the body was parsed before the envelope was authenticated")

    monkeypatch.setattr(QueryVerifier, "_parse", staticmethod(no_parse))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 1
    assert _refused(verifier, bytes(flipped)).reason == "bad_signature"
    stranger = Identity.generate("researcher", "res-1")  # same name, keys not in the registry
    assert _refused(verifier, signed(stranger, query_body(sha))).reason == "unknown_signer"
    assert _refused(verifier, b"not an envelope").reason == "malformed_envelope"
    wrong_tag = sign(fed.identities["res-1"], "oncofed/answer/v1", query_body(sha).SerializeToString())
    assert _refused(verifier, wrong_tag).reason == "bad_signature"
    centre = sign(fed.identities["centre-b"], QUERY_TAG, query_body(sha).SerializeToString())
    assert _refused(verifier, centre).reason == "unknown_signer"  # a centre is no researcher
    assert parsed == []                                           # none of these reached the parser
    entry = _last_entry(node)
    assert entry.permit_hash == "" and entry.who.startswith("unverified:")
    monkeypatch.undo()
    garbage = sign(fed.identities["res-1"], QUERY_TAG, b"\xff\xff\xff")
    assert _refused(verifier, garbage).reason == "malformed_body"     # parsed only once authenticated
    assert _last_entry(node).who == "res-1"


def test_permit_states_each_refuse_with_their_reason(world, verifier):
    fed, _, trust = world
    res1 = fed.identities["res-1"]
    pending = fed.permit(trust, approve=False)
    assert _refused(verifier, signed(res1, query_body(pending))).reason == "permit_not_approved"
    assert _refused(verifier, signed(res1, query_body("ab" * 32))).reason == "permit_not_approved"
    revoked = fed.permit(trust)
    trust.revoke(revoked, by="test-admin", reason="project closed")
    err = _refused(verifier, signed(res1, query_body(revoked)))
    assert (err.reason, err.coarse) == ("permit_revoked", Coarse.NOT_APPROVED)
    now = int(time.time())
    short = fed.permit(trust, not_after=now + 3600)
    later = now + 2 * 3600
    body = query_body(short, issued_at=later - 60)
    assert _refused(verifier, signed(res1, body), at=later).reason == "permit_expired"
    other = fed.permit(trust)
    err = _refused(verifier, signed(fed.identities["res-2"], query_body(other)))
    assert (err.reason, err.coarse) == ("not_permit_holder", Coarse.NOT_APPROVED)


def test_a_stale_registry_stops_every_answer(world, verifier):
    fed, _, trust = world
    sha = fed.permit(trust)
    at = int(time.time()) + 8 * DAY  # the registry is valid for 7 days
    body = query_body(sha, issued_at=at - 60)
    err = _refused(verifier, signed(fed.identities["res-1"], body), at=at)
    assert (err.reason, err.coarse) == ("registry_stale", Coarse.BUSY)


def test_a_replayed_query_is_refused_even_after_a_restart(world, verifier):
    fed, node, trust = world
    envelope = signed(fed.identities["res-1"], query_body(fed.permit(trust)))
    verifier.verify(envelope)
    assert _refused(verifier, envelope).reason == "replayed_nonce"
    again = QueryVerifier.for_node(node)  # a fresh process would open the store like this
    try:
        assert _refused(again, envelope).reason == "replayed_nonce"
    finally:
        again.close()


@pytest.mark.parametrize("shared", [True, False], ids=["one-verifier", "one-connection-each"])
def test_concurrent_copies_of_one_query_pass_exactly_once(world, shared):
    fed, node, trust = world
    envelope = signed(fed.identities["res-1"], query_body(fed.permit(trust)))
    n = 8
    verifiers = [QueryVerifier.for_node(node)] * n if shared else [
        QueryVerifier.for_node(node) for _ in range(n)]
    barrier, results = threading.Barrier(n), []

    def run(v):
        barrier.wait()
        try:
            results.append(v.verify(envelope).query_hash)
        except RequestRefused as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=run, args=(v,)) for v in verifiers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for v in set(verifiers):
        v.close()
    assert sorted(results) == sorted([hashlib.sha256(envelope).hexdigest()] + ["replayed_nonce"] * (n - 1))
    assert AuditLog(node.conn).verify().ok


def test_seen_nonces_are_kept_until_expiry_plus_skew_then_pruned(world, verifier):
    fed, node, trust = world
    now = int(time.time())
    body = query_body(fed.permit(trust), issued_at=now, lifetime=60)
    verifier.verify(signed(fed.identities["res-1"], body), at=now)
    count = "SELECT count(*) FROM seen_nonces WHERE nonce = ?"
    assert verifier.prune_nonces(at=now + 60 + CLOCK_SKEW) == 0
    assert node.conn.execute(count, (body.nonce,)).fetchone()[0] == 1
    assert verifier.prune_nonces(at=now + 61 + CLOCK_SKEW) >= 1
    assert node.conn.execute(count, (body.nonce,)).fetchone()[0] == 0


def test_later_decisions_are_recorded_against_the_verified_query(world, verifier):
    fed, node, trust = world
    vq = verifier.verify(signed(fed.identities["res-1"], query_body(fed.permit(trust))))
    seq = verifier.record(vq, event="query.answer", decision="answered", cells_suppressed=2,
                          cells_perturbed=5, epsilon_spent=0.25)
    entries = AuditLog(node.conn).entries(query_hash=vq.query_hash)
    assert [e.decision for e in entries] == ["accepted", "answered"] and entries[-1].seq == seq
    assert (entries[-1].cells_suppressed, entries[-1].cells_perturbed, entries[-1].epsilon_spent) == (2, 5, 0.25)


def test_field_walker_finds_cohort_and_analysis_fields():
    body = query_body("00" * 32)
    body.cohort.all_of.items.add().negate.is_null = "er"
    body.analysis.crosstab.fields.extend(["her2", "pr"])
    assert referenced_fields(body) == {"sex", "topography", "er", "her2", "pr"}


def test_every_reason_maps_to_a_coarse_code():
    import inspect
    import re

    from oncofed.node import verify as verify_mod

    raised = set(re.findall(r'_Refusal\(\s*"(\w+)"', inspect.getsource(verify_mod)))
    assert raised and raised <= set(REASONS)                       # every reason the code raises is mapped
    assert {RequestRefused(r).public for r in REASONS} <= {c.value for c in Coarse}
    assert RequestRefused("signer_revoked").public == "NOT_APPROVED"
    with pytest.raises(ValueError, match="unknown refusal reason"):
        RequestRefused("cohort_too_small")


def test_a_revoked_signer_is_only_named_after_the_signature_verifies(world, verifier, monkeypatch):
    """An unauthenticated sender must not learn whether a researcher is revoked."""
    from oncofed.keys.registry import RevocationList

    fed, _, trust = world
    monkeypatch.setattr(RevocationList, "member_revoked", lambda self, member: object())
    good = signed(fed.identities["res-1"], query_body(fed.permit(trust)))
    forged = bytearray(good)
    forged[len(good) // 2] ^= 1
    assert _refused(verifier, bytes(forged)).reason == "bad_signature"
    assert _refused(verifier, good).reason == "signer_revoked"
