"""A node's trust state — pinned federation root, accepted registry and revocation list, and its
admin's permit decisions — kept in the node's SQLite store, because the hub is an untrusted relay.

The root's fingerprint is pinned once (checked out of band). A registry or revocation list is
accepted only when the pinned root signed it, it is newer than the one held, and it is fresh; the
node stops answering once either is stale, so a hub can neither replay an old registry, withhold a
revocation, nor slip in a member. A permit is usable only after this centre's admin approved it,
pinning the SHA-256 of its exact signed bytes. `authorise` is the query path's one gate.

Every change (root pinned, document installed or refused, permit added or decided, here or by
the authority) is audited in the transaction that makes it; the next checkpoint signs it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from oncofed.keys.errors import InvalidMessage, NotPinned, PermitRefused, StaleTrust, TrustError
from oncofed.keys.identity import PublicIdentity
from oncofed.keys.permits import Permit, SignedPermit, permit_sha256, verify_permit
from oncofed.keys.registry import (
    Registry,
    RegistryChanges,
    RevocationList,
    diff,
    iso,
    now,
    verify_registry,
    verify_revocations,
)
from oncofed.keys.tls import cert_fingerprint
from oncofed.node import trust_audit as audited
from oncofed.node.audit import AUTHORITY, LOCAL_ADMIN, AuditLog
from oncofed.node.store import db as dbmod
from oncofed.node.store import trust_state as store

T = TypeVar("T")

CLOCK_SKEW = 120  # seconds a document's issue time may lie in our future (DESIGN §4: 2 min)
_NEVER = -2       # no trust version read yet


@dataclass(frozen=True)
class PermitRecord:
    """A permit this node knows, with its admin's decision."""

    sha256: str
    permit: Permit
    status: str
    added_at: int
    decided_at: int | None
    decided_by: str | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        keys = ("sha256", "status", "added_at", "decided_at", "decided_by", "reason")
        return {k: getattr(self, k) for k in keys} | self.permit.to_json()


@dataclass(frozen=True)
class TrustStatus:
    """Whether this node may answer, and why not: shown by `oncofed node trust status`."""

    ready: bool
    state: str
    message: str
    root_fingerprint: str | None
    registry: Registry | None
    revocations: RevocationList | None

    def to_json(self) -> dict[str, Any]:
        reg, rl = self.registry, self.revocations
        return {"ready": self.ready, "state": self.state, "message": self.message,
                "root_fingerprint": self.root_fingerprint,
                "registry_version": reg.version if reg else None,
                "registry_next_update": reg.next_update if reg else None,
                "members": len(reg.members) if reg else 0,
                "revocations_version": rl.version if rl else None,
                "revocations_next_update": rl.next_update if rl else None}


