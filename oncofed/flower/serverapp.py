"""The ServerApp: the coordinator of one model fit on Flower (docs/flower.md, D25).

    flwr run … --run-config <oncofed.flower.request.build_run_config(…)>

1. Check the run config (oncofed.flower.runconfig): registry under the pinned root, envelope
   under a registry researcher, a Flower run of a model, the dictionary it names.
2. Prepare: send the envelope to every connected SuperNode. Each centre verifies it as the query
   plane would and replies with a signed accept (its run mask key) or a signed coarse decline. The
   accepts are verified against the registry; each Flower node id is mapped to the centre id its
   accept is signed by, and the participant set S is formed from them (a target set too small
   fails the run before anything is computed).
3. Rounds: the same `ModelFit` the query plane drives proposes β; each member gets β, the round
   and S, and returns a signed masked answer. Each answer is verified (signature of that centre,
   run, round, H(S), lengths), the masked vectors are summed mod 2^128 (`unmask_sum`: the masks
   cancel only over all of S), finalised and observed. A member that fails, refuses or stays
   silent after S is fixed fails the run: no partial sum is ever used.
4. The ModelResult goes to the result path as JSON, and its summary to the log.

What the coordinator sees: each centre's vector only masked, but each round's *sum* and the
model, and it chooses β — the trust it needs is the query plane researcher's (docs/flower.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from oncofed.analyses import finalise, parse_analysis
from oncofed.analyses.fedavg import DEFAULT_ROUNDS as DEFAULT_FEDAVG_ROUNDS
from oncofed.analyses.fedavg import KIND as FEDAVG
from oncofed.analyses.fedavg_training import FedAvgFit, FedAvgResult
from oncofed.analyses.fitting import ModelFit
from oncofed.analyses.model_result import ModelResult
from oncofed.analyses.newton import Step
from oncofed.errors import OncofedError
from oncofed.flower import messages
from oncofed.flower.runconfig import FlowerRunError, RunRequest, parse_run_config, write_failure, write_result
from oncofed.keys.errors import InvalidMessage
from oncofed.secagg import (
    Accept,
    AnswersMismatch,
    InvalidParticipantSet,
    MaskedVector,
    ParticipantSet,
    open_accept,
    unmask_sum,
)
from oncofed.secagg.run_wire import read_run_answer
from oncofed.secagg.wire import ProtocolError, read_decline, read_failure

log = logging.getLogger("oncofed.flower.serverapp")

POLL_SECONDS = 0.05        # our own pull loop: Flower's send_and_receive sleeps 3 s on the deployment grid

app = ServerApp()


@dataclass
class RunLog:
    """What the coordinator measured and learned, for the result file and the bench."""

    prepare_seconds: float = 0.0
    rounds: list[dict[str, Any]] = field(default_factory=list)
    declined: dict[str, str] = field(default_factory=dict)
    ignored: int = 0


class RoundRefused(FlowerRunError):
    """A member refused a round with a signed, coarse code (after S was fixed)."""

    def __init__(self, message: str, *, centre: str, round_: int, coarse: str) -> None:
        super().__init__(message)
        self.centre, self.round, self.coarse = centre, round_, coarse


def exchange(grid: Grid, contents: Mapping[int, RecordDict], timeout: float) -> dict[int, Message]:
    """Send each node its content (QUERY messages) and collect the replies until all are in or
    `timeout` passes; the replies by the node that sent them."""
    if not contents:
        return {}
    ids = set(grid.push_messages([Message(c, dst_node_id=n, message_type=MessageType.QUERY)
                                  for n, c in contents.items()]))
    replies: dict[int, Message] = {}
    deadline = time.monotonic() + timeout
    while ids and time.monotonic() < deadline:
        for reply in grid.pull_messages(ids):
            ids.discard(reply.metadata.reply_to_message_id)
            if reply.metadata.src_node_id in contents:
                replies[reply.metadata.src_node_id] = reply
        if ids:
            time.sleep(POLL_SECONDS)
    return replies


def wait_for_nodes(grid: Grid, wanted: int, seconds: float) -> list[int]:
    """The connected SuperNodes, once `wanted` are there or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    nodes = list(grid.get_node_ids())
    while len(nodes) < wanted and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        nodes = list(grid.get_node_ids())
    return sorted(nodes)


def _error_of(reply: Message) -> str:
    reason = (reply.error.reason or "").strip().splitlines()
    return reason[-1][:200] if reason else f"error code {reply.error.code}"


