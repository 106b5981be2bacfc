"""The node's outbound connection to the hub: pull work, answer through the one pipeline, push
signed and sealed replies (DESIGN §2 "Network", §4 "Flow", §7).

A centre opens no inbound port: the connector dials the hub over mutual TLS and long-polls
`Pull` (one RPC waits up to `PULL_WAIT_MS` for work; simpler to operate through hospital proxies
than a server stream, and a lost connection costs at most one poll). The push of a batch's last
reply is the next long poll (`PushRequest.wait_ms`): the accept's call brings back the answer
task, the answer's call the next query's prepare. On any transport error it
reconnects with capped exponential backoff and full jitter, so a restarted hub sees its centres
back within seconds and a hub that is down is not hammered.

Per task:

- PREPARE: open the query sealed to this centre, verify it (the pipeline audits the decision and
  consumes the nonce), run every check that reads no data, then accept with a fresh ephemeral
  mask key — or decline with a coarse code only. The accept, the verified envelope and the mask
  secret are stored durably before the accept leaves, so a restart loses nothing accepted.
- ANSWER: check the participant set (every accept signed by a registry centre among the targets,
  this centre's own accept in it, at least the query's and this centre's minimum), verify the
  query again, answer, mask the vector over S, sign and seal the answer to the researcher, store
  it with synchronous=FULL, then send it. The same query answered under another S is refused; a
  resend under the same S is the stored bytes. A retry of a failed query (its signed body names
  the failed query) comes with the abstentions of the failed set's centres it leaves out: each is
  verified against the registry and kept as evidence for the release ledger, which refuses the
  same release under another set without them (decision D26).
- ABSTAIN: the hub asks, for a failed query being retried without this centre, for a signed
  abstention. The store signs one only when no answer to that query was recorded, and refuses to
  record one afterwards (node/store/federation.py); otherwise a failure notice, coarse ANSWERED.

Every reply carries the latest signed audit head when the node can make one (outside evidence of
the log's length, DESIGN §10).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from oncofed.keys.envelope import unverified_body
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity, PublicIdentity
from oncofed.keys.registry import Registry
from oncofed.keys.sealing import open_sealed_from, seal
from oncofed.keys.tls import TlsFiles, channel_credentials
from oncofed.node.answering import AnsweringPipeline
from oncofed.node.audit import NODE
from oncofed.node.store import federation as fedstore
from oncofed.node.store.db import immediate, immediate_unsynced
from oncofed.node.store.ledger import Participation
from oncofed.node.verify import VerifiedQuery
from oncofed.query import QUERY_TAG
from oncofed.query import query_hash as hash_of
from oncofed.query.refusals import Refusal
from oncofed.secagg import (
    Accept,
    EphemeralMaskKey,
    InvalidParticipantSet,
    ParticipantSet,
    SecAggError,
    mask,
    sign_accept,
)
from oncofed.secagg.wire import (
    ANSWER_TAG,
    QUERY_SEAL_CONTEXT,
    REFUSAL_METADATA,
    ProtocolError,
    answer_context,
    read_abstention,
    sign_abstention,
    sign_decline,
    sign_failure,
)
from oncofed.transport.channel import make_channel
from oncofed.v1 import federation_pb2 as fpb
from oncofed.v1 import federation_pb2_grpc as fgrpc
from oncofed.v1 import query_pb2 as pb

log = logging.getLogger("oncofed.node.connector")

PULL_WAIT_MS = 20_000
BACKOFF_FIRST = 0.2
BACKOFF_CAP = 10.0
RPC_TIMEOUT = 30.0


@dataclass(frozen=True)
class HubLink:
    """Where the hub is and how to reach it."""

    target: str                         # host:port
    server_name: str | None = None      # the name in the hub's certificate, when not the host


class Connector:
    """Pulls and answers this centre's federated work until `stop()`; one thread."""

    def __init__(self, pipeline: AnsweringPipeline, identity: Identity, tls: TlsFiles, link: HubLink, *,
                 min_participants: int = 3, audit_head: Callable[[], bytes] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.pipeline, self.identity, self.tls, self.link = pipeline, identity, tls, link
        self.min_participants = min_participants
        self.audit_head = audit_head or (lambda: b"")
        self.clock = clock
        self.me = identity.public.member_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self._inflight: grpc.Future | None = None
        self.handled = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Connector:
        self._thread = threading.Thread(target=self.run, name="oncofed-connector", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop pulling: the long poll in flight is cancelled, a task being handled finishes."""
        self._stop.set()
        call = self._inflight
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Connect, pull, handle; on failure back off (capped, jittered) and connect again."""
        delay = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                with make_channel(self.link.target, channel_credentials(
                        self.tls.cert_pem, self.tls.key_pem, self.tls.root_cert_pem),
                        default_timeout=RPC_TIMEOUT, server_name=self.link.server_name) as channel:
                    stub = fgrpc.HubStub(channel)
                    self._refresh_trust(stub)
                    self.connected.set()
                    tasks: list[fpb.Task] = []
                    while not self._stop.is_set():
                        if not tasks:
                            tasks = list(self._long(stub.Pull, fpb.PullRequest(
                                wait_ms=PULL_WAIT_MS, audit_head=self.audit_head())).tasks)
                            delay = BACKOFF_FIRST
                        else:
                            tasks = self._work(stub, tasks)
            except (grpc.RpcError, grpc.FutureCancelledError) as exc:
                self.connected.clear()
                if self._stop.is_set():
                    break
                log.info("hub %s unreachable (%s); retrying in ≤ %.1f s", self.link.target,
                         exc.code().name if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else "cancelled",
                         delay)
            except Exception:
                self.connected.clear()
                log.exception("connector error; reconnecting")
            self._stop.wait(random.uniform(0, delay))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, BACKOFF_CAP)

    def _long(self, method: grpc.UnaryUnaryMultiCallable, request: Message) -> Message:
        """A call that may wait at the hub for work (a Pull, a Push asking for its next tasks):
        held as the one in flight, so that `stop()` can cancel it."""
        call = method.future(request, timeout=PULL_WAIT_MS / 1000 + 10)
        self._inflight = call
        if self._stop.is_set():
            call.cancel()
        return call.result()

    def _work(self, stub: fgrpc.HubStub, tasks: list[fpb.Task]) -> list[fpb.Task]:
        """Handle a batch of tasks, pushing each reply as soon as it is made; the last reply
        also pulls (`PushRequest.wait_ms`), and the next batch is what it brings back — so a
        query costs this centre two calls, its accept and its answer, the answer's call being
        the long poll for the next query. Empty: pull next (the batch ended without a reply, the
        wait passed with no work, or a hub that does not fold pulls into pushes)."""
        for i, task in enumerate(tasks):
            push = self.handle(task)
            self.handled += 1
            if push is None:
                continue
            push.audit_head = self.audit_head()
            if i < len(tasks) - 1 or self._stop.is_set():    # stopping: the reply still goes, the wait not
                self._push(stub, push)
                continue
            push.wait_ms = PULL_WAIT_MS
            try:
                return list(self._long(stub.Push, push).tasks)
            except (grpc.RpcError, grpc.FutureCancelledError) as exc:
                if self._stop.is_set():
                    # stop() cancelled the call, perhaps before the hub read the reply: send it
                    # plainly (a reply the hub already holds is recorded again, to the same effect)
                    push.wait_ms = 0
                    self._push(stub, push)
                    raise
                if isinstance(exc, grpc.RpcError) and _refused(exc):
                    log.warning("hub refused the reply to %s: %s", push.query_hash.hex()[:16], _details(exc))
                    return []
                raise
        return []

    def _push(self, stub: fgrpc.HubStub, push: fpb.PushRequest) -> None:
        """Send one reply. A reply the hub refuses (it names a query the hub no longer holds, or
        one it finds malformed) is logged and the batch goes on: its other tasks are still
        answered now, not when the hub sends them again; a transport failure reconnects."""
        try:
            stub.Push(push)
        except grpc.RpcError as exc:
            if not _refused(exc):
                raise
            log.warning("hub refused the reply to %s: %s", push.query_hash.hex()[:16], _details(exc))

    def _refresh_trust(self, stub: fgrpc.HubStub) -> None:
        """Install a newer registry or revocation list the hub relays (the node verifies the
        authority's signature and refuses older versions itself)."""
        try:
            docs = stub.GetTrust(fpb.GetTrustRequest())
        except grpc.RpcError:
            raise
        trust = self.pipeline.verifier.trust
        for data in (docs.registry, docs.revocations):
            if data:
                try:
                    trust.install(bytes(data), by=NODE)  # audited: installed, or refused
                except Exception as exc:        # an older or equal version: keep ours
                    log.debug("trust document from hub not installed: %s", exc)

    # ------------------------------------------------------------------ tasks
    def handle(self, task: fpb.Task) -> fpb.PushRequest | None:
        """One task, under one view of the trust state (read once: NodeTrust.request)."""
        with self.pipeline.verifier.trust.request():
            return self._handle(task)

    def _handle(self, task: fpb.Task) -> fpb.PushRequest | None:
        qh = bytes(task.query_hash)
        if task.kind == fpb.Task.KIND_PREPARE:
            return self.prepare(qh, bytes(task.sealed_query))
        if task.kind == fpb.Task.KIND_ANSWER:
            return self.answer(qh, [bytes(p) for p in task.participants], [bytes(a) for a in task.abstentions])
        if task.kind == fpb.Task.KIND_ABSTAIN:
            return self.abstain(qh)
        log.warning("unknown task kind %s", task.kind)
        return None

    def _registry(self) -> Registry:
        registry = self.pipeline.verifier.trust.registry()
        if registry is None:
            raise Refusal("trust_not_pinned", "no registry installed")
        return registry

    def prepare(self, qh: bytes, sealed: bytes) -> fpb.PushRequest:
        conn = self.pipeline.node.conn
        earlier = fedstore.pending(conn, qh)
        if earlier is not None:                                  # redelivered: same accept again
            return fpb.PushRequest(query_hash=qh, accept=earlier[1])
        declined = fedstore.decline_of(conn, qh)
        if declined is not None:
            return fpb.PushRequest(query_hash=qh, decline=declined)
        try:
            envelope = self._open_query(qh, sealed)
            verified = self.pipeline.accept_envelope(envelope, at=int(self.clock()))
        except Refusal as exc:
            return self._decline(qh, exc.coarse.value)
        key = EphemeralMaskKey.generate()
        accept = sign_accept(self.identity, Accept(verified.query_hash, self.me, key.public_key))
        # The secret stays in the store (0600) until answered; a power loss before the answer only
        # fails this query (nothing was released), so this commit need not wait for the disk.
        with immediate_unsynced(conn):
            fedstore.add_pending(conn, qh, envelope, accept, key.cleartext_private_bytes(),
                                 verified.body.expires_at, int(self.clock()))
        return fpb.PushRequest(query_hash=qh, accept=accept)

    def _open_query(self, qh: bytes, sealed: bytes) -> bytes:
        registry = self._registry()
        try:
            opened = open_sealed_from(sealed, recipient=self.identity, keyring=registry.keyring("researcher"),
                                      context=QUERY_SEAL_CONTEXT.format(centre=self.me))
        except InvalidMessage:
            raise Refusal("malformed_envelope", "the sealed query does not open for this centre") from None
        if hash_of(opened.body) != qh.hex():
            raise Refusal("malformed_envelope", "the hub's query hash is not the query's")
        return opened.body

    def _decline(self, qh: bytes, coarse: str) -> fpb.PushRequest:
        decline = sign_decline(self.identity, qh, coarse)
        conn = self.pipeline.node.conn
        with immediate(conn):
            fedstore.record_decline(conn, qh, decline, int(self.clock()))
        return fpb.PushRequest(query_hash=qh, decline=decline)

    def _fail(self, qh: bytes, coarse: str) -> fpb.PushRequest:
        return fpb.PushRequest(query_hash=qh, failure=sign_failure(self.identity, qh, coarse))

    def abstain(self, qh: bytes) -> fpb.PushRequest:
        """Abstain from a failed query, or say that this centre released it (see the module
        docstring); audited either way."""
        conn = self.pipeline.node.conn
        try:
            signed = fedstore.abstain(conn, qh, lambda: sign_abstention(self.identity, qh), int(self.clock()))
        except fedstore.AlreadyReleased:
            self._audit_abstention(qh, "refused", "this centre released an answer to the query")
            return self._fail(qh, "ANSWERED")
        self._audit_abstention(qh, "abstained", "never released; its answer will not be released")
        return fpb.PushRequest(query_hash=qh, abstention=signed)

    def _audit_abstention(self, qh: bytes, decision: str, why: str) -> None:
        self.pipeline.verifier.audit.append(event="query.abstain", decision=decision, who=NODE,
                                            query_hash=qh.hex(), detail={"why": why}, at=self.clock())

    def _evidence(self, body: pb.QueryBody, abstentions: list[bytes], keyring: Mapping[bytes, PublicIdentity]
                  ) -> None:
        """Keep every abstention from the query this retry retries that verifies against the
        registry's unrevoked centre keys (`keyring`); others are logged and dropped (the ledger
        then refuses what they would allow)."""
        if not abstentions:
            return
        if len(body.retry_of) != 32:
            log.warning("abstentions relayed for a query that retries nothing; ignored")
            return
        conn = self.pipeline.node.conn
        with immediate_unsynced(conn):         # evidence allows a release only inside the ledger's FULL commit
            for signed in abstentions:
                try:
                    a = read_abstention(signed, keyring, bytes(body.retry_of))
                except ProtocolError as exc:
                    log.warning("abstention relayed for %s refused: %s", body.retry_of.hex()[:16], exc)
                    continue
                fedstore.add_evidence(conn, a.query_hash, a.centre, signed, int(self.clock()))

    def answer(self, qh: bytes, signed_accepts: list[bytes], abstentions: list[bytes] | None = None
               ) -> fpb.PushRequest:
        conn = self.pipeline.node.conn
        if fedstore.abstention_of(conn, qh) is not None:
            log.warning("answer task for %s, which this centre abstained from; refused", qh.hex()[:16])
            return self._fail(qh, "POLICY")
        try:
            self._registry()
            keyring = self.pipeline.verifier.trust.peer_keyring("centre")       # revoked keys sign nothing
            participants = ParticipantSet.from_signed(signed_accepts, keyring=keyring)
        except (InvalidParticipantSet, InvalidMessage, Refusal) as exc:
            log.warning("participant set for %s refused: %s", qh.hex()[:16], exc)
            return self._fail(qh, "INVALID")
        digest = participants.digest()
        for round_, d, sealed in fedstore.answers_of(conn, qh):
            if round_ == 0 and d == digest:
                return fpb.PushRequest(query_hash=qh, sealed_answer=sealed)      # byte for byte
            log.warning("query %s already answered under another participant set", qh.hex()[:16])
            return self._fail(qh, "POLICY")
        held = fedstore.pending(conn, qh)
        if held is None or held[2] is None:
            return self._fail(qh, "BUSY")                                        # never accepted here
        envelope, accept, secret = held
        assert secret is not None
        key = EphemeralMaskKey.from_cleartext_private_bytes(secret)
        answered: VerifiedQuery | None = None
        try:
            body = _query_body(envelope)
            # S is checked before anything is computed: a forged or short set costs no release.
            participants.check(query_hash=qh.hex(), me=self.me, targets=body.target_centres,
                               my_mask_key=key.public_key,
                               min_size=max(body.min_participants, self.min_participants))
            self._evidence(body, abstentions or [], keyring)
            # The ledger keys a release by the *centres* it was summed with: a new set of the same
            # centres (fresh mask keys, so a new H(S)) differences nothing; another set would,
            # unless the centres it leaves out abstained from the failed query (D26).
            # The answer's audit entry commits with synchronous=FULL, as every audit entry does
            # (AuditLog.transaction), and syncs the ledger's unsynced commits on the same file with
            # it: the answer below carries the signed audit head naming that entry. With the
            # sealed answer's record, an answer costs two fsyncs (D34).
            verified, ans = self.pipeline.answer_accepted(envelope, at=int(self.clock()),
                                                          participants=Participation.of(participants.centre_ids))
            answered = verified
            if ans.meta.get("ledger_other_participants"):
                # The same release went out under another participant set: answering again would
                # let the two sums be differenced (DESIGN §4 step 4). The refusal says only POLICY.
                self.pipeline.withhold(verified, "the same release went out under another participant set: "
                                       + str(ans.meta.get("ledger_blocker", "")))
                return self._fail(qh, "POLICY")
            masked = mask(ans.vector, key=key, me=self.me, participants=participants, query_hash=qh.hex(),
                          round=0)
        except InvalidParticipantSet as exc:
            log.warning("participant set for %s refused: %s", qh.hex()[:16], exc)
            return self._fail(qh, "INVALID")
        except Refusal as exc:
            return self._fail(qh, exc.coarse.value)
        except SecAggError as exc:
            log.warning("masking %s failed: %s", qh.hex()[:16], exc)
            if answered is not None:
                self.pipeline.withhold(answered, "masking failed")
            return self._fail(qh, "BUSY")
        body_out = fpb.AnswerBody(tag=ANSWER_TAG, query_hash=qh, round=0, participants_digest=digest,
                                  centre=self.me, recipient_key_id=verified.researcher.box_key_id,
                                  n_values=ans.n_values, n_flags=len(ans.flags), vector=masked.data,
                                  audit_head=self.audit_head())
        sealed_answer = seal(body_out.SerializeToString(), verified.researcher, sender=self.identity,
                             context=answer_context(qh, 0, digest))
        try:
            with immediate(conn):                  # durable (synchronous=FULL) before it leaves
                fedstore.record_answer(conn, qh, 0, digest, sealed_answer, int(self.clock()))
        except (fedstore.Abstained, sqlite3.IntegrityError):
            # abstained while this answer was computed: the store's invariant holds, nothing leaves
            self.pipeline.withhold(verified, "this centre abstained from the query")
            return self._fail(qh, "POLICY")
        del accept
        return fpb.PushRequest(query_hash=qh, sealed_answer=sealed_answer)


def _refused(exc: grpc.RpcError) -> bool:
    """Whether the hub refused the reply (it names a query the hub no longer holds, is malformed,
    too large, …): the hub marks its refusals (REFUSAL_METADATA); a status without the mark —
    gRPC's own RESOURCE_EXHAUSTED for a message over its limit, INVALID_ARGUMENT from a proxy in
    between — is a failure of the call, and the centre reconnects and sends the reply again."""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    return any(tuple(item) == REFUSAL_METADATA for item in trailing or ())


def _details(exc: grpc.RpcError) -> str:
    return str(exc.details()) if hasattr(exc, "details") else type(exc).__name__


def _query_body(envelope: bytes) -> pb.QueryBody:
    """The body of an envelope this node verified when it accepted it (re-verified right after)."""
    return pb.QueryBody.FromString(unverified_body(envelope, tag=QUERY_TAG))