class NodeTrust:
    """The trust state in one node store. `centre_id` is this node's id in the registry."""

    def __init__(self, db: dbmod.StoreDB, centre_id: str) -> None:
        self.db, self.conn, self.centre_id, self._lock = db, db.conn, centre_id, threading.Lock()
        self._cache: dict[str, tuple[tuple[str, str, bytes], Any]] = {}
        # What was read and verified from the trust tables, valid while their change counter
        # (trust_state.trust_version, bumped by triggers on every write by anyone) stays the same.
        self._memo: dict[Any, Any] = {}
        self._memo_version = _NEVER
        self._memo_lock = threading.Lock()
        self._scope = threading.local()
        dbmod.migrate(db, ["trust"])
        self.audit = AuditLog(self.conn)  # on this connection: joins `_write`'s transactions

    @classmethod
    def open(cls, store: Path, centre_id: str, *, create: bool = False) -> NodeTrust:
        return cls(dbmod.connect(store, create=create), centre_id)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction at a time, even when server threads share this object. What
        was remembered is forgotten after it, in this thread's request too (a write here is seen
        by the next read here; the change counter tells every other reader)."""
        try:
            with self._lock, dbmod.immediate(self.conn) as conn:
                yield conn
        finally:
            with self._memo_lock:
                self._memo, self._memo_version = {}, _NEVER
            if getattr(self._scope, "memo", None) is not None:
                self._scope.memo = {}

    # --- one request's view -------------------------------------------------------------------
    @contextmanager
    def request(self) -> Iterator[None]:
        """One request's view of the trust state: the change counter is read once when the
        outermost scope opens, and the root, documents and permits read (and verified) inside
        come from memory while it has not changed — a verified query read the trust root ~16
        times, the registry ~7 and the permit ~6 (D34). A revocation or a new registry, written
        by any process, bumps the counter: the next request reads afresh."""
        depth = getattr(self._scope, "depth", 0)
        if depth == 0:
            self._scope.memo = self._current()
        self._scope.depth = depth + 1
        try:
            yield
        finally:
            self._scope.depth = depth
            if depth == 0:
                self._scope.memo = None

    def _current(self) -> dict[Any, Any]:
        version = store.trust_version(self.conn)
        with self._memo_lock:
            if version != self._memo_version or version < 0:
                self._memo, self._memo_version = {}, version
            return self._memo

    def _remembered(self, key: tuple[Any, ...], read: Callable[[], T]) -> T:
        """`read()`, or what it gave in this view (outside a request: checked per call)."""
        memo = getattr(self._scope, "memo", None)
        if memo is None:
            memo = self._current()
        if key in memo:
            return memo[key]
        value = read()
        memo[key] = value
        return value

    # --- the root -----------------------------------------------------------------------------
    def pin_root(self, cert_pem: bytes, expected_fingerprint: str, at: int | None = None, *,
                 by: str = LOCAL_ADMIN) -> str:
        """Pin the federation root, once. The fingerprint must come from the authority by a
        channel the hub does not control; pinning another root later is refused."""
        fp = cert_fingerprint(cert_pem)
        if fp != expected_fingerprint.strip().lower().replace(":", ""):
            # Never print the certificate's own fingerprint: it would invite pasting it back,
            # which defeats the out-of-band check.
            raise TrustError("this root certificate does not have the fingerprint you gave; "
                             "nothing was pinned. Check the fingerprint with the federation "
                             "authority over a channel the hub does not control, and that this "
                             "is the certificate they sent")
        current = self.root_fingerprint()
        if current == fp:
            return fp
        if current is not None:
            raise TrustError(f"already pinned to root {current}: a node has one federation")
        with self._write() as c:
            store.pin_root(c, fp, cert_pem, now() if at is None else at)
            self.audit.append(event="trust.pin", decision="pinned", who=by, detail={"root_fingerprint": fp})
        return fp

    def root_fingerprint(self) -> str | None:
        pinned = self._remembered(("root",), lambda: store.root(self.conn))
        return None if pinned is None else pinned[1]

    def _root(self) -> tuple[bytes, str]:
        if (pinned := self._remembered(("root",), lambda: store.root(self.conn))) is None:
            raise NotPinned("no federation root is pinned; run: oncofed node trust pin")
        return pinned

    # --- registry and revocation list ---------------------------------------------------------
    def registry(self, offset: int = 0) -> Registry | None:
        """The newest accepted registry (offset=1: the one before), re-verified from its bytes."""
        def read() -> Registry | None:
            if (data := store.document(self.conn, "registry", offset)) is None:
                return None
            return self._verified("registry", data, verify_registry)
        return self._remembered(("registry", offset), read)

    def revocations(self) -> RevocationList | None:
        def read() -> RevocationList | None:
            if (data := store.document(self.conn, "revocations")) is None:
                return None
            return self._verified("revocations", data, verify_revocations)
        return self._remembered(("revocations",), read)

    def _verified(self, kind: str, data: bytes, verify: Callable[[bytes, str, bytes], T]) -> T:
        """Verify a document's bytes against the pinned root — once per distinct bytes and root:
        every query reads the registry several times, and the same bytes verify the same way."""
        root = self._root()
        key = (kind, root[1], data)
        cached = self._cache.get(kind)
        if cached is not None and cached[0] == key:
            return cached[1]
        doc = verify(*root, data)
        self._cache[kind] = (key, doc)
        return doc

    def _accept(self, kind: str, data: bytes, version: int, issued_at: int, next_update: int,
                at: int, *, by: str, detail: Mapping[str, Any]) -> bool:
        """Store a verified document if it is newer, with its audit entry; False if already held."""
        sha = permit_sha256(data)  # plain SHA-256 of the bytes
        label = "registry" if kind == "registry" else "revocation list"
        if next_update <= at:
            raise StaleTrust(f"{label} v{version} went stale at {iso(next_update)}; refused")
        if issued_at > at + CLOCK_SKEW:
            raise audited.DocumentRefused(
                "issued_in_future", f"{label} version {version} is issued in the future; check the clock")
        with self._write() as c:
            row = store.newest_version(c, kind)
            if row and version < row[0]:
                raise audited.DocumentRefused("older_version", f"{label} version {version} is older than "
                                              f"the version {row[0]} this node holds; refused")
            if row and version == row[0]:
                if sha == row[1]:
                    return False
                raise audited.DocumentRefused("conflicting_version", f"a different {label} with the same version "
                                              f"{version}: refused (the authority never signs two documents "
                                              "with one version)")
            store.add_document(c, kind, version=version, sha256=sha, data=data,
                               issued_at=issued_at, next_update=next_update, at=at)
            self.audit.append(event=f"trust.{kind}", decision="installed", who=by, detail={
                "version": version, "sha256": sha, "issued_at": issued_at, "next_update": next_update, **detail})
        return True

    def update_registry(self, data: bytes, at: int | None = None, *, by: str = LOCAL_ADMIN) -> RegistryChanges | None:
        """Accept a newer registry; return what changed (None when it was already held)."""
        at = now() if at is None else at
        with audited.refusals_audited(self._write, self.audit, "trust.registry", by):
            try:
                reg = verify_registry(*self._root(), data)
            except InvalidMessage:
                raise audited.DocumentRefused("not_signed_by_root",
                                              "not a registry signed by the pinned federation root") from None
            changes = diff(self.registry(), reg)
            if not self._accept("registry", bytes(data), reg.version, reg.issued_at,
                                reg.next_update, at, by=by, detail=audited.registry_detail(reg, changes)):
                return None
        return changes

    def update_revocations(self, data: bytes, at: int | None = None, *, by: str = LOCAL_ADMIN) -> RevocationList | None:
        """Accept a newer revocation list and apply it to this node's permits at once."""
        at = now() if at is None else at
        with audited.refusals_audited(self._write, self.audit, "trust.revocations", by):
            try:
                rl = verify_revocations(*self._root(), data)
            except InvalidMessage:
                raise audited.DocumentRefused("not_signed_by_root",
                                              "not a revocation list signed by the pinned federation root") from None
            if not self._accept("revocations", bytes(data), rl.version, rl.issued_at, rl.next_update, at, by=by,
                                detail={"permits": len(rl.permits), "keys": len(rl.keys)}):
                return None
        with self._write() as c:
            for r in rl.permits:
                reason = r.reason or "revoked by the authority"
                for sha in store.revoke_permit(c, sha256=r.permit_sha256, permit_id=r.permit_id,
                                               reason=reason, at=at):
                    self.audit.append(event="permit.revoke", decision="revoked", who=AUTHORITY, permit_hash=sha,
                                      detail={"permit_id": r.permit_id, "reason": reason, "revocations": rl.version})
        return rl

    def install(self, data: bytes, at: int | None = None, *, by: str = LOCAL_ADMIN
                ) -> tuple[str, RegistryChanges | RevocationList | None]:
        """Install a registry or a revocation list, whichever the root signed `data` as."""
        try:
            if (pinned := store.root(self.conn)) is not None:  # else update_registry refuses
                verify_registry(*pinned, data)
        except InvalidMessage:
            return "revocations", self.update_revocations(data, at, by=by)
        return "registry", self.update_registry(data, at, by=by)

    def keyring(self, at: int | None = None) -> dict[bytes, PublicIdentity]:
        """Registry members whose keys are not revoked, by signing key id — what signed
        envelopes from peers are verified against. Raises unless the trust state is fresh."""
        registry, revocations = self.require_ready(at)
        return {m.identity.signing_key_id: m.identity for m in registry.members
                if revocations.member_revoked(m) is None}

    def peer_keyring(self, role: str) -> dict[bytes, PublicIdentity]:
        """Registry members of `role` whose keys the revocation list this node holds does not
        revoke, by signing key id — what peers' accepts and abstentions are verified against. A
        revocation list can arrive before the registry that drops the member (a hub may relay
        one and hold back the other until it goes stale); a revoked key signs nothing here
        meanwhile. Empty without a registry. Built once per trust state (each answer verifies
        its participant set against it: 100 members' revocation checks at 100 centres); the
        caller gets its own copy."""
        def build() -> dict[bytes, PublicIdentity]:
            registry, revocations = self.registry(), self.revocations()
            if registry is None:
                return {}
            return {m.identity.signing_key_id: m.identity for m in registry.members
                    if m.role == role and (revocations is None or revocations.member_revoked(m) is None)}
        return dict(self._remembered(("peer_keyring", role), build))

    def changes_in_latest(self) -> RegistryChanges | None:
        """What the newest registry changed against the one before: new members to look at."""
        latest = self.registry()
        return diff(self.registry(offset=1), latest) if latest else None

    def status(self, at: int | None = None) -> TrustStatus:
        at = now() if at is None else at
        fp = self.root_fingerprint()
        if fp is None:
            return TrustStatus(False, "not-pinned", "no federation root pinned; run: oncofed "
                               "node trust pin ROOT_CERT --fingerprint HEX", None, None, None)
        reg, rl = self.registry(), self.revocations()
        update = "run: oncofed node trust update FILE"
        if reg is None:
            state, msg = "no-registry", f"no registry yet; {update}"
        elif reg.is_stale(at):
            state, msg = "stale-registry", (f"registry v{reg.version} went stale at "
                                            f"{iso(reg.next_update)}: not answering; {update}")
        elif rl is None:
            state, msg = "no-revocations", f"no revocation list yet; {update}"
        elif rl.is_stale(at):
            state, msg = "stale-revocations", (f"revocation list v{rl.version} went stale at "
                                               f"{iso(rl.next_update)}: not answering; {update}")
        elif getattr(reg.member(self.centre_id), "role", None) != "centre":
            state, msg = "not-a-member", (f"{self.centre_id} is not a centre in registry "
                                          f"v{reg.version}")
        else:
            state, msg = "ready", (f"registry v{reg.version} until {iso(reg.next_update)}, "
                                   f"revocation list v{rl.version} until {iso(rl.next_update)}")
        return TrustStatus(state == "ready", state, msg, fp, reg, rl)

    def require_ready(self, at: int | None = None) -> tuple[Registry, RevocationList]:
        """Raise (NotPinned, StaleTrust, TrustError) unless this node may answer now."""
        st = self.status(at)
        if st.state == "not-pinned":
            raise NotPinned(st.message)
        if st.state == "not-a-member":
            raise TrustError(st.message)
        if not st.ready:
            raise StaleTrust(st.message)
        assert st.registry is not None
        assert st.revocations is not None
        return st.registry, st.revocations

    # --- permits ------------------------------------------------------------------------------
    def _record(self, sha: str) -> PermitRecord | None:
        return self._remembered(("permit", sha), lambda: self._read_record(sha))

    def _read_record(self, sha: str) -> PermitRecord | None:
        if (row := store.permit_row(self.conn, sha)) is None:
            return None
        signed = verify_permit(*self._root(), row.data)  # re-verified: disk is not root
        if signed.sha256 != sha:
            raise TrustError(f"stored permit {sha[:16]}… does not match its hash")
        return PermitRecord(sha, signed.permit, row.status, row.added_at, row.decided_at,
                            row.decided_by, row.reason)

    def permits(self) -> list[PermitRecord]:
        return [r for sha in store.permit_hashes(self.conn) if (r := self._record(sha)) is not None]

    def permit(self, ref: str) -> PermitRecord:
        """A known permit by full SHA-256, a unique hash prefix (≥ 8 hex digits) or permit id."""
        ref = ref.strip().lower()
        hashes = self._remembered(("find", ref), lambda: store.find_permits(self.conn, ref))
        if len(hashes) > 1:
            raise PermitRefused(f"{ref!r} matches {len(hashes)} permits; give the full SHA-256")
        if not hashes or (rec := self._record(hashes[0])) is None:
            raise PermitRefused(f"no permit {ref!r} here; add it: oncofed node permits add FILE")
        return rec

    def _check_usable(self, signed: SignedPermit | PermitRecord, at: int, *,
                      registry: Registry | None,
                      revocations: RevocationList | None) -> None:
        """What must hold for a permit at this centre, whatever the admin decided."""
        p = signed.permit
        if at >= p.not_after:
            raise PermitRefused(f"permit {p.permit_id} expired at {iso(p.not_after)}")
        p.check_addressed_to(self.centre_id)
        if revocations is not None:
            hit = revocations.permit_revoked(p.permit_id, signed.sha256)
            if hit is not None:
                raise PermitRefused(f"permit {p.permit_id} was revoked by the authority "
                                    f"({hit.reason or 'no reason given'})")
            member = registry.member(p.researcher.member_id) if registry else None
            if revocations.key_revoked((p.researcher.signing_fingerprint,
                                        p.researcher.box_fingerprint,
                                        member.cert_fingerprint if member else "")):
                raise PermitRefused(f"permit {p.permit_id}: the researcher's keys were revoked")
        if registry is not None:
            p.check_researcher(registry)

    def add_permit(self, data: bytes, at: int | None = None, *, by: str = LOCAL_ADMIN) -> PermitRecord:
        """Record a root-signed permit as pending (idempotent). Nothing is approved by this."""
        at = now() if at is None else at
        try:
            signed = verify_permit(*self._root(), bytes(data))
        except InvalidMessage:
            raise PermitRefused("not a permit signed by the pinned federation root "
                                "(changed, or signed by another key)") from None
        self._check_usable(signed, at, registry=self.registry(), revocations=self.revocations())
        p = signed.permit
        with self._write() as c:
            if store.permit_row(c, signed.sha256) is None:
                store.add_pending_permit(c, sha256=signed.sha256, permit_id=p.permit_id,
                                         data=signed.data, researcher_id=p.researcher.member_id,
                                         project_title=p.project_title, not_before=p.not_before,
                                         not_after=p.not_after, at=at)
                self.audit.append(event="permit.add", decision="pending", who=LOCAL_ADMIN,
                                  permit_hash=signed.sha256, detail=audited.permit_detail(p, by))
        return self.permit(signed.sha256)

    def _decide(self, ref: str, status: str, allowed_from: tuple[str, ...], by: str,
                reason: str | None, at: int) -> PermitRecord:
        if (rec := self.permit(ref)).status not in allowed_from:
            raise PermitRefused(f"permit {rec.permit.permit_id} is {rec.status}; cannot "
                                f"mark it {status}")
        with self._write() as c:
            # again inside the write lock: another process's decision (a revocation, final) may
            # have landed since the check above, and an UPDATE by hash alone would overwrite it
            now_status = getattr(store.permit_row(c, rec.sha256), "status", None)
            if now_status not in allowed_from:
                raise PermitRefused(f"permit {rec.permit.permit_id} is {now_status or 'gone'}; cannot "
                                    f"mark it {status}")
            store.decide_permit(c, rec.sha256, status=status, by=by, reason=reason, at=at)
            self.audit.append(event=audited.DECISION_EVENTS[status], decision=status, who=LOCAL_ADMIN,
                              permit_hash=rec.sha256, detail={"permit_id": rec.permit.permit_id, "by": by,
                                                              "was": rec.status, "reason": reason})
        return self.permit(rec.sha256)

    def approve(self, ref: str, *, by: str, at: int | None = None,
                centre_min_cells: int | None = None) -> PermitRecord:
        """Approve a pending (or refused) permit, pinning its SHA-256; needs fresh trust state.
        `centre_min_cells` refuses a permit whose minimum is below this centre's own."""
        at = now() if at is None else at
        registry, revocations = self.require_ready(at)
        rec = self.permit(ref)
        self._check_usable(rec, at, registry=registry, revocations=revocations)
        k = rec.permit.min_cell_count
        if centre_min_cells is not None and k < centre_min_cells:
            raise PermitRefused(f"permit {rec.permit.permit_id} allows cells of {k}, below "
                                f"this centre's minimum {centre_min_cells}")
        return self._decide(ref, "approved", ("pending", "refused"), by, None, at)

    def refuse(self, ref: str, *, by: str, reason: str, at: int | None = None) -> PermitRecord:
        return self._decide(ref, "refused", ("pending",), by, reason, at or now())

    def revoke(self, ref: str, *, by: str, reason: str, at: int | None = None) -> PermitRecord:
        """Withdraw this centre's approval at once; final (the authority issues a new permit)."""
        return self._decide(ref, "revoked", ("pending", "approved", "refused"), by, reason,
                            at or now())

    def authorise(self, permit_hash: str, at: int | None = None) -> Permit:
        """The query path's gate: the permit this hash names, if this node may serve it now.

        Checks trust state fresh, permit approved *here* (exact hash), its root signature, the
        authority's revocation list, validity window, addressee, and that the researcher is
        still registered with its keys. Raises PermitRefused (or StaleTrust/NotPinned)."""
        at = now() if at is None else at
        registry, revocations = self.require_ready(at)
        rec = self._record(permit_hash)
        if rec is None or rec.status != "approved":
            raise PermitRefused("permit not approved at this centre")
        self._check_usable(rec, at, registry=registry, revocations=revocations)
        rec.permit.check_valid_at(at)
        return rec.permit
