"""The one refusal vocabulary: every reason has a coarse code and a real gRPC status; a refusal
decided from the query alone keeps its message outward, every other says only its coarse code."""

from __future__ import annotations

import grpc
import pytest

from oncofed.node.service.errors import public_error
from oncofed.node.verify import RequestRefused
from oncofed.query.errors import CODES, DEFAULT_REASON, QueryError
from oncofed.query.refusals import REASONS, Coarse, Refusal


def test_every_reason_maps_to_a_grpc_status_and_a_coarse_code() -> None:
    for name, reason in REASONS.items():
        assert reason.status in grpc.StatusCode.__members__, name
        assert isinstance(reason.coarse, Coarse)


def test_each_query_error_code_has_its_default_reason() -> None:
    for code in CODES:
        exc = QueryError(code, "m")
        assert exc.reason == DEFAULT_REASON[code] and exc.status == code


def test_a_reason_of_another_status_is_refused() -> None:
    with pytest.raises(ValueError, match="not a INVALID_ARGUMENT"):
        QueryError("INVALID_ARGUMENT", "m", reason="rate_limited")
    with pytest.raises(ValueError, match="unknown refusal reason"):
        Refusal("made_up", "m")


def test_query_only_refusals_keep_their_message_outward() -> None:
    err = public_error(QueryError("INVALID_ARGUMENT", "field 'x' is not in the dictionary", "cohort.field"))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message == "cohort.field: field 'x' is not in the dictionary"
    rate = public_error(QueryError("RESOURCE_EXHAUSTED", "rate limit: at most 3 queries per minute",
                                   reason="rate_limited"))
    assert rate.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in rate.message


def test_state_dependent_refusals_say_only_their_coarse_code() -> None:
    store = QueryError("FAILED_PRECONDITION", "this centre's store exceeds its policy's max_rows",
                       reason="store_over_policy")
    out = public_error(store)
    assert (out.code, out.message) == (grpc.StatusCode.FAILED_PRECONDITION, "declined: BUSY")
    revoked = public_error(RequestRefused("permit_revoked", "permit p-1 is revoked"))
    assert (revoked.code, revoked.message) == (grpc.StatusCode.PERMISSION_DENIED, "declined: NOT_APPROVED")


def test_a_verifier_refusal_never_publishes_its_detail_even_for_a_query_only_reason() -> None:
    for reason in ("budget_exhausted", "rate_limited", "node_precondition"):
        err = public_error(RequestRefused(reason, "ε remaining 0.123 of 1.0"))
        assert "0.123" not in err.message and err.message.startswith("declined: ")
