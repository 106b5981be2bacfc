"""Federated queries end to end on 127.0.0.1 with mutual TLS: a real hub, three centres' nodes
with real stores and outbound connectors, and the researcher's client (DESIGN §4 "Flow").

For every analysis of the catalogue the federated result equals the pooled statistic under a
policy that releases exact cells; the hub's store holds no plaintext; a declining centre is left
out and named; a centre that fails after the participant set is fixed fails the query cleanly;
a replay is refused; a restarted hub loses nothing; a hub that tampers with what it relays is
caught by the client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from federation_world import World, make_world
from result_compare import assert_close

from oncofed import dictionary as dictmod
from oncofed.analyses import KINDS, finalise_query
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy

EXAMPLES: dict[str, Any] = {
    "count": "count",
    "crosstab": {"crosstab": {"fields": ["stage_summary", "her2"]}},
    "summary": {"summary": {"field": "age_at_incidence", "unit_bins": True}},
    "histogram": {"histogram": {"field": "age_at_incidence"}},
    "kaplan_meier": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}},
    "logrank": {"logrank": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}},
    "logistic": {"logistic": {"outcome": "her2", "positive": ["pos"], "covariates": ["age_at_incidence", "er"],
                              "beta_scale_bits": 8, "beta": [-200, 2, 30, -10, 5]}},
    "cox": {"cox": {"outcome": "OS", "cutoff": "2025-12-31", "covariates": ["age_at_incidence", "stage_summary"],
                    "beta_scale_bits": 8, "beta": [4, 50, 120, 30]}},
    "poisson": {"poisson": {"outcome": "OS", "cutoff": "2025-12-31",
                            "covariates": ["age_at_incidence", "stage_summary"], "step_days": 730,
                            "horizon_days": 3650, "beta_scale_bits": 8,
                            "beta": [-2200] * 5 + [3, 60, 150, 20]}},
    "cox_pooled": {"cox_pooled": {"outcome": "OS", "cutoff": "2025-12-31", "covariates": ["age_at_incidence"],
                                  "step_days": 90, "beta_scale_bits": 8, "beta": [4], "offset": 250}},
    "fedavg": {"fedavg": {"outcome": "her2", "positive": ["pos"], "covariates": ["age_at_incidence", "er"],
                          "beta_scale_bits": 8, "beta": [-200, 2, 30, -10, 5], "clip_norm": 0.5}},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("fed"))
    w.start_hub()
    for c in w.centres.values():
        c.start(w.fed, w.target)
    w.wait_connected()
    yield w
    w.close()


@pytest.fixture(scope="module")
def pooled(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = open_node(init_node(tmp_path_factory.mktemp("pooled") / "pooled", "pooled").root)
    for f in sorted((world.base / "csv").glob("*.csv")):
        node.ingest(f)
    yield node
    node.close()


@pytest.mark.parametrize("kind", KINDS)
def test_federated_result_equals_the_pooled_statistic(world: World, pooled: Any, kind: str) -> None:
    body = world.body(EXAMPLES[kind])
    result = world.client().run(body, dictionary=dictmod.load(), timeout=60)
    assert result.participants == tuple(sorted(world.centres)) and result.declined == {}
    if kind in ("cox", "fedavg"):   # stratified Cox, FedAvg: the sum of each centre's own, not the pooled rows'
        from oncofed.query import sum_vectors

        own = [answer(c.node, body, None, policy=NodePolicy(mode="none")).vector for c in world.centres.values()]
        expected = finalise_query(body, dictmod.load(), sum_vectors(own))
        expected["centres"] = 1
    else:
        exact = answer(pooled, body, None, policy=NodePolicy(mode="none"))
        expected = finalise_query(body, dictmod.load(), exact.vector)
    got = dict(result.result)
    assert got.pop("centres") == 3 and expected.pop("centres") == 1
    empty, _ = got.pop("suppressed_groups", {}), expected.pop("suppressed_groups", {})
    for group in empty:                    # flagged at k = 1: the centres hold no row of it
        assert group not in expected.get("curves", {}) and group not in expected.get("groups", [])
    assert_close(got, expected)


def _hub_bytes(world: World) -> bytes:
    assert world.hub is not None
    return b"\x00".join(world.hub.store.dump())


def test_the_hub_holds_no_plaintext_query_or_answer(world: World) -> None:
    """Every byte the hub stored (and so relayed): no query body, no field name, no vector."""
    body = world.body({"crosstab": {"fields": ["stage_summary", "her2"]}}, cohort={"field": "sex", "equals": "2"})
    client = world.client()
    sub = client.submit(body)
    state = client.follow(sub, timeout=60)
    result = client.collect(sub, state, dictmod.load())
    stored = _hub_bytes(world)
    for secret in (sub.body.SerializeToString(), sub.envelope, b"stage_summary", b"her2", sub.body.nonce):
        assert secret not in stored
    # nor any centre's answer vector: none of the plaintext cells (16-byte little-endian) appears
    for cell in result.result["cells"]:
        if cell["count"] > 1:
            assert cell["count"].to_bytes(16, "little") not in stored
    assert sub.query_hash in stored                      # routing metadata is there, as designed


def test_a_declining_centre_is_named_and_left_out(world: World) -> None:
    """A permit centre C has not approved: C declines with a coarse code, A and B answer."""
    import time

    now = int(time.time())
    _, doc = world.fed.authority.issue_permit(
        researcher_id="res-1", project_title="Only A and B", analyses=["count"], fields=["sex"], min_cell_count=1,
        not_before=now - 60, not_after=now + 86_400)
    for centre in ("centre-a", "centre-b", "centre-c"):
        trust = world.centres[centre].pipeline.verifier.trust
        trust.add_permit(doc.data)
        if centre != "centre-c":
            trust.approve(doc.sha256, by="test-admin")
    body = world.body("count", min_participants=2)
    body.permit_hash = bytes.fromhex(doc.sha256)
    result = world.client().run(body, dictionary=dictmod.load(), timeout=60)
    assert result.participants == ("centre-a", "centre-b")
    assert result.declined == {"centre-c": "NOT_APPROVED"}
    assert result.result["centres"] == 2


def test_too_few_participants_fails_cleanly(world: World) -> None:
    from oncofed.federation.client.client import ClientError

    body = world.body("count")
    body.permit_hash = bytes(32)                         # approved nowhere: every centre declines
    with pytest.raises(ClientError, match="too few participants") as failed:
        world.client().run(body, dictionary=dictmod.load(), timeout=60)
    # the error names who declined and the coarse reason each signed, nothing more
    assert str(failed.value).endswith("; declined: " + ", ".join(f"{c} (NOT_APPROVED)" for c in sorted(world.centres)))


def test_a_replayed_query_is_refused_by_every_centre(world: World) -> None:
    """The same signed query again — resubmitted, relabelled by a hub, or handed to a centre's
    pipeline directly — is never answered twice."""
    import time

    import grpc

    from oncofed.keys.sealing import seal
    from oncofed.node.verify import RequestRefused
    from oncofed.secagg.wire import QUERY_SEAL_CONTEXT
    from oncofed.v1 import federation_pb2 as fpb

    client = world.client()
    sub = client.submit(world.body("count"))
    client.follow(sub, timeout=60)
    registry, _ = client.trust()
    sealed = {}
    for centre in sub.body.target_centres:
        member = registry.member(centre)
        assert member is not None
        sealed[centre] = seal(sub.envelope, member.identity, sender=world.researcher.identity,
                              context=QUERY_SEAL_CONTEXT.format(centre=centre))
    again = fpb.SubmitRequest(query_hash=sub.query_hash, permit_hash=sub.body.permit_hash,
                              targets=list(sub.body.target_centres), min_participants=2,
                              expires_at=sub.body.expires_at, sealed=sealed)
    with pytest.raises(grpc.RpcError) as exc:
        client.stub.Submit(again)
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # a hub that relabels the same sealed bytes under a new routing id: every centre declines
    again.query_hash = bytes(32)
    client.stub.Submit(again)
    assert world.hub is not None
    deadline = time.monotonic() + 30
    while (state := world.hub.service.state(again.query_hash)).state not in ("complete", "failed", "expired"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert state.state == "failed" and {(c.state, c.coarse) for c in state.centres} == {("declined", "INVALID")}
    # and the envelope itself, however it arrives, is a replay at every centre
    for centre in world.centres.values():
        with pytest.raises(RequestRefused) as refused:
            centre.pipeline.accept_envelope(sub.envelope)
        assert refused.value.reason == "replayed_nonce"


# ---------------------------------------------------------------------------- a hub that lies


def _completed(world: World, analysis: Any = "count") -> tuple[Any, Any, Any]:
    client = world.client()
    sub = client.submit(world.body(analysis))
    return client, sub, client.follow(sub, timeout=60)


def test_reordered_answers_and_accepts_still_give_the_right_sum(world: World) -> None:
    client, sub, state = _completed(world)
    honest = client.collect(sub, state, dictmod.load()).result
    shuffled = type(state).FromString(state.SerializeToString())
    shuffled.answers.reverse()
    assert client.collect(sub, shuffled, dictmod.load()).result == honest


@pytest.mark.parametrize("tamper", ["drop_answer", "duplicate_answer", "drop_accept", "swap_mask_key",
                                    "answer_from_another_query"])
def test_the_client_detects_a_hub_that_tampers(world: World, tamper: str) -> None:
    from oncofed.federation.client.client import ClientError

    client, sub, state = _completed(world)
    bad = type(state).FromString(state.SerializeToString())
    if tamper == "drop_answer":
        del bad.answers[0]
    elif tamper == "duplicate_answer":
        bad.answers.append(bad.answers[0])
    elif tamper == "drop_accept":                 # a forged, smaller participant set
        del bad.participants[0]
    elif tamper == "swap_mask_key":               # a hub that puts its own key into a centre's accept
        accept = bytearray(bad.participants[1])
        accept[-100] ^= 0x01
        bad.participants[1] = bytes(accept)
    else:
        _, _, other = _completed(world)
        bad.answers[0].CopyFrom(other.answers[0])
    with pytest.raises(ClientError):
        client.collect(sub, bad, dictmod.load())


# ---------------------------------------------------------------------------- failures and restarts


def test_a_centre_lost_after_the_set_is_fixed_fails_the_query_and_a_retry_succeeds(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Four targets; centre-d is down, so the set is fixed when the prepare time is up. centre-c
    accepts, then dies before answering: the query fails, naming centre-c, with no partial sum.
    The retry — a new query — succeeds once centre-c is back."""
    import time

    from oncofed.federation.client.client import ClientError

    w = make_world(tmp_path_factory.mktemp("lost"), centres=("centre-a", "centre-b", "centre-c", "centre-d"),
                   patients=120, prepare_seconds=3, answer_seconds=3)
    try:
        w.start_hub()
        for cid in ("centre-a", "centre-b", "centre-c"):
            w.centres[cid].start(w.fed, w.target)
        w.centres["centre-d"].connector = None
        client = w.client()
        sub = client.submit(w.body("count", min_participants=3))
        assert w.hub is not None
        deadline = time.monotonic() + 30
        while not {c.centre for c in w.hub.service.state(sub.query_hash).centres if c.state == "accepted"} >= \
                {"centre-a", "centre-b", "centre-c"}:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        w.centres["centre-c"].stop()                        # lost before the set is fixed at 3 s
        state = client.follow(sub, timeout=30)
        assert state.state == "failed" and "centre-c" in state.error and "no partial sum" in state.error
        with pytest.raises(ClientError, match="centre-c"):
            client.collect(sub, state, dictmod.load())
        w.centres["centre-c"].start(w.fed, w.target)
        retry = client.run(w.body("count", targets=("centre-a", "centre-b", "centre-c")), dictionary=dictmod.load(),
                           timeout=30)
        assert retry.participants == ("centre-a", "centre-b", "centre-c")
    finally:
        w.close()


