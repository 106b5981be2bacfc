"""What a node does that a new admin would not expect, against a real federation: a body nested
past protobuf's limit is refused as too deep (audited, coarse INVALID); the rate limit counts the
verified signer however the body names it; the admin API serves no other member while the trust
state is stale; a revocation takes effect on the next call (no cached window)."""

from __future__ import annotations

import time

import grpc
import pytest
from conftest import valid_row, write_csv
from node_fed_helpers import DAY, make_fed, query_body, signed

from oncofed.keys import tls
from oncofed.node.answering import AnsweringPipeline
from oncofed.node.audit import AuditLog
from oncofed.node.node import init_node, open_node
from oncofed.node.query.policy import NodePolicy
from oncofed.node.service import admin_channel, start_admin_server
from oncofed.node.verify import QueryVerifier, RequestRefused
from oncofed.query import QueryError
from oncofed.query.nesting import MAX_BODY_DEPTH, message_depth
from oncofed.v1 import admin_pb2, admin_pb2_grpc, query_pb2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("newcomer")
    fed = make_fed(base / "fed")
    node = open_node(init_node(base / "node", "centre-a").root)
    node.ingest(write_csv(base / "rows.csv", [valid_row(i) for i in range(1, 13)]))
    trust = fed.attach(node.paths.store, "centre-a")
    yield fed, node, trust
    trust.close()
    node.close()


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, written by hand (protobuf will not build these)."""
    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deep_body(sha: str, levels: int) -> bytes:
    """A signed-able QueryBody whose cohort is `levels` nested `not`s around one leaf."""
    fd = query_pb2.Cohort.DESCRIPTOR.fields_by_name
    leaf = query_pb2.Cohort(equals=query_pb2.Equals(field="sex", value="2")).SerializeToString()
    cohort = leaf
    for _ in range(levels):
        cohort = _field(fd["negate"].number, cohort)
    base = query_body(sha)
    base.ClearField("cohort")
    return base.SerializeToString() + _field(query_pb2.QueryBody.DESCRIPTOR.fields_by_name["cohort"].number, cohort)


def test_a_body_nested_past_protobufs_limit_is_refused_as_too_deep(world):
    fed, node, trust = world
    sha = fed.permit(trust)
    raw = deep_body(sha, 150)
    with pytest.raises(Exception, match="Error parsing"):
        query_pb2.QueryBody.FromString(raw)  # what the verifier used to call "not a QueryBody"
    assert message_depth(raw, query_pb2.QueryBody.DESCRIPTOR, MAX_BODY_DEPTH) > MAX_BODY_DEPTH
    from oncofed.keys.envelope import sign
    from oncofed.node.verify import QUERY_TAG

    verifier = QueryVerifier.for_node(node)
    try:
        with pytest.raises(RequestRefused) as exc:
            verifier.verify(sign(fed.identities["res-1"], QUERY_TAG, raw))
        assert exc.value.reason == "cohort_too_deep" and exc.value.public_message() == "declined: INVALID"
        entry = AuditLog(node.conn).entries(limit=1)[0]
        assert (entry.decision, entry.reason, entry.seq) == ("refused", "cohort_too_deep", exc.value.audit_seq)
        # garbage after a valid signature stays "malformed", a shallow body parses
        with pytest.raises(RequestRefused) as garbage:
            verifier.verify(sign(fed.identities["res-1"], QUERY_TAG, b"\xff" * 40))
        assert garbage.value.reason == "malformed_body"
        assert message_depth(deep_body(sha, 20), query_pb2.QueryBody.DESCRIPTOR, MAX_BODY_DEPTH) == 23
    finally:
        verifier.close()


def test_the_rate_limit_counts_the_verified_signer_however_the_body_names_it(world):
    fed, node, trust = world
    sha = fed.permit(trust)
    pipeline = AnsweringPipeline(node, QueryVerifier.for_node(node), NodePolicy(rate_per_minute=2))
    res = fed.identities["res-1"]
    at = int(time.time())
    try:
        for key_id in (res.public.signing_fingerprint, ""):
            body = query_body(sha, issued_at=at)
            body.researcher_key_id = key_id
            pipeline.answer_envelope(signed(res, body), at=at)
        third = query_body(sha, issued_at=at)
        third.researcher_key_id = f"  {res.public.signing_fingerprint.upper()} "
        with pytest.raises(QueryError, match="at most 2 queries per minute") as exc:
            pipeline.answer_envelope(signed(res, third), at=at + 1)
        assert exc.value.reason == "rate_limited"
        with pytest.raises(QueryError, match="per minute"):  # leaving the key id empty opens nothing
            pipeline.answer_envelope(signed(res, query_body(sha, issued_at=at)), at=at + 2)
        other = fed.permit(trust, project_title="Another project")  # the same researcher, per minute
        with pytest.raises(QueryError, match="per minute"):
            pipeline.answer_envelope(signed(res, query_body(other, issued_at=at)), at=at + 3)
    finally:
        pipeline.verifier.close()


# --- the admin API over mutual TLS ----------------------------------------------------------------

@pytest.fixture
def tls_node(tmp_path):
    fed = make_fed(tmp_path / "fed")
    root = init_node(tmp_path / "node", "centre-a").root
    (root / "root.pem").write_bytes(fed.root_pem)
    with (root / "node.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'\n[tls]\ncert = "{fed.cert_path("centre", "centre-a")}"\n'
                 f'key = "{fed.tls_keys["centre-a"]}"\nroot = "root.pem"\n')
    node = open_node(root)
    trust = fed.attach(node.paths.store, "centre-a")
    server = start_admin_server(node, listen="127.0.0.1:0")
    yield fed, node, trust, server
    server.stop(grace=1)
    trust.close()
    node.close()


def _stub(fed, server, role, member):
    key = tls.load_tls_key(fed.tls_keys[member])
    creds = tls.channel_credentials(fed.cert_path(role, member).read_bytes(), key, fed.root_pem)
    channel = admin_channel(server.address, creds, server_name="localhost")
    return channel, admin_pb2_grpc.NodeAdminStub(channel)


def test_the_admin_api_serves_no_other_member_while_the_registry_is_stale(tls_node):
    fed, _, trust, server = tls_node
    ch, researcher = _stub(fed, server, "researcher", "res-1")
    own_ch, own = _stub(fed, server, "centre", "centre-a")
    with ch, own_ch:
        assert researcher.Describe(admin_pb2.DescribeRequest(), timeout=5).node_id == "centre-a"
        past = int(time.time()) - 3 * DAY
        fed.authority.publish(valid_days=1, at=past)  # a newer version that is already stale
        trust.install(fed.published("registry.bin"), at=past + 60)
        assert trust.status().state == "stale-registry"
        with pytest.raises(grpc.RpcError) as info:
            researcher.Describe(admin_pb2.DescribeRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == "declined: BUSY"
        # the centre's own admin still sees its node, to find out what is wrong
        assert own.Status(admin_pb2.StatusRequest(), timeout=5).tumours == 0
        assert own.Describe(admin_pb2.DescribeRequest(), timeout=5).node_id == "centre-a"


def test_a_revoked_certificate_is_refused_on_the_next_call(tls_node):
    fed, _, trust, server = tls_node
    ch, researcher = _stub(fed, server, "researcher", "res-1")
    with ch:
        assert researcher.Describe(admin_pb2.DescribeRequest(), timeout=5).node_id == "centre-a"
        fed.authority.revoke_member("res-1", "left the project")
        trust.install(fed.published("revocations.bin"))  # only the list: the registry still names res-1
        with pytest.raises(grpc.RpcError) as info:
            researcher.Describe(admin_pb2.DescribeRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == "this certificate has been revoked"
