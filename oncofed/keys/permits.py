"""Data permits: what one researcher may ask, signed by the federation root.

A permit is a `Permit` protobuf message (protos/oncofed/v1/trust.proto) serialised once by the
authority and wrapped in a root-signed document with tag `oncofed/permit/v1`. The permit *file*
is exactly those signed bytes, and the permit's identity everywhere else — a centre's approval,
the hash a query carries, a revocation entry — is the SHA-256 of those bytes. The root signature
has a single valid encoding (x509ca stores low-S r‖s), so nobody can make a second byte string
that verifies as the same permit and slips past a pinned hash.

Deny by default: an empty list of analyses, fields or outcomes allows nothing, and
`Permit.check_*` refuse anything not named. A survival analysis (or a status derived at a cutoff)
reads the death, vital-status, recurrence and follow-up fields of its outcome: the permit names
the outcome ("os", "rfs") instead of those fields, and a permit that allows a survival analysis
must name at least one. Field names keep the dictionary's case (cT, pN …). The checks a centre
makes with its own state (approved here? revoked here?) live in oncofed.node.trust; this module
checks what the permit itself says.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from oncofed.keys.errors import PermitRefused, TrustError
from oncofed.keys.identity import PublicIdentity, check_member_id
from oncofed.keys.registry import DocumentSigner, Registry, check_hex64
from oncofed.keys.x509ca import verify_root_document
from oncofed.v1 import trust_pb2 as pb

TAG_PERMIT = "oncofed/permit/v1"
#: The analysis catalogue of DESIGN §4–§5. A permit naming anything else is refused at issue.
KNOWN_ANALYSES = ("count", "crosstab", "histogram", "summary", "kaplan_meier", "logrank",
                  "logistic", "cox", "cox_pooled", "poisson", "fedavg")
#: Survival outcomes (DESIGN §6): overall and recurrence-free survival.
KNOWN_OUTCOMES = ("os", "rfs")
#: Analyses that follow an outcome: a permit allowing one must name an outcome.
SURVIVAL_ANALYSES = ("kaplan_meier", "logrank", "cox", "cox_pooled", "poisson")
PERMIT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
_ANALYSIS_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")   # the dictionary's own rule (cT, pN, er …)


def permit_sha256(data: bytes) -> str:
    """Hex SHA-256 of the signed permit bytes: the permit's identity for approvals and queries."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Permit:
    """The terms of a data permit, as the authority signed them. Times are Unix seconds, UTC."""

    permit_id: str
    root_fingerprint: str
    researcher: PublicIdentity
    researcher_cert_fingerprint: str
    project_title: str
    allowed_analyses: tuple[str, ...]
    allowed_fields: tuple[str, ...]
    min_cell_count: int
    epsilon: float | None
    not_before: int
    not_after: int
    issued_at: int
    data_holders: tuple[str, ...] = ()
    allow_exact_dates: bool = False
    allowed_outcomes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not PERMIT_ID_RE.fullmatch(self.permit_id):
            raise ValueError(f"permit id {self.permit_id!r} must be 3–64 of [a-z0-9._-]")
        check_hex64(self.root_fingerprint, "root fingerprint")
        check_hex64(self.researcher_cert_fingerprint, "researcher certificate fingerprint")
        if self.researcher.role != "researcher":
            raise ValueError("a permit is issued to a researcher")
        if not self.project_title.strip():
            raise ValueError("a permit needs a project title")
        for name in self.allowed_analyses:
            if not _ANALYSIS_RE.fullmatch(name):
                raise ValueError(f"invalid analysis name {name!r}")
        for name in self.allowed_fields:
            if not _FIELD_RE.fullmatch(name):
                raise ValueError(f"invalid field name {name!r}")
        for name in self.allowed_outcomes:
            if name not in KNOWN_OUTCOMES:
                raise ValueError(f"unknown outcome {name!r}; known: {', '.join(KNOWN_OUTCOMES)}")
        for centre in self.data_holders:
            check_member_id(centre)
        if self.min_cell_count < 1:
            raise ValueError("minimum cell count must be at least 1")
        if self.epsilon is not None and not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError("ε must be a positive finite number")
        if self.not_after <= self.not_before:
            raise ValueError("a permit's validity window must end after it starts")

    # --- what the permit itself allows -------------------------------------------------------
    def check_valid_at(self, at: int) -> None:
        """Refuse outside the validity window (not_before inclusive, not_after exclusive)."""
        if at < self.not_before:
            raise PermitRefused(f"permit {self.permit_id} is not valid before {self.not_before}")
        if at >= self.not_after:
            raise PermitRefused(f"permit {self.permit_id} expired at {self.not_after}")

    def check_addressed_to(self, centre_id: str) -> None:
        if self.data_holders and centre_id not in self.data_holders:
            raise PermitRefused(f"permit {self.permit_id} is not addressed to {centre_id}")

    def check_analysis(self, analysis: str) -> None:
        if analysis not in self.allowed_analyses:
            raise PermitRefused(f"permit {self.permit_id} does not allow analysis {analysis!r}")

    def check_fields(self, fields: Iterable[str]) -> None:
        extra = sorted(set(fields) - set(self.allowed_fields))
        if extra:
            raise PermitRefused(
                f"permit {self.permit_id} does not allow field(s) {', '.join(extra)}")

    def check_outcomes(self, outcomes: Iterable[str]) -> None:
        extra = sorted(set(outcomes) - set(self.allowed_outcomes))
        if extra:
            raise PermitRefused(f"permit {self.permit_id} does not allow outcome(s) {', '.join(extra)}")

    def check_researcher(self, registry: Registry) -> None:
        """The researcher must still be in the registry with the keys the permit names."""
        member = registry.member(self.researcher.member_id)
        if member is None or member.identity != self.researcher:
            raise PermitRefused(f"permit {self.permit_id}: researcher {self.researcher.member_id}"
                                " is not in the registry with these keys")

    def to_json(self) -> dict[str, object]:
        return {
            "permit_id": self.permit_id, "project_title": self.project_title,
            "researcher": self.researcher.to_json(),
            "researcher_cert_fingerprint": self.researcher_cert_fingerprint,
            "allowed_analyses": list(self.allowed_analyses),
            "allowed_fields": list(self.allowed_fields), "min_cell_count": self.min_cell_count,
            "epsilon": self.epsilon, "not_before": self.not_before, "not_after": self.not_after,
            "issued_at": self.issued_at, "data_holders": list(self.data_holders),
            "allow_exact_dates": self.allow_exact_dates, "root_fingerprint": self.root_fingerprint,
            "allowed_outcomes": list(self.allowed_outcomes),
        }


