"""The researcher's client: sign, seal, submit, follow, verify, open, sum, finalise (DESIGN §4).

    client = FederationClient.connect(credentials, "hub.example.org:7443")
    result = client.run(body, dictionary=d)          # a FederatedResult
    print(result.text()); result.to_pandas()

The client trusts the hub for nothing but delivery. It verifies the registry against the pinned
root, seals the signed query to each target centre's X25519 key, and on completion checks
everything the hub relays: each accept signed by a registry centre among the targets; the
participant set at least the query's minimum; one answer per member, sealed to this researcher in
the context of this query, round and H(S), signed by the member it claims; lengths, the centre
count and non-negative counts. A hub that swaps a key, drops, reorders or forges anything is
detected (ClientError), and no partial sum is ever finalised.

A query that fails after its participant set is fixed raises `QueryFailed`, naming the centres
that failed. Retrying is the researcher's decision, never automatic (decision D26): a retry sums
over fewer centres, and it needs each left-out centre online to sign its abstention.

    try:
        result = client.run(body, dictionary=d)
    except QueryFailed as failed:                    # failed.failed_centres, failed.query_hash
        body.target_centres[:] = client.retry_targets(failed.query_hash)
        result = client.run(body, dictionary=d, retry_of=failed.query_hash)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from oncofed.analyses import finalise, parse_analysis, render
from oncofed.dictionary import Dictionary
from oncofed.errors import OncofedError
from oncofed.keys.envelope import sign
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.member import MemberCredentials
from oncofed.keys.registry import Registry, RevocationList, verify_registry, verify_revocations
from oncofed.keys.sealing import open_sealed_from, seal
from oncofed.keys.tls import channel_credentials
from oncofed.query import QUERY_TAG, query_hash
from oncofed.query.vector import n_total
from oncofed.secagg import AnswersMismatch, InvalidParticipantSet, MaskedVector, ParticipantSet, unmask_sum
from oncofed.secagg.lanes import ELEMENT_BYTES
from oncofed.secagg.wire import (
    ANSWER_TAG,
    QUERY_SEAL_CONTEXT,
    ProtocolError,
    answer_context,
    read_abstention,
    read_decline,
)
from oncofed.transport.channel import make_channel
from oncofed.v1 import federation_pb2 as fpb
from oncofed.v1 import federation_pb2_grpc as fgrpc
from oncofed.v1 import query_pb2 as pb

log = logging.getLogger("oncofed.client")
FINAL_STATES = ("complete", "failed", "expired")
DEFAULT_LIFETIME = 3600
DEFAULT_TIMEOUT = 120.0


class ClientError(OncofedError):
    """The federated query could not be completed or its answers did not verify."""

    exit_code = 4


class QueryFailed(ClientError):
    """The query failed after its participant set was fixed (or, for a retry, while it gathered
    abstentions): `failed_centres` names who failed; `retry_of` is the query a retry names — this
    one, or, when a retry failed for want of abstentions, the query it retried."""

    def __init__(self, message: str, *, query_hash: bytes, failed_centres: tuple[str, ...],
                 retry_of: bytes) -> None:
        super().__init__(message)
        self.query_hash, self.failed_centres, self.retry_of = query_hash, failed_centres, retry_of


@dataclass(frozen=True)
class Progress:
    """One centre's state on a query, as the hub reports it (coarse codes only)."""

    centre: str
    state: str
    coarse: str = ""


