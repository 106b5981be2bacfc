"""A centre's side of Flower runs (oncofed.node.federated) on real node directories, real keys and
signatures, without the engine: the ClientApp's checks one by one. The simulation engine drives
whole fits in test_flower_simulation.

- prepare accepts once (a redelivery gets the same accept); a second envelope with the same nonce,
  a query-plane body, or a model signed with coefficients is declined, the reason in the audit log;
- the query plane refuses a body with `flower` set;
- a round is answered through the one pipeline: its masked answers sum to exactly what the query
  plane's answers of the same round sum to; a resend is byte-identical; a round above the cap, a
  round answered again under another set, a forged or changed participant set are refused with a
  signed coarse failure, the reason audited; every β answered is in the audit log;
- the ClientApp takes its node directory from the SuperNode's node config, never the run config.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from federation_world import World, make_world
from flower_world import enable_flower, model_request, researcher

from oncofed.analyses import parse_analysis
from oncofed.analyses.fitting import ModelFit
from oncofed.keys.envelope import sign
from oncofed.keys.identity import Identity
from oncofed.node.federated import FlowerParticipant, envelope_body
from oncofed.node.store.ledger import Participation
from oncofed.node.verify import RequestRefused
from oncofed.query import QUERY_TAG, sum_vectors
from oncofed.query import query_hash as hash_of
from oncofed.secagg import Accept, ParticipantSet, RunMaskKey, open_accept, sign_accept, unmask_sum
from oncofed.secagg.run_wire import read_run_answer
from oncofed.secagg.wire import read_decline, read_failure
from oncofed.v1 import query_pb2 as pb

LOGISTIC = {"logistic": {"survival": "OS", "cutoff": "2025-12-31", "horizon_days": 1826,
                         "covariates": ["age_at_incidence", "stage_summary"]}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("flower-node"), patients=300)
    for c in w.centres.values():
        enable_flower(Path(c.node.paths.root), w.fed, c.centre_id)
    yield w
    w.close()


@pytest.fixture
def parts(world: World) -> Iterator[dict[str, FlowerParticipant]]:
    opened = {c: FlowerParticipant.open(Path(world.centres[c].node.paths.root)) for c in world.centres}
    yield opened
    for p in opened.values():
        p.close()


def envelope(world: World, **options: Any) -> bytes:
    from oncofed.flower.request import signed_run

    req = model_request(LOGISTIC, list(world.centres), world.centres["centre-a"].permit, **options)
    return signed_run(researcher(world.fed, world.base), req, dictionary=world.dictionary())


def resign(world: World, body: pb.QueryBody) -> bytes:
    return sign(world.fed.identities["res-1"], QUERY_TAG, body.SerializeToString())


def entries(world: World, centre: str, qh: str, event: str | None = None) -> list[Any]:
    audit = world.centres[centre].pipeline.verifier.audit
    return [e for e in audit.entries(query_hash=qh) if event is None or e.event == event]


def accepted(world: World, parts: dict[str, FlowerParticipant], env: bytes) -> tuple[bytes, ParticipantSet]:
    signed = []
    for p in parts.values():
        reply = p.prepare(env)
        assert reply.kind == "accept"
        signed.append(reply.data)
    return bytes.fromhex(hash_of(env)), ParticipantSet.from_signed(signed, keyring=keyring_of(parts))


def keyring_of(parts: dict[str, FlowerParticipant]) -> dict[bytes, Any]:
    registry = parts["centre-a"].pipeline.verifier.trust.registry()
    assert registry is not None
    return registry.keyring("centre")


def test_prepare_accepts_once_and_a_redelivery_gets_the_same_accept(world: World,
                                                                   parts: dict[str, FlowerParticipant]) -> None:
    env = envelope(world)
    first = parts["centre-a"].prepare(env)
    again = parts["centre-a"].prepare(env)
    assert first.kind == again.kind == "accept" and first.data == again.data
    accept = open_accept(first.data, keyring=keyring_of(parts))
    assert accept.centre_id == "centre-a" and accept.query_hash == hash_of(env)
    verify = entries(world, "centre-a", hash_of(env), "query.verify")
    assert [e.decision for e in verify] == ["accepted"]          # the nonce was consumed once


def test_a_second_envelope_with_the_same_nonce_is_declined(world: World, parts: dict[str, FlowerParticipant]) -> None:
    env = envelope(world)
    assert parts["centre-b"].prepare(env).kind == "accept"
    body = envelope_body(env)
    body.flower.max_rounds = 7                                   # another run, the same nonce
    replay = resign(world, body)
    reply = parts["centre-b"].prepare(replay)
    assert reply.kind == "decline"
    assert read_decline(reply.data, keyring_of(parts), bytes.fromhex(hash_of(replay))).coarse == "INVALID"
    assert entries(world, "centre-b", hash_of(replay), "query.verify")[-1].reason == "replayed_nonce"


def test_a_query_plane_body_is_declined_on_flower_and_a_flower_body_on_the_query_plane(
        world: World, parts: dict[str, FlowerParticipant]) -> None:
    body = envelope_body(envelope(world))
    body.ClearField("flower")
    body.nonce = os.urandom(16)
    plain = resign(world, body)
    reply = parts["centre-c"].prepare(plain)
    assert reply.kind == "decline"
    assert entries(world, "centre-c", hash_of(plain), "query.verify")[-1].reason == "wrong_plane"
    flower = envelope(world)
    pipeline = world.centres["centre-c"].pipeline
    with pytest.raises(RequestRefused) as err:
        pipeline.accept_envelope(flower, at=int(time.time()))      # what the hub connector calls
    assert err.value.reason == "wrong_plane" and err.value.public == "INVALID"
    body = envelope_body(envelope(world))
    with pytest.raises(RequestRefused, match="wrong_plane"):
        pipeline.answer_envelope(resign(world, body))                # the direct query path


def test_a_model_signed_with_coefficients_is_declined(world: World, parts: dict[str, FlowerParticipant]) -> None:
    body = envelope_body(envelope(world))
    body.analysis.logistic.beta[:] = [0, 1 << 30, 0, 0, 0]
    env = resign(world, body)
    assert parts["centre-a"].prepare(env).kind == "decline"
    last = entries(world, "centre-a", hash_of(env), "query.answer")[-1]
    assert last.decision == "refused" and "without coefficients" in last.detail["message"]


def test_a_rounds_masked_answers_sum_to_the_query_planes(world: World, parts: dict[str, FlowerParticipant]) -> None:
    """Round 1 at β = 0 over Flower and the same analysis over the query plane's pipeline: the sum
    of the three masked answers is the sum of the three plain vectors, exactly."""
    env = envelope(world)
    qh, s = accepted(world, parts, env)
    body = envelope_body(env)
    fit = ModelFit(body.analysis, world.dictionary())
    analysis = fit.next_analysis()
    assert analysis is not None
    spec = parse_analysis(analysis, world.dictionary())
    masked = []
    for c, p in parts.items():
        reply = p.answer_round(qh, 1, list(analysis.logistic.beta), s.signed)
        assert reply.kind == "answer", read_failure(reply.data, keyring_of(parts), qh)
        masked.append(read_run_answer(reply.data, keyring=keyring_of(parts), centre=c, query_hash=qh, round_=1,
                                      set_digest=s.digest(), n_values=spec.n_values, n_flags=len(spec.flags)))
    plain = []
    centres = Participation.of(s.centre_ids)                                 # the connector's ledger key
    for c in parts:
        q = pb.QueryBody()
        q.CopyFrom(body)
        q.ClearField("flower")
        q.analysis.CopyFrom(analysis)
        q.nonce = os.urandom(16)
        qenv, pipeline = resign(world, q), world.centres[c].pipeline
        pipeline.accept_envelope(qenv)                                # as the hub connector does
        plain.append(pipeline.answer_accepted(qenv, participants=centres)[1].vector)
    assert unmask_sum(masked, participants=s, round=1) == sum_vectors(plain)
    assert all(m.values != v for m, v in zip(masked, plain, strict=True))      # each one masked


def test_resends_caps_and_forged_sets(world: World, parts: dict[str, FlowerParticipant]) -> None:
    env = envelope(world, max_rounds=2)
    qh, s = accepted(world, parts, env)
    a = parts["centre-a"]
    keyring = keyring_of(parts)
    zero = [0] * 5                       # intercept, age, stage regional / distant / unknown

    def coarse(reply: Any, run: bytes = qh) -> str:
        assert reply.kind == "failure"
        return read_failure(reply.data, keyring, run).coarse

    first = a.answer_round(qh, 1, zero, s.signed)
    assert first.kind == "answer" and a.answer_round(qh, 1, zero, s.signed).data == first.data   # resent as is
    # another set for the same round: the other two centres with a fresh (forged) accept of centre-c
    other_key = RunMaskKey.generate()
    forged_c = sign_accept(world.fed.identities["centre-c"], Accept(hash_of(env), "centre-c", other_key.public_key))
    changed = [x for x in s.signed if open_accept(x, keyring=keyring).centre_id != "centre-c"] + [forged_c]
    assert coarse(a.answer_round(qh, 1, zero, changed)) == "INVALID"
    assert coarse(a.answer_round(qh, 2, zero, changed)) == "INVALID"          # S is fixed for the run
    # an accept signed by a key outside the registry
    stranger = Identity.generate("centre", "centre-c")
    fake = sign_accept(stranger, Accept(hash_of(env), "centre-c", other_key.public_key))
    assert coarse(a.answer_round(qh, 2, zero, [*s.signed[:2], fake])) == "INVALID"
    # centre-a's own accept replaced by one with another key (signed by centre-a's real key)
    mine = sign_accept(world.fed.identities["centre-a"], Accept(hash_of(env), "centre-a", other_key.public_key))
    swapped = [mine if open_accept(x, keyring=keyring).centre_id == "centre-a" else x for x in s.signed]
    assert coarse(a.answer_round(qh, 2, zero, swapped)) == "INVALID"
    assert coarse(a.answer_round(qh, 3, zero, s.signed)) == "BUDGET"          # above the signed max_rounds
    assert coarse(a.answer_round(qh, 0, zero, s.signed)) == "BUDGET"
    never = b"\x01" * 32
    assert coarse(a.answer_round(never, 1, zero, s.signed), never) == "BUSY"   # a run never accepted here
    assert coarse(a.answer_round(qh, 2, zero, s.signed, offset=1 << 40)) == "INVALID"  # only pooled Cox has one
    reasons = [e.reason for e in entries(world, "centre-a", hash_of(env), "query.answer") if e.decision == "refused"]
    assert reasons.count("participant_set") == 4 and reasons.count("round_cap") == 2
    second = a.answer_round(qh, 2, [0, 1 << 20, 0, 0, 0], s.signed)
    assert second.kind == "answer"
    answered = [e for e in entries(world, "centre-a", hash_of(env), "query.answer") if e.decision == "answered"]
    assert [(e.detail["round"], e.detail["beta"]) for e in answered] == \
        [(1, [0.0] * 5), (2, [0.0, 2.0 ** -20, 0.0, 0.0, 0.0])]           # every β in the audit log


def test_the_clientapp_takes_its_node_from_the_node_config_never_the_run_config(world: World) -> None:
    """Messages need Flower's engine (the simulation tests send them); where the deployed
    ClientApp finds its node is a pure choice, checked here."""
    from flwr.app import Context, RecordDict

    from oncofed.errors import NodeError
    from oncofed.flower.clientapp import node_dir_of

    root = str(world.centres["centre-b"].node.paths.root)
    ctx = Context(run_id=1, node_id=7, node_config={"node-dir": root}, state=RecordDict(), run_config={})
    assert node_dir_of(ctx) == Path(root)
    lost = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={"node-dir": root})
    with pytest.raises(NodeError, match="node-dir"):
        node_dir_of(lost)


def test_a_centre_that_answered_a_round_cannot_abstain_from_the_run_and_one_that_abstained_answers_none(
        world: World, parts: dict[str, FlowerParticipant]) -> None:
    """Red team: an abstention says "never released q" — and a Flower run's rounds are releases
    of q. The store checked only the query plane's answers, so a hub could get centre-c's
    abstention from a run it had answered and present it with a query-plane retry of the run
    (retry_of = the run's hash) under {a, b}: their ledgers let the same release out under the
    smaller set, and the two sums differenced centre-c. Nor did an abstention stop later rounds."""
    import sqlite3

    from oncofed.node.store import federation as fedstore
    from oncofed.secagg.wire import sign_abstention

    keyring = keyring_of(parts)
    zero = [0] * 5
    c = parts["centre-c"]
    sign_c = lambda q: (lambda: sign_abstention(world.fed.identities["centre-c"], q))  # noqa: E731
    qh, s = accepted(world, parts, envelope(world))
    assert c.answer_round(qh, 1, zero, s.signed).kind == "answer"
    with pytest.raises(fedstore.AlreadyReleased):
        fedstore.abstain(c.conn, qh, sign_c(qh), int(time.time()))
    assert fedstore.abstention_of(c.conn, qh) is None
    with pytest.raises(sqlite3.IntegrityError, match="answered a round"):          # whatever code writes
        c.conn.execute("INSERT INTO fed_abstentions (query_hash, abstention, abstained_at) VALUES (?, x'', 0)", (qh,))
    # abstained before any round: no round of that run is released afterwards, whatever S says
    later, s2 = accepted(world, parts, envelope(world))
    fedstore.abstain(c.conn, later, sign_c(later), int(time.time()))
    reply = c.answer_round(later, 1, zero, s2.signed)
    assert reply.kind == "failure" and read_failure(reply.data, keyring, later).coarse == "POLICY"
    assert c.conn.execute("SELECT count(*) FROM flower_answers WHERE query_hash = ?", (later,)).fetchone()[0] == 0


def test_an_internal_error_goes_to_the_coordinator_as_a_signed_coarse_failure_only(
        world: World, parts: dict[str, FlowerParticipant]) -> None:
    """Red team: an exception the participant did not expect went up through the ClientApp, and
    Flower hands the ServerApp `str(type(ex)) + str(ex)` — whatever the text says (a path of the
    node, a count in an assertion). Now it stays in the centre's log; the ServerApp gets a signed
    failure with a coarse code, as for every refusal."""
    from oncofed.node.config import LEDGER_KEY

    qh, s = accepted(world, parts, envelope(world))
    b = parts["centre-b"]
    key = Path(b.pipeline.node.paths.secret(LEDGER_KEY))
    saved = key.read_bytes()
    key.unlink()                                  # the node's ledger key is gone: its answer cannot be kept
    try:
        reply = b.answer_round(qh, 1, [0] * 5, s.signed)
    finally:
        key.write_bytes(saved)
        key.chmod(0o600)
    assert reply.kind == "failure" and read_failure(reply.data, keyring_of(parts), qh).coarse == "BUSY"
    assert str(key).encode() not in reply.data and LEDGER_KEY.encode() not in reply.data
    failed = [e for e in entries(world, "centre-b", qh.hex(), "query.answer") if e.decision == "failed"]
    assert failed and failed[-1].reason == "internal_error"                  # the detail stays in the audit log
    assert b.answer_round(qh, 1, [0] * 5, s.signed).kind == "answer"          # nothing was released meanwhile
