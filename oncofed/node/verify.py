"""Verification of every query a node receives (DESIGN §2, §3, §4 "Flow" step 2), before anything
touches the data.

`QueryVerifier.verify(envelope)` checks, in this order, and stops at the first failure:

 1. the node's trust state is fresh (pinned root, registry and revocation list not stale);
 2. the envelope (tag `oncofed/query/v1`) is signed over its exact bytes by a registry
    researcher whose keys are not revoked — verified before the body is parsed;
 3. the permit hash names a permit this centre's admin approved, not revoked, valid now
    (`NodeTrust.authorise` is the final gate);
 4. the signer is the permit's researcher;
 5. issued_at ≤ now + 2 min, now ≤ expires_at ≤ issued_at + 24 h;
 6. the nonce (16 bytes) was never seen — recorded in the same SQLite transaction as the
    decision's audit entry, so two concurrent copies cannot both pass;
 7. this centre is a target, the dictionary is the node's, the analysis and every field the
    cohort and analysis name are allowed by the permit, and so is every survival outcome they
    follow (a survival analysis' outcome, a derived status field's); exact dates only if the
    permit says so; and the body is for the plane it arrived on — a body with `flower` set on
    the Flower plane only (oncofed.node.federated), one without on the query plane only, so a
    signed query cannot be replayed from one plane into the other.

Every decision is appended to the audit log with a fine-grained reason from the one refusal
vocabulary (oncofed.query.refusals: `REASONS`); what may go back to the hub and researcher is only
the coarse code (`Coarse`), which depends on the request and the node's own state, never on the
data. The query hash is `oncofed.query.query_hash` of the exact envelope bytes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from oncofed.dictionary import Dictionary
from oncofed.keys.envelope import unverified_signer_key_id, verify_from
from oncofed.keys.errors import InvalidMessage, NotPinned, PermitRefused, StaleTrust, TrustError
from oncofed.keys.identity import PublicIdentity
from oncofed.keys.permits import Permit
from oncofed.keys.registry import Registry, RevocationList
from oncofed.node.audit import AuditEntry, AuditLog
from oncofed.node.store import db as dbmod
from oncofed.node.store import nonces
from oncofed.node.trust import NodeTrust
from oncofed.query import QUERY_TAG, query_hash
from oncofed.query.nesting import MAX_BODY_DEPTH, MAX_COHORT_DEPTH, message_depth
from oncofed.query.references import referenced_fields, referenced_outcomes
from oncofed.query.refusals import REASONS, Refusal
from oncofed.v1 import query_pb2

if TYPE_CHECKING:
    from oncofed.node.node import Node

log = logging.getLogger("oncofed.node.verify")

CLOCK_SKEW = 120            # seconds a query may be issued in our future (DESIGN §4)
MAX_LIFETIME = 24 * 3600    # expires_at ≤ issued_at + 24 h
NONCE_BYTES = 16
MAX_QUERY_BYTES = 1024 * 1024
VERIFY_EVENT = "query.verify"
QUERY_PLANE = "query"       # signed queries relayed by the hub (oncofed.node.connector)
FLOWER_PLANE = "flower"     # a Flower run's one envelope (oncofed.node.federated)
PLANES = (QUERY_PLANE, FLOWER_PLANE)


class RequestRefused(Refusal):
    """A request this node declined. `reason` and the message are for the local audit log and
    admin only; send outward nothing but `coarse` (see `public`)."""

    def __init__(self, reason: str, detail: str = "", audit_seq: int | None = None) -> None:
        super().__init__(reason, f"refused ({reason}){': ' + detail if detail else ''}")
        self.detail, self.audit_seq = detail, audit_seq

    @property
    def public(self) -> str:
        return self.coarse.value

    def public_message(self) -> str:
        """Always the coarse code alone: the verifier's and later stages' details (ε left, who is
        revoked, why a permit failed) never leave the node, whatever the reason."""
        return f"declined: {self.coarse.value}"


@dataclass(frozen=True)
class VerifiedQuery:
    """A query that passed every check: what the engine may run, and under which permit."""

    body: query_pb2.QueryBody
    permit: Permit
    permit_hash: str
    researcher: PublicIdentity
    query_hash: str
    analysis: str
    fields: tuple[str, ...]
    audit_seq: int

    @property
    def researcher_id(self) -> str:
        return self.researcher.member_id


def analysis_kind(body: query_pb2.QueryBody) -> str:
    """The analysis' catalogue name (the set member of its oneof), or '' when none is set."""
    analysis = body.analysis
    for oneof in analysis.DESCRIPTOR.oneofs:
        kind = analysis.WhichOneof(oneof.name)
        if kind:
            return kind
    return ""