def test_a_hub_restarted_mid_queue_loses_nothing_and_nodes_reconnect(tmp_path_factory: pytest.TempPathFactory,
                                                                    ) -> None:
    """A query waits in the hub's queue while no centre is connected; the hub restarts; the
    centres, started while it was down, connect once it is up and the query completes."""
    w = make_world(tmp_path_factory.mktemp("restart"), patients=120)
    try:
        w.start_hub()
        client = w.client()
        sub = client.submit(w.body("count"))
        w.stop_hub()
        for c in w.centres.values():                        # nodes started before the hub is up
            c.start(w.fed, w.target)
        w.start_hub()
        w.wait_connected(timeout=30)
        state = client.follow(sub, timeout=60)
        result = client.collect(sub, state, dictmod.load())
        assert result.participants == tuple(sorted(w.centres)) and result.result["count"] > 0
    finally:
        w.close()


def test_a_resent_answer_is_byte_identical_and_another_set_is_refused(world: World) -> None:
    """At-least-once delivery: the answer task again under the same S gets the stored sealed
    answer byte for byte (no new release, no new masks); under another S, a failure notice."""
    _client, sub, state = _completed(world)
    centre = world.centres["centre-a"]
    assert centre.connector is not None
    sent = {a.centre: a.sealed for a in state.answers}
    again = centre.connector.answer(sub.query_hash, list(state.participants))
    assert again.WhichOneof("reply") == "sealed_answer" and again.sealed_answer == sent["centre-a"]
    smaller = [p for p in state.participants if b"centre-c" not in p]
    assert len(smaller) == len(state.participants) - 1
    other = centre.connector.answer(sub.query_hash, smaller)
    assert other.WhichOneof("reply") == "failure"
    prepared = centre.connector.prepare(sub.query_hash, b"")       # a redelivered prepare: the same accept
    assert prepared.WhichOneof("reply") == "accept" and prepared.accept in state.participants


