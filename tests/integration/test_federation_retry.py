"""A retry after a member failed, end to end on 127.0.0.1 with mutual TLS (DESIGN §4 "Flow";
decision D26): a real hub, real node stores and outbound connectors, the researcher's client.

centre-d is a target that never comes up, so the participant set is fixed when the prepare time is
up; centre-c accepts and is stopped before it answers. The query fails naming centre-c, with no
partial sum. A retry over {a, b} waits for centre-c's signed abstention and fails clearly while
centre-c is down; once centre-c is back it abstains and the retry gives the pooled result of a
and b. Retries without a valid abstention — none, forged, from another query, or leaving out a
centre that answered — are refused by a member that released; a centre that released refuses to
abstain, and one that abstained never releases the failed query afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from federation_world import World, make_world

from oncofed import dictionary as dictmod
from oncofed.federation.client.client import FederationClient, QueryFailed
from oncofed.keys.envelope import sign, unverified_body
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.node.store import federation as fedstore
from oncofed.secagg.wire import ABSTENTION_TAG, FAILURE_TAG, read_abstention
from oncofed.v1 import federation_pb2 as fpb
from oncofed.v1 import query_pb2 as pb

CENTRES = ("centre-a", "centre-b", "centre-c", "centre-d")
COHORT = {"field": "her2", "equals": "neg"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("retry"), centres=CENTRES, patients=120, prepare_seconds=3,
                   answer_seconds=3)
    w.start_hub()
    for cid in CENTRES[:3]:
        w.centres[cid].start(w.fed, w.target)
    w.wait_connected(centres=CENTRES[:3])
    yield w
    w.close()


def _hub_state(world: World, qh: bytes) -> fpb.QueryState:
    assert world.hub is not None
    return world.hub.service.state(qh)


def _wait(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _lose_c_after_it_accepts(world: World, client: FederationClient, body: pb.QueryBody) -> Any:
    """Submit `body` to all four; stop centre-c once a, b and c accepted (d never replies, so the
    set — a, b, c — is fixed only when the prepare time is up, after centre-c is gone)."""
    sub = client.submit(body)
    _wait(lambda: {c.centre for c in _hub_state(world, sub.query_hash).centres if c.state == "accepted"}
          >= {"centre-a", "centre-b", "centre-c"}, "a, b and c accept")
    world.centres["centre-c"].stop()
    return sub


def _local_count(world: World, body: pb.QueryBody, centres: tuple[str, ...]) -> int:
    """What the centres' own rows give, exactly (the world's policy releases exact counts)."""
    return sum(answer(world.centres[c].node, body, None, policy=NodePolicy(mode="none")).vector[0] for c in centres)


def _prepared(world: World, client: FederationClient, body: pb.QueryBody, retry_of: bytes,
              centres: tuple[str, ...]) -> tuple[bytes, list[bytes]]:
    """A retry signed and sealed by the researcher and prepared at `centres` directly (a hub that
    forms its own set): its hash and the centres' signed accepts."""
    body = pb.QueryBody.FromString(body.SerializeToString())
    body.target_centres[:] = list(centres)
    body.min_participants = 2
    sub, request = client.sealed(body, retry_of=retry_of)
    accepts = []
    for c in centres:
        connector = world.centres[c].connector
        assert connector is not None
        push = connector.prepare(sub.query_hash, request.sealed[c])
        assert push.WhichOneof("reply") == "accept", push
        accepts.append(push.accept)
    return sub.query_hash, accepts


