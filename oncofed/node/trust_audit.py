"""Where the node's trust state and its audit log meet.

NodeTrust (oncofed.node.trust) audits every change it makes; this module holds the vocabulary of
those entries, and `centre_keys`: what `oncofed node audit verify` checks the log's signatures
with — every Ed25519 key the pinned registry ever listed for this centre, never a key file the
person who could edit the log could also swap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oncofed.keys.errors import NotPinned, StaleTrust, TrustError
from oncofed.keys.identity import PublicIdentity
from oncofed.keys.permits import Permit
from oncofed.keys.registry import Registry, RegistryChanges

if TYPE_CHECKING:
    from oncofed.node.audit import AuditLog
    from oncofed.node.trust import NodeTrust

#: The audit event of each permit decision.
DECISION_EVENTS = {"approved": "permit.approve", "refused": "permit.refuse",
                   "revoked": "permit.revoke"}


class DocumentRefused(TrustError):
    """A registry or revocation list this node refused; `reason` is its audit entry's code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def refusal_reason(exc: TrustError) -> str:
    """The audit reason code of a refused trust document."""
    if isinstance(exc, DocumentRefused):
        return exc.reason
    return {NotPinned: "not_pinned", StaleTrust: "stale"}.get(type(exc), "refused")


def registry_detail(reg: Registry, changes: RegistryChanges) -> dict[str, Any]:
    """What an installed registry's entry records: its size and who joined, left or rekeyed."""
    return {"members": len(reg.members),
            **{k: [m.member_id for m in getattr(changes, k)] for k in ("added", "removed", "rekeyed")}}


def permit_detail(p: Permit, by: str) -> dict[str, Any]:
    """What a newly added permit's entry records (the permit itself stays in the trust tables)."""
    return {"permit_id": p.permit_id, "researcher": p.researcher.member_id, "project": p.project_title,
            "not_before": p.not_before, "not_after": p.not_after, "by": by}


@contextmanager
def refusals_audited(write: Callable[[], AbstractContextManager[Any]], audit: AuditLog, event: str,
                     who: str) -> Iterator[None]:
    """Audit a refused document in a transaction of its own (the refused one rolled back), taken
    through the trust state's `write` so no other thread's transaction is joined: a hub replaying
    an old registry shows in the log."""
    try:
        yield
    except TrustError as exc:
        with write():
            audit.append(event=event, decision="refused", who=who, reason=refusal_reason(exc),
                         detail={"message": str(exc)})
        raise


@dataclass(frozen=True)
class CentreKeys:
    """A centre's signing keys from the pinned registry, and where they came from."""

    keys: tuple[PublicIdentity, ...]
    source: str

    @property
    def found(self) -> bool:
        return bool(self.keys)


def centre_keys(trust: NodeTrust, centre_id: str) -> CentreKeys:
    """Every key the held registry versions list for `centre_id` as a centre (old keys sign the
    checkpoints made before a rotation), each registry re-verified against the pinned root."""
    fingerprint = trust.root_fingerprint()
    if fingerprint is None:
        return CentreKeys((), "no federation root pinned: run oncofed node trust pin")
    keys: dict[bytes, PublicIdentity] = {}
    newest = None
    offset = 0
    while (reg := trust.registry(offset)) is not None:
        newest = newest or reg.version
        member = reg.member(centre_id)
        if member is not None and member.role == "centre":
            keys.setdefault(member.identity.signing_key_id, member.identity)
        offset += 1
    if newest is None:
        return CentreKeys((), "no registry installed: run oncofed node trust update FILE")
    if not keys:
        return CentreKeys((), f"{centre_id} is not a centre in any registry held")
    return CentreKeys(tuple(keys.values()), f"{centre_id}'s key from registry v{newest}, root "
                                            f"{fingerprint[:16]}…")
