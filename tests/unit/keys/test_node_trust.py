"""A node's trust state on a real SQLite store: pinning, registry versions, staleness, permits."""

from __future__ import annotations

import time

import pytest
from trust_helpers import DAY, make_federation, make_node, request_for

from oncofed.keys.errors import NotPinned, PermitRefused, StaleTrust, TrustError
from oncofed.keys.identity import Identity
from oncofed.keys.registry import (
    Registry,
    RevocationList,
    sign_registry,
    sign_revocations,
    verify_registry,
)


@pytest.fixture
def fed(tmp_path):
    return make_federation(tmp_path)


def now():
    return int(time.time())


# --- root and documents -----------------------------------------------------------------------

def test_pinning_needs_the_out_of_band_fingerprint_and_happens_once(fed, tmp_path):
    trust = make_node(tmp_path)
    with pytest.raises(TrustError, match="does not have the fingerprint you gave") as wrong:
        trust.pin_root(fed.cert, "00" * 32)
    assert fed.fingerprint not in str(wrong.value)  # never shown: it would invite a paste
    assert trust.root_fingerprint() is None
    assert trust.pin_root(fed.cert, fed.fingerprint.upper()) == fed.fingerprint
    assert trust.pin_root(fed.cert, fed.fingerprint) == fed.fingerprint  # idempotent
    other = make_federation(tmp_path, name="other")
    with pytest.raises(TrustError, match="already pinned"):
        trust.pin_root(other.cert, other.fingerprint)


def test_nothing_is_trusted_before_pinning(fed, tmp_path):
    trust = make_node(tmp_path)
    assert trust.status().state == "not-pinned"
    with pytest.raises(NotPinned):
        trust.update_registry(fed.published("registry.bin"))
    with pytest.raises(NotPinned):
        trust.authorise("00" * 32)