def _researcher_toml(world: World, path: Any, address: str) -> Any:
    fed = world.fed
    path.write_text(
        f'[hub]\naddress = "{address}"\n\n[credentials]\n'
        f'identity_key = "{world.base / "identity-res-1" / "identity.key"}"\n'
        f'tls_key = "{fed.tls_keys["res-1"]}"\ncert = "{fed.cert_path("researcher", "res-1")}"\n'
        f'root_cert = "{world.base / "root.cert.pem"}"\nroot_fingerprint = "{fed.authority.root.fingerprint}"\n',
        "utf-8")
    return path


def test_query_run_cli_prints_the_result_and_a_dead_hub_is_one_line(world: World, tmp_path: Any) -> None:
    import json
    import os
    import subprocess
    import sys

    query = tmp_path / "q.json"
    query.write_text('{"analysis": {"crosstab": {"fields": ["her2"]}}}', "utf-8")
    cfg = _researcher_toml(world, tmp_path / "researcher.toml", world.target)
    permit = world.centres["centre-a"].permit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-m", "oncofed", "query", "run", str(query), "-c", str(cfg), "--permit",
                          permit, "--to", ",".join(world.centres), "--json", "--csv", str(tmp_path / "out.csv")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["result"]["analysis"] == "crosstab" and out["participants"] == sorted(world.centres)
    assert (tmp_path / "out.csv").read_text("utf-8").startswith("her2,count")
    listed = subprocess.run([sys.executable, "-m", "oncofed", "query", "list", "-c", str(cfg), "--json"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert json.loads(listed.stdout)[0]["query_hash"] == out["query_hash"]
    dead = _researcher_toml(world, tmp_path / "dead.toml", "127.0.0.1:1")
    down = subprocess.run([sys.executable, "-m", "oncofed", "query", "run", str(query), "-c", str(dead), "--permit",
                           permit, "--to", ",".join(world.centres)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert down.returncode == 4 and down.stderr.strip().count("\n") == 0
    assert "hub is unreachable" in down.stderr


def test_under_default_disclosure_the_sum_is_the_centres_own_releases(tmp_path_factory: pytest.TempPathFactory
                                                                    ) -> None:
    """Cell key, k = 10 (the default policy): the federated result is exactly the finalised sum of
    what each centre releases on its own — secure aggregation adds nothing and hides nothing of it."""
    from oncofed.query import sum_vectors

    policy = NodePolicy(rate_per_minute=10_000, rate_per_day=100_000)
    w = make_world(tmp_path_factory.mktemp("cellkey"), patients=300, policy=policy)
    try:
        w.start_hub()
        for c in w.centres.values():
            c.start(w.fed, w.target)
        w.wait_connected()
        for analysis in (EXAMPLES["crosstab"], EXAMPLES["kaplan_meier"], EXAMPLES["summary"]):
            body = w.body(analysis)
            result = w.client().run(body, dictionary=dictmod.load(), timeout=60)
            own = []
            for centre in w.centres.values():
                permit = centre.pipeline.verifier.trust.authorise(body.permit_hash.hex())
                own.append(answer(centre.node, body, permit, policy=policy).vector)
            expected = finalise_query(body, dictmod.load(), sum_vectors(own))
            assert result.result == expected and result.result["centres"] == 3
    finally:
        w.close()


def test_the_same_rows_under_another_set_of_centres_are_refused(world: World) -> None:
    """C = (A + B + C) − (A + B): once a cohort was summed over {a, b, c}, a and b do not release
    it again summed over {a, b} — the query fails with a coarse POLICY, nothing is summed."""
    from oncofed.federation.client.client import ClientError

    cohort = {"field": "her2", "equals": "pos"}
    full = world.client().run(world.body("count", cohort=cohort), dictionary=dictmod.load(), timeout=60)
    assert full.participants == ("centre-a", "centre-b", "centre-c")
    again = world.client().run(world.body("count", cohort=cohort), dictionary=dictmod.load(), timeout=60)
    assert again.result == full.result                      # the same set again: the same release
    with pytest.raises(ClientError, match="failed after the participant set was fixed"):
        world.client().run(world.body("count", cohort=cohort, targets=("centre-a", "centre-b")),
                           dictionary=dictmod.load(), timeout=60)


_LOGISTIC = {"outcome": "her2", "positive": ["pos"], "covariates": ["age_at_incidence", "er"], "beta_scale_bits": 8}
# Pairs of releases over the same rows whose specs differ but whose sums difference each other:
# what the first gives summed over {a, b, c} minus what the second gives over {a, b} is centre-c's.
_RELATED = {
    # a model round's label changes nothing in the answer: β alike, round 1 then round 2
    "round_label": ({"logistic": {**_LOGISTIC, "beta": [-200, 2, 30, -10, 5], "round": 1}},
                    {"logistic": {**_LOGISTIC, "beta": [-200, 2, 30, -10, 5], "round": 2}}),
    # "none: all 0" and explicit zeros are the same β
    "beta_encoding": ({"logistic": {**_LOGISTIC, "round": 1}},
                      {"logistic": {**_LOGISTIC, "beta": [0, 0, 0, 0, 0], "round": 1}}),
    # a crosstab's cells sum to the count of the same rows
    "another_analysis": ({"crosstab": {"fields": ["sex"]}}, "count"),
}


@pytest.mark.parametrize("variant", sorted(_RELATED))
def test_related_releases_of_the_same_rows_under_a_smaller_set_are_refused(world: World, variant: str) -> None:
    """Red team: the participant-set check must hold for the *rows*, not for one spelling of the
    analysis. A researcher alone (targets are hers to choose) asked the same rows over {a, b, c}
    and then, in another spelling, over {a, b}; each of a and b released both, and the difference
    of the two sums was centre-c's figures (round label, β encoding, a crosstab's margin)."""
    from oncofed.federation.client.client import ClientError

    cohort = {"field": "stage_summary", "equals": {"round_label": "localised", "beta_encoding": "regional",
                                                    "another_analysis": "distant"}[variant]}
    first, second = _RELATED[variant]
    full = world.client().run(world.body(first, cohort=cohort), dictionary=dictmod.load(), timeout=60)
    assert full.participants == ("centre-a", "centre-b", "centre-c")
    again = world.client().run(world.body(first, cohort=cohort), dictionary=dictmod.load(), timeout=60)
    assert again.result == full.result                        # the same set again: the same release
    with pytest.raises(ClientError, match="failed after the participant set was fixed"):
        world.client().run(world.body(second, cohort=cohort, targets=("centre-a", "centre-b")),
                           dictionary=dictmod.load(), timeout=60)
