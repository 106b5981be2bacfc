"""A centre's side of a Flower run (DESIGN §5; docs/flower.md; D25): what the ClientApp calls.

A Flower run is one researcher-signed envelope whose body has `flower` set: a model (logistic or
Cox) without coefficients, the targets, the permit, the rounds the coordinator may ask. The
ServerApp coordinates: it picks β each round. This centre verifies and answers through the very
pipeline the query plane uses (oncofed.node.answering, same verifier, engine, gates, release
ledger, round cap and audit log), with the same secure-aggregation checks:

- `prepare(envelope)`: verify the exact bytes on the Flower plane (consuming the nonce, once for
  the whole run) and every check that reads no data; then accept with one `RunMaskKey` for the
  run, stored with the envelope before the accept leaves — or decline with a coarse code only.
  A redelivered prepare gets the same accept (or decline) again.
- `answer_round(q, r, β, S)`: check S (every accept signed by a registry centre among the
  targets, this centre's own accept and key in it, at least the query's and this centre's
  minimum, the same S as the run's earlier rounds), the round (1 … min(the signed max_rounds,
  node.toml [query] max_rounds), above every round answered), verify the envelope again, answer
  the signed model at this β and round through the pipeline (the engine's round cap and audit
  entry with β and round included), mask over S keyed by registry centre ids with round r in the
  masks, sign, record durably (synchronous=FULL) before it leaves. A resend of (q, r, S) is the
  stored bytes; (q, r) under another S is refused.

Every refusal goes into the local audit log with its reason; outward goes a signed decline or
failure naming a coarse code only. Nothing here knows Flower: the ClientApp (oncofed.flower)
moves the bytes.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from oncofed.analyses.fedavg import DEFAULT_ROUNDS as DEFAULT_FEDAVG_ROUNDS
from oncofed.analyses.fedavg import KIND as FEDAVG
from oncofed.analyses.fitting import MODELS
from oncofed.errors import NodeError
from oncofed.keys.envelope import unverified_body
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity
from oncofed.node.answering import AnsweringPipeline
from oncofed.node.keyfiles import load_node_identity
from oncofed.node.node import open_node
from oncofed.node.query.engine import load_policy
from oncofed.node.store import federation as fedstore
from oncofed.node.store import flower_runs as runstore
from oncofed.node.store.db import immediate, immediate_unsynced
from oncofed.node.store.ledger import Participation
from oncofed.node.verify import FLOWER_PLANE, QueryVerifier, VerifiedQuery
from oncofed.query import QUERY_TAG
from oncofed.query import query_hash as hash_of
from oncofed.query.errors import QueryError
from oncofed.query.refusals import Refusal
from oncofed.secagg import (
    ACCEPT_TAG,
    Accept,
    InvalidParticipantSet,
    ParticipantSet,
    RunMaskKey,
    SecAggError,
    sign_accept,
)
from oncofed.secagg.run_wire import sign_run_answer
from oncofed.secagg.wire import sign_decline, sign_failure
from oncofed.v1 import query_pb2 as pb

log = logging.getLogger("oncofed.node.federated")

DEFAULT_MAX_ROUNDS = 25           # a run's rounds when its body says 0 (DESIGN §5)
#: What a Flower run may carry: an exact model (the coordinator's Newton steps) or FedAvg training.
RUN_KINDS = (*MODELS, FEDAVG)
DEFAULT_MIN_PARTICIPANTS = 3


@dataclass(frozen=True)
class Reply:
    """What goes back to the coordinator: a signed message and which kind it is."""

    kind: str           # "accept" | "decline" (prepare), "answer" | "failure" (a round)
    data: bytes


def min_participants_of(extra: dict[str, object]) -> int:
    """This centre's smallest participant set on Flower: node.toml [flower] min_participants,
    else [hub] min_participants, else 3."""
    for section in ("flower", "hub"):
        table = extra.get(section)
        if isinstance(table, dict) and "min_participants" in table:
            value = table["min_participants"]
            if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 1000:
                raise NodeError(f"node.toml: [{section}] min_participants must be an integer from 2 to 1000")
            return value
    return DEFAULT_MIN_PARTICIPANTS


def round_body(signed: pb.QueryBody, beta: Sequence[int], round_: int, offset: int = 0) -> pb.QueryBody:
    """The query one round answers: the signed body with the coordinator's β (fixed point, at the
    signed `beta_scale_bits`), the round number and, for the pooled Cox model, the common offset
    c the coordinator computes each round from β (D35) — nothing else of it can change."""
    body = pb.QueryBody()
    body.CopyFrom(signed)
    kind = body.analysis.WhichOneof("kind")
    if kind not in RUN_KINDS:
        raise QueryError("INVALID_ARGUMENT", f"a Flower run fits a model ({', '.join(RUN_KINDS)})", "analysis")
    msg = getattr(body.analysis, kind)
    try:
        msg.beta[:] = [int(b) for b in beta]
    except (TypeError, ValueError):
        raise QueryError("INVALID_ARGUMENT", "the coefficients are not 64-bit integers", "analysis.beta") from None
    msg.round = round_
    if offset:
        if "offset" not in msg.DESCRIPTOR.fields_by_name:
            raise QueryError("INVALID_ARGUMENT", f"a {kind} round takes no offset", "analysis.offset")
        try:
            msg.offset = int(offset)
        except (TypeError, ValueError):
            raise QueryError("INVALID_ARGUMENT", "the offset is not a 64-bit integer", "analysis.offset") from None
    return body


class FlowerParticipant:
    """This centre in Flower runs (see the module docstring). One per process and node."""

    def __init__(self, pipeline: AnsweringPipeline, identity: Identity, *,
                 min_participants: int = DEFAULT_MIN_PARTICIPANTS, audit_head: Callable[[], bytes] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if (identity.public.role, identity.public.member_id) != ("centre", pipeline.verifier.centre_id):
            raise NodeError(f"the identity is {identity.public.role}/{identity.public.member_id}, not "
                            f"centre/{pipeline.verifier.centre_id}")
        self.pipeline, self.identity = pipeline, identity
        self.min_participants = min_participants
        self.audit_head = audit_head or (lambda: b"")
        self.clock = clock
        self.me = identity.public.member_id

    @classmethod
    def open(cls, node_dir: Path) -> FlowerParticipant:
        """The participant of the node directory `node_dir` (its node.toml names the identity
        key; its policy and minimum participants apply). Close it with `close()`."""
        node = open_node(Path(node_dir))
        verifier = None
        try:
            identity = load_node_identity(node.config, Path(node.paths.root))
            if identity is None:
                raise NodeError("node.toml: a centre in Flower runs needs its identity key ([identity] key)")
            verifier = QueryVerifier.for_node(node)
            pipeline = AnsweringPipeline(node, verifier, load_policy(node))
            return cls(pipeline, identity, min_participants=min_participants_of(node.config.extra),
                       audit_head=verifier.audit.signed_head)
        except BaseException:
            if verifier is not None:
                verifier.close()
            node.close()
            raise

    def close(self) -> None:
        self.pipeline.verifier.close()
        self.pipeline.node.close()

    def __enter__(self) -> FlowerParticipant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        return self.pipeline.node.conn

    # ------------------------------------------------------------------ prepare
    def prepare(self, envelope: bytes) -> Reply:
        """Accept the run (once; a redelivery gets the same accept) or decline it coarsely. An
        error nobody expected is a coarse BUSY too: raised, its text would reach the ServerApp
        (Flower replies with `str(exception)`), and only this centre's log may hold it."""
        envelope = bytes(envelope)
        qh = bytes.fromhex(hash_of(envelope))
        try:
            return self._prepare(envelope, qh)
        except Exception:
            log.exception("preparing run %s failed", qh.hex()[:16])
            return Reply("decline", sign_decline(self.identity, qh, "BUSY"))

    def _prepare(self, envelope: bytes, qh: bytes) -> Reply:
        now = int(self.clock())
        run = runstore.run_of(self.conn, qh)
        if run is not None:
            return Reply("accept", run.accept)
        declined = runstore.decline_of(self.conn, qh)
        if declined is not None:
            return Reply("decline", declined)
        try:
            verified = self.pipeline.accept_envelope(envelope, at=now, plane=FLOWER_PLANE)
            cap = self._check_run(verified)
        except Refusal as exc:
            return self._decline(qh, exc.coarse.value)
        key = RunMaskKey.generate()
        accept = sign_accept(self.identity, Accept(verified.query_hash, self.me, key.public_key))
        # The secret stays in the store (0600) for the run; a power loss before round 1 only fails
        # the run (nothing was released), so this commit need not wait for the disk.
        with immediate_unsynced(self.conn):
            runstore.prune(self.conn, now)
            runstore.add_run(self.conn, qh, envelope, accept, key.cleartext_private_bytes(), cap,
                             verified.body.expires_at, now)
        key.destroy()
        return Reply("accept", accept)

    def _check_run(self, verified: VerifiedQuery) -> int:
        """A run is a model signed without coefficients; its rounds are capped by this centre."""
        body = verified.body
        kind = body.analysis.WhichOneof("kind")
        refusal = None
        if kind not in RUN_KINDS:
            refusal = QueryError("INVALID_ARGUMENT", f"a Flower run fits a model ({', '.join(RUN_KINDS)}), "
                                 f"not {kind or 'nothing'}", "analysis")
        elif list(getattr(body.analysis, kind).beta) or getattr(body.analysis, kind).round:
            refusal = QueryError("INVALID_ARGUMENT", "a Flower run's model is signed without coefficients or "
                                 "round: the coordinator picks them", "analysis")
        elif body.retry_of:
            refusal = QueryError("INVALID_ARGUMENT", "a Flower run is not a retry of a query-plane query (retry_of)",
                                 "retry_of")
        if refusal is not None:
            self.pipeline.refused(verified, refusal)
            raise refusal
        policy = self.pipeline.policy
        if kind == FEDAVG:      # many small steps: a cap of its own (D36)
            return min(body.flower.max_rounds or DEFAULT_FEDAVG_ROUNDS, policy.round_cap(FEDAVG))
        return min(body.flower.max_rounds or DEFAULT_MAX_ROUNDS, policy.max_rounds)

    def _decline(self, qh: bytes, coarse: str) -> Reply:
        decline = sign_decline(self.identity, qh, coarse)
        with immediate(self.conn):
            runstore.record_decline(self.conn, qh, decline, int(self.clock()))
        return Reply("decline", decline)

    # ------------------------------------------------------------------ one round
    def answer_round(self, query_hash: bytes, round_: int, beta: Sequence[int],
                     signed_accepts: Sequence[bytes], *, offset: int = 0) -> Reply:
        """Answer round `round_` of the run `query_hash` at coefficients `beta` (fixed point)
        under the participant set of `signed_accepts`; a signed failure when refused — and a
        coarse BUSY failure for an error nobody expected, whose text stays in this centre's log
        (raised, Flower would send it to the ServerApp). Nothing is released on that path: an
        answer leaves only once recorded."""
        qh = bytes(query_hash)
        try:
            return self._answer_round(qh, round_, beta, signed_accepts, offset)
        except Exception:
            log.exception("round %s of run %s failed", round_, qh.hex()[:16])
            return self._fail(qh, "BUSY")

    def _answer_round(self, qh: bytes, round_: int, beta: Sequence[int], signed_accepts: Sequence[bytes],
                      offset: int = 0) -> Reply:
        now = int(self.clock())
        run = runstore.run_of(self.conn, qh)
        if run is None or run.mask_secret is None:
            log.warning("round %s of run %s: never accepted here, or expired", round_, qh.hex()[:16])
            return self._fail(qh, "BUSY")
        try:
            verified = self.pipeline.verifier.recheck(run.envelope, at=now, plane=FLOWER_PLANE)   # audited
        except Refusal as exc:
            return self._fail(qh, exc.coarse.value)
        try:
            if fedstore.abstention_of(self.conn, qh) is not None:      # its store would refuse the row too
                raise Refusal("node_policy", "this centre abstained from the run: it releases no round of it")
            participants = self._participants(verified, run, signed_accepts)
            digest = participants.digest()
            stored = runstore.answer_of(self.conn, qh, round_)
            if stored is not None:
                if stored[0] == digest:
                    return Reply("answer", stored[1])                                   # byte for byte
                raise Refusal("participant_set", f"round {round_} was answered under another participant set")
            self._check_round(run, round_)
            body = round_body(verified.body, beta, round_, offset)
        except Refusal as exc:
            self.pipeline.refused(verified, exc)
            return self._fail(qh, exc.coarse.value)
        # The ledger keys a release by the centres it was summed with (as the connector does).
        centres = Participation.of(participants.centre_ids)
        try:
            ans = self.pipeline.answer_verified(replace(verified, body=body), at=now, participants=centres)
        except Refusal as exc:                                                          # audited
            return self._fail(qh, exc.coarse.value)
        if ans.meta.get("ledger_other_participants"):
            self.pipeline.withhold(verified, "the same release went out under another participant set: "
                                   + str(ans.meta.get("ledger_blocker", "")))
            return self._fail(qh, "POLICY")
        key = RunMaskKey.restore(run.mask_secret, masked_through=run.masked_through,
                                 set_digest=run.participants_digest)
        try:
            masked = key.mask(ans.vector, me=self.me, participants=participants, query_hash=qh.hex(), round=round_)
        except SecAggError as exc:
            log.warning("masking round %s of %s failed: %s", round_, qh.hex()[:16], exc)
            self.pipeline.withhold(verified, f"masking failed: {exc}")
            return self._fail(qh, "BUSY")
        finally:
            key.destroy()
        signed = sign_run_answer(self.identity, masked, n_values=ans.n_values, n_flags=len(ans.flags),
                                 audit_head=self._audit_head())
        try:
            with immediate(self.conn):                   # durable (synchronous=FULL) before it leaves
                again = runstore.answer_of(self.conn, qh, round_)
                if again is not None:                    # another process answered it meanwhile
                    return Reply("answer", again[1]) if again[0] == digest else self._fail(qh, "POLICY")
                latest = runstore.run_of(self.conn, qh)
                if latest is None or latest.masked_through >= round_:
                    return self._fail(qh, "POLICY")
                runstore.record_answer(self.conn, qh, round_, digest, signed, now)
        except sqlite3.IntegrityError:
            # abstained while this round was computed: the store's trigger refused it, nothing leaves
            self.pipeline.withhold(verified, "this centre abstained from the run")
            return self._fail(qh, "POLICY")
        return Reply("answer", signed)

    def _participants(self, verified: VerifiedQuery, run: runstore.RunRecord,
                      signed_accepts: Sequence[bytes]) -> ParticipantSet:
        """S, checked as the query plane checks it, and the same S as the run's earlier rounds."""
        trust = self.pipeline.verifier.trust
        if trust.registry() is None:
            raise Refusal("trust_not_pinned", "no registry installed")
        body = verified.body
        mine = _accept_key(run.accept)
        try:                                             # a revoked centre key signs no accept here
            participants = ParticipantSet.from_signed(signed_accepts, keyring=trust.peer_keyring("centre"))
            participants.check(query_hash=verified.query_hash, me=self.me, targets=body.target_centres,
                               my_mask_key=mine, min_size=max(body.min_participants, self.min_participants))
        except (InvalidParticipantSet, InvalidMessage) as exc:
            raise Refusal("participant_set", f"participant set refused: {exc}") from None
        if run.participants_digest is not None and participants.digest() != run.participants_digest:
            raise Refusal("participant_set", "the run's participant set changed after its first round")
        return participants

    @staticmethod
    def _check_round(run: runstore.RunRecord, round_: int) -> None:
        if not 1 <= round_ <= run.max_round:
            raise QueryError("RESOURCE_EXHAUSTED", f"round {round_} is beyond this run's {run.max_round} rounds "
                             "(the signed max_rounds, capped by this centre)", "flower.max_rounds", reason="round_cap")
        if round_ <= run.masked_through:
            raise Refusal("round_refused", f"round {round_} comes after round {run.masked_through} was answered")

    def _fail(self, qh: bytes, coarse: str) -> Reply:
        return Reply("failure", sign_failure(self.identity, qh, coarse))

    def _audit_head(self) -> bytes:
        try:
            return self.audit_head()
        except Exception as exc:       # evidence, not a precondition: an answer goes without it
            log.warning("no audit head on the answer: %s", exc)
            return b""


def _accept_key(signed_accept: bytes) -> bytes:
    """This centre's mask public key from its own accept, as it stored it at prepare."""
    return Accept.decode(unverified_body(signed_accept, tag=ACCEPT_TAG)).mask_public_key


def envelope_body(envelope: bytes) -> pb.QueryBody:
    """The body of an envelope this node stored when it accepted it (for tests and tools)."""
    return pb.QueryBody.FromString(unverified_body(envelope, tag=QUERY_TAG))
