"""The node's driver for answering one query: checks → budgets → the analysis → disclosure → vector.

`answer()` is what the answering pipeline (oncofed.node.answering: after verifying the envelope,
permit approval, nonce and scope) and the admin's preview call. It reads like the flow:

    1. checks that never depend on data: dictionary, the analysis and fields against permit and
       policy (the analysis' own `check`: lattice, summary bound), answer size, mode, the
       overflow and DP range bounds (from the policy's public maximum rows per centre, never the
       table's size);
    2. the researcher's rate limit, and for a round of an iterative model the centre's round cap
       (distinct coefficients per fit: store/rounds.py);
    3. ε charged durably to the permit (DP permits), BEFORE any computation;
    4. the analysis' local step over a `StoreReader` on the compiled cohort (one grouped SQL pass);
    5. the analysis' disclosure step (or DP noise), then the vector mod 2^128 (values, then flags);
    6. for a permit holder outside DP, steps 4–5 pass the release ledger (node/query/differencing):
       the answer is computed over the rows of the release the cohort resolves to, and the vector
       released before for that release and analysis is what goes out, byte for byte.

Nothing here knows one analysis from another: the catalogue (oncofed.analyses) does. Every
refusal is a QueryError raised before step 4, so no refusal can depend on the rows; the one that
depends on the node's own state (a store beyond its policy) names no figure and goes outward as
its coarse code only. The returned `Answer.meta` is for the centre's own audit log (it may name
the cohort size): it must never be sent outward.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from oncofed.analyses import Result, analysis, finalise, parse_analysis, release
from oncofed.analyses.dp import check_dp_range
from oncofed.keys.cellkey import RecordKeyer
from oncofed.keys.secrets import load_secret_file
from oncofed.node.config import PERTURBATION_KEY
from oncofed.node.node import Node
from oncofed.node.query.compiler import CompiledCohort, compile_cohort
from oncofed.node.query.differencing import Guard, scope_of
from oncofed.node.query.policy import NodePolicy
from oncofed.node.store import db as dbmod
from oncofed.node.store import tumours
from oncofed.node.store.budgets import PrivacyLedger, RateLimiter
from oncofed.node.store.cohort_reads import StoreReader
from oncofed.node.store.ledger import Participation
from oncofed.node.store.recordkeys import ensure_record_keys
from oncofed.node.store.rounds import RoundLedger
from oncofed.query import query_hash as hash_of
from oncofed.query.errors import QueryError
from oncofed.query.values import period
from oncofed.query.vector import check_overflow, encode, n_total
from oncofed.v1 import query_pb2 as pb


class PermitView(Protocol):
    """What the engine reads from an approved permit (oncofed.keys.permits.Permit fits)."""

    @property
    def permit_id(self) -> str: ...
    @property
    def allowed_analyses(self) -> tuple[str, ...]: ...
    @property
    def allowed_fields(self) -> tuple[str, ...]: ...
    @property
    def min_cell_count(self) -> int: ...
    @property
    def epsilon(self) -> float | None: ...
    @property
    def allow_exact_dates(self) -> bool: ...
    @property
    def allowed_outcomes(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Answer:
    """One centre's answer: the vector mod 2^128 and, for the local audit log only, metadata."""

    analysis: str
    vector: list[int]
    n_values: int
    flags: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    query_hash: str = ""

    @property
    def values(self) -> list[int]:
        return self.vector[:self.n_values]

    # What the audit log records (oncofed.node.verify.QueryVerifier.record takes exactly these).
    @property
    def cells_suppressed(self) -> int:
        return int(self.meta.get("cells_suppressed", 0))

    @property
    def cells_perturbed(self) -> int:
        return int(self.meta.get("cells_perturbed", 0))

    @property
    def epsilon_spent(self) -> float:
        return float(self.meta.get("epsilon_spent", 0.0))


def load_policy(node: Node) -> NodePolicy:
    """The centre's policy from node.toml's `[query]` table (defaults when absent)."""
    raw = node.config.extra.get("query", {})
    try:
        return NodePolicy.from_mapping(raw)
    except (TypeError, ValueError) as exc:
        raise QueryError("FAILED_PRECONDITION", f"node.toml [query]: {exc}") from None


