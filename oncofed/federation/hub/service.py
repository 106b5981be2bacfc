"""The hub's servicer: an untrusted relay that queues sealed queries, forms participant sets from
signed accepts, and hands sealed answers back (DESIGN §4 "Flow").

Each method reads like the flow — the caller is known from its certificate (AuthInterceptor),
its request is checked, the store changes in one transaction, waiters are woken. The hub never
opens a sealed query or answer; it verifies the signatures on accepts and declines against the
authority-signed registry (so it cannot be fooled into relaying a forged participant set by a
member, and a client can check every accept itself). Long polls wait on an event of their own —
a centre's pull on its centre's, a researcher's watch on one for its query — and end early when
the RPC's deadline passes. A retry of a failed query collects the signed
abstentions its members need (oncofed.federation.hub.retries, decision D26).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import grpc

from oncofed.federation.hub import retries
from oncofed.federation.hub.store import ABSTAIN, ANSWER, OPEN_STATES, HubStore, QueryRow, now_ms
from oncofed.federation.hub.waiting import Waiters
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import PublicIdentity
from oncofed.keys.registry import Registry
from oncofed.secagg import InvalidParticipantSet, open_accept
from oncofed.secagg.wire import (
    REFUSAL_METADATA,
    ProtocolError,
    read_abstention,
    read_audit_head,
    read_decline,
    read_failure,
)
from oncofed.transport.interceptor import current_peer
from oncofed.v1 import audit_pb2 as fapb
from oncofed.v1 import federation_pb2 as fpb
from oncofed.v1 import federation_pb2_grpc as fgrpc

log = logging.getLogger("oncofed.hub")

SERVICE_NAME = "oncofed.v1.Hub"
ALLOWED_ROLES = {
    f"/{SERVICE_NAME}/Submit": {"researcher"},
    f"/{SERVICE_NAME}/Watch": {"researcher"},
    f"/{SERVICE_NAME}/Pull": {"centre"},
    f"/{SERVICE_NAME}/Push": {"centre"},
    f"/{SERVICE_NAME}/GetTrust": {"centre", "researcher", "hub"},
}
MAX_TARGETS = 256
MAX_SEALED_BYTES = 2 * 1024 * 1024
DEFAULT_PREPARE_SECONDS = 10
DEFAULT_ANSWER_SECONDS = 60
MAX_PREPARE_SECONDS = 600
SEEN_EVERY_MS = 1_000        # a centre's "last seen" is written at most once a second (see _seen)
MAX_LIFETIME = 24 * 3600 + 120


class HubService(fgrpc.HubServicer):
    """The relay over one HubStore; `trust()` returns the current registry and the signed
    documents' bytes (read from the operator's files, so an update needs no restart)."""

    def __init__(self, store: HubStore, trust: Callable[[], tuple[Registry, bytes, bytes]], *,
                 prepare_seconds: int = DEFAULT_PREPARE_SECONDS, answer_seconds: int = DEFAULT_ANSWER_SECONDS) -> None:
        self.store, self.trust = store, trust
        self.prepare_seconds, self.answer_seconds = prepare_seconds, answer_seconds
        self._last_seen: dict[str, tuple[bytes, int]] = {}   # per centre: the head it sent last, written at
        self._seen_lock = threading.Lock()
        # per centre: (seq, entry hash, signed bytes) of the head the store keeps, once read or
        # written here — what a new head is compared with for a rewritten entry without verifying
        # the kept one again (hash None: the kept head does not verify under today's key)
        self._kept: dict[str, tuple[int, bytes | None, bytes]] = {}
        self._stalled: set[bytes] = set()              # queries a reply could not move on (`_reply`)
        self._stalled_lock = threading.Lock()
        self._stop = threading.Event()
        self.waiters = Waiters(self._stop)             # long polls and watches, and what wakes them
        self._sweeper = threading.Thread(target=self._sweep, name="oncofed-hub-sweeper", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        self.waiters.wake_all()
        self._sweeper.join(timeout=5)

    # ------------------------------------------------------------------ researchers
    def Submit(self, request: fpb.SubmitRequest, context: grpc.ServicerContext) -> fpb.SubmitReply:
        peer = current_peer()
        registry = self.trust()[0]
        targets = list(request.targets)
        now = int(time.time())
        problem = _submit_problem(request, targets, registry, now)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        retry_of, abstain = bytes(request.retry_of) or None, []
        if retry_of is not None:
            failed = self.store.query(retry_of)
            progress = {p.centre: p for p in self.store.progress(retry_of)}
            problem = retries.submit_problem(failed, peer.member_id, targets, progress)
            if problem:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, problem)
            assert failed is not None
            abstain = retries.to_ask(failed, progress, targets)
        seconds = min(request.prepare_seconds or self.prepare_seconds, MAX_PREPARE_SECONDS)
        added = self.store.add_query(
            query_hash=request.query_hash, researcher=peer.member_id, permit_hash=request.permit_hash,
            targets=targets, min_participants=max(request.min_participants, 1), expires_at=request.expires_at,
            prepare_until_ms=now_ms() + seconds * 1000, sealed=dict(request.sealed), retry_of=retry_of,
            abstain=abstain)
        if not added:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "this query was submitted before")
        log.info("query %s from %s to %d centre(s), %d sealed bytes", request.query_hash.hex()[:16],
                 peer.member_id, len(targets), sum(len(v) for v in request.sealed.values()))
        self.waiters.notify([*targets, *abstain])
        return fpb.SubmitReply(query_hash=request.query_hash)

    def Watch(self, request: fpb.WatchRequest, context: grpc.ServicerContext) -> fpb.QueryState:
        peer = current_peer()
        row = self.store.query(request.query_hash, sets=False)
        if row is None or row.researcher != peer.member_id:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such query of yours at this hub")

        def changed() -> bool:
            current = self.store.query(request.query_hash, sets=False)
            if current is None:
                return True
            if request.until_final:
                return current.state not in OPEN_STATES
            return current.version > request.after_version

        self.waiters.for_query(request.query_hash, changed, request.wait_ms, context)
        return self.state(request.query_hash)

    def state(self, query_hash: bytes) -> fpb.QueryState:
        row = self.store.query(query_hash)
        assert row is not None
        out = fpb.QueryState(query_hash=query_hash, state=row.state, version=row.version, error=row.error,
                             participants=list(row.participants), retry_of=row.retry_of or b"",
                             abstentions=list(row.abstentions), failed_centres=list(row.failed_centres))
        for p in self.store.progress(query_hash):
            out.centres.add(centre=p.centre, state=p.state, coarse=p.coarse, at_ms=p.at_ms)
            if p.answer is not None:
                out.answers.add(centre=p.centre, sealed=p.answer)
            if p.decline is not None:
                out.declines.append(p.decline)
        return out

    # ------------------------------------------------------------------ centres
    def Pull(self, request: fpb.PullRequest, context: grpc.ServicerContext) -> fpb.PullReply:
        """A centre's long poll (see `_deliver`)."""
        centre = current_peer().member_id
        self._seen(centre, bytes(request.audit_head))
        return fpb.PullReply(tasks=self._deliver(centre, self.waiters.number(centre), request.wait_ms, context))

    def _deliver(self, centre: str, poll: int, wait_ms: int, context: grpc.ServicerContext) -> list[fpb.Task]:
        """The centre's tasks, waiting up to `wait_ms` for some: the body of a Pull, and of a Push
        that asks for its next tasks. Only a live call that is the centre's newest pull takes
        tasks: a connector has one call open at a time, so an older pull still open here is one
        its caller gave up (a connector stopped or restarted, a process killed) — had it taken a
        task, the task would count as delivered to nobody, and a prepare would be sent again only
        after its window (REDELIVER_MS against prepare_seconds). Tasks taken by a call that ended
        meanwhile go back to the queue. `poll` is the call's number (`Waiters.number`), taken when it
        arrived (a push's, before its reply is recorded: a push held up there by a busy store
        must not come out newer than a pull that arrived meanwhile)."""
        self.waiters.for_work(centre, lambda: self.store.has_tasks(centre), wait_ms, context)
        if self._stop.is_set():
            return []                               # stopping: what it would take could not be answered to us
        if not self.waiters.is_newest(centre, poll) or not context.is_active():
            self.waiters.notify([centre])           # a wake-up it may have taken is the newest pull's
            return []
        taken = self.store.take_tasks(centre)
        if taken and not context.is_active():
            self.store.undeliver(centre, [(qh, kind) for qh, kind, _ in taken])
            self.waiters.notify([centre])
            return []
        if taken:                                   # each task's query now says "delivered" to its watch
            self.waiters.notify(queries=dict.fromkeys(qh for qh, _, _ in taken))
        tasks = []
        for qh, kind, payload in taken:
            if kind == ANSWER:
                held = fpb.QueryState.FromString(payload)
                tasks.append(fpb.Task(kind=fpb.Task.KIND_ANSWER, query_hash=qh, participants=list(held.participants),
                                      abstentions=list(held.abstentions)))
            elif kind == ABSTAIN:
                tasks.append(fpb.Task(kind=fpb.Task.KIND_ABSTAIN, query_hash=qh))
            else:
                tasks.append(fpb.Task(kind=fpb.Task.KIND_PREPARE, query_hash=qh, sealed_query=payload))
        return tasks

    def Push(self, request: fpb.PushRequest, context: grpc.ServicerContext) -> fpb.PushReply:
        """A centre's reply to a task; with `wait_ms`, also its next pull (`_deliver`), so that a
        query costs a centre two calls (accept, answer) instead of four. The reply is recorded
        first: a call cut during the wait loses no reply, only the wait."""
        centre = current_peer().member_id
        self._seen(centre, bytes(request.audit_head))
        poll = self.waiters.number(centre) if request.wait_ms else None   # numbered as it arrives, as a Pull is
        self._reply(centre, request, context)
        if poll is None:
            return fpb.PushReply()
        return fpb.PushReply(tasks=self._deliver(centre, poll, request.wait_ms, context))

    def _reply(self, centre: str, request: fpb.PushRequest, context: grpc.ServicerContext) -> None:
        qh = request.query_hash
        row = self.store.query(qh, sets=False)
        if row is None or centre not in row.targets:
            _refuse(context, grpc.StatusCode.NOT_FOUND, "no such query for this centre")
        assert row is not None
        keyring = self.trust()[0].keyring("centre")
        kind = request.WhichOneof("reply")
        if row.state not in OPEN_STATES:
            if kind in ("abstention", "failure") and self.store.has_task(qh, centre, ABSTAIN):
                self._abstained(row, centre, request, keyring, context)
            return                          # late reply to a finished query: nothing to do
        # Checked before the store's write lock is taken: a signature check holds up no other push.
        try:
            state, column, payload, coarse = self._checked(centre, request, kind, keyring, context)
        except (ProtocolError, InvalidMessage, InvalidParticipantSet) as exc:
            log.warning("push from %s refused: %s", centre, exc)
            _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "the reply is not validly signed for this query")
        with self.store.tx() as c:
            if not self.wanted(qh, kind):
                return                      # too late: the participant set is fixed, or the query over
            if kind == "sealed_answer" and not self.store.is_member(qh, centre):
                _refuse(context, grpc.StatusCode.FAILED_PRECONDITION, "this centre is not a participant")
            self.store.record(c, qh, centre, state, column=column, payload=payload, coarse=coarse)
            # moved on in the transaction that recorded the reply: one commit a reply, not two, and
            # no moment in which a reply is recorded but its query not moved on. Should moving on
            # fail, the reply is still recorded (its task done, or the centre would be sent it
            # again, fail again, and hold up its later tasks) and the sweeper tries again.
            try:
                with self.store.savepoint(c):
                    woken = self._advance(c, qh)
            except Exception:
                log.exception("moving query %s on failed; the sweeper tries again", qh.hex()[:16])
                woken = []
                with self._stalled_lock:
                    self._stalled.add(qh)
        self.waiters.notify(woken, [qh])

    def _checked(self, centre: str, request: fpb.PushRequest, kind: str | None, keyring: Any,
                 context: grpc.ServicerContext) -> tuple[str, str, bytes, str]:
        """The reply verified against the centre's registry key: (progress state, column, bytes,
        coarse reason) to record. Raises ProtocolError (and kin) for a reply that does not verify."""
        qh = request.query_hash
        if kind == "accept":
            accepted = open_accept(request.accept, keyring=keyring)
            if accepted.query_hash != qh.hex() or accepted.centre_id != centre:
                raise ProtocolError("an accept for another query or centre")
            return "accepted", "accept", request.accept, ""
        if kind == "decline":
            d = read_decline(request.decline, keyring, qh)
            if d.centre != centre:
                raise ProtocolError("a decline of another centre")
            return "declined", "decline", request.decline, d.coarse
        if kind == "failure":
            f = read_failure(request.failure, keyring, qh)
            if f.centre != centre:
                raise ProtocolError("a failure notice of another centre")
            return "failed", "failure", request.failure, f.coarse
        if kind == "sealed_answer":
            if len(request.sealed_answer) > MAX_SEALED_BYTES:
                _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "the answer is too large")
            return "answered", "answer", request.sealed_answer, ""
        _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "push one of accept, decline, failure or answer "
                "(an abstention only when asked for one)")

    def wanted(self, qh: bytes, kind: str | None) -> bool:
        """Whether a reply of this kind still counts — called inside the transaction that records
        it, because the row a push read first may be stale by then (another push may have fixed
        the set or ended the query), and an accept recorded after the set is fixed would make its
        centre look like a member that never answers."""
        row = self.store.query(qh, sets=False)
        if row is None or row.state not in OPEN_STATES:
            return False
        return row.state == "preparing" or kind not in ("accept", "decline")

    def _abstained(self, failed: QueryRow, centre: str, request: fpb.PushRequest, keyring: Any,
                   context: grpc.ServicerContext) -> None:
        """A reply to an abstain task: the centre's signed abstention from the failed query, or its
        failure notice (it released an answer); either is kept with the failed query, and its
        open retries move on."""
        qh = failed.query_hash
        try:
            with self.store.tx() as c:
                if request.WhichOneof("reply") == "abstention":
                    if read_abstention(request.abstention, keyring, qh).centre != centre:
                        raise ProtocolError("an abstention of another centre")
                    self.store.record(c, qh, centre, "abstained", column="abstention", payload=request.abstention)
                else:
                    f = read_failure(request.failure, keyring, qh)
                    if f.centre != centre:
                        raise ProtocolError("a failure notice of another centre")
                    if f.coarse != retries.RELEASED:
                        # the failed query's own answer task, failing late (nothing released):
                        # the abstain task stays, and its reply is still to come
                        log.info("late failure notice from %s for %s ignored", centre, qh.hex()[:16])
                        return
                    self.store.record(c, qh, centre, "no_abstention", column="failure", payload=request.failure,
                                      coarse=f.coarse, kind=ABSTAIN)
        except ProtocolError as exc:
            log.warning("abstain reply from %s refused: %s", centre, exc)
            _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "the reply is not validly signed for this query")
        self.waiters.notify(queries=[qh])
        for retry in self.store.retries_of(qh):
            self.advance(retry.query_hash)

    def GetTrust(self, request: fpb.GetTrustRequest, context: grpc.ServicerContext) -> fpb.TrustDocuments:
        _, registry, revocations = self.trust()
        return fpb.TrustDocuments(registry=registry, revocations=revocations)

    def _seen(self, centre: str, head: bytes) -> None:
        """Record the call, and the centre's signed audit head when it verifies against the
        centre's registry key (the hub keeps outside evidence of each log's length, DESIGN §10).

        Every pull and push carries the centre's head, most of them the one it sent last: such a
        call is written only when the centre's "last seen" is a second old, and its head is not
        verified again. Each write is a transaction on the store every push also waits for (at
        100 centres, 400 writes a query), so a new head is what costs one."""
        now = now_ms()
        with self._seen_lock:
            last = self._last_seen.get(centre)
        if last is not None and head in (b"", last[0]):
            if now - last[1] < SEEN_EVERY_MS:
                return                              # nothing new, and written less than a second ago
            head = b""                              # the same head: verified and kept already
        kept = last[0] if last is not None else b""
        seq = None
        stored = head
        if head:
            member = self.trust()[0].member(centre)
            identity = member.identity if member else None
            try:
                parsed = read_audit_head(head, identity, centre)
                seq = parsed.seq
            except ProtocolError as exc:
                log.warning("audit head from %s ignored: %s", centre, exc)
                head = stored = b""
            else:
                first = self._forks(centre, parsed, identity)
                if first is not None:
                    log.warning("audit head from %s for entry %d names another hash than the head kept for "
                                "that entry: its audit log was rewritten there; both heads are kept (hub status)",
                                centre, seq)
                    self.store.conflict(centre, parsed.seq, bytes(parsed.entry_hash), first, head)
                    stored = b""                    # remembered below, so it is not checked on every call
        self.store.seen(centre, stored or None, seq)
        with self._seen_lock:
            self._last_seen[centre] = (head or kept, now)
            held = self._kept.get(centre)
            if stored and seq is not None and held is not None and seq > held[0]:   # what the store did
                self._kept[centre] = (seq, bytes(parsed.entry_hash), stored)

    def _forks(self, centre: str, head: fapb.AuditHead, identity: PublicIdentity | None) -> bytes | None:
        """The kept head, when `head` names another hash for the entry it names: the centre's log
        was rewritten at that entry. The kept head stays as the evidence (the store never
        replaces a head by one of the same length); the operator is told. None otherwise."""
        with self._seen_lock:
            held = self._kept.get(centre)
        if held is None:                            # not yet read by this process: once from the store
            kept = self.store.audit_head_of(centre)
            held = (-1, None, b"")
            if kept is not None:
                try:
                    first = read_audit_head(kept[0], identity, centre)
                    held = (first.seq, bytes(first.entry_hash), kept[0])
                except ProtocolError:               # another key now (rotated): its entry, nothing to compare
                    held = (kept[1], None, kept[0])
            with self._seen_lock:
                held = self._kept.setdefault(centre, held)
        seq, entry_hash, signed = held
        if entry_hash is not None and seq == head.seq and entry_hash != head.entry_hash:
            return signed
        return None

    # ------------------------------------------------------------------ the flow
    def advance(self, qh: bytes) -> None:
        """Move a query on when it can: fix the participant set once every target replied (or the
        prepare time is up), complete it once every participant answered, fail it when one fails."""
        with self.store.tx() as c:
            woken = self._advance(c, qh)
        self.waiters.notify(woken, [qh])

    def _advance(self, c: Any, qh: bytes) -> list[str]:
        """`advance` inside the caller's transaction; returns the centres that got work (notify
        them after it commits)."""
        woken: list[str] = []
        # Row and states are read inside the transaction: two pushes advance the same query at
        # once, and one holding a view from before the other fixed the set would fix it again
        # (then counting a member that had already answered as not accepted: a failed query).
        row = self.store.query(qh, sets=False)
        if row is None or row.state not in OPEN_STATES:
            return woken
        # Counts, not every member's state: each of a query's replies moves it on, and reading
        # a hundred states on each made the hub's work a query grow with the square of its
        # centres.
        if int(time.time()) > row.expires_at:
            self.store.set_state(c, qh, "expired", "the query expired before it completed")
        elif row.state == "preparing":
            if self.store.unreplied(qh) == 0 or now_ms() >= row.prepare_until_ms:
                woken = self._fix(c, row, {p.centre: p for p in self.store.progress(qh)})
        elif row.state == "abstaining":
            full = self.store.query(qh)
            assert full is not None
            woken = self._gather(c, full)
        else:
            failed, silent = self.store.tally(qh)
            late = row.answer_until_ms is not None and now_ms() >= row.answer_until_ms
            if failed or (silent and late):
                states = self.store.states(qh)
                names = sorted(m for m in self._members(qh)
                               if (states[m] == "failed" if failed else states[m] != "answered"))
                why = "failed" if failed else "did not answer in time"
                self.store.set_state(c, qh, "failed", f"{', '.join(names)} {why} after the participant set "
                                     "was fixed; no partial sum exists", failed_centres=names)
            elif not silent:
                self.store.set_state(c, qh, "complete")
        return woken

    def _members(self, qh: bytes) -> list[str]:
        """The participant set's centres: those whose accept made it in before it was fixed."""
        return self.store.members(qh)

    def _fix(self, c: Any, row: Any, progress: dict[str, Any]) -> list[str]:
        """Fix the participant set (or fail the query); return the centres that got work."""
        accepts = sorted((p.centre, p.accept) for p in progress.values() if p.state == "accepted")
        if len(accepts) < row.min_participants:
            self.store.set_state(c, row.query_hash, "failed", f"too few participants: {len(accepts)} accepted, "
                                 f"{row.min_participants} needed")
            return []
        signed = [a for _, a in accepts]
        self.store.drop_stale_accepts(c, row.query_hash)    # accepted, then declined or failed: no member
        self.store.drop_prepare_tasks(c, row.query_hash)     # the silent can no longer join
        if row.retry_of is not None:        # the answer tasks wait for the abstentions they need
            self.store.set_state(c, row.query_hash, "abstaining", participants=signed,
                                 answer_until_ms=now_ms() + self.answer_seconds * 1000)
            fixed = self.store.query(row.query_hash)
            assert fixed is not None
            return self._gather(c, fixed)
        return self._answering(c, row.query_hash, signed, [cid for cid, _ in accepts], [])

    def _answering(self, c: Any, qh: bytes, signed: list[bytes], centres: list[str],
                   abstentions: list[bytes]) -> list[str]:
        """Send the answer tasks: the participant set, and a retry's abstentions."""
        self.store.set_state(c, qh, "answering", participants=signed,
                             answer_until_ms=now_ms() + self.answer_seconds * 1000, abstentions=abstentions)
        payload = fpb.QueryState(participants=signed, abstentions=abstentions).SerializeToString()
        self.store.add_answer_tasks(c, qh, centres, payload)
        return centres

    def _gather(self, c: Any, row: QueryRow) -> list[str]:
        """A retry whose set is fixed: answer once every member of the failed set outside it has
        abstained; fail when one cannot, or when the wait is over. Returns the centres with work."""
        assert row.retry_of is not None
        failed = self.store.query(row.retry_of)
        assert failed is not None
        progress = {p.centre: p for p in self.store.progress(row.retry_of)}
        members = self._members(row.query_hash)
        need = retries.needs(failed, progress, members)
        short = row.retry_of.hex()[:16]
        if need.refused:
            self.store.set_state(c, row.query_hash, "failed", f"{', '.join(need.refused)} answered the failed query "
                                 f"{short} and cannot abstain from it; retry with it among the participants",
                                 failed_centres=need.refused)
            return []
        if need.missing:
            if row.answer_until_ms is not None and now_ms() >= row.answer_until_ms:
                self.store.set_state(c, row.query_hash, "failed", f"no abstention from {', '.join(need.missing)} "
                                     f"from the failed query {short} in time (offline?); retry once it is back",
                                     failed_centres=need.missing)
                return []
            self.store.add_abstain_tasks(c, row.retry_of, need.missing)
            return need.missing
        signed = list(row.participants)
        return self._answering(c, row.query_hash, signed, members, need.abstentions)

    def _sweep(self) -> None:
        """Deadlines pass without anyone calling: fix sets whose prepare time is up, expire the dead,
        and move on the queries a reply could not (`_reply`). Its first pass, at start, moves on
        every open query: a hub that stopped between recording a reply and moving its query on
        (an abstention's retries, or a store written by a hub before D40) would otherwise leave
        the query waiting for its deadline. One query that fails to move on holds up no other."""
        first = True
        while not self._stop.wait(0 if first else 0.25):
            with self._stalled_lock:
                stalled, self._stalled = self._stalled, set()
            try:
                rows = self.store.open_queries()
            except Exception:
                log.exception("hub sweeper")
                rows = []
            for row in rows:
                late = row.prepare_until_ms if row.state == "preparing" else row.answer_until_ms
                if first or row.query_hash in stalled or (late is not None and now_ms() >= late) \
                        or int(time.time()) > row.expires_at:
                    try:
                        self.advance(row.query_hash)
                    except Exception:
                        log.exception("hub sweeper: query %s", row.query_hash.hex()[:16])
            first = False


