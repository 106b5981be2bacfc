"""A gRPC server with oncofed's transport policy built in, so no service can forget a part of it:
mutual TLS only, every call through `AuthInterceptor`, bounded message sizes, a bounded number of
concurrent calls, health checking, server reflection and a graceful stop.

Failed TLS handshakes (foreign CA, expired or missing client certificate, plaintext client) never
reach Python: gRPC's C core rejects them, no handler or interceptor runs, and the client sees only
`UNAVAILABLE`. grpcio offers no hook for them, so the server-side record is the C core's own log on
the process's stderr (the service journal), at its default verbosity, e.g.
    ssl_transport_security.cc] Handshake failed ... SSL_ERROR_SSL: ...CERTIFICATE_VERIFY_FAILED
    ssl_transport_security.cc] Handshake failed ... SSL_ERROR_SSL: ...WRONG_VERSION_NUMBER
(a test pins this). Do not run servers with GRPC_VERBOSITY=ERROR or NONE, which hides them;
GRPC_TRACE=handshaker adds detail while investigating.

Create servers after any fork (grpcio's fork support is fragile: grpc issues #32992, #22624).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from oncofed.errors import OncofedError
from oncofed.transport.interceptor import AuthInterceptor

log = logging.getLogger("oncofed.transport.server")

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # gRPC's own receive default, now also for send
DEFAULT_MAX_WORKERS = 16
DEFAULT_MAX_CONCURRENT_RPCS = 64  # beyond this, calls get RESOURCE_EXHAUSTED instead of queueing
DEFAULT_GRACE_SECONDS = 10.0


class TransportError(OncofedError):
    """A server could not be set up (bad limits, address in use)."""


@dataclass(frozen=True)
class Service:
    """A service to serve: its full name (for health and reflection) and how to register it,
    e.g. `Service("oncofed.v1.NodeAdmin", partial(add_NodeAdminServicer_to_server, impl))`."""

    name: str
    register: Callable[[grpc.Server], None]


class TransportServer:
    """A running server and its health state; a context manager that stops gracefully."""

    def __init__(self, server: grpc.Server, port: int, host: str,
                 health_servicer: health.HealthServicer, pool: futures.ThreadPoolExecutor,
                 service_names: Sequence[str]) -> None:
        self.server, self.port, self.host = server, port, host
        self.health = health_servicer
        self.service_names = tuple(service_names)
        self._pool = pool
        self._stopped = threading.Event()

    @property
    def target(self) -> str:
        """An address a local client can dial (wildcard binds are reached via localhost)."""
        host = "localhost" if self.host in ("0.0.0.0", "[::]", "::", "") else self.host  # noqa: S104
        return f"{host}:{self.port}"

    def set_serving(self, serving: bool) -> None:
        """Tell health checkers whether this server takes work (e.g. while a store migrates)."""
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *self.service_names):
            self.health.set(name, status)

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> bool:
        """Drain, then stop: health turns NOT_SERVING, new calls are refused, calls in flight get
        `grace` seconds to finish and are cancelled after that. Returns False when shutdown did
        not complete in time. Safe to call twice (e.g. from a signal handler and `finally`)."""
        if self._stopped.is_set():
            return True
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        done = self.server.stop(grace).wait(grace + 5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not done:
            log.warning("server on port %d did not stop within %.1f s", self.port, grace + 5.0)
        return done

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block the main thread while serving; True once the server has stopped."""
        return self.server.wait_for_termination(timeout)

    def __enter__(self) -> TransportServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def make_server(
    services: Sequence[Service], credentials: grpc.ServerCredentials, auth: AuthInterceptor, *,
    host: str = "127.0.0.1", port: int = 0, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_workers: int = DEFAULT_MAX_WORKERS,
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    options: Sequence[tuple[str, Any]] = (), start: bool = True,
) -> TransportServer:
    """Build (and by default start) a mutual-TLS server on host:port; port 0 picks a free port,
    reported as `.port`. `credentials` come from `oncofed.keys.tls.server_credentials`, which
    requires client certificates. The default host is loopback: listening wider is a choice."""
    if not 1 <= max_concurrent_rpcs <= 100_000 or not 1 <= max_workers <= 1024:
        raise TransportError("max_concurrent_rpcs and max_workers must be positive and bounded")
    if not 1024 <= max_message_bytes <= 1024 * 1024 * 1024:
        raise TransportError("max_message_bytes must be between 1 KiB and 1 GiB")
    if not isinstance(credentials, grpc.ServerCredentials):
        raise TransportError("servers are mutual-TLS only: pass tls.server_credentials(...)")
    pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="oncofed-rpc")
    server = grpc.server(
        pool,
        interceptors=[auth, *interceptors],  # authentication first, always
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),  # a port already in use is an error, not a shared port
            *options,
        ],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    names = [s.name for s in services]
    for service in services:
        service.register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{host}:{port}"
    try:
        bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        bound = 0
        log.debug("binding %s failed: %s", address, exc)
    if not bound:
        pool.shutdown(wait=False)
        raise TransportError(f"cannot listen on {address} (address in use or not local?)")
    result = TransportServer(server, bound, host, health_servicer, pool, names)
    result.set_serving(True)
    if start:
        server.start()
        log.info("serving %s on %s:%d (mutual TLS)", ", ".join(names) or "nothing", host, bound)
    return result