def prepare(node: Node, body: pb.QueryBody, permit: PermitView | None,
            policy: NodePolicy) -> tuple[Any, CompiledCohort]:
    """Every check that does not read data: the analysis and cohort against dictionary, permit and
    policy (survival outcomes included: an analysis' and a derived status field's). Raises
    QueryError; returns the analysis' spec and the compiled cohort."""
    d = node.dictionary
    if body.HasField("dictionary") or permit is not None:
        ref = body.dictionary
        if (ref.name, ref.version, ref.extension_sha256) != (d.name, d.version, d.extension_sha256):
            raise QueryError("FAILED_PRECONDITION", f"the query was written for dictionary {ref.name} "
                             f"{ref.version}; this centre runs {d.label()}", "dictionary")
    if not math.isfinite(body.epsilon):
        raise QueryError("INVALID_ARGUMENT", "ε must be a finite number", "epsilon")
    allowed = frozenset(permit.allowed_fields) if permit is not None else None
    spec = parse_analysis(body.analysis, d, allowed)
    if spec.kind not in policy.allowed_analyses:
        raise QueryError("PERMISSION_DENIED", f"this centre's policy does not allow {spec.kind}", "analysis")
    dp_mode = permit is not None and permit.epsilon is not None
    if permit is not None:
        if spec.kind not in permit.allowed_analyses:
            raise QueryError("PERMISSION_DENIED", f"the permit does not allow {spec.kind}", "analysis")
        if body.exact_dates and not permit.allow_exact_dates:
            raise QueryError("PERMISSION_DENIED", "the permit does not allow exact dates", "exact_dates")
        if policy.mode == "none":
            raise QueryError("FAILED_PRECONDITION", "exact (undisclosed) answers are for the local admin only")
        if permit.epsilon is None and body.epsilon:
            raise QueryError("INVALID_ARGUMENT", "the permit has no privacy budget: leave epsilon at 0", "epsilon")
        if permit.epsilon is not None and not body.epsilon > 0:
            raise QueryError("INVALID_ARGUMENT", "the permit is differentially private: state the ε to spend",
                             "epsilon")
    outcomes = frozenset(permit.allowed_outcomes) if permit is not None else None
    the = analysis(spec.kind)
    the.check(spec, d, policy.grants(local_admin=permit is None, dp=dp_mode, outcomes=outcomes,
                                     permit_exact_dates=permit is not None and permit.allow_exact_dates))
    if n_total(spec) > policy.max_values:
        raise QueryError("RESOURCE_EXHAUSTED", f"the answer would hold {n_total(spec)} values; this centre "
                         f"releases at most {policy.max_values}", "analysis")
    rounds(node, the, spec, body, permit, policy, record=False)
    maxima = the.component_maxima(spec)
    check_overflow(maxima, policy.max_rows)
    if dp_mode:
        check_dp_range(maxima, policy.max_rows, policy.dp_rows_per_patient)
    cutoff = status_cutoff(body)
    cohort = compile_cohort(body.cohort if body.HasField("cohort") else None, d, allowed,
                            exact_dates=body.exact_dates, max_depth=policy.max_depth, max_nodes=policy.max_nodes,
                            status_cutoff=cutoff)
    for name in sorted({*cohort.fields, *spec.fields()}):
        derived_from = d.fields[name].at_query
        if not derived_from:
            continue
        if cutoff is None:
            raise QueryError("INVALID_ARGUMENT", f"{name} is derived at the query's status_cutoff: give one",
                             "status_cutoff")
        if outcomes is not None and derived_from not in outcomes:
            raise QueryError("PERMISSION_DENIED", f"{name} follows the outcome {derived_from.upper()}, which "
                             "the permit does not allow", "analysis" if name in spec.fields() else "cohort")
    return spec, cohort


def status_cutoff(body: pb.QueryBody) -> dt.date | None:
    """The query's cutoff of derived status fields: a month (its last day), or a day under exact_dates."""
    if not body.status_cutoff:
        return None
    return period(body.status_cutoff, "status_cutoff", exact_dates=body.exact_dates)[1]


