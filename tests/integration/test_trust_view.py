"""The node's in-memory view of its trust state (NodeTrust.request, trust_state.trust_version) on a
real node store and federation: a verified query reads the trust tables once, and whatever changes
them — the centre admin in another process, the authority's revocation list or registry installed
by another connection, a write by hand — takes effect on the very next query."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from node_fed_helpers import make_fed, query_body, signed

from oncofed.node.node import init_node, open_node
from oncofed.node.trust import NodeTrust
from oncofed.node.verify import QueryVerifier, RequestRefused


@pytest.fixture
def world(tmp_path: Any) -> Iterator[tuple[Any, Any, NodeTrust, QueryVerifier]]:
    fed = make_fed(tmp_path / "fed")
    node = open_node(init_node(tmp_path / "node", "centre-a").root)
    admin = fed.attach(node.paths.store, "centre-a")      # as the admin's CLI would: its own connection
    verifier = QueryVerifier.for_node(node)
    yield fed, node, admin, verifier
    verifier.close()
    admin.close()
    node.close()


def _reason(verifier: QueryVerifier, envelope: bytes) -> str:
    with pytest.raises(RequestRefused) as info:
        verifier.verify(envelope)
    return info.value.reason


def test_a_verified_query_reads_the_trust_tables_once_then_only_their_counter(world: Any) -> None:
    fed, _, admin, verifier = world
    sha = fed.permit(admin)
    seen: list[str] = []
    verifier.trust.conn.set_trace_callback(seen.append)
    verifier.verify(signed(fed.identities["res-1"], query_body(sha)))
    first = [s for s in seen if "trust_" in s]
    seen.clear()
    verifier.verify(signed(fed.identities["res-1"], query_body(sha)))
    again = [s for s in seen if "trust_" in s]
    verifier.trust.conn.set_trace_callback(None)
    assert sum("FROM trust_root" in s for s in first) <= 1, first
    assert sum("FROM trust_documents" in s for s in first) == 2, first      # registry, revocation list
    assert sum("FROM trust_permits" in s for s in first) == 2, first        # found, then its row
    assert again == ["SELECT version FROM trust_version WHERE id = 1"], again


def test_a_centre_admins_revocation_in_another_process_stops_the_next_query(world: Any) -> None:
    fed, _, admin, verifier = world
    sha = fed.permit(admin)
    res1 = fed.identities["res-1"]
    verifier.verify(signed(res1, query_body(sha)))
    admin.revoke(sha, by="test-admin", reason="project closed")
    assert _reason(verifier, signed(res1, query_body(sha))) == "permit_revoked"


def test_the_authoritys_revocations_take_effect_on_the_next_query(world: Any) -> None:
    fed, _, admin, verifier = world
    res1 = fed.identities["res-1"]
    sha = fed.permit(admin)
    other = fed.permit(admin)
    verifier.verify(signed(res1, query_body(sha)))
    verifier.verify(signed(res1, query_body(other)))
    permit_id = admin.permit(sha).permit.permit_id
    fed.authority.revoke_permit(permit_id, "withdrawn")
    admin.install(fed.published("revocations.bin"))
    assert _reason(verifier, signed(res1, query_body(sha))) == "permit_revoked"
    verifier.verify(signed(res1, query_body(other)))                       # the other permit still serves
    fed.authority.revoke_member("res-1", "left the project")
    admin.install(fed.published("registry.bin"))
    admin.install(fed.published("revocations.bin"))
    assert _reason(verifier, signed(res1, query_body(other))) in ("signer_revoked", "unknown_signer")


def test_a_change_made_by_hand_is_seen_too(world: Any) -> None:
    fed, node, admin, verifier = world
    sha = fed.permit(admin)
    res1 = fed.identities["res-1"]
    verifier.verify(signed(res1, query_body(sha)))
    with sqlite3.connect(node.paths.store) as raw:        # any writer: the triggers count it
        raw.execute("UPDATE trust_permits SET status = 'refused' WHERE sha256 = ?", (sha,))
    assert _reason(verifier, signed(res1, query_body(sha))) == "permit_not_approved"