def prepare(grid: Grid, req: RunRequest, runlog: RunLog) -> tuple[ParticipantSet, dict[str, int]]:
    """Every node gets the envelope; S from the accepts that verify; centre id → Flower node id."""
    t = time.monotonic()
    body, qh = req.body, req.query_hash
    targets = set(body.target_centres)
    keyring = req.registry.keyring("centre")
    nodes = wait_for_nodes(grid, len(targets), req.node_wait)
    replies = exchange(grid, {n: messages.prepare_content(req.envelope) for n in nodes}, req.prepare_timeout)
    accepts: dict[str, tuple[Accept, bytes, int]] = {}
    for node, reply in sorted(replies.items()):
        if reply.has_error():
            log.warning("node %s could not prepare: %s", node, _error_of(reply))
            runlog.ignored += 1
            continue
        try:
            kind, data = messages.read_reply(reply.content)
            if kind == "accept":
                accept = open_accept(data, keyring=keyring)
                if accept.query_hash != qh.hex() or accept.centre_id not in targets:
                    raise ProtocolError(f"an accept of {accept.centre_id} for another run or not targeted")
                if accept.centre_id in accepts:
                    raise ProtocolError(f"a second node answers for {accept.centre_id}")
                accepts[accept.centre_id] = (accept, data, node)
            elif kind == "decline":
                d = read_decline(data, keyring, qh)
                runlog.declined[d.centre] = d.coarse
            else:
                raise ProtocolError(f"a {kind} reply to prepare")
        except (OncofedError, InvalidMessage) as exc:   # e.g. a node of another federation
            log.info("node %s: reply ignored (%s)", node, exc)
            runlog.ignored += 1
    runlog.prepare_seconds = time.monotonic() - t
    need = max(body.min_participants, 2)
    if len(accepts) < need:
        declined = ", ".join(f"{c} {code}" for c, code in sorted(runlog.declined.items())) or "none"
        silent = sorted(targets - set(accepts) - set(runlog.declined))
        raise FlowerRunError(f"{len(accepts)} of {len(targets)} target centres accepted; the run needs {need} "
                             f"(declined: {declined}; no reply: {', '.join(silent) or 'none'})")
    chosen = [accepts[c] for c in sorted(accepts)]
    s = ParticipantSet(tuple(a for a, _, _ in chosen), signed=tuple(d for _, d, _ in chosen))
    try:
        s.check(query_hash=qh.hex(), targets=targets, min_size=need)
    except InvalidParticipantSet as exc:
        raise FlowerRunError(f"the participant set does not verify: {exc}") from None
    return s, {c: node for c, (_, _, node) in accepts.items()}


def run_round(grid: Grid, req: RunRequest, s: ParticipantSet, node_of: Mapping[str, int],
              analysis: Any) -> dict[str, Any]:
    """One round: β and S to every member, each signed masked answer verified, the sum finalised."""
    kind = analysis.WhichOneof("kind")
    msg = getattr(analysis, kind)
    r = int(msg.round)
    spec = parse_analysis(analysis, req.dictionary)
    content = messages.round_content(req.query_hash, r, list(msg.beta), s.signed, offset=getattr(msg, "offset", 0))
    replies = exchange(grid, {node_of[c]: content for c in s.centre_ids}, req.round_timeout)
    keyring = req.registry.keyring("centre")
    digest = s.digest()
    masked: list[MaskedVector] = []
    for c in s.centre_ids:
        reply = replies.get(node_of[c])
        if reply is None:
            raise FlowerRunError(f"round {r}: no answer from {c} within {req.round_timeout:g} s; the run fails "
                                 "(no partial sum is used)")
        if reply.has_error():
            raise FlowerRunError(f"round {r}: {c}'s ClientApp failed ({_error_of(reply)}); the run fails")
        try:
            rkind, data = messages.read_reply(reply.content)
            if rkind == "failure":
                failed = read_failure(data, keyring, req.query_hash)
                raise RoundRefused(f"round {r}: {c} refused it ({failed.coarse}); the run fails (no partial "
                                   "sum is used; the reason is in the centre's audit log)", centre=c, round_=r,
                                   coarse=failed.coarse)
            if rkind != "answer":
                raise ProtocolError(f"a {rkind} reply to a round")
            masked.append(read_run_answer(data, keyring=keyring, centre=c, query_hash=req.query_hash, round_=r,
                                          set_digest=digest, n_values=spec.n_values, n_flags=len(spec.flags)))
        except (ProtocolError, messages.MessageError) as exc:
            raise FlowerRunError(f"round {r}: the answer of {c} does not verify: {exc}") from None
    try:
        total = unmask_sum(masked, participants=s, round=r)
    except AnswersMismatch as exc:
        raise FlowerRunError(f"round {r}: {exc}") from None
    return finalise(spec, total, members=len(s))


def _failed(req: RunRequest, exc: Exception) -> NoReturn:
    """A failed run leaves its reason in the result file, where the researcher's command reads it."""
    message = str(exc)
    write_failure(req.result_path, req.query_hash, message)
    log.error("run %s failed: %s", req.query_hash.hex()[:16], message)
    raise FlowerRunError(message) from None


