"""The one refusal vocabulary: every reason a node may decline, what it tells whom.

A refusal has three faces, all fixed here so no caller invents its own:

- a fine **reason** (`permit_revoked`, `rate_limited`, `store_over_policy`, …) for the centre's own
  audit log and admin, with a detail message that may name anything the node knows;
- a **coarse code** (`Coarse`) — the only thing a decline tells the hub or a researcher when the
  reason could depend on the node's state;
- a **gRPC status** name, so the services map a refusal without a second table.

`Reason.query_only` marks the contract's and the engine's refusals (`QueryError`), decided from
the query, the dictionary, the permit and the centre's own configuration alone (a field the permit
does not list, a lattice too fine, an answer too long, a dictionary or node.toml that does not
fit): their message names parts of the query and settings, never a figure read from the rows, and
helps a researcher fix the query, so it may go outward. A `RequestRefused` (the verifier and later
stages) always goes outward as its coarse code, whatever its reason. Every other refusal goes
outward as "declined: <coarse code>" — no "cohort too small" oracle, no store size, no detail.

    Refusal (OncofedError)
    ├── QueryError        oncofed.query.errors — the query contract and the engine's checks
    └── RequestRefused    oncofed.node.verify — envelope, permit, freshness, nonce, scope
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from oncofed.errors import OncofedError


class Coarse(StrEnum):
    """The only thing a data- or state-dependent refusal tells the outside world."""

    NOT_APPROVED = "NOT_APPROVED"   # permit unknown, not approved here, revoked or expired
    POLICY = "POLICY"               # the permit or this centre's policy does not allow it
    BUDGET = "BUDGET"               # privacy budget spent, or the researcher's rate limit reached
    BUSY = "BUSY"                   # the node cannot answer now (stale trust, overload, fault)
    INVALID = "INVALID"             # malformed, forged, replayed, expired or misaddressed


#: The gRPC status of each coarse code (a decline that names no query detail).
COARSE_STATUS: Mapping[Coarse, str] = {
    Coarse.NOT_APPROVED: "PERMISSION_DENIED", Coarse.POLICY: "PERMISSION_DENIED",
    Coarse.BUDGET: "RESOURCE_EXHAUSTED", Coarse.BUSY: "UNAVAILABLE", Coarse.INVALID: "INVALID_ARGUMENT",
}


@dataclass(frozen=True)
class Reason:
    """One fine-grained reason: its coarse code, its gRPC status, and whether its message may
    leave the node (see the module docstring)."""

    coarse: Coarse
    status: str
    query_only: bool = False


def _coarse(c: Coarse) -> Reason:
    return Reason(c, COARSE_STATUS[c])


_B, _I, _N, _P = Coarse.BUSY, Coarse.INVALID, Coarse.NOT_APPROVED, Coarse.POLICY

#: Every reason a node may decline for, in the order a request meets the checks.
REASONS: Mapping[str, Reason] = {
    # request verification (oncofed.node.verify)
    "trust_not_pinned": _coarse(_B), "registry_stale": _coarse(_B), "not_a_member": _coarse(_B),
    "oversized": _coarse(_I), "malformed_envelope": _coarse(_I),
    "unknown_signer": _coarse(_I), "signer_revoked": _coarse(_N),
    "bad_signature": _coarse(_I), "malformed_body": _coarse(_I), "cohort_too_deep": _coarse(_I),
    "permit_not_approved": _coarse(_N), "permit_revoked": _coarse(_N),
    "permit_expired": _coarse(_N), "permit_not_yet_valid": _coarse(_N),
    "permit_refused": _coarse(_N), "not_permit_holder": _coarse(_N),
    "key_id_mismatch": _coarse(_I), "clock_skew": _coarse(_I), "expired": _coarse(_I),
    "bad_lifetime": _coarse(_I), "replayed_nonce": _coarse(_I),
    "not_a_target": _coarse(_I), "dictionary_mismatch": _coarse(_I),
    "no_analysis": _coarse(_I), "analysis_not_allowed": _coarse(_P),
    "field_not_allowed": _coarse(_P), "outcome_not_allowed": _coarse(_P),
    "exact_dates_not_allowed": _coarse(_P),
    "wrong_plane": _coarse(_I),
    # a Flower run's rounds (oncofed.node.federated): S or the round is not what this centre accepted
    "participant_set": _coarse(_I), "round_refused": _coarse(_P),
    # the query contract and the engine (oncofed.query.errors.QueryError): decided from the
    # query, dictionary, permit and published policy only, so their message may go outward
    "invalid_query": Reason(_I, "INVALID_ARGUMENT", query_only=True),
    "not_allowed": Reason(_P, "PERMISSION_DENIED", query_only=True),
    "answer_too_large": Reason(_P, "RESOURCE_EXHAUSTED", query_only=True),
    "overflow_risk": Reason(_I, "OUT_OF_RANGE", query_only=True),
    "rate_limited": Reason(Coarse.BUDGET, "RESOURCE_EXHAUSTED", query_only=True),
    "budget_exhausted": Reason(Coarse.BUDGET, "RESOURCE_EXHAUSTED", query_only=True),
    "round_cap": Reason(Coarse.BUDGET, "RESOURCE_EXHAUSTED", query_only=True),
    "node_precondition": Reason(_B, "FAILED_PRECONDITION", query_only=True),
    # the node's own state: details stay in the local audit log
    "store_over_policy": Reason(_B, "FAILED_PRECONDITION"),
    "node_policy": _coarse(_P), "busy": _coarse(_B), "internal_error": _coarse(_B),
}


class Refusal(OncofedError):
    """A request this node declined, with its fine `reason`. The message (`str(exc)`) is for
    the local audit log and admin; `public_message()` is what may go outward."""

    exit_code = 2

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(message)
        self.reason = reason

    @property
    def coarse(self) -> Coarse:
        return REASONS[self.reason].coarse

    @property
    def status(self) -> str:
        """The gRPC status name for this refusal."""
        return REASONS[self.reason].status

    def public_message(self) -> str:
        """The outward message: the query-only message itself, else only the coarse code."""
        if REASONS[self.reason].query_only:
            return str(self)
        return f"declined: {self.coarse.value}"
