"""Red team (D28): a centre whose keys the federation revoked signs nothing a node accepts — no
accept in a participant set (query plane or Flower), no abstention presented with a retry — even
while the node still holds the registry that lists it. The authority publishes the revocation list
and the registry without the member together, but a hub relays them separately and may hold the
registry back until it goes stale; the holder of a compromised centre key could meanwhile stand in
for that centre in S or abstain in its name. Real node stores, keys, registry and revocation list."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from federation_world import World, make_world
from flower_world import enable_flower, model_request, researcher

from oncofed.analyses.fitting import ModelFit
from oncofed.flower.request import signed_run
from oncofed.keys.envelope import sign, unverified_body
from oncofed.keys.sealing import seal
from oncofed.keys.tls import load_tls_files
from oncofed.node.connector import Connector, HubLink
from oncofed.node.federated import FlowerParticipant, envelope_body
from oncofed.node.store import federation as fedstore
from oncofed.query import QUERY_TAG
from oncofed.query import query_hash as hash_of
from oncofed.secagg import ParticipantSet
from oncofed.secagg.wire import FAILURE_TAG, QUERY_SEAL_CONTEXT, read_failure, sign_abstention
from oncofed.v1 import federation_pb2 as fpb
from oncofed.v1 import query_pb2 as pb

LOGISTIC = {"logistic": {"outcome": "her2", "positive": ["pos"], "covariates": ["age_at_incidence", "er"]}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("revoked"), patients=120)
    for c in w.centres.values():
        enable_flower(Path(c.node.paths.root), w.fed, c.centre_id)
    yield w
    w.close()


def _connector(world: World, cid: str) -> Connector:
    tls = load_tls_files(world.fed.cert_path("centre", cid), world.fed.tls_keys[cid],
                         world.fed.directory / "root.cert.pem")
    return Connector(world.centres[cid].pipeline, world.fed.identities[cid], tls, HubLink("127.0.0.1:1"),
                     min_participants=2)


def _prepared(world: World, body: pb.QueryBody, connectors: dict[str, Connector]) -> tuple[bytes, list[bytes]]:
    """The researcher's query signed, sealed to each centre and prepared there (as a hub relays it)."""
    body.nonce, body.issued_at = os.urandom(16), int(time.time())
    body.expires_at = body.issued_at + 600
    envelope = sign(world.fed.identities["res-1"], QUERY_TAG, body.SerializeToString())
    qh = bytes.fromhex(hash_of(envelope))
    registry = world.centres["centre-a"].pipeline.verifier.trust.registry()
    assert registry is not None
    accepts = []
    for cid, conn in connectors.items():
        member = registry.member(cid)
        assert member is not None
        sealed = seal(envelope, member.identity, sender=world.fed.identities["res-1"],
                      context=QUERY_SEAL_CONTEXT.format(centre=cid))
        push = conn.prepare(qh, sealed)
        assert push.WhichOneof("reply") == "accept", push
        accepts.append(push.accept)
    return qh, accepts


def _coarse(push: fpb.PushRequest) -> str:
    assert push.WhichOneof("reply") == "failure", push
    return fpb.FailureBody.FromString(unverified_body(push.failure, tag=FAILURE_TAG)).coarse


def test_a_revoked_centre_signs_no_accept_and_no_abstention(world: World) -> None:
    roots = {c: Path(world.centres[c].node.paths.root) for c in world.centres}
    parts = {c: FlowerParticipant.open(root) for c, root in roots.items()}
    connectors = {c: _connector(world, c) for c in world.centres}
    try:
        # everything is accepted while centre-c is a member in good standing
        req = model_request(LOGISTIC, list(world.centres), world.centres["centre-a"].permit)
        env = signed_run(researcher(world.fed, world.base), req, dictionary=world.dictionary())
        run = bytes.fromhex(hash_of(env))
        registry = parts["centre-a"].pipeline.verifier.trust.registry()
        assert registry is not None
        signed = [p.prepare(env).data for p in parts.values()]
        s = ParticipantSet.from_signed(signed, keyring=registry.keyring("centre"))
        qh, accepts = _prepared(world, world.body("count", cohort={"field": "er", "equals": "pos"}), connectors)
        failed = os.urandom(32)                          # a failed query centre-c "abstains" from
        c_abstention = fedstore.abstain(world.centres["centre-c"].node.conn, failed,
                                        lambda: sign_abstention(world.fed.identities["centre-c"], failed),
                                        int(time.time()))
        retry = world.body("count", cohort={"field": "er", "equals": "neg"}, targets=("centre-a", "centre-b"),
                           min_participants=2)
        retry.retry_of = failed
        rq, retry_accepts = _prepared(world, retry, {c: connectors[c] for c in ("centre-a", "centre-b")})

        # the authority revokes centre-c; centre-a receives the revocation list, not yet the registry
        trust_a = world.centres["centre-a"].pipeline.verifier.trust
        flower_trust_a = parts["centre-a"].pipeline.verifier.trust       # another connection, same store
        for trust in (trust_a, flower_trust_a):                           # the peers' keyring, built and kept
            assert "centre-c" in {m.member_id for m in trust.peer_keyring("centre").values()}
        world.fed.authority.revoke_member("centre-c", "key compromised", compromised=True)
        trust_a.update_revocations(world.fed.published("revocations.bin"))
        for trust in (trust_a, flower_trust_a):                           # ... and forgotten on the change
            assert "centre-c" not in {m.member_id for m in trust.peer_keyring("centre").values()}
        assert trust_a.registry() is not None and trust_a.registry().member("centre-c") is not None  # type: ignore[union-attr]

        first = ModelFit(envelope_body(env).analysis, world.dictionary()).next_analysis()
        assert first is not None
        reply = parts["centre-a"].answer_round(run, 1, list(first.logistic.beta), s.signed)
        assert reply.kind == "failure" and read_failure(reply.data, registry.keyring("centre"), run).coarse == "INVALID"
        assert _coarse(connectors["centre-a"].answer(qh, accepts)) == "INVALID"
        assert fedstore.answers_of(world.centres["centre-a"].node.conn, qh) == []
        connectors["centre-a"].answer(rq, retry_accepts, [c_abstention])
        assert fedstore.abstained(world.centres["centre-a"].node.conn, {failed.hex()}) == set()
    finally:
        for p in parts.values():
            p.close()
