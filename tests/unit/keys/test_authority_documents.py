"""The authority's side: enrolment requests, registry and revocation-list publishing, permits."""

from __future__ import annotations

import time

import pytest
from trust_helpers import ROOT_PASSPHRASE, make_federation, request_for

from oncofed.keys import envelope
from oncofed.keys.authority import Authority, AuthorityError
from oncofed.keys.enrolment import TAG_ENROLMENT, read_request
from oncofed.keys.errors import InvalidMessage, PermitRefused, TrustError
from oncofed.keys.identity import Identity
from oncofed.keys.permits import TAG_PERMIT, verify_permit
from oncofed.keys.registry import (
    TAG_REGISTRY,
    Registry,
    encode_registry,
    sign_registry,
    verify_registry,
    verify_revocations,
)


@pytest.fixture
def fed(tmp_path):
    return make_federation(tmp_path)


def test_enrolment_request_verifies_and_binds_both_keys_and_the_csr(tmp_path):
    ident = Identity.generate("centre", "centre-a")
    data = request_for(ident, tmp_path)
    req = read_request(data)
    assert req.identity == ident.public
    assert req.csr_pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    # any changed byte (CSR, X25519 key, ...) breaks the self-signature
    for pos in (60, len(data) // 2, len(data) - 70):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(TrustError):
            read_request(bytes(bad))


def test_enrolment_request_signed_by_another_key_is_refused(tmp_path):
    ident, other = Identity.generate("centre", "centre-a"), Identity.generate("centre", "centre-x")
    body = envelope.unverified_body(request_for(ident, tmp_path), tag=TAG_ENROLMENT)
    with pytest.raises(TrustError):
        read_request(envelope.sign(other, TAG_ENROLMENT, body))


def test_published_registry_lists_members_and_verifies(fed):
    reg = verify_registry(fed.cert, fed.fingerprint, fed.published("registry.bin"))
    assert reg.version == 1
    assert [m.member_id for m in reg.members] == ["centre-a", "centre-b", "res-1"]
    assert reg.member("res-1").identity == fed.members["res-1"].public
    assert reg.next_update - reg.issued_at == 7 * 86_400
    assert reg.keyring(role="centre").keys() == {fed.members[c].public.signing_key_id
                                                 for c in ("centre-a", "centre-b")}


def test_a_registrys_lookups_are_kept_but_a_caller_cannot_change_them(fed):
    """Member and keyring lookups are built once per verified registry (the hub asks on every
    call); a caller that edits the keyring it got changes nobody else's."""
    reg = verify_registry(fed.cert, fed.fingerprint, fed.published("registry.bin"))
    ring = reg.keyring(role="centre")
    ring.clear()
    ring[b"x" * 32] = fed.members["res-1"].public
    assert reg.keyring(role="centre").keys() == {fed.members[c].public.signing_key_id
                                                 for c in ("centre-a", "centre-b")}
    assert set(reg.keyring()) == {fed.members[m].public.signing_key_id for m in ("centre-a", "centre-b", "res-1")}
    assert reg.keyring(role="hub") == {}
    assert reg.member("centre-b").identity == fed.members["centre-b"].public
    assert reg.member("nobody") is None


def test_changed_registry_byte_fails(fed):
    data = bytearray(fed.published("registry.bin"))
    data[len(data) // 2] ^= 0x04
    with pytest.raises(InvalidMessage):
        verify_registry(fed.cert, fed.fingerprint, bytes(data))


def test_registry_signed_by_another_root_fails(fed, tmp_path):
    other = make_federation(tmp_path, name="other")
    with pytest.raises(InvalidMessage):
        verify_registry(fed.cert, fed.fingerprint, other.published("registry.bin"))


def test_registry_naming_another_root_is_refused_even_if_signed(fed):
    reg = Registry(federation="x", version=9, issued_at=1, next_update=2,
                   root_fingerprint="ab" * 32)
    data = fed.authority.root.sign_document(TAG_REGISTRY, encode_registry(reg))
    with pytest.raises(TrustError, match="another federation root"):
        verify_registry(fed.cert, fed.fingerprint, data)
    with pytest.raises(ValueError, match="another root"):
        sign_registry(fed.authority.root, reg)


def test_one_document_type_never_verifies_as_another(fed):
    permit, _ = fed.permit()
    with pytest.raises(InvalidMessage):
        verify_registry(fed.cert, fed.fingerprint, permit)
    with pytest.raises(InvalidMessage):
        verify_permit(fed.cert, fed.fingerprint, fed.published("registry.bin"))
    with pytest.raises(InvalidMessage):
        verify_revocations(fed.cert, fed.fingerprint, fed.published("registry.bin"))


def test_rotation_replaces_keys_in_the_next_registry_and_revokes_the_old_cert(fed, tmp_path):
    old = fed.authority.members()
    old_serial = next(m.cert_serial for m in old if m.member_id == "centre-a")
    new = Identity.generate("centre", "centre-a")
    done = fed.authority.enroll(request_for(new, tmp_path / "rot"), "centre")
    assert done.rotated
    assert done.member.added_in_version == 1
    assert done.member.keys_since_version == 2
    assert old_serial in fed.authority.root.revoked_serials()
    pub = fed.authority.publish()
    assert [m.member_id for m in pub.changes.rekeyed] == ["centre-a"]
    assert pub.changes.added == ()
    assert pub.registry.member("centre-a").identity == new.public


def test_enrolment_refusals(fed, tmp_path):
    researcher = Identity.generate("researcher", "centre-a")
    with pytest.raises(AuthorityError, match="already enrolled as a centre"):
        fed.authority.enroll(request_for(researcher, tmp_path / "r1"), "researcher")
    with pytest.raises(AuthorityError, match="is for a centre, not a hub"):
        fed.authority.enroll(request_for(Identity.generate("centre", "centre-z"),
                                         tmp_path / "r2"), "hub")


def test_member_revocation_publishes_at_once(fed, tmp_path):
    victim = fed.members["centre-b"].public
    pub = fed.authority.revoke_member("centre-b", "disk stolen", compromised=True)
    assert pub.registry.version == 2
    assert pub.registry.member("centre-b") is None
    assert [m.member_id for m in pub.changes.removed] == ["centre-b"]
    rl = verify_revocations(fed.cert, fed.fingerprint, fed.published("revocations.bin"))
    assert rl.version == 2
    assert rl.key_revoked([victim.signing_fingerprint]).reason == "disk stolen"
    # the revoked keys can never be enrolled again, under any id
    reused = Identity(role="centre", member_id="centre-q",
                      ed25519_seed=fed.members["centre-b"]._secret_material()[0],
                      x25519_secret=fed.members["centre-b"]._secret_material()[1])
    with pytest.raises(AuthorityError, match="revoked"):
        fed.authority.enroll(request_for(reused, tmp_path / "again"), "centre")


def test_permit_is_root_signed_and_carries_the_researchers_keys(fed):
    data, sha = fed.permit(epsilon=1.5, data_holders=["centre-a"])
    signed = verify_permit(fed.cert, fed.fingerprint, data)
    p = signed.permit
    assert signed.sha256 == sha
    assert p.researcher == fed.members["res-1"].public
    assert p.allowed_analyses == ("count", "kaplan_meier")
    assert p.epsilon == 1.5
    assert p.data_holders == ("centre-a",)
    assert TAG_PERMIT.encode() in data[:64]
    # ε absent stays absent (not 0.0)
    assert verify_permit(fed.cert, fed.fingerprint, fed.permit()[0]).permit.epsilon is None


@pytest.mark.parametrize(("over", "message"), [
    ({"researcher_id": "centre-a"}, "not an enrolled researcher"),
    ({"researcher_id": "res-9"}, "not an enrolled researcher"),
    ({"analyses": []}, "at least one analysis"),
    ({"fields": []}, "at least one analysis and one field"),
    ({"analyses": ["raw_rows"]}, "unknown analyses"),
    ({"min_cell_count": 0}, "at least 1"),
    ({"epsilon": -1.0}, "positive"),
    ({"not_after": 0}, "end after it starts"),
    ({"data_holders": ["centre-x"]}, "not enrolled centre"),
])
def test_permit_refusals_at_issue(fed, over, message):
    with pytest.raises(TrustError, match=message):
        fed.permit(**over)


def test_permit_revocation_publishes_a_new_list_only(fed):
    data, sha = fed.permit()
    pid = verify_permit(fed.cert, fed.fingerprint, data).permit.permit_id
    pub = fed.authority.revoke_permit(pid, "project ended")
    assert pub.registry is None
    rl = verify_revocations(fed.cert, fed.fingerprint, fed.published("revocations.bin"))
    assert rl.permit_revoked(pid, sha).reason == "project ended"
    assert fed.authority.permits()[pid]["revoked"]


def test_authority_reopens_and_listing_needs_no_passphrase(fed):
    again = Authority.open(fed.directory / "auth")
    assert [m.member_id for m in again.members()] == ["centre-a", "centre-b", "res-1"]
    with pytest.raises(AuthorityError, match="passphrase"):
        again.publish()
    unlocked = Authority.open(fed.directory / "auth", ROOT_PASSPHRASE)
    assert unlocked.publish(at=int(time.time())).registry.version == 2


def test_permit_terms_deny_anything_not_named(fed):
    t = int(time.time())
    data, _ = fed.permit(not_before=t, not_after=t + 100)
    p = verify_permit(fed.cert, fed.fingerprint, data).permit
    p.check_valid_at(t)
    p.check_valid_at(t + 99)
    with pytest.raises(PermitRefused, match="not valid before"):
        p.check_valid_at(t - 1)
    with pytest.raises(PermitRefused, match="expired"):
        p.check_valid_at(t + 100)
    p.check_analysis("count")
    with pytest.raises(PermitRefused, match="does not allow analysis 'cox'"):
        p.check_analysis("cox")
    p.check_fields(["sex"])
    p.check_fields([])
    with pytest.raises(PermitRefused, match=r"field\(s\) age_at_incidence"):
        p.check_fields(["sex", "age_at_incidence"])
    p.check_addressed_to("centre-b")  # no data holders named: every centre (each approves)


def test_permit_outcomes_are_named_checked_and_required_for_survival(fed):
    data, _ = fed.permit(fields=["cT", "pT", "cN", "pN", "cM", "pM", "sex"], outcomes=["os"])
    p = verify_permit(fed.cert, fed.fingerprint, data).permit
    assert p.allowed_fields[:6] == ("cT", "pT", "cN", "pN", "cM", "pM")   # the dictionary's own case
    p.check_fields(["cT", "pM"])
    with pytest.raises(PermitRefused, match=r"field\(s\) ct"):
        p.check_fields(["ct"])                                            # names are not folded
    p.check_outcomes(["os"])
    p.check_outcomes([])
    with pytest.raises(PermitRefused, match=r"outcome\(s\) rfs"):
        p.check_outcomes(["os", "rfs"])
    with pytest.raises(TrustError, match="must name the outcome"):
        fed.permit(outcomes=[])                                           # kaplan_meier without an outcome
    with pytest.raises(AuthorityError, match="unknown outcome 'dfs'"):
        fed.permit(outcomes=["dfs"])
    with pytest.raises(AuthorityError, match="invalid field name"):
        fed.permit(fields=["c T"])
    counted, _ = fed.permit(analyses=["count"], outcomes=[])              # no survival: no outcome needed
    assert verify_permit(fed.cert, fed.fingerprint, counted).permit.allowed_outcomes == ()
