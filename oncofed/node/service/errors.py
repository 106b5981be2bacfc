"""The one catalogue from what went wrong inside the node to what a caller is told.

Servicer methods raise domain errors and never build a status themselves; `handled` turns any
exception into a gRPC status and a public message from this catalogue, and writes the details
to the node log. What a caller can learn:

    a Refusal                 its reason's gRPC status and public message (oncofed.query.refusals):
                              the message itself for a query-only reason (QueryError on the query,
                              dictionary, permit or published policy), else "declined: <coarse>"
    a catalogued error        the catalogue's fixed message, never the exception's text
    anything else             INTERNAL with an incident id to quote to the node's admin
"""

from __future__ import annotations

import functools
import logging
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from oncofed.errors import DictionaryMismatch, NodeError, OncofedError
from oncofed.keys.errors import NotPinned, PermitRefused, StaleTrust, TrustError
from oncofed.query.refusals import Refusal

log = logging.getLogger("oncofed.node.service")

S = grpc.StatusCode


class AdminDenied(OncofedError):
    """An authenticated caller asked for something its role or identity may not see."""


@dataclass(frozen=True)
class PublicError:
    """What goes back over the wire."""

    code: grpc.StatusCode
    message: str


#: First match wins, so subclasses come before their bases.
CATALOGUE: tuple[tuple[type[BaseException], grpc.StatusCode, str], ...] = (
    (AdminDenied, S.PERMISSION_DENIED, "this caller may not use this method"),
    (NotPinned, S.FAILED_PRECONDITION, "the node is not set up to answer yet"),
    (StaleTrust, S.UNAVAILABLE, "the node cannot answer now; retry later"),
    (PermitRefused, S.PERMISSION_DENIED, "declined: NOT_APPROVED"),
    (TrustError, S.FAILED_PRECONDITION, "the node's trust state does not allow this"),
    (DictionaryMismatch, S.FAILED_PRECONDITION, "the node's store does not match its dictionary"),
    (NodeError, S.FAILED_PRECONDITION, "the node is not ready"),
    (sqlite3.OperationalError, S.UNAVAILABLE, "the node is busy; retry later"),
)


def public_error(exc: BaseException, incident: str = "") -> PublicError:
    """The status and message a caller gets for `exc`; nothing of its text unless it is meant
    for the caller."""
    if isinstance(exc, Refusal):
        return PublicError(S[exc.status], exc.public_message())
    for kind, code, message in CATALOGUE:
        if isinstance(exc, kind):
            return PublicError(code, message)
    suffix = f" (incident {incident})" if incident else ""
    return PublicError(S.INTERNAL, f"internal error{suffix}; the node's admin can look it up in the node log")


F = TypeVar("F", bound=Callable[..., Any])


def handled(method: F) -> F:
    """Wrap a servicer method: domain errors and bugs become a catalogued status; the details
    (and the traceback of a bug) go to the node log under an incident id."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:  # every exception: mapped below, never leaked
            incident = secrets.token_hex(4)
            error = public_error(exc, incident)
            if error.code == S.INTERNAL:
                log.exception("incident %s in %s", incident, method.__name__)
            else:
                log.warning("%s refused (%s): %s", method.__name__, error.code.name, exc)
        context.abort(error.code, error.message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    return wrapper  # type: ignore[return-value]  # same signature as `method`