def test_a_lost_member_fails_the_query_and_the_retry_with_its_abstention_succeeds(world: World) -> None:
    client = world.client()
    body = world.body("count", cohort=COHORT, min_participants=3)
    failed = _lose_c_after_it_accepts(world, client, body)
    state = client.follow(failed, timeout=30)
    assert state.state == "failed" and list(state.failed_centres) == ["centre-c"]
    assert {a.centre for a in state.answers} == {"centre-a", "centre-b"}       # masked halves, no sum
    with pytest.raises(QueryFailed) as exc:
        client.collect(failed, state, dictmod.load())
    assert exc.value.failed_centres == ("centre-c",) and exc.value.retry_of == failed.query_hash
    assert "centre-c" in str(exc.value) and "no partial sum" in str(exc.value)
    q = failed.query_hash
    assert client.retry_targets(q) == ["centre-a", "centre-b"]
    retry_body = world.body("count", cohort=COHORT, targets=("centre-a", "centre-b"), min_participants=2)

    # centre-c is down: the retry waits for its abstention, then fails naming it
    waiting = client.submit(retry_body, retry_of=q)
    _wait(lambda: _hub_state(world, waiting.query_hash).state == "abstaining", "the retry waits")
    state = client.follow(waiting, timeout=30)
    assert state.state == "failed" and list(state.failed_centres) == ["centre-c"]
    assert "no abstention from centre-c" in state.error
    with pytest.raises(QueryFailed) as exc:
        client.collect(waiting, state, dictmod.load())
    assert exc.value.retry_of == q                  # the next retry names the failed query again

    # back, centre-c finds the abstain task and abstains (its store never recorded an answer to q)
    world.centres["centre-c"].start(world.fed, world.target)
    c_store = world.centres["centre-c"].node.conn
    _wait(lambda: fedstore.abstention_of(c_store, q) is not None, "centre-c abstains")
    assert fedstore.answers_of(c_store, q) == []
    assert fedstore.pending(c_store, q) is not None and fedstore.pending(c_store, q)[2] is None  # no mask secret

    # retries without a valid abstention are refused by a member that released under {a, b, c}
    a = world.centres["centre-a"].connector
    assert a is not None
    registry, _ = client.trust()
    c_abstention = fedstore.abstention_of(c_store, q)
    assert c_abstention is not None
    assert read_abstention(c_abstention, registry.keyring("centre"), q).centre == "centre-c"
    forged = sign(world.researcher.identity, ABSTENTION_TAG,
                  fpb.AbstentionBody(query_hash=q, centre="centre-c").SerializeToString())
    c_connector = world.centres["centre-c"].connector
    assert c_connector is not None
    other = c_connector.abstain(os.urandom(32)).abstention           # genuine, from another query
    for presented in ([], [forged], [other]):
        qh, accepts = _prepared(world, client, retry_body, q, ("centre-a", "centre-b"))
        refused = a.answer(qh, accepts, presented)
        assert refused.WhichOneof("reply") == "failure", presented
        assert fpb.FailureBody.FromString(unverified_body(refused.failure, tag=FAILURE_TAG)).coarse == "POLICY"
        assert fedstore.answers_of(world.centres["centre-a"].node.conn, qh) == []
    # leaving out centre-b, which answered q, with centre-c's genuine abstention: still refused
    qh, accepts = _prepared(world, client, retry_body, q, ("centre-a", "centre-c"))
    assert a.answer(qh, accepts, [c_abstention]).WhichOneof("reply") == "failure"
    assert fedstore.answers_of(world.centres["centre-a"].node.conn, qh) == []
    # a centre that released refuses to abstain; one that abstained refuses to release q
    assert a.abstain(q).WhichOneof("reply") == "failure"
    with pytest.raises(fedstore.AlreadyReleased):
        fedstore.abstain(world.centres["centre-a"].node.conn, q, lambda: b"never signed", 0)
    assert c_connector.answer(q, list(_hub_state(world, q).participants)).WhichOneof("reply") == "failure"
    assert fedstore.answers_of(c_store, q) == []

    # the retry through the hub, with centre-c's abstention: the pooled count of a and b
    result = client.run(retry_body, dictionary=dictmod.load(), timeout=30, retry_of=q)
    assert result.participants == ("centre-a", "centre-b") and result.abstained == ("centre-c",)
    assert result.retry_of == q.hex() and result.result["centres"] == 2
    assert result.result["count"] == _local_count(world, retry_body, ("centre-a", "centre-b")) > 0
    assert "abstained from it: centre-c" in result.text()


def test_query_run_names_the_failed_centre_and_retry_of_completes(world: World, tmp_path: Path) -> None:
    """The CLI: a run that loses centre-c exits 4 with one line naming it and the retry command;
    that command, once centre-c is back, prints the result of a and b."""
    from test_federation import _researcher_toml

    query = tmp_path / "q.json"
    query.write_text('{"cohort": {"field": "her2", "equals": "pos"}, "analysis": "count"}', "utf-8")
    cfg = _researcher_toml(world, tmp_path / "researcher.toml", world.target)
    permit = world.centres["centre-a"].permit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert world.hub is not None
    seen = {q.query_hash for q in world.hub.store.recent_queries(1000)}
    run = subprocess.Popen([sys.executable, "-m", "oncofed", "query", "run", str(query), "-c", str(cfg), "--permit",
                            permit, "--to", ",".join(CENTRES), "--min-participants", "3", "--timeout", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        def accepted() -> bool:
            for q in world.hub.store.open_queries():            # type: ignore[union-attr]
                if q.query_hash not in seen:
                    states = {c.centre: c.state for c in _hub_state(world, q.query_hash).centres}
                    return all(states.get(c) == "accepted" for c in CENTRES[:3])
            return False

        _wait(accepted, "the CLI's query is accepted by a, b and c", timeout=60)
        world.centres["centre-c"].stop()
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 4, (out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") and "failed: centre-c" in last and "--retry-of" in last
    retry_of = last.split("--retry-of ")[1].split()[0]
    world.centres["centre-c"].start(world.fed, world.target)
    again = subprocess.run([sys.executable, "-m", "oncofed", "query", "run", str(query), "-c", str(cfg), "--permit",
                            permit, "--retry-of", retry_of, "--timeout", "60"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "participants: centre-a, centre-b" in again.stdout
    assert "abstained from it: centre-c" in again.stdout