def _check_plane(plane: str) -> None:
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r} (known: {', '.join(PLANES)})")


class _Refusal(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class _Context:
    """What is known about the request so far, for its audit entry."""

    query_hash: str
    size: int
    who: str = "unknown"
    permit_hash: str = ""
    analysis: str = ""
    fields: tuple[str, ...] = ()


class QueryVerifier:
    """Verifies queries for one centre. Thread-safe; give it a NodeTrust and an AuditLog on their
    own connections (`for_node` does) when the node also writes from other threads."""

    def __init__(self, trust: NodeTrust, audit: AuditLog, *, centre_id: str,
                 dictionary: Dictionary, clock: Callable[[], float] = time.time) -> None:
        self.trust, self.audit, self.centre_id = trust, audit, centre_id
        self.dictionary, self.clock = dictionary, clock
        self._trust_lock = threading.Lock()
        dbmod.migrate(dbmod.StoreDB(audit.conn), ["verify"])

    @classmethod
    def for_node(cls, node: Node, audit: AuditLog | None = None) -> QueryVerifier:
        """A verifier for an opened Node, with trust state and audit log on their own
        connections (close with `close()`)."""
        from oncofed.node.audit import open_audit

        trust = NodeTrust.open(node.paths.store, node.config.node_id)
        return cls(trust, audit or open_audit(node), centre_id=node.config.node_id,
                   dictionary=node.dictionary)

    def close(self) -> None:
        self.trust.close()
        self.audit.close()

    # --- the checks ---------------------------------------------------------------------------
    def _ready(self, at: int) -> tuple[Registry, RevocationList]:
        try:
            return self.trust.require_ready(at)
        except NotPinned as exc:
            raise _Refusal("trust_not_pinned", str(exc)) from None
        except StaleTrust as exc:
            raise _Refusal("registry_stale", str(exc)) from None
        except TrustError as exc:
            raise _Refusal("not_a_member", str(exc)) from None

    def _signature(self, envelope: bytes, ctx: _Context, registry: Registry,
                   revocations: RevocationList) -> tuple[PublicIdentity, bytes]:
        if len(envelope) > MAX_QUERY_BYTES:
            raise _Refusal("oversized", f"{len(envelope)} bytes > {MAX_QUERY_BYTES}")
        try:
            claimed = unverified_signer_key_id(envelope, MAX_QUERY_BYTES)
        except InvalidMessage:
            raise _Refusal("malformed_envelope") from None
        ctx.who = f"unverified:{claimed.hex()[:16]}"
        researchers = [m for m in registry.members if m.role == "researcher"]
        member = next((m for m in researchers if m.identity.signing_key_id == claimed), None)
        if member is None:
            raise _Refusal("unknown_signer", "no registry researcher has this signing key")
        try:
            verified = verify_from(envelope, tag=QUERY_TAG, keyring={claimed: member.identity},
                                   max_bytes=MAX_QUERY_BYTES)
        except InvalidMessage:
            raise _Refusal("bad_signature", f"claimed signer {member.member_id}") from None
        # Only after the signature: an unauthenticated sender must not learn who is revoked.
        if revocations.member_revoked(member) is not None:
            raise _Refusal("signer_revoked", f"{member.member_id}'s keys are revoked")
        ctx.who = member.member_id
        return verified.signer, verified.body

    @staticmethod
    def _parse(raw: bytes, ctx: _Context) -> query_pb2.QueryBody:
        try:
            body = query_pb2.QueryBody.FromString(raw)
        except DecodeError:
            # protobuf refuses messages nested over 100 deep with the same bare error as garbage
            if message_depth(raw, query_pb2.QueryBody.DESCRIPTOR, MAX_BODY_DEPTH) > MAX_BODY_DEPTH:
                raise _Refusal("cohort_too_deep", f"the body nests more than {MAX_BODY_DEPTH} "
                               f"messages (a cohort has at most {MAX_COHORT_DEPTH} levels)") from None
            raise _Refusal("malformed_body", "not a QueryBody") from None
        if len(body.permit_hash) != 32 or len(body.nonce) != NONCE_BYTES:
            raise _Refusal("malformed_body", "permit_hash must be 32 bytes, nonce 16")
        ctx.permit_hash = body.permit_hash.hex()
        ctx.analysis = analysis_kind(body)
        ctx.fields = tuple(sorted(referenced_fields(body)))
        return body

    def _permit(self, permit_hash: str, revocations: RevocationList, at: int) -> Permit:
        """Name the precise reason for the audit log, then pass the one real gate."""
        try:
            rec = self.trust.permit(permit_hash)
        except TrustError:
            rec = None
        if rec is None or rec.sha256 != permit_hash:
            raise _Refusal("permit_not_approved", "no permit with this hash at this centre")
        p = rec.permit
        if rec.status == "revoked" or revocations.permit_revoked(p.permit_id, permit_hash):
            raise _Refusal("permit_revoked", f"permit {p.permit_id} is revoked")
        if rec.status != "approved":
            raise _Refusal("permit_not_approved", f"permit {p.permit_id} is {rec.status} here")
        if at >= p.not_after:
            raise _Refusal("permit_expired", f"permit {p.permit_id} expired")
        if at < p.not_before:
            raise _Refusal("permit_not_yet_valid", f"permit {p.permit_id} is not yet valid")
        try:
            return self.trust.authorise(permit_hash, at)
        except PermitRefused as exc:
            raise _Refusal("permit_refused", str(exc)) from None
        except TrustError as exc:
            raise _Refusal("registry_stale", str(exc)) from None

    @staticmethod
    def _holder_and_time(body: query_pb2.QueryBody, signer: PublicIdentity, permit: Permit,
                         at: int) -> None:
        if signer != permit.researcher:
            raise _Refusal("not_permit_holder", f"signed by {signer.member_id}, permit held by "
                           f"{permit.researcher.member_id}")
        key_id = body.researcher_key_id.strip().lower()
        if key_id and key_id != signer.signing_fingerprint:
            raise _Refusal("key_id_mismatch", "researcher_key_id is not the signing key's id")
        if body.issued_at > at + CLOCK_SKEW:
            raise _Refusal("clock_skew", f"issued {body.issued_at - at} s in the future")
        if at > body.expires_at:
            raise _Refusal("expired", f"expired {at - body.expires_at} s ago")
        if not body.issued_at <= body.expires_at <= body.issued_at + MAX_LIFETIME:
            raise _Refusal("bad_lifetime", "expires_at must lie within 24 h after issued_at")

    def _scope(self, body: query_pb2.QueryBody, permit: Permit, ctx: _Context, plane: str) -> _Refusal | None:
        """The checks after the nonce: addressed here, on its plane, same dictionary, allowed by
        the permit."""
        if body.HasField("flower") != (plane == FLOWER_PLANE):
            return _Refusal("wrong_plane", f"a {'Flower run' if body.HasField('flower') else 'query-plane query'} "
                            f"arrived on the {plane} plane")
        if self.centre_id not in body.target_centres:
            return _Refusal("not_a_target", "this centre is not among the targets")
        ref, mine = body.dictionary, self.dictionary.identity()
        if (ref.name, ref.version, ref.extension_sha256) != (
                mine["name"], mine["version"], mine["extension_sha256"]):
            return _Refusal("dictionary_mismatch", f"query for {ref.name} {ref.version}, node has "
                            f"{mine['name']} {mine['version']}")
        if not ctx.analysis:
            return _Refusal("no_analysis", "the query names no analysis")
        try:
            permit.check_analysis(ctx.analysis)
        except PermitRefused as exc:
            return _Refusal("analysis_not_allowed", str(exc))
        try:
            permit.check_fields(ctx.fields)
        except PermitRefused as exc:
            return _Refusal("field_not_allowed", str(exc))
        try:
            permit.check_outcomes(referenced_outcomes(body, self.dictionary))
        except PermitRefused as exc:
            return _Refusal("outcome_not_allowed", str(exc))
        if getattr(body, "exact_dates", False) and not permit.allow_exact_dates:
            return _Refusal("exact_dates_not_allowed", "the permit allows month precision only")
        return None

    # --- the flow -----------------------------------------------------------------------------
    def verify(self, envelope: bytes, *, at: int | None = None, plane: str = QUERY_PLANE) -> VerifiedQuery:
        """Verify a signed query envelope arriving on `plane` and record the decision; raise
        RequestRefused."""
        _check_plane(plane)
        at = int(self.clock()) if at is None else at
        envelope = bytes(envelope)
        ctx = _Context(query_hash(envelope), len(envelope))
        try:
            with self._trust_lock, self.trust.request():       # the trust state read once (D34)
                registry, revocations = self._ready(at)
                signer, raw = self._signature(envelope, ctx, registry, revocations)
                body = self._parse(raw, ctx)
                permit = self._permit(ctx.permit_hash, revocations, at)
            self._holder_and_time(body, signer, permit, at)
            later = self._scope(body, permit, ctx, plane)
            return self._decide(body, signer, permit, later, ctx, at)
        except _Refusal as refusal:
            raise self._refused(ctx, refusal, at) from None
        except RequestRefused:
            raise
        except Exception as exc:
            log.exception("verifying query %s failed", ctx.query_hash[:16])
            raise self._refused(ctx, _Refusal("internal_error", type(exc).__name__), at) from exc

    def recheck(self, envelope: bytes, *, at: int | None = None, plane: str = QUERY_PLANE) -> VerifiedQuery:
        """Verify again a query this node accepted earlier — every check but the nonce, which its
        acceptance consumed: the answer step of a federated query comes later, perhaps after a
        restart, and the permit or registry may have changed since. Refusals are audited."""
        _check_plane(plane)
        at = int(self.clock()) if at is None else at
        envelope = bytes(envelope)
        ctx = _Context(query_hash(envelope), len(envelope))
        try:
            with self._trust_lock, self.trust.request():
                registry, revocations = self._ready(at)
                signer, raw = self._signature(envelope, ctx, registry, revocations)
                body = self._parse(raw, ctx)
                permit = self._permit(ctx.permit_hash, revocations, at)
            self._holder_and_time(body, signer, permit, at)
            later = self._scope(body, permit, ctx, plane)
            if later is not None:
                raise later
        except _Refusal as refusal:
            raise self._refused(ctx, refusal, at) from None
        return VerifiedQuery(body, permit, ctx.permit_hash, signer, ctx.query_hash, ctx.analysis, ctx.fields, 0)

    def _decide(self, body: query_pb2.QueryBody, signer: PublicIdentity, permit: Permit,
                later: _Refusal | None, ctx: _Context, at: int) -> VerifiedQuery:
        """Record the nonce and the decision in one transaction: of two copies racing, the
        second sees the first's nonce and is refused as a replay."""
        with self.audit.transaction() as conn:
            nonces.prune(conn, at)
            fresh = nonces.record_if_fresh(conn, signer=signer.signing_fingerprint,
                                           nonce=body.nonce, keep_until=body.expires_at + CLOCK_SKEW,
                                           query_hash=ctx.query_hash, at=at)
            refusal = later if fresh else _Refusal("replayed_nonce", "nonce seen before")
            if refusal is not None:
                entry = self._append(ctx, refusal, at)
            else:
                entry = self.audit.append(
                    event=VERIFY_EVENT, decision="accepted", who=ctx.who,
                    permit_hash=ctx.permit_hash, query_hash=ctx.query_hash,
                    analysis=ctx.analysis, fields=ctx.fields, at=at,
                    detail={"targets": list(body.target_centres), "issued_at": body.issued_at,
                            "expires_at": body.expires_at, "bytes": ctx.size})
        if refusal is not None:
            raise RequestRefused(refusal.reason, refusal.detail, entry.seq)
        return VerifiedQuery(body, permit, ctx.permit_hash, signer, ctx.query_hash, ctx.analysis,
                             ctx.fields, entry.seq)

    def _append(self, ctx: _Context, refusal: _Refusal, at: int) -> AuditEntry:
        return self.audit.append(
            event=VERIFY_EVENT, decision="refused", who=ctx.who, permit_hash=ctx.permit_hash,
            query_hash=ctx.query_hash, analysis=ctx.analysis, fields=ctx.fields,
            reason=refusal.reason, at=at,
            detail={"message": refusal.detail, "coarse": REASONS[refusal.reason].coarse.value,
                    "bytes": ctx.size})

    def _refused(self, ctx: _Context, refusal: _Refusal, at: int) -> RequestRefused:
        log.info("refused query %s from %s: %s", ctx.query_hash[:16], ctx.who, refusal.reason)
        return RequestRefused(refusal.reason, refusal.detail, self._append(ctx, refusal, at).seq)

    def prune_nonces(self, at: int | None = None) -> int:
        """Forget nonces whose queries expired (plus skew); return how many. `verify` also does
        it as it goes, so this is for housekeeping on an idle node."""
        at = int(self.clock()) if at is None else at
        with self.audit.transaction() as conn:
            return nonces.prune(conn, at)

    def record(self, query: VerifiedQuery, *, event: str, decision: str, reason: str = "",
               cells_suppressed: int = 0, cells_perturbed: int = 0, epsilon_spent: float = 0.0,
               detail: Mapping[str, Any] | None = None) -> int:
        """Append a later decision about a verified query (answered, declined by budget or
        policy, failed) to the audit log; returns the entry id. For the engine and connector."""
        if reason and reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        return self.audit.append(
            event=event, decision=decision, who=query.researcher_id,
            permit_hash=query.permit_hash, query_hash=query.query_hash, analysis=query.analysis,
            fields=query.fields, reason=reason, cells_suppressed=cells_suppressed,
            cells_perturbed=cells_perturbed, epsilon_spent=epsilon_spent, detail=detail,
            at=self.clock()).seq
