"""The federation authority's book-keeping: members, published versions, permits, revocations.

The authority works offline with the root (oncofed.keys.x509ca). Beside the root's own files its
directory holds:

    federation.json             the authority's state (public facts only; no secrets)
    certs/<role>-<id>.cert.pem  the certificate issued to each member (hand it back to them)
    permits/<permit-id>.permit  every permit issued, byte for byte as signed
    published/registry.bin      the current registry, plus registry-v<N>.bin for every version
    published/revocations.bin   the current revocation list, plus revocations-v<N>.bin
    published/crl.pem           the current certificate revocation list (for TLS)

Enrolling or rotating a member changes only the state: members appear in the *next* registry,
written by `publish`. Revoking a member or a permit publishes new versions at once — a revocation
that waited for the weekly registry would not be one.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncofed.keys.enrolment import check_certificate_matches, read_request
from oncofed.keys.errors import TrustError
from oncofed.keys.identity import PublicIdentity, check_member_id
from oncofed.keys.permits import Permit, SignedPermit, issue_permit, permit_sha256
from oncofed.keys.registry import (
    Member,
    Registry,
    RegistryChanges,
    RevocationList,
    RevokedKey,
    RevokedPermit,
    diff,
    now,
    sign_registry,
    sign_revocations,
    verify_registry,
)
from oncofed.keys.x509ca import RootCA, cert_fingerprint, cert_info, create_root

STATE_NAME = "federation.json"
STATE_FORMAT = "oncofed-authority-state/v1"
DEFAULT_VALID_DAYS = 7
MAX_VALID_DAYS = 90
DAY = 86_400


class AuthorityError(TrustError):
    """The authority refuses a request (unknown member, role mismatch, missing state...)."""


@dataclass(frozen=True)
class Enrolled:
    member: Member
    cert_path: Path
    rotated: bool


@dataclass(frozen=True)
class Published:
    registry: Registry | None
    revocations: RevocationList
    changes: RegistryChanges | None
    paths: tuple[Path, ...]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _member_from_state(m: dict[str, Any]) -> Member:
    return Member(
        identity=PublicIdentity(role=m["role"], member_id=m["member_id"],
                                ed25519=base64.b64decode(m["ed25519"]),
                                x25519=base64.b64decode(m["x25519"])),
        cert_fingerprint=m["cert_fingerprint"], cert_serial=int(m["cert_serial"], 16),
        added_in_version=m["added_in_version"], keys_since_version=m["keys_since_version"])


class Authority:
    """The authority directory. Reading needs no passphrase; anything that signs does."""

    def __init__(self, directory: Path, state: dict[str, Any], root: RootCA | None) -> None:
        self.dir, self._state, self._root = Path(directory), state, root

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, passphrase: bytes, *, federation: str,
               days: int = 3650) -> Authority:
        """Create the root and an empty federation. Refuses an existing authority directory."""
        directory = Path(directory)
        if (directory / STATE_NAME).exists():
            raise AuthorityError(f"{directory} already holds a federation; refusing to overwrite")
        root = create_root(directory, passphrase, common_name=f"oncofed root: {federation}",
                           days=days)
        state = {"format": STATE_FORMAT, "federation": federation, "registry_version": 0,
                 "revocations_version": 0, "permit_seq": 0, "members": {}, "permits": {},
                 "revoked_permits": [], "revoked_keys": []}
        auth = cls(directory, state, root)
        auth._save()
        return auth

    @classmethod
    def open(cls, directory: Path, passphrase: bytes | None = None) -> Authority:
        """Open the directory; unlock the root only when a passphrase is given."""
        directory = Path(directory)
        try:
            state = json.loads((directory / STATE_NAME).read_text("utf-8"))
        except FileNotFoundError:
            raise AuthorityError(f"{directory} is not an authority directory (no {STATE_NAME}); "
                                 f"run: oncofed authority init {directory}") from None
        except ValueError as exc:
            raise AuthorityError(f"{directory / STATE_NAME} is malformed: {exc}") from None
        if state.get("format") != STATE_FORMAT:
            raise AuthorityError(f"{directory / STATE_NAME} is not {STATE_FORMAT}")
        root = RootCA.load(directory, passphrase) if passphrase is not None else None
        return cls(directory, state, root)

    @property
    def root(self) -> RootCA:
        if self._root is None:
            raise AuthorityError("this operation needs the root key: give its passphrase")
        return self._root

    @property
    def federation(self) -> str:
        return str(self._state["federation"])

    @property
    def root_cert_pem(self) -> bytes:
        return (self.dir / "root.cert.pem").read_bytes()

    def _save(self) -> None:
        _write_atomic(self.dir / STATE_NAME, (json.dumps(self._state, indent=1) + "\n").encode())

    @property
    def next_version(self) -> int:
        return int(self._state["registry_version"]) + 1

    # --- members ------------------------------------------------------------------------------
    def members(self) -> list[Member]:
        """Current members, including those enrolled since the last published registry."""
        return [_member_from_state(m) for _, m in sorted(self._state["members"].items())]

    def enroll(self, request: bytes, role: str, *, days: int = 365,
               dns_names: Sequence[str] | None = None,
               ip_addresses: Sequence[str] | None = None) -> Enrolled:
        """Certify a member's TLS key and record its identity keys for the next registry.

        Enrolling an id that already exists (same role) is a key rotation: its new keys and
        certificate replace the old ones in the next registry, and the old certificate is
        revoked as superseded.
        """
        req = read_request(request)
        ident = req.identity
        if ident.role != role:
            raise AuthorityError(f"the request is for a {ident.role}, not a {role}")
        existing = self._state["members"].get(ident.member_id)
        if existing and existing["role"] != role:
            raise AuthorityError(f"{ident.member_id} is already enrolled as a {existing['role']}")
        revoked = {k[f] for k in self._state["revoked_keys"] for f in ("ed25519_sha256",
                                                                        "x25519_sha256")}
        if {ident.signing_fingerprint, ident.box_fingerprint} & revoked:
            raise AuthorityError("these keys were revoked; generate new ones")
        for other in self.members():
            if other.member_id != ident.member_id and {other.identity.ed25519,
                                                       other.identity.x25519} & {
                    ident.ed25519, ident.x25519}:
                raise AuthorityError(f"these keys already belong to {other.member_id}")
        cert_pem = self.root.sign_csr(req.csr_pem, role, ident.member_id, days=days,
                                      dns_names=dns_names, ip_addresses=ip_addresses)
        check_certificate_matches(req, cert_pem)
        info = cert_info(cert_pem)
        if existing is None:
            added = keys_since = self.next_version
        else:
            self.root.revoke(int(existing["cert_serial"], 16), "superseded")
            same_keys = (existing["ed25519"], existing["x25519"]) == (
                _b64(ident.ed25519), _b64(ident.x25519))
            added = existing["added_in_version"]
            keys_since = existing["keys_since_version"] if same_keys else self.next_version
        entry = {
            "member_id": ident.member_id, "role": role, "ed25519": _b64(ident.ed25519),
            "x25519": _b64(ident.x25519), "cert_fingerprint": info.fingerprint,
            "cert_serial": format(info.serial, "x"),
            "added_in_version": added, "keys_since_version": keys_since,
            "enrolled_at": now(),
        }
        self._state["members"][ident.member_id] = entry
        self._save()
        cert_path = self.dir / "certs" / f"{role}-{ident.member_id}.cert.pem"
        _write_atomic(cert_path, cert_pem)
        return Enrolled(_member_from_state(entry), cert_path, rotated=existing is not None)

    def revoke_member(self, member_id: str, reason: str, *, compromised: bool = False,
                      valid_days: int = DEFAULT_VALID_DAYS, at: int | None = None) -> Published:
        """Withdraw a member's keys and certificate and publish both documents at once."""
        entry = self._state["members"].get(member_id)
        if entry is None:
            raise AuthorityError(f"no member {member_id!r}")
        m = _member_from_state(entry)
        at = now() if at is None else at
        crl_reason = "key_compromise" if compromised else "cessation_of_operation"
        self.root.revoke(m.cert_serial, crl_reason)
        del self._state["members"][member_id]
        self._state["revoked_keys"].append({
            "member_id": member_id, "ed25519_sha256": m.identity.signing_fingerprint,
            "x25519_sha256": m.identity.box_fingerprint, "cert_fingerprint": m.cert_fingerprint,
            "cert_serial": entry["cert_serial"], "revoked_at": at, "reason": reason})
        self._save()
        return self.publish(valid_days=valid_days, at=at)

    # --- publishing ---------------------------------------------------------------------------
    def current_registry(self) -> Registry | None:
        path = self.dir / "published" / "registry.bin"
        if not path.exists():
            return None
        cert = self.root_cert_pem
        return verify_registry(cert, cert_fingerprint(cert), path.read_bytes())

    def publish(self, *, valid_days: int = DEFAULT_VALID_DAYS, at: int | None = None,
                registry: bool = True) -> Published:
        """Sign and write the next registry (unless registry=False), revocation list and CRL."""
        if not 1 <= valid_days <= MAX_VALID_DAYS:
            raise AuthorityError(f"validity must be 1–{MAX_VALID_DAYS} days, not {valid_days}")
        at = now() if at is None else at
        out, paths = self.dir / "published", []
        reg, changes = None, None
        if registry:
            previous = self.current_registry()
            reg = Registry(federation=self.federation, version=self.next_version, issued_at=at,
                           next_update=at + valid_days * DAY,
                           root_fingerprint=self.root.fingerprint, members=tuple(self.members()))
            data = sign_registry(self.root, reg)
            changes = diff(previous, reg)
            paths += [out / f"registry-v{reg.version:06d}.bin", out / "registry.bin"]
            for p in paths[-2:]:
                _write_atomic(p, data)
            self._state["registry_version"] = reg.version  # never sign two v(N) that differ
            self._save()
        rl = RevocationList(
            version=int(self._state["revocations_version"]) + 1, issued_at=at,
            next_update=at + valid_days * DAY, root_fingerprint=self.root.fingerprint,
            permits=tuple(RevokedPermit(**r) for r in self._state["revoked_permits"]),
            keys=tuple(RevokedKey(**{**k, "cert_serial": int(k["cert_serial"], 16)})
                       for k in self._state["revoked_keys"]))
        data = sign_revocations(self.root, rl)
        paths += [out / f"revocations-v{rl.version:06d}.bin", out / "revocations.bin"]
        for p in paths[-2:]:
            _write_atomic(p, data)
        crl = out / "crl.pem"
        _write_atomic(crl, self.root.crl_pem(next_update_days=valid_days))
        paths.append(crl)
        self._state["revocations_version"] = rl.version
        self._save()
        return Published(reg, rl, changes, tuple(paths))

    # --- permits ------------------------------------------------------------------------------
    def issue_permit(self, *, researcher_id: str, project_title: str,
                     analyses: Sequence[str], fields: Sequence[str], min_cell_count: int,
                     not_before: int, not_after: int, epsilon: float | None = None,
                     data_holders: Sequence[str] = (), allow_exact_dates: bool = False,
                     outcomes: Sequence[str] = (), at: int | None = None) -> tuple[Path, SignedPermit]:
        """Sign a permit for an enrolled researcher and keep a copy under permits/."""
        entry = self._state["members"].get(check_member_id(researcher_id))
        if entry is None or entry["role"] != "researcher":
            raise AuthorityError(f"{researcher_id!r} is not an enrolled researcher")
        centres = {m.member_id for m in self.members() if m.role == "centre"}
        unknown = sorted(set(data_holders) - centres)
        if unknown:
            raise AuthorityError(f"not enrolled centre(s): {', '.join(unknown)}")
        at = now() if at is None else at
        self._state["permit_seq"] += 1
        year = dt.datetime.fromtimestamp(at, dt.UTC).year
        researcher = _member_from_state(entry)
        try:
            permit = Permit(
                permit_id=f"permit-{year}-{self._state['permit_seq']:04d}",
                root_fingerprint=self.root.fingerprint, researcher=researcher.identity,
                researcher_cert_fingerprint=researcher.cert_fingerprint,
                project_title=project_title, allowed_analyses=tuple(dict.fromkeys(analyses)),
                allowed_fields=tuple(dict.fromkeys(fields)), min_cell_count=min_cell_count,
                epsilon=epsilon, not_before=not_before, not_after=not_after, issued_at=at,
                data_holders=tuple(sorted(set(data_holders))),
                allow_exact_dates=allow_exact_dates, allowed_outcomes=tuple(dict.fromkeys(outcomes)))
        except ValueError as exc:
            raise AuthorityError(str(exc)) from None
        data = issue_permit(self.root, permit)
        path = self.dir / "permits" / f"{permit.permit_id}.permit"
        _write_atomic(path, data)
        self._state["permits"][permit.permit_id] = {
            "sha256": permit_sha256(data), "researcher_id": researcher_id,
            "project_title": project_title, "not_before": not_before, "not_after": not_after,
            "issued_at": at}
        self._save()
        return path, SignedPermit(data, permit)

    def permits(self) -> dict[str, dict[str, Any]]:
        revoked = {r["permit_id"] for r in self._state["revoked_permits"]}
        return {pid: {**p, "revoked": pid in revoked}
                for pid, p in sorted(self._state["permits"].items())}

    def revoke_permit(self, permit_id: str, reason: str, *,
                      valid_days: int = DEFAULT_VALID_DAYS, at: int | None = None) -> Published:
        """Add a permit to the revocation list and publish a new list version at once."""
        entry = self._state["permits"].get(permit_id)
        if entry is None:
            raise AuthorityError(f"no permit {permit_id!r} was issued here")
        if not any(r["permit_id"] == permit_id for r in self._state["revoked_permits"]):
            self._state["revoked_permits"].append({
                "permit_id": permit_id, "permit_sha256": entry["sha256"],
                "revoked_at": now() if at is None else at, "reason": reason})
            self._save()
        return self.publish(valid_days=valid_days, at=at, registry=False)

