"""The one error a query can raise before or while it is answered.

`QueryError.code` is a gRPC status name so the query service can map it without a second
catalogue; `path` names the offending part of the query as the researcher wrote it
(`cohort.and[2].in[0]`, `analysis.crosstab.fields[1]`). Messages say what is wrong and never
quote patient data: a refusal must not depend on the rows (no "cohort too small" oracle).
"""

from __future__ import annotations

from oncofed.errors import OncofedError

#: Status names a QueryError may carry (gRPC names; the service maps them to status codes).
CODES = frozenset({
    "INVALID_ARGUMENT",    # the query is malformed or does not fit the dictionary / permit
    "PERMISSION_DENIED",   # the permit or this node's policy does not allow it
    "RESOURCE_EXHAUSTED",  # rate limit, privacy budget or answer size
    "OUT_OF_RANGE",        # fixed-point components could overflow the 2^126 safety margin
    "FAILED_PRECONDITION",  # the node's state does not allow answering (e.g. no store)
})


class QueryError(OncofedError):
    """A query refused with a status code and a message naming the offending part."""

    exit_code = 2

    def __init__(self, code: str, message: str, path: str = "") -> None:
        if code not in CODES:
            raise ValueError(f"unknown query error code {code!r}")
        self.code = code
        self.path = path
        self.message = f"{path}: {message}" if path else message
        super().__init__(self.message)

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "path": self.path}


def invalid(path: str, message: str) -> QueryError:
    """Shorthand for the commonest refusal: INVALID_ARGUMENT at `path`."""
    return QueryError("INVALID_ARGUMENT", message, path)