def encode_permit(p: Permit) -> bytes:
    """Serialise once; these bytes are what the root signs."""
    msg = pb.Permit(
        permit_id=p.permit_id, root_fingerprint=p.root_fingerprint,
        researcher_id=p.researcher.member_id,
        researcher_ed25519_public_key=p.researcher.ed25519,
        researcher_x25519_public_key=p.researcher.x25519,
        researcher_cert_fingerprint=p.researcher_cert_fingerprint,
        project_title=p.project_title, allowed_analyses=list(p.allowed_analyses),
        allowed_fields=list(p.allowed_fields), min_cell_count=p.min_cell_count,
        not_before=p.not_before, not_after=p.not_after, issued_at=p.issued_at,
        data_holders=list(p.data_holders), allow_exact_dates=p.allow_exact_dates,
        allowed_outcomes=list(p.allowed_outcomes),
    )
    if p.epsilon is not None:
        msg.epsilon = p.epsilon
    return msg.SerializeToString()


def decode_permit(body: bytes) -> Permit:
    """Parse a permit body that has ALREADY been verified."""
    try:
        m = pb.Permit.FromString(body)
        return Permit(
            permit_id=m.permit_id, root_fingerprint=m.root_fingerprint,
            researcher=PublicIdentity(role="researcher", member_id=m.researcher_id,
                                      ed25519=m.researcher_ed25519_public_key,
                                      x25519=m.researcher_x25519_public_key),
            researcher_cert_fingerprint=m.researcher_cert_fingerprint,
            project_title=m.project_title, allowed_analyses=tuple(m.allowed_analyses),
            allowed_fields=tuple(m.allowed_fields), min_cell_count=m.min_cell_count,
            epsilon=m.epsilon if m.HasField("epsilon") else None,
            not_before=m.not_before, not_after=m.not_after, issued_at=m.issued_at,
            data_holders=tuple(m.data_holders), allow_exact_dates=m.allow_exact_dates,
            allowed_outcomes=tuple(m.allowed_outcomes))
    except (DecodeError, ValueError) as exc:
        raise TrustError(f"permit is signed by the root but malformed: {exc}") from None


def issue_permit(root: DocumentSigner, permit: Permit) -> bytes:
    """Sign a permit with the root; the result is the permit file, byte for byte."""
    unknown = sorted(set(permit.allowed_analyses) - set(KNOWN_ANALYSES))
    if unknown:
        raise TrustError(
            f"unknown analyses {', '.join(unknown)}; known: {', '.join(KNOWN_ANALYSES)}")
    if not permit.allowed_analyses or not permit.allowed_fields:
        raise TrustError("a permit must allow at least one analysis and one field")
    survival = sorted(set(permit.allowed_analyses) & set(SURVIVAL_ANALYSES))
    if survival and not permit.allowed_outcomes:
        raise TrustError(f"a permit allowing {', '.join(survival)} must name the outcome(s) it may follow "
                         f"({' or '.join(KNOWN_OUTCOMES)})")
    if permit.root_fingerprint != root.fingerprint:
        raise ValueError("permit names another root")
    return root.sign_document(TAG_PERMIT, encode_permit(permit))


@dataclass(frozen=True)
class SignedPermit:
    """A permit whose root signature checked out, with the exact bytes it was read from."""

    data: bytes
    permit: Permit

    @property
    def sha256(self) -> str:
        return permit_sha256(self.data)


def verify_permit(root_cert_pem: bytes, root_fingerprint: str, data: bytes) -> SignedPermit:
    """Verify the root's signature over the exact permit bytes, then parse.

    InvalidMessage when the signature (or tag) fails — a changed permit, or one signed by any
    key but the pinned root; TrustError when a signed permit is malformed or names another root.
    """
    permit = decode_permit(verify_root_document(root_cert_pem, TAG_PERMIT, data))
    if permit.root_fingerprint != root_fingerprint:
        raise TrustError(f"permit {permit.permit_id} names another federation root")
    return SignedPermit(bytes(data), permit)