def test_fresh_node_is_ready_and_reports_the_members_added(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    st = trust.status()
    assert st.ready, st.message
    assert st.registry.version == 1
    changes = trust.changes_in_latest()
    assert [m.member_id for m in changes.added] == ["centre-a", "centre-b", "res-1"]


def test_newer_registry_shows_only_what_changed(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    fed.enroll("centre", "centre-new")
    fed.authority.publish()
    changes = trust.update_registry(fed.published("registry.bin"))
    assert [m.member_id for m in changes.added] == ["centre-new"]
    assert [m.member_id for m in trust.changes_in_latest().added] == ["centre-new"]
    assert trust.update_registry(fed.published("registry.bin")) is None  # already held


def test_older_registry_is_refused(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    v1 = fed.published("registry.bin")
    fed.authority.publish()
    trust.update_registry(fed.published("registry.bin"))
    with pytest.raises(TrustError, match="older than the version 2"):
        trust.update_registry(v1)
    assert trust.registry().version == 2


def test_older_revocation_list_is_refused(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    v1 = fed.published("revocations.bin")
    fed.authority.publish(registry=False)
    trust.update_revocations(fed.published("revocations.bin"))
    with pytest.raises(TrustError, match="older"):
        trust.update_revocations(v1)


def test_same_version_with_different_bytes_is_refused(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    held = verify_registry(fed.cert, fed.fingerprint, fed.published("registry.bin"))
    twin = Registry(held.federation, held.version, held.issued_at, held.next_update + 60,
                    held.root_fingerprint, held.members)
    with pytest.raises(TrustError, match="same version"):
        trust.update_registry(sign_registry(fed.authority.root, twin))


def test_stale_registry_is_refused_at_install(fed, tmp_path):
    trust = make_node(tmp_path, fed, install=False)
    t = now()
    stale = Registry("test-federation", 5, t - 10 * DAY, t - DAY, fed.fingerprint)
    with pytest.raises(StaleTrust, match="stale"):
        trust.update_registry(sign_registry(fed.authority.root, stale))
    future = Registry("test-federation", 5, t + DAY, t + 2 * DAY, fed.fingerprint)
    with pytest.raises(TrustError, match="future"):
        trust.update_registry(sign_registry(fed.authority.root, future))


def test_node_stops_answering_once_its_registry_is_stale(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit(not_after=now() + 60 * DAY)
    trust.add_permit(data)
    trust.approve(sha, by="admin")
    reg = trust.registry()
    assert trust.authorise(sha, at=reg.next_update - 1).permit_id
    st = trust.status(at=reg.next_update)
    assert not st.ready
    assert st.state == "stale-registry"
    assert "not answering" in st.message
    with pytest.raises(StaleTrust):
        trust.authorise(sha, at=reg.next_update)
    with pytest.raises(StaleTrust):
        trust.keyring(at=reg.next_update)


def test_node_stops_answering_when_the_revocation_list_is_stale(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    t = now()
    fed.authority.publish(valid_days=30, registry=True)  # registry v2, lists v2 (30 days)
    trust.update_registry(fed.published("registry.bin"))
    short = RevocationList(3, t, t + 3600, fed.fingerprint)
    trust.update_revocations(sign_revocations(fed.authority.root, short))
    assert trust.status(at=t + 3599).ready
    assert trust.status(at=t + 3600).state == "stale-revocations"


def test_documents_from_another_root_are_refused(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    other = make_federation(tmp_path, name="other")
    with pytest.raises(TrustError, match="pinned federation root"):
        trust.update_registry(other.published("registry.bin"))
    with pytest.raises(TrustError, match="pinned federation root"):
        trust.update_revocations(other.published("revocations.bin"))


def test_a_centre_missing_from_the_registry_does_not_answer(fed, tmp_path):
    trust = make_node(tmp_path, fed, centre="centre-x")
    assert trust.status().state == "not-a-member"
    with pytest.raises(TrustError, match="not a centre"):
        trust.require_ready()


def test_install_tells_registry_from_revocation_list(fed, tmp_path):
    trust = make_node(tmp_path, fed, install=False)
    assert trust.install(fed.published("revocations.bin"))[0] == "revocations"
    assert trust.install(fed.published("registry.bin"))[0] == "registry"


def test_keyring_leaves_out_revoked_members(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    assert fed.members["centre-b"].public.signing_key_id in trust.keyring()
    # a revocation list naming centre-b's key takes effect before any new registry arrives
    fed.authority.revoke_member("centre-b", "compromised")
    trust.update_revocations(fed.published("revocations.bin"))
    assert trust.registry().version == 1
    assert fed.members["centre-b"].public.signing_key_id not in trust.keyring()


# --- permits ----------------------------------------------------------------------------------

def test_approved_permit_is_authorised_by_its_exact_hash(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit()
    rec = trust.add_permit(data)
    assert rec.status == "pending"
    with pytest.raises(PermitRefused, match="not approved"):
        trust.authorise(sha)
    approved = trust.approve(sha[:12], by="alice")
    assert (approved.status, approved.decided_by) == ("approved", "alice")
    assert trust.authorise(sha).researcher == fed.members["res-1"].public
    with pytest.raises(PermitRefused, match="not approved"):
        trust.authorise(sha[:-1] + ("0" if sha[-1] != "0" else "1"))


def test_changed_permit_is_refused(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, _ = fed.permit()
    for pos in (30, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(PermitRefused, match="not a permit signed by the pinned"):
            trust.add_permit(bytes(bad))


def test_permit_signed_by_a_non_root_key_is_refused(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    other = make_federation(tmp_path, name="rogue")
    rogue_permit, _ = other.permit()
    with pytest.raises(PermitRefused, match="not a permit signed by the pinned"):
        trust.add_permit(rogue_permit)


def test_expired_permit_is_refused(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    t = now()
    data, _ = fed.permit(not_before=t - 10 * DAY, not_after=t - DAY)
    with pytest.raises(PermitRefused, match="expired"):
        trust.add_permit(data)
    data, sha = fed.permit(not_before=t - DAY, not_after=t + 100)
    trust.add_permit(data)
    trust.approve(sha, by="admin")
    assert trust.authorise(sha, at=t + 99)
    with pytest.raises(PermitRefused, match="expired"):
        trust.authorise(sha, at=t + 100)


def test_not_yet_valid_permit_may_be_approved_but_not_used(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    t = now()
    data, sha = fed.permit(not_before=t + DAY, not_after=t + 30 * DAY)
    trust.add_permit(data)
    trust.approve(sha, by="admin")
    with pytest.raises(PermitRefused, match="not valid before"):
        trust.authorise(sha, at=t)


def test_permit_approved_at_one_centre_is_not_approved_at_another(fed, tmp_path):
    a, b = make_node(tmp_path, fed, "centre-a"), make_node(tmp_path, fed, "centre-b")
    data, sha = fed.permit()
    a.add_permit(data)
    a.approve(sha, by="admin-a")
    b.add_permit(data)
    assert a.authorise(sha)
    with pytest.raises(PermitRefused, match="not approved"):
        b.authorise(sha)


def test_permit_addressed_elsewhere_cannot_be_added(fed, tmp_path):
    trust = make_node(tmp_path, fed, "centre-a")
    data, _ = fed.permit(data_holders=["centre-b"])
    with pytest.raises(PermitRefused, match="not addressed to centre-a"):
        trust.add_permit(data)


def test_local_revocation_is_immediate_and_final(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit()
    trust.add_permit(data)
    trust.approve(sha, by="admin")
    trust.revoke(sha, by="admin", reason="ethics withdrawn")
    with pytest.raises(PermitRefused, match="not approved"):
        trust.authorise(sha)
    with pytest.raises(PermitRefused, match="is revoked"):
        trust.approve(sha, by="admin")


def test_refused_permit_can_be_approved_later_but_not_refused_twice(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, _ = fed.permit()
    pid = trust.add_permit(data).permit.permit_id
    assert trust.refuse(pid, by="admin", reason="needs DPO review").status == "refused"
    with pytest.raises(PermitRefused, match="cannot mark it refused"):
        trust.refuse(pid, by="admin", reason="again")
    assert trust.approve(pid, by="admin").status == "approved"


def test_authority_revocation_applies_at_once(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit()
    rec = trust.add_permit(data)
    trust.approve(sha, by="admin")
    fed.authority.revoke_permit(rec.permit.permit_id, "consent issue")
    trust.update_revocations(fed.published("revocations.bin"))
    assert trust.permit(sha).status == "revoked"
    assert trust.permit(sha).decided_by == "authority"
    with pytest.raises(PermitRefused):
        trust.authorise(sha)


def test_permit_for_rotated_researcher_keys_is_refused(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit()
    trust.add_permit(data)
    trust.approve(sha, by="admin")
    fed.authority.enroll(request_for(Identity.generate("researcher", "res-1"), tmp_path / "r"),
                         "researcher")
    fed.authority.publish()
    trust.update_registry(fed.published("registry.bin"))
    with pytest.raises(PermitRefused, match="not in the registry with these keys"):
        trust.authorise(sha)


def test_centre_minimum_cell_count_is_enforced_at_approval(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit(min_cell_count=5)
    trust.add_permit(data)
    with pytest.raises(PermitRefused, match="below this centre's minimum 10"):
        trust.approve(sha, by="admin", centre_min_cells=10)
    assert trust.approve(sha, by="admin", centre_min_cells=5).status == "approved"


def test_approval_needs_fresh_trust_state(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit(not_after=now() + 60 * DAY)
    trust.add_permit(data)
    with pytest.raises(StaleTrust):
        trust.approve(sha, by="admin", at=trust.registry().next_update + 1)


def test_stored_permit_tampered_on_disk_is_caught(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit()
    trust.add_permit(data)
    trust.approve(sha, by="admin")
    other, _ = fed.permit(min_cell_count=1)
    trust.conn.execute("UPDATE trust_permits SET data = ? WHERE sha256 = ?", (other, sha))
    with pytest.raises(TrustError, match="does not match its hash"):
        trust.authorise(sha)


def test_permit_lookup_by_prefix_and_id(fed, tmp_path):
    trust = make_node(tmp_path, fed)
    data, sha = fed.permit()
    rec = trust.add_permit(data)
    assert trust.add_permit(data).sha256 == sha  # idempotent
    assert trust.permit(sha[:8]).sha256 == sha
    assert trust.permit(rec.permit.permit_id).sha256 == sha
    with pytest.raises(PermitRefused, match="no permit"):
        trust.permit(sha[:7])
    assert [r.sha256 for r in trust.permits()] == [sha]