def _completed(req: RunRequest, runlog: RunLog, result: Any) -> None:
    write_result(req.result_path, {"query_hash": req.query_hash.hex(), "result": result.to_json(),
                                   "rounds": runlog.rounds, "prepare_seconds": runlog.prepare_seconds,
                                   "declined": runlog.declined, "ignored_nodes": runlog.ignored})
    log.info("run %s complete:\n%s", req.query_hash.hex()[:16], result.summary())


def coordinate(grid: Grid, req: RunRequest, *,
               on_round: Callable[[Step, float], None] | None = None) -> ModelResult | FedAvgResult:
    """Fit the run's model over the grid and write the result file; on failure write the failure
    and raise FlowerRunError (one line: which centre, which round, why)."""
    if req.body.analysis.WhichOneof("kind") == FEDAVG:
        return coordinate_fedavg(grid, req)
    started = time.monotonic()
    runlog = RunLog()
    try:
        s, node_of = prepare(grid, req, runlog)
        log.info("run %s: participant set %s", req.query_hash.hex()[:16], ", ".join(s.centre_ids))
        fit = ModelFit(req.body.analysis, req.dictionary, req.options)
        while (analysis := fit.next_analysis()) is not None:
            t = time.monotonic()
            summed = run_round(grid, req, s, node_of, analysis)
            step = fit.observe(summed)
            seconds = time.monotonic() - t
            runlog.rounds.append({"round": step.round, "seconds": seconds, "action": step.action})
            log.info("round %2d: loglik %.10g (%s) in %.2f s", step.round, step.loglik, step.action, seconds)
            if on_round is not None:
                on_round(step, seconds)
        result = fit.result(participants=list(s.centre_ids), seconds=time.monotonic() - started)
    except OncofedError as exc:
        _failed(req, exc)
    _completed(req, runlog, result)
    return result


def coordinate_fedavg(grid: Grid, req: RunRequest) -> FedAvgResult:
    """Train the run's FedAvg classifier for its signed rounds: each round the current weights go
    to every member, the masked updates are summed and averaged. A member refusing a round with
    BUDGET (its privacy budget for the permit, or its round cap, is spent) ends the training
    cleanly with the weights so far — no partial sum is used, the round is not counted; any other
    failure fails the run as for a model fit."""
    started = time.monotonic()
    runlog = RunLog()
    body = req.body
    try:
        s, node_of = prepare(grid, req, runlog)
        log.info("run %s: participant set %s", req.query_hash.hex()[:16], ", ".join(s.centre_ids))
        signed = body.flower.max_rounds or DEFAULT_FEDAVG_ROUNDS
        if req.reference_beta and signed < 2:
            raise FlowerRunError("a reference needs a round of its own after training: sign max_rounds ≥ 2")
        # the reference's round is the last signed one (build_run_config signs it on top of [fit])
        fit = FedAvgFit(body.analysis, req.dictionary, rounds=signed - (1 if req.reference_beta else 0),
                        max_linear_predictor=req.options.max_linear_predictor, epsilon=body.epsilon,
                        server_learning_rate=req.options.server_learning_rate, reference=req.reference_beta)
        while (analysis := fit.next_analysis()) is not None:
            t = time.monotonic()
            try:
                summed = run_round(grid, req, s, node_of, analysis)
            except RoundRefused as exc:
                if exc.coarse != "BUDGET" or not fit.history:
                    raise
                fit.stop(f"round {exc.round}: {exc.centre} refused it (BUDGET: the permit's privacy budget or the "
                         "centre's round cap is spent); the weights are those after the last complete round")
                log.warning("run %s: %s", req.query_hash.hex()[:16], fit.stopped)
                break
            done = fit.observe(summed, seconds=time.monotonic() - t)
            runlog.rounds.append({"round": done.round, "seconds": done.seconds})
            log.info("round %3d: loglik %s, update %.4g in %.2f s", done.round,
                     "(DP: not released)" if done.loglik is None else f"{done.loglik:.10g}", done.update_norm,
                     done.seconds)
        result = fit.result(participants=list(s.centre_ids), seconds=time.monotonic() - started)
    except (OncofedError, ValueError) as exc:
        _failed(req, exc)
    _completed(req, runlog, result)
    return result


@app.main()
def main(grid: Grid, context: Context) -> None:
    """One model fit per run: the run config says which (oncofed.flower.request.build_run_config)."""
    config = dict(context.run_config)
    try:
        req = parse_run_config(config)
    except FlowerRunError as exc:
        log.error("the run config is refused: %s", exc)
        path = config.get("result-path")
        if isinstance(path, str) and path:
            write_failure(Path(path), b"", f"the run config is refused: {exc}")
        raise
    coordinate(grid, req)