@dataclass
class FederatedResult:
    """A finalised federated answer and how it came about (never a centre's own figures)."""

    query_hash: str
    analysis: str
    result: dict[str, Any]
    participants: tuple[str, ...]
    declined: dict[str, str]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    retry_of: str = ""                    # a retry: the failed query it retries (hex)
    abstained: tuple[str, ...] = ()       # centres of the failed set that signed abstentions from it

    def text(self) -> str:
        lines = [render(self.result), f"participants: {', '.join(self.participants)}"]
        if self.declined:
            lines.append("declined: " + ", ".join(f"{c} ({code})" for c, code in sorted(self.declined.items())))
        if self.retry_of:
            lines.append(f"retry of {self.retry_of[:16]}" + (f"; abstained from it: {', '.join(self.abstained)}"
                                                             if self.abstained else ""))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        out = {"query_hash": self.query_hash, "analysis": self.analysis, "result": self.result,
               "participants": list(self.participants), "declined": self.declined,
               "seconds": round(self.seconds, 4)}
        if self.retry_of:
            out.update(retry_of=self.retry_of, abstained=list(self.abstained))
        return out

    def to_pandas(self) -> Any:
        """The result's main table as a pandas DataFrame (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ClientError("to_pandas needs pandas: pip install pandas") from None
        from oncofed.federation.client.tables import rows_of

        return pd.DataFrame(rows_of(self.result))


@dataclass(frozen=True)
class Submitted:
    """A query on its way: what the client needs to follow and verify it."""

    query_hash: bytes
    body: pb.QueryBody
    envelope: bytes
    submitted_at: float


class FederationClient:
    """One researcher's connection to one hub."""

    def __init__(self, credentials: MemberCredentials, channel: grpc.Channel) -> None:
        if credentials.identity.public.role != "researcher":
            raise ClientError("the client runs with a researcher's credentials")
        self.creds, self.channel = credentials, channel
        self.stub = fgrpc.HubStub(channel)
        self._trust: tuple[Registry, RevocationList] | None = None

    @classmethod
    def connect(cls, credentials: MemberCredentials, target: str, *, server_name: str | None = None,
                timeout: float = 30.0) -> FederationClient:
        tls = credentials.tls
        channel = make_channel(target, channel_credentials(tls.cert_pem, tls.key_pem, tls.root_cert_pem),
                               default_timeout=timeout, server_name=server_name)
        return cls(credentials, channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> FederationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ trust
    def trust(self, *, refresh: bool = False) -> tuple[Registry, RevocationList]:
        """The registry and revocation list, fetched from the hub and verified against the root."""
        if self._trust is None or refresh:
            docs = self._call(self.stub.GetTrust, fpb.GetTrustRequest())
            root, fp = self.creds.tls.root_cert_pem, self.creds.root_fingerprint
            try:
                self._trust = (verify_registry(root, fp, docs.registry), verify_revocations(root, fp, docs.revocations))
            except Exception as exc:  # InvalidMessage or TrustError: not signed by the pinned root
                raise ClientError(f"the hub's trust documents do not verify against the pinned root "
                                  f"({type(exc).__name__})") from None
        return self._trust

    def _call(self, method: Callable[..., Any], request: Any, **kw: Any) -> Any:
        try:
            return method(request, **kw)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else ""
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ClientError("the hub is unreachable (down, wrong address, or TLS refused)") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ClientError("the hub did not answer in time") from None
            raise ClientError(f"the hub refused: {detail or code}") from None

    # ------------------------------------------------------------------ the flow
    def submit(self, body: pb.QueryBody, *, lifetime: int = DEFAULT_LIFETIME, prepare_seconds: int = 0,
               retry_of: bytes | None = None) -> Submitted:
        """Complete the envelope fields, sign, seal to each target and submit. `retry_of`: the
        hash of a failed query of yours this one retries (named in the signed body too)."""
        sub, request = self.sealed(body, lifetime=lifetime, prepare_seconds=prepare_seconds, retry_of=retry_of)
        self._call(self.stub.Submit, request)
        return sub

    def sealed(self, body: pb.QueryBody, *, lifetime: int = DEFAULT_LIFETIME, prepare_seconds: int = 0,
               retry_of: bytes | None = None) -> tuple[Submitted, fpb.SubmitRequest]:
        """The signed query sealed to each target, and the request that would submit it (for
        tools and tests that relay it themselves)."""
        registry, _ = self.trust()
        if not body.target_centres:
            raise ClientError("name the target centres")
        if len(body.permit_hash) != 32:
            raise ClientError("the query needs the permit's SHA-256 (permit_hash)")
        body = pb.QueryBody.FromString(body.SerializeToString())
        now = int(time.time())
        body.nonce = os.urandom(16)
        body.issued_at = now
        body.expires_at = now + lifetime
        body.researcher_key_id = self.creds.identity.public.signing_fingerprint
        body.min_participants = body.min_participants or min(3, len(body.target_centres))
        if retry_of is not None:
            if len(retry_of) != 32:
                raise ClientError("retry_of is a query hash (32 bytes)")
            body.retry_of = retry_of
        envelope = sign(self.creds.identity, QUERY_TAG, body.SerializeToString())
        qh = bytes.fromhex(query_hash(envelope))
        sealed = {}
        for centre in body.target_centres:
            member = registry.member(centre)
            if member is None or member.role != "centre":
                raise ClientError(f"{centre} is not a centre of this federation")
            sealed[centre] = seal(envelope, member.identity, sender=self.creds.identity,
                                  context=QUERY_SEAL_CONTEXT.format(centre=centre))
        request = fpb.SubmitRequest(
            query_hash=qh, permit_hash=body.permit_hash, targets=list(body.target_centres),
            min_participants=body.min_participants, expires_at=body.expires_at, sealed=sealed,
            prepare_seconds=prepare_seconds, retry_of=body.retry_of)
        return Submitted(qh, body, envelope, time.monotonic()), request

    def retry_targets(self, query_hash: bytes) -> list[str]:
        """The centres a retry of a failed query may sum over: its participant set without the
        centres that failed (the hub's account; the centres check what matters themselves)."""
        state = self._call(self.stub.Watch, fpb.WatchRequest(query_hash=query_hash, wait_ms=0))
        registry, _ = self.trust()
        try:
            members = ParticipantSet.from_signed(state.participants, keyring=registry.keyring("centre")).centre_ids
        except (InvalidParticipantSet, InvalidMessage) as exc:
            raise ClientError(f"the failed query's participant set does not verify: {exc}") from None
        if not members:
            raise ClientError("that query never had a participant set: submit it again without --retry-of")
        return [c for c in members if c not in set(state.failed_centres)]

    def follow(self, sub: Submitted, *, timeout: float = DEFAULT_TIMEOUT,
               on_progress: Callable[[list[Progress]], None] | None = None) -> fpb.QueryState:
        """Wait until the query completes or fails, reporting each change."""
        deadline = time.monotonic() + timeout
        version = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError(f"the query did not complete within {timeout:g} s")
            state = self._call(self.stub.Watch, fpb.WatchRequest(query_hash=sub.query_hash, after_version=version,
                                                                  wait_ms=int(min(left, 20) * 1000),
                                                                  until_final=on_progress is None),
                               timeout=min(left, 20) + 10)
            if state.version != version and on_progress is not None:
                on_progress([Progress(c.centre, c.state, c.coarse) for c in state.centres])
            version = state.version
            if state.state in FINAL_STATES:
                return state

    def collect(self, sub: Submitted, state: fpb.QueryState, dictionary: Dictionary) -> FederatedResult:
        """Verify every relayed byte, sum the answers and finalise (see the module docstring)."""
        registry, _ = self.trust()
        declined = self._declines(sub, state, registry)
        if state.state != "complete":
            reason = state.error or state.state
            if state.failed_centres:
                # centres that failed without being targets are a retry's missing abstainers: the
                # next retry names the same failed query again
                abstainers = not set(state.failed_centres) & set(sub.body.target_centres)
                raise QueryFailed(f"the query {state.state}: {reason}", query_hash=sub.query_hash,
                                  failed_centres=tuple(state.failed_centres),
                                  retry_of=bytes(sub.body.retry_of) if abstainers and sub.body.retry_of
                                  else sub.query_hash)
            if declined:
                reason += "; declined: " + ", ".join(f"{c} ({why})" for c, why in sorted(declined.items()))
            raise ClientError(f"the query {state.state}: {reason}")
        spec = parse_analysis(sub.body.analysis, dictionary)
        centres = registry.keyring("centre")
        try:
            participants = ParticipantSet.from_signed(state.participants, keyring=centres)
            participants.check(query_hash=sub.query_hash.hex(), targets=sub.body.target_centres,
                               min_size=sub.body.min_participants)
        except (InvalidParticipantSet, InvalidMessage) as exc:
            raise ClientError(f"the participant set does not verify: {exc}") from None
        digest = participants.digest()
        vectors: dict[str, MaskedVector] = {}
        me = self.creds.identity
        for sealed in state.answers:
            try:
                opened = open_sealed_from(sealed.sealed, recipient=me, keyring=centres,
                                          context=answer_context(sub.query_hash, 0, digest))
            except InvalidMessage:
                raise ClientError(f"the answer relayed for {sealed.centre} does not open for this query and "
                                  "participant set") from None
            body = fpb.AnswerBody.FromString(opened.body)
            sender = opened.signer.member_id
            if (body.tag != ANSWER_TAG or body.query_hash != sub.query_hash or body.round != 0
                    or body.participants_digest != digest or body.centre != sender
                    or body.recipient_key_id != me.public.box_key_id):
                raise ClientError(f"the answer from {sender} names another query, round or participant set")
            if sender not in participants or sender in vectors:
                raise ClientError(f"an answer from {sender}, who is not a participant or answered twice")
            if len(body.vector) != ELEMENT_BYTES * n_total(spec) or \
                    (body.n_values, body.n_flags) != (spec.n_values, len(spec.flags)):
                raise ClientError(f"the answer from {sender} has the wrong length for this analysis")
            vectors[sender] = MaskedVector(sender, sub.query_hash.hex(), 0, digest, bytes(body.vector))
        missing = sorted(set(participants.centre_ids) - set(vectors))
        if missing:
            raise ClientError(f"no answer from {', '.join(missing)}: no partial sum is released")
        try:
            summed = unmask_sum(vectors.values(), participants=participants, round=0)
        except AnswersMismatch as exc:
            raise ClientError(str(exc)) from None
        try:
            result = finalise(spec, summed, members=len(participants))
        except OncofedError as exc:
            raise ClientError(str(exc)) from None
        return FederatedResult(sub.query_hash.hex(), spec.kind, result, participants.centre_ids, declined,
                               time.monotonic() - sub.submitted_at, retry_of=sub.body.retry_of.hex(),
                               abstained=self._abstained(sub, state, registry))

    def _abstained(self, sub: Submitted, state: fpb.QueryState, registry: Registry) -> tuple[str, ...]:
        """Who abstained from the failed query a retry retries (the members verified it; shown)."""
        out = []
        for signed in state.abstentions:
            try:
                out.append(read_abstention(signed, registry.keyring("centre"), bytes(sub.body.retry_of)).centre)
            except ProtocolError:
                log.warning("an abstention relayed by the hub does not verify; ignored")
        return tuple(sorted(out))

    def _declines(self, sub: Submitted, state: fpb.QueryState, registry: Registry) -> dict[str, str]:
        out = {}
        for signed in state.declines:
            try:
                d = read_decline(signed, registry.keyring("centre"), sub.query_hash)
            except ProtocolError:
                log.warning("a decline relayed by the hub does not verify; ignored")
                continue
            out[d.centre] = d.coarse
        return out

    def run(self, body: pb.QueryBody, *, dictionary: Dictionary, timeout: float = DEFAULT_TIMEOUT,
            on_progress: Callable[[list[Progress]], None] | None = None, prepare_seconds: int = 0,
            retry_of: bytes | None = None) -> FederatedResult:
        """Submit, follow and collect one query (a retry of the failed `retry_of` when given)."""
        sub = self.submit(body, prepare_seconds=prepare_seconds, retry_of=retry_of)
        state = self.follow(sub, timeout=timeout, on_progress=on_progress)
        return self.collect(sub, state, dictionary)