def answer(node: Node, body: pb.QueryBody, permit: PermitView | None, *, policy: NodePolicy,
           now: int | None = None, query_hash: str = "", signer: str = "", participants: Participation | None = None,
           differencing: bool = True) -> Answer:
    """Answer `body` at this centre. `permit` None is the centre's own admin (every field, no
    rate limit, no budget, no release ledger); otherwise the permit must already be verified and
    approved here. `query_hash` is the request's one hash (oncofed.query.query_hash of the bytes it
    arrived in); a direct call without it stands for a local preview of the serialised body.
    `signer` is the verified signing key's fingerprint (the rate limit counts it; see `rate_key`).
    `participants` is the federation's participant set, kept with the release in the ledger
    (`meta["ledger_other_participants"]` says when the same release went out under another set
    and may not go out under this one; None: a node-local answer). `differencing=False` bypasses
    the release ledger: for measuring attacks only (bench, tests), never reachable from a request."""
    started = time.perf_counter()
    spec, cohort = prepare(node, body, permit, policy)
    conn = node.conn
    qhash = query_hash or hash_of(body.SerializeToString())
    dp_mode = permit is not None and permit.epsilon is not None
    if permit is not None:
        RateLimiter(conn, policy.rate_per_minute, policy.rate_per_day).admit(rate_key(body, permit, signer), now)
        rounds(node, analysis(spec.kind), spec, body, permit, policy, record=True, now=now)
    # The overflow and DP checks assume at most policy.max_rows rows; max(rowid) bounds the row count
    # from above in O(log n). A store beyond it is the centre's misconfiguration: refused without
    # naming its size, and outward only as its coarse code.
    if tumours.max_rowid(conn) > policy.max_rows:
        raise QueryError("FAILED_PRECONDITION", "this centre's store exceeds its policy's max_rows; "
                         "its administrator must raise [query] max_rows", reason="store_over_policy")
    ensure_record_keys(conn, node.dictionary, _keyer(node))  # every statement reads the record keys
    charge = None
    restrict = None
    if dp_mode:
        assert permit is not None and permit.epsilon is not None
        charge = PrivacyLedger(conn).charge(permit.permit_id, permit.epsilon, body.epsilon, qhash, now)
        restrict = per_patient_limit(cohort, policy.dp_rows_per_patient)
    the = analysis(spec.kind)
    rules = policy.rules(permit_k=permit.min_cell_count if permit is not None else None,
                         epsilon=body.epsilon if dp_mode else None)
    guard = Guard.open(node) if permit is not None and not dp_mode and differencing else None
    try:
        with dbmod.snapshot(conn):                   # the ledger's rows and the answer's: one view
            change = None
            if guard is not None:
                assert permit is not None
                change = guard.resolve(node, the, spec, cohort, scope_of(permit.permit_id), rules.k, now)
            reader = StoreReader(conn, node.dictionary, cohort.where, cohort.params, cohort.fields, restrict,
                                 status_cutoff(body), change=change)
            raw = the.local(spec, reader, clamp=dp_mode)
        out = release(the, spec, raw, rules)
        vector = [encode(v) for v in (*out.values, *out.flags)]
        if guard is not None:
            vector = guard.keep(vector, the, spec, raw, body, rules, qhash, now, participants=participants)
    finally:
        if guard is not None:
            guard.close()
    meta = {**out.meta, **(guard.meta if guard is not None else {}), "analysis": spec.kind, "query_hash": qhash,
            "values": spec.n_values, "cohort_nodes": cohort.nodes,
            "seconds": round(time.perf_counter() - started, 6)}
    if "rows" not in meta:
        meta["rows"] = the.total(raw)
    it = the.iteration(spec)
    if it is not None:                               # every β a centre answered is in its audit log
        meta.update({"round": it.round, "beta": list(it.coefficients)})
    if charge is not None:
        meta["epsilon_spent"] = charge.epsilon
        meta["epsilon_remaining"] = charge.remaining
    return Answer(analysis=spec.kind, vector=vector, n_values=spec.n_values, flags=tuple(spec.flags), meta=meta,
                  query_hash=qhash)


def rounds(node: Node, the: Any, spec: Any, body: pb.QueryBody, permit: PermitView | None, policy: NodePolicy, *,
           record: bool, now: int | None = None) -> None:
    """A round of an iterative model under a permit: within the centre's cap of distinct
    coefficients per fit (its model and cohort), recorded when `record`. Others pass."""
    it = the.iteration(spec)
    if it is None or permit is None:
        return
    cohort = body.cohort.SerializeToString(deterministic=True) if body.HasField("cohort") else b""
    fit = hashlib.sha256(it.fit + b"\0" + cohort).digest()
    ledger = RoundLedger(node.conn)
    if record:
        ledger.admit(permit.permit_id, fit, it.beta, it.round, policy.round_cap(spec.kind), now)
    else:
        ledger.check(permit.permit_id, fit, it.beta, policy.round_cap(spec.kind))


def rate_key(body: pb.QueryBody, permit: PermitView, signer: str = "") -> str:
    """Whom the rate limit counts: the verified signer's key fingerprint, never what the body
    says (leaving `researcher_key_id` empty or changing its case must not open a second bucket);
    the permit when there is no verified signer (a direct call)."""
    return f"key:{signer.strip().lower()}" if signer.strip() else f"permit:{permit.permit_id}"


def finalise_local(node: Node, body: pb.QueryBody, ans: Answer) -> Result:
    """The researcher's finaliser applied to this one centre's vector (the admin's preview)."""
    return finalise(parse_analysis(body.analysis, node.dictionary), ans.vector)


def _keyer(node: Node) -> RecordKeyer:
    return RecordKeyer(load_secret_file(node.paths.secret(PERTURBATION_KEY)))


def per_patient_limit(cohort: CompiledCohort, limit: int) -> tuple[str, tuple[Any, ...]]:
    """Keep at most `limit` rows per patient of the cohort (by tumour_seq, then tumour id).

    DP sensitivity assumes one patient touches at most `limit` rows of the answer. Filtering on
    `tumour_seq <= limit` would trust the registry's numbering (two tumours of one patient may
    both say 1); ranking the patient's cohort rows makes the bound hold by construction.
    """
    return tumours.per_patient_restriction(cohort.where, cohort.params, limit)
