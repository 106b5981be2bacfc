"""The error a query raises when the contract or the engine's checks refuse it.

`QueryError.code` is a gRPC status name and `path` names the offending part of the query as the
researcher wrote it (`cohort.and[2].in[0]`, `analysis.crosstab.fields[1]`). Each code has its
reason in the one refusal vocabulary (oncofed.query.refusals); a check may name a finer one
(`rate_limited`, `budget_exhausted`). Messages say what is wrong and never quote patient data;
a refusal whose reason is not `query_only` goes outward as its coarse code alone.
"""

from __future__ import annotations

from oncofed.query.refusals import REASONS, Refusal

#: Status names a QueryError may carry, and the reason each stands for unless a finer one is named.
DEFAULT_REASON = {
    "INVALID_ARGUMENT": "invalid_query",     # malformed, or does not fit the dictionary / permit
    "PERMISSION_DENIED": "not_allowed",      # the permit or this node's policy does not allow it
    "RESOURCE_EXHAUSTED": "answer_too_large",  # rate limit, privacy budget or answer size
    "OUT_OF_RANGE": "overflow_risk",         # fixed-point components could overflow 2^126
    "FAILED_PRECONDITION": "node_precondition",  # the node's state does not allow answering
}
CODES = frozenset(DEFAULT_REASON)


class QueryError(Refusal):
    """A query refused with a status code and a message naming the offending part."""

    exit_code = 2

    def __init__(self, code: str, message: str, path: str = "", *, reason: str = "") -> None:
        if code not in CODES:
            raise ValueError(f"unknown query error code {code!r}")
        reason = reason or DEFAULT_REASON[code]
        if REASONS[reason].status != code:
            raise ValueError(f"reason {reason!r} is not a {code} refusal")
        self.code = code
        self.path = path
        self.message = f"{path}: {message}" if path else message
        super().__init__(reason, self.message)

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "path": self.path}


def invalid(path: str, message: str) -> QueryError:
    """Shorthand for the commonest refusal: INVALID_ARGUMENT at `path`."""
    return QueryError("INVALID_ARGUMENT", message, path)