def _submit_problem(request: fpb.SubmitRequest, targets: list[str], registry: Registry, now: int) -> str:
    """Why a submission cannot be queued, in words for the researcher ('' when it can)."""
    if len(request.query_hash) != 32 or len(request.permit_hash) != 32:
        return "query_hash and permit_hash must be 32 bytes"
    if not targets or len(targets) > MAX_TARGETS or len(set(targets)) != len(targets):
        return f"name 1 to {MAX_TARGETS} distinct target centres"
    centres = {m.member_id for m in registry.members if m.role == "centre"}
    unknown = sorted(set(targets) - centres)
    if unknown:
        return f"not centres of this federation: {', '.join(unknown)}"
    if set(request.sealed) != set(targets):
        return "give exactly one sealed query per target"
    if any(len(v) > MAX_SEALED_BYTES for v in request.sealed.values()):
        return "a sealed query is too large"
    if not now < request.expires_at <= now + MAX_LIFETIME:
        return "expires_at must lie in the next 24 hours"
    if request.min_participants > len(targets):
        return "min_participants exceeds the number of targets"
    return ""


def _refuse(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    """End a Push with the hub's refusal of its reply, marked as the hub's (`REFUSAL_METADATA`), so
    the centre can tell it from a failure of the call itself."""
    context.set_trailing_metadata((REFUSAL_METADATA,))
    context.abort(code, details)
    raise AssertionError("ServicerContext.abort returned")     # it always raises
