"""The node's one answering pipeline: the exact envelope bytes in, one audited answer out.

    verify (signature over the exact bytes, permit, freshness, nonce, scope; audited)
      → the analysis' local step (through the cohort compiler and the store's reader)
      → its disclosure step (cell key, threshold or DP, under the centre's policy and the permit)
      → the vector mod 2^128, through the release ledger (node/query/differencing: a cohort within
        fewer than ~k rows of an earlier release is answered as that release, byte for byte)
      → the audit entry of the outcome (`query.answer`: answered, or refused with its reason; the
        ledger's decision only in its local detail, so the entries are the same on every path)

One query hash — `oncofed.query.query_hash` of the envelope bytes as received — is carried from
verification through the engine (rate key, privacy charge) into both audit entries. A refusal at
any step raises a `Refusal` from the one vocabulary (oncofed.query.refusals): its fine reason is
in the local audit log, and only its public message (the coarse code unless the reason is decided
from the query alone) may go outward. The centre admin's preview takes the same path from the
engine on, as the local admin, audited as `query.local`.

The query service calls `answer_envelope`; the hub connector `accept_envelope` then
`answer_accepted`; a Flower run's participant (oncofed.node.federated) `accept_envelope` on the
Flower plane, then `answer_verified` once per round; `oncofed node query` calls `preview`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from oncofed.node.audit import LOCAL_ADMIN, AuditLog, open_audit
from oncofed.node.node import Node
from oncofed.node.query.engine import Answer, answer, prepare
from oncofed.node.query.policy import NodePolicy
from oncofed.node.store.ledger import Participation
from oncofed.node.verify import QUERY_PLANE, QueryVerifier, VerifiedQuery, analysis_kind, referenced_fields
from oncofed.query import query_hash
from oncofed.query.refusals import Refusal
from oncofed.v1 import query_pb2 as pb

log = logging.getLogger("oncofed.node.answering")

ANSWER_EVENT = "query.answer"
LOCAL_EVENT = "query.local"


def _outcome(ans: Answer) -> dict[str, Any]:
    """What the audit entry of an answer records besides its counters (local only)."""
    keep = ("mode", "k", "rows", "values", "suppressed", "mechanism", "epsilon_remaining", "seconds",
            "ledger", "ledger_entry", "ledger_release", "ledger_delta", "ledger_reused", "ledger_other_participants",
            "ledger_blocker",
            "round", "beta", "gates")
    return {k: ans.meta[k] for k in keep if k in ans.meta}


class AnsweringPipeline:
    """Answers signed queries for one opened node. Give it the node's verifier (which owns its
    own trust and audit connections) and the centre's policy."""

    def __init__(self, node: Node, verifier: QueryVerifier, policy: NodePolicy) -> None:
        self.node, self.verifier, self.policy = node, verifier, policy

    def answer_envelope(self, envelope: bytes, *, at: int | None = None) -> Answer:
        """Verify the exact bytes, answer, and audit the outcome; raise a Refusal when declined."""
        verified = self.verifier.verify(envelope, at=at)        # audited as query.verify
        return self.answer_verified(verified, at=at)

    def accept_envelope(self, envelope: bytes, *, at: int | None = None, plane: str = QUERY_PLANE) -> VerifiedQuery:
        """The prepare step of a federated query (or of a Flower run, `plane` FLOWER_PLANE): verify
        the exact bytes (consuming the nonce) and run every check that reads no data, so a centre
        declines before the participant set is fixed rather than failing after it. Raise a
        Refusal (audited) when it would decline."""
        verified = self.verifier.verify(envelope, at=at, plane=plane)
        try:
            prepare(self.node, verified.body, verified.permit, self.policy)
        except Refusal as exc:
            self._refused(verified, exc)
            raise
        return verified

    def answer_accepted(self, envelope: bytes, *, at: int | None = None,
                        participants: Participation | None = None) -> tuple[VerifiedQuery, Answer]:
        """The answer step of a query accepted earlier: verify it again (all but the nonce) and
        answer it through the same engine, under the participant set `participants`: the release
        ledger keeps the answer per set and says when the same release already went out under
        another set and may not go out under this one (`Answer.meta["ledger_other_participants"]`)."""
        verified = self.verifier.recheck(envelope, at=at)
        return verified, self.answer_verified(verified, at=at, participants=participants)

    def answer_verified(self, verified: VerifiedQuery, *, at: int | None = None,
                        participants: Participation | None = None) -> Answer:
        """Answer a verified query and audit the outcome (`query.answer`). Its audit entry,
        committed with synchronous=FULL, is what makes the release ledger's commits durable
        before the answer leaves (they do not wait for the disk); a federated answer carries a
        signed audit head that names it, and a head never names an entry a power loss could take
        (D34)."""
        try:
            ans = answer(self.node, verified.body, verified.permit, policy=self.policy, now=at,
                         query_hash=verified.query_hash, signer=verified.researcher.signing_fingerprint,
                         participants=participants)
        except Refusal as exc:
            self._refused(verified, exc)
            raise
        except Exception as exc:
            log.exception("answering query %s failed", verified.query_hash[:16])
            self.verifier.record(verified, event=ANSWER_EVENT, decision="failed", reason="internal_error",
                                 detail={"error": type(exc).__name__})
            raise
        self.verifier.record(verified, event=ANSWER_EVENT, decision="answered",
                             cells_suppressed=ans.cells_suppressed, cells_perturbed=ans.cells_perturbed,
                             epsilon_spent=ans.epsilon_spent, detail=_outcome(ans))
        return ans

    def withhold(self, verified: VerifiedQuery, why: str) -> None:
        """Audit an answer computed but not sent (the caller sends a coarse failure instead)."""
        self.verifier.record(verified, event=ANSWER_EVENT, decision="withheld", reason="node_policy",
                             detail={"why": why})

    def refused(self, verified: VerifiedQuery, exc: Refusal) -> None:
        """Audit a refusal decided after verification by a caller of the pipeline (the Flower
        participant's checks on a round: its participant set, its number)."""
        self._refused(verified, exc)

    def _refused(self, verified: VerifiedQuery, exc: Refusal) -> None:
        self.verifier.record(verified, event=ANSWER_EVENT, decision="refused", reason=exc.reason,
                             detail={"message": str(exc), "coarse": exc.coarse.value})


def preview(node: Node, body: pb.QueryBody, *, policy: NodePolicy, audit: AuditLog | None = None,
            detail: Mapping[str, Any] | None = None) -> Answer:
    """The centre admin's preview of `body` on its own data, through the same engine, audited
    as the local admin's authority (no signature, no permit) so an auditor sees every figure the
    node computed. Its hash is the one query hash of the serialised body (there is no envelope)."""
    qhash = query_hash(body.SerializeToString())
    ans = answer(node, body, None, policy=policy, query_hash=qhash)
    own = audit is None
    audit_log = audit or open_audit(node)
    try:
        audit_log.append(event=LOCAL_EVENT, decision="answered", who=LOCAL_ADMIN, query_hash=qhash,
                         analysis=analysis_kind(body), fields=sorted(referenced_fields(body)),
                         cells_suppressed=ans.cells_suppressed, cells_perturbed=ans.cells_perturbed,
                         epsilon_spent=ans.epsilon_spent,
                         detail={"authority": "local admin", "mode": ans.meta.get("mode"), **(detail or {})})
    finally:
        if own:
            audit_log.close()
    return ans
