"""Who is calling, and may they? The server-side gate every oncofed RPC passes through.

Mutual TLS already proved that the peer holds a key certified by the federation root (a foreign,
expired or missing certificate never gets this far: the handshake fails and the client sees only
`UNAVAILABLE`). TLS cannot know the rest, so this interceptor checks, on every call:

1. the certificate names exactly one oncofed identity (`UNAUTHENTICATED` otherwise);
2. its serial is not on the current revocation list (`PERMISSION_DENIED`) — grpcio's TLS does
   not check revocation, and the list is read through a provider so it updates without restart;
3. its fingerprint is the one the registry binds to that member (`UNAUTHENTICATED`), so a
   certificate the root issued but the registry superseded is useless;
4. the role may call this method (`PERMISSION_DENIED`): an explicit allow-list, deny by default.

A provider that fails (a stale registry, an unreadable CRL) fails the call closed with
`UNAVAILABLE`. Status messages are written for people and say nothing about internals; the reason,
method and peer go to the server log instead. The admitted caller is available to the handler as
`current_peer()`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from oncofed.keys.tls import ROLES, CertificateError, cert_info

log = logging.getLogger("oncofed.transport.auth")

HEALTH_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")
REFLECTION_METHODS = (
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
)
OPERATIONS_METHODS = HEALTH_METHODS + REFLECTION_METHODS

RevokedProvider = Callable[[], Collection[int]]
FingerprintLookup = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class Peer:
    """An authenticated caller: identity from its certificate, checked against CRL and registry."""

    role: str
    member_id: str
    fingerprint: str
    serial: int


_CURRENT_PEER: contextvars.ContextVar[Peer | None] = contextvars.ContextVar(
    "oncofed_current_peer", default=None)


def current_peer() -> Peer:
    """The caller of the RPC being handled. Set only inside handlers behind `AuthInterceptor`,
    so a handler cannot mistake an unauthenticated call for an authenticated one."""
    peer = _CURRENT_PEER.get()
    if peer is None:
        raise RuntimeError("current_peer() used outside an RPC admitted by AuthInterceptor")
    return peer


class _Denied(Exception):
    def __init__(self, code: grpc.StatusCode, public: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.public, self.reason = code, public, reason


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticate and authorise every call from the peer's TLS certificate.

    `allowed` maps full method names ("/oncofed.v1.NodeAdmin/Describe") to the roles that may
    call them; anything not listed is refused. `revoked` returns the current revoked serials and
    `lookup(role, member_id)` the registry's certificate fingerprint; both are called per RPC, so
    a new CRL or registry takes effect at once. Both are required keywords: pass `lookup=None`
    only where no registry exists yet (the hub while it enrols members) and `revoked=None` only
    where no revocation list exists — a deliberate, visible choice rather than a default.
    Health and reflection are open to every role in `operations_roles` (default: all roles)."""

    def __init__(
        self, allowed: Mapping[str, Collection[str]], *, revoked: RevokedProvider | None,
        lookup: FingerprintLookup | None, operations_roles: Collection[str] = ROLES,
    ) -> None:
        table: dict[str, frozenset[str]] = {m: frozenset(operations_roles)
                                            for m in OPERATIONS_METHODS}
        for method, roles in allowed.items():
            if not method.startswith("/") or method.count("/") != 2:
                raise ValueError(f"method {method!r} must look like /package.Service/Method")
            if isinstance(roles, str) or not set(roles) <= ROLES:
                raise ValueError(f"roles for {method} must be a set drawn from {sorted(ROLES)}")
            table[method] = frozenset(roles)
        self._allowed = table
        self._revoked = revoked
        self._lookup = lookup
        if revoked is None:
            log.warning("revocation is not enforced on this server (no revocation list)")
        if lookup is None:
            log.warning("registry fingerprints are not enforced on this server")

    def _authorise(self, method: str, context: grpc.ServicerContext) -> Peer:
        """Return the admitted peer or raise `_Denied`; separate from gRPC plumbing so the
        decision reads top to bottom."""
        pems = context.auth_context().get("x509_pem_cert") or []
        if not pems:
            raise _Denied(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required",
                          "no peer certificate (not a mutual-TLS connection)")
        try:
            info = cert_info(bytes(pems[0]))
        except CertificateError as exc:
            raise _Denied(grpc.StatusCode.UNAUTHENTICATED,
                          "the client certificate carries no valid oncofed identity",
                          str(exc)) from None
        who = f"{info.role}/{info.member_id} serial {info.serial:x}"
        try:
            is_revoked = self._revoked is not None and info.serial in self._revoked()
            expected = self._lookup(info.role, info.member_id) if self._lookup else None
        except Exception as exc:
            log.exception("credential provider failed while admitting %s", who)
            raise _Denied(grpc.StatusCode.UNAVAILABLE,
                          "the server cannot check credentials right now; retry later",
                          f"provider failed: {type(exc).__name__}") from None
        if is_revoked:
            raise _Denied(grpc.StatusCode.PERMISSION_DENIED,
                          "this certificate has been revoked", f"{who} is revoked")
        if self._lookup is not None and (expected is None or expected.lower() != info.fingerprint):
            raise _Denied(grpc.StatusCode.UNAUTHENTICATED,
                          "this certificate is not the one registered for this member",
                          f"{who} fingerprint {info.fingerprint[:16]}… not in the registry")
        roles = self._allowed.get(method)
        if roles is None or info.role not in roles:
            raise _Denied(grpc.StatusCode.PERMISSION_DENIED,
                          f"a {info.role} may not call this method",
                          f"{who} not allowed to call {method}")
        return Peer(info.role, info.member_id, info.fingerprint, info.serial)

    def _admit(self, method: str, context: grpc.ServicerContext) -> contextvars.Context:
        try:
            peer = self._authorise(method, context)
        except _Denied as denied:
            log.warning("refused %s from %s: %s (%s)", method, context.peer(), denied.reason,
                        denied.code.name)
            _abort(context, denied.code, denied.public)
        log.debug("admitted %s/%s to %s", peer.role, peer.member_id, method)
        ctx = contextvars.copy_context()
        ctx.run(_CURRENT_PEER.set, peer)
        return ctx

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the method's handler so the check runs with the call's context (which is where
        the TLS peer is), whatever the streaming kind. Unknown methods are still checked first:
        an unauthorised peer learns nothing about which methods exist."""
        method = handler_call_details.method
        handler = continuation(handler_call_details) or grpc.unary_unary_rpc_method_handler(
            _unimplemented)
        return _guarded(handler, lambda context: self._admit(method, context))


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _unimplemented(request: Any, context: grpc.ServicerContext) -> NoReturn:
    _abort(context, grpc.StatusCode.UNIMPLEMENTED, "no such method")


def _run_iterator(ctx: contextvars.Context, iterator: Iterator[Any]) -> Iterator[Any]:
    """Step a response stream inside the caller's context, so `current_peer()` works in
    streaming handlers and never leaks into the worker thread's own context."""
    try:
        while True:
            try:
                item = ctx.run(next, iterator)
            except StopIteration:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            ctx.run(close)


def _guarded(
    handler: grpc.RpcMethodHandler, admit: Callable[[grpc.ServicerContext], contextvars.Context]
) -> grpc.RpcMethodHandler:
    kinds = {
        (False, False): (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (False, True): (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (True, False): (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (True, True): (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    }
    behaviour, factory = kinds[(handler.request_streaming, handler.response_streaming)]

    def guarded(request: Any, context: grpc.ServicerContext, *callback: Any) -> Any:
        ctx = admit(context)
        result = ctx.run(behaviour, request, context, *callback)
        if handler.response_streaming and result is not None:
            return _run_iterator(ctx, result)
        return result

    # Non-blocking streaming handlers (the health Watch) take a send-callback; keep the flags
    # gRPC reads from the behaviour so it still passes one.
    for flag in ("experimental_non_blocking", "experimental_thread_pool"):
        if hasattr(behaviour, flag):
            setattr(guarded, flag, getattr(behaviour, flag))
    return factory(guarded, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)
