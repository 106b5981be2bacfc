"""Where and how the local admin API listens (docs/admin-guide.md, "The admin API").

Two transports, never plaintext TCP:

- **Mutual TLS** on node.toml `[admin] listen` (host:port, default 127.0.0.1:7443) when the node
  has its federation TLS files (`[tls] cert/key/root`): callers present a certificate from the
  federation root, checked against the registry and revocation list the node holds.
- **A Unix domain socket** in the node directory (`admin.sock`) otherwise, or whenever `listen`
  is `unix:PATH` (relative to the node directory). Access control is the file system: the node
  directory is 0700 and the socket 0600, so only the node's OS user (and root) can connect.

Loopback TCP without TLS would let every local user and every process a browser can be tricked
into driving read the centre's volumes; it is not offered.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from oncofed.errors import NodeError
from oncofed.keys import tls
from oncofed.keys.registry import Registry, RevocationList
from oncofed.node.audit import open_audit
from oncofed.node.keyfiles import ADMIN_SOCKET_NAME, tls_paths
from oncofed.node.service.admin import ALLOWED_ROLES, SERVICE_NAME, NodeAdminService
from oncofed.node.store import trust_state
from oncofed.node.trust import NodeTrust
from oncofed.transport import AuthInterceptor, Service, TransportServer, make_channel, make_server
from oncofed.v1 import admin_pb2_grpc

if TYPE_CHECKING:
    from oncofed.node.node import Node

log = logging.getLogger("oncofed.node.service")

MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
MAX_WORKERS = 8
MAX_CONCURRENT_RPCS = 32
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class AdminEndpoint:
    """The address the admin API listens on, and why that transport."""

    kind: str                 # "unix" or "tls"
    address: str              # what a client dials: "unix:/abs/admin.sock" or "host:port"
    socket_path: Path | None
    host: str
    port: int
    note: str


def resolve_endpoint(node: Node, listen: str | None = None) -> AdminEndpoint:
    """Pick the transport from node.toml (or `listen`), falling back to the node's Unix socket
    when a TCP address is asked for but the node has no TLS certificate."""
    root = Path(node.paths.root).resolve()
    listen = (listen or node.config.admin_listen).strip()
    if listen.startswith("unix:"):
        path = Path(listen.removeprefix("unix:")).expanduser()
        path = path if path.is_absolute() else root / path
        return _unix(path, "Unix socket; access is the file system's")
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise NodeError(f"[admin] listen {listen!r} must be host:port or unix:PATH")
    if tls_paths(node.config, root) is None:
        return _unix(root / ADMIN_SOCKET_NAME,
                     f"no [tls] certificate in node.toml, so not {listen}: Unix socket instead")
    return AdminEndpoint("tls", listen, None, host.strip("[]"), int(port), "mutual TLS")


def _unix(path: Path, note: str) -> AdminEndpoint:
    if len(str(path)) > MAX_SOCKET_PATH:
        raise NodeError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes; set "
                        "[admin] listen = \"unix:/short/path.sock\"")
    return AdminEndpoint("unix", f"unix:{path}", path, "", 0, note)


def admin_channel(endpoint: AdminEndpoint | str,
                  credentials: grpc.ChannelCredentials | None = None, **kwargs: Any) -> grpc.Channel:
    """A client channel to the admin API: local credentials for a Unix socket, the caller's
    federation TLS credentials otherwise."""
    address = endpoint.address if isinstance(endpoint, AdminEndpoint) else endpoint
    if address.startswith("unix:"):
        credentials = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
    elif credentials is None:
        raise ValueError("a TCP admin address needs mutual-TLS channel credentials")
    return make_channel(address, credentials, **kwargs)


@dataclass
class AdminServer:
    """A running admin API; `stop` drains it (health NOT_SERVING, calls finish) and tidies up."""

    endpoint: AdminEndpoint
    transport: TransportServer
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        if self.endpoint.kind == "tls":
            return f"{self.endpoint.host}:{self.transport.port}"
        return self.endpoint.address

    def stop(self, grace: float = 10.0) -> bool:
        done = self.transport.stop(grace)
        while self.closers:
            self.closers.pop()()
        path = self.endpoint.socket_path
        if path is not None and path.is_socket():
            path.unlink(missing_ok=True)
        return done

    def __enter__(self) -> AdminServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _TrustView:
    """Registry fingerprints, revoked serials and freshness for AuthInterceptor and the servicer,
    read through the node's own trust state (its own connection). The verified documents are
    kept until the store holds a newer version: each call costs one indexed read, and a new
    revocation list takes effect on the next call (no time-based cache to wait out)."""

    def __init__(self, store: Path, node_id: str) -> None:
        self.trust = NodeTrust.open(store, node_id)
        self._lock = threading.Lock()  # one sqlite3 connection, many RPC threads
        self._key: tuple[Any, ...] | None = None
        self._docs: tuple[Registry | None, RevocationList | None] = (None, None)

    def _current(self) -> tuple[Registry | None, RevocationList | None]:
        with self._lock:
            key = tuple(trust_state.newest_version(self.trust.conn, k) for k in ("registry", "revocations"))
            if key != self._key:
                self._docs, self._key = (self.trust.registry(), self.trust.revocations()), key
            return self._docs

    def lookup(self, role: str, member_id: str) -> str | None:
        registry = self._current()[0]
        member = registry.member(member_id) if registry else None
        return member.cert_fingerprint if member and member.role == role else None

    def revoked(self) -> frozenset[int]:
        rl = self._current()[1]
        return frozenset(k.cert_serial for k in rl.keys) if rl else frozenset()

    def ready(self) -> bool:
        """Whether registry and revocation list are both held and fresh now (the node answers)."""
        registry, revocations = self._current()
        at = int(time.time())
        return (registry is not None and revocations is not None
                and not registry.is_stale(at) and not revocations.is_stale(at))


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _serve_unix(service: Service, path: Path) -> TransportServer:
    """What make_server does, on a Unix socket with local credentials instead of mutual TLS."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise NodeError(f"{path} exists and is not a socket; refusing to replace it")
        if _listening(path):
            raise NodeError(f"another server is already listening on {path}")
        path.unlink()  # left behind by a server that was killed
    pool = futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="oncofed-admin")
    server = grpc.server(pool, maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS, options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    service.register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([service.name, health.SERVICE_NAME, reflection.SERVICE_NAME],
                                        server)
    old_umask = os.umask(0o177)  # the socket is created 0600
    try:
        bound = server.add_secure_port(f"unix:{path}", grpc.local_server_credentials(
            grpc.LocalConnectionType.UDS))
    finally:
        os.umask(old_umask)
    if bound:
        os.chmod(path, 0o600)
    if not bound:
        pool.shutdown(wait=False)
        raise NodeError(f"cannot listen on unix:{path}")
    result = TransportServer(server, 0, f"unix:{path}", health_servicer, pool, [service.name])
    result.set_serving(True)
    server.start()
    return result


def start_admin_server(node: Node, *, listen: str | None = None) -> AdminServer:
    """Start the NodeAdmin API (with health and reflection) for an opened Node."""
    endpoint = resolve_endpoint(node, listen)
    audit = open_audit(node)  # its own connection; signs the head every reply carries
    head = audit.signed_head if audit.signer is not None else None
    closers: list[Callable[[], None]] = [audit.close]
    try:
        if endpoint.kind == "unix":
            assert endpoint.socket_path is not None
            impl = NodeAdminService(node, mutual_tls=False, audit_head=head)
            transport = _serve_unix(_service(impl), endpoint.socket_path)
        else:
            view = _TrustView(node.paths.store, node.config.node_id)
            closers.append(view.trust.close)
            service = _service(NodeAdminService(node, mutual_tls=True, trust_ready=view.ready,
                                                 audit_head=head))
            transport = _serve_tls(node, service, endpoint, view)
    except BaseException:
        for close in closers:
            close()
        raise
    log.info("serving %s on %s (%s)", SERVICE_NAME, endpoint.address, endpoint.note)
    return AdminServer(endpoint, transport, closers)


def _service(impl: NodeAdminService) -> Service:
    return Service(SERVICE_NAME, functools.partial(admin_pb2_grpc.add_NodeAdminServicer_to_server, impl))


def _serve_tls(node: Node, service: Service, endpoint: AdminEndpoint,
               view: _TrustView) -> TransportServer:
    paths = tls_paths(node.config, Path(node.paths.root))
    assert paths is not None
    files = tls.load_tls_files(*paths, root_fingerprint=view.trust.root_fingerprint())
    info = tls.cert_info(files.cert_pem)
    if (info.role, info.member_id) != ("centre", node.config.node_id):
        raise NodeError(f"[tls] cert is for {info.role}/{info.member_id}, not centre/{node.config.node_id}")
    has_registry = view.trust.registry() is not None
    auth = AuthInterceptor(ALLOWED_ROLES, revoked=view.revoked if has_registry else None,
                           lookup=view.lookup if has_registry else None)
    creds = tls.server_credentials(files.cert_pem, files.key_pem, files.root_cert_pem)
    return make_server([service], creds, auth, host=endpoint.host, port=endpoint.port,
                       max_workers=MAX_WORKERS, max_concurrent_rpcs=MAX_CONCURRENT_RPCS)
