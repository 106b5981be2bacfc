"""The node's one entry point for answering a query: checks → budgets → SQL → disclosure → vector.

`answer()` is what the query service (after verifying the envelope, permit approval, nonce and
participant set — later work) and the admin's `oncofed node query` call. It reads like the flow:

    1. checks that never depend on data: dictionary, analysis and fields against permit and
       policy, exact dates, lattice, answer size, mode;
       the summary bound, the overflow and DP range bounds (from the policy's public maximum rows
       per centre, never the table's size);
    2. the researcher's rate limit;
    3. ε charged durably to the permit (DP permits), BEFORE any computation;
    4. one grouped SQL aggregate over the compiled cohort;
    5. the node's disclosure rules (or DP noise), then the vector mod 2^128 (values, then flags).

Every refusal is a QueryError raised before step 4, so no refusal can depend on the rows. The
returned `Answer.meta` is for the centre's own audit log (it may name the cohort size): it must
never be sent outward.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from oncofed.federation.finalise import Result, finalise
from oncofed.federation.query.errors import QueryError
from oncofed.federation.query.spec import (
    AnalysisSpec,
    SurvivalSpec,
    check_bound,
    check_overflow,
    encode,
    n_total,
    parse_analysis,
)
from oncofed.keys.cellkey import RecordKeyer
from oncofed.keys.secrets import load_secret_file
from oncofed.node.config import PERTURBATION_KEY
from oncofed.node.node import Node
from oncofed.node.query.analyses import compute
from oncofed.node.query.compiler import CompiledCohort, compile_cohort
from oncofed.node.query.disclosure import NodePolicy, Release, check_allowed, protect
from oncofed.node.query.dp import check_dp_range, dp_release
from oncofed.node.store import tumours
from oncofed.node.store.budgets import PrivacyLedger, RateLimiter
from oncofed.node.store.recordkeys import ensure_record_keys
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


@dataclass(frozen=True)
class Answer:
    """One centre's answer: the vector mod 2^128 and, for the local audit log only, metadata."""

    analysis: str
    vector: list[int]
    n_values: int
    flags: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> list[int]:
        return self.vector[:self.n_values]

    # What the audit log records (oncofed.node.verify.Verifier.record takes exactly these).
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
            policy: NodePolicy) -> tuple[AnalysisSpec, CompiledCohort]:
    """Every check that does not read data: the analysis and cohort against dictionary, permit and
    policy. Raises QueryError; returns the analysis' layout and the compiled cohort."""
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
    check_allowed(policy, spec.kind)
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
    if isinstance(spec, SurvivalSpec):
        _check_lattice(spec, permit, policy)
    if n_total(spec) > policy.max_values:
        raise QueryError("RESOURCE_EXHAUSTED", f"the answer would hold {n_total(spec)} values; this centre "
                         f"releases at most {policy.max_values}", "analysis")
    check_bound(spec, d, dp=dp_mode)
    check_overflow(spec, policy.max_rows)
    if dp_mode:
        check_dp_range(spec, policy)
    cohort = compile_cohort(body.cohort if body.HasField("cohort") else None, d, allowed,
                            exact_dates=body.exact_dates, max_depth=policy.max_depth, max_nodes=policy.max_nodes)
    return spec, cohort


def _check_lattice(spec: SurvivalSpec, permit: PermitView | None, policy: NodePolicy) -> None:
    if permit is None:
        return
    path = f"analysis.{spec.kind}.lattice.step_days"
    if spec.step_days == 1:
        if not (permit.allow_exact_dates and policy.allow_exact_survival_times):
            raise QueryError("PERMISSION_DENIED", "a 1-day lattice (exact event times) needs a permit with exact "
                             "dates and a centre policy that allows exact survival times", path)
    elif spec.step_days < policy.min_step_days:
        raise QueryError("PERMISSION_DENIED", f"this centre's lattice steps are at least {policy.min_step_days} "
                         "days", path)


def answer(node: Node, body: pb.QueryBody, permit: PermitView | None, *, policy: NodePolicy,
           now: int | None = None, query_id: str = "") -> Answer:
    """Answer `body` at this centre. `permit` None is the centre's own admin (every field, no
    rate limit, no budget); otherwise the permit must already be verified and approved here."""
    started = time.perf_counter()
    spec, cohort = prepare(node, body, permit, policy)
    conn = node.conn
    qid = query_id or hashlib.sha256(body.SerializeToString()).hexdigest()
    dp_mode = permit is not None and permit.epsilon is not None
    if permit is not None:
        RateLimiter(conn, policy.rate_per_minute, policy.rate_per_day).admit(rate_key(body, permit), now)
    # The overflow and DP checks assume at most policy.max_rows rows; max(rowid) bounds the row count
    # from above in O(log n). A store beyond it is the centre's misconfiguration, refused without
    # naming its size, and independent of the query.
    rows = tumours.max_rowid(conn)
    if rows > policy.max_rows:
        raise QueryError("FAILED_PRECONDITION", "this centre's store exceeds its policy's max_rows; "
                         "its administrator must raise [query] max_rows")
    ensure_record_keys(conn, node.dictionary, _keyer(node))  # every statement reads the record keys
    charge = None
    restrict = None
    if dp_mode:
        assert permit is not None and permit.epsilon is not None
        charge = PrivacyLedger(conn).charge(permit.permit_id, permit.epsilon, body.epsilon, qid, now)
        restrict = per_patient_limit(cohort, policy.dp_rows_per_patient)
    raw = compute(conn, spec, node.dictionary, cohort, restrict, clamp=dp_mode)
    k = policy.effective_k(permit.min_cell_count if permit is not None else None)
    release: Release = (dp_release(spec, raw, epsilon=body.epsilon, policy=policy) if dp_mode
                        else protect(spec, raw, k=k, policy=policy))
    vector = [encode(v) for v in (*release.values, *release.flags)]
    meta = {**release.meta, "analysis": spec.kind, "query_id": qid, "values": spec.n_values,
            "cohort_nodes": cohort.nodes, "seconds": round(time.perf_counter() - started, 6)}
    if "rows" not in meta:
        meta["rows"] = raw.total
    if charge is not None:
        meta["epsilon_spent"] = charge.epsilon
        meta["epsilon_remaining"] = charge.remaining
    return Answer(analysis=spec.kind, vector=vector, n_values=spec.n_values, flags=tuple(spec.flags), meta=meta)


def rate_key(body: pb.QueryBody, permit: PermitView) -> str:
    """Whom the rate limit counts: the researcher key id, normalised (so case and spaces do not
    open fresh windows), else the permit."""
    key = body.researcher_key_id.strip().lower()
    return key or permit.permit_id


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
