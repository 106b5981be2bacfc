"""Starting and stopping the hub: its store, its servicer, a mutual-TLS server, its trust files.

The hub holds no federation root: it serves the registry and revocation list the authority
signed, re-reading them when the operator replaces the files (verified against the pinned root
each time, so a tampered file is refused, not served), and uses them to admit callers (registry
fingerprints, revoked serials) and to verify accepts.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from oncofed.errors import OncofedError
from oncofed.federation.hub.config import HubConfig
from oncofed.federation.hub.service import ALLOWED_ROLES, SERVICE_NAME, HubService
from oncofed.federation.hub.store import HubStore
from oncofed.keys import tls
from oncofed.keys.member import load_member_credentials
from oncofed.keys.registry import Registry, RevocationList, verify_registry, verify_revocations
from oncofed.transport.interceptor import AuthInterceptor
from oncofed.transport.server import Service, TransportServer, make_server
from oncofed.v1 import federation_pb2_grpc as fgrpc

log = logging.getLogger("oncofed.hub")
#: Every connected centre holds one long poll open: the pool must outnumber the centres, or polls
#: queue behind each other for up to their wait (measured: 100 centres on 64 workers took 25 s).
MAX_WORKERS = 512
MAX_CONCURRENT_RPCS = 2048


class HubError(OncofedError):
    """The hub cannot start (missing or foreign trust files, credentials, address)."""


class TrustFiles:
    """The authority's documents on disk, verified and cached until a file changes."""

    def __init__(self, registry: Path, revocations: Path, root_cert_pem: bytes, root_fingerprint: str) -> None:
        self.paths = (registry, revocations)
        self.root_cert_pem, self.root_fingerprint = root_cert_pem, root_fingerprint
        self._lock = threading.Lock()
        self._stamp: tuple[float, float] | None = None
        self._docs: tuple[Registry, RevocationList, bytes, bytes] | None = None

    def current(self) -> tuple[Registry, RevocationList, bytes, bytes]:
        with self._lock:
            try:
                stamp = (os.stat(self.paths[0]).st_mtime, os.stat(self.paths[1]).st_mtime)
            except OSError as exc:
                raise HubError(f"cannot read the trust files: {exc}") from None
            if stamp != self._stamp or self._docs is None:
                reg_bytes, rl_bytes = self.paths[0].read_bytes(), self.paths[1].read_bytes()
                try:
                    registry = verify_registry(self.root_cert_pem, self.root_fingerprint, reg_bytes)
                    revocations = verify_revocations(self.root_cert_pem, self.root_fingerprint, rl_bytes)
                except Exception as exc:  # InvalidMessage, TrustError: a file the root did not sign
                    raise HubError("the trust files are not signed by the pinned root "
                                   f"({type(exc).__name__})") from None
                self._docs, self._stamp = (registry, revocations, reg_bytes, rl_bytes), stamp
                log.info("trust: registry v%d, revocations v%d", registry.version, revocations.version)
            return self._docs

    def for_service(self) -> tuple[Registry, bytes, bytes]:
        registry, _, reg, rl = self.current()
        return registry, reg, rl

    def lookup(self, role: str, member_id: str) -> str | None:
        member = self.current()[0].member(member_id)
        return member.cert_fingerprint if member and member.role == role else None

    def revoked(self) -> frozenset[int]:
        return frozenset(k.cert_serial for k in self.current()[1].keys)


@dataclass
class HubServer:
    """A running hub; a context manager that stops it gracefully."""

    transport: TransportServer
    service: HubService
    store: HubStore

    @property
    def target(self) -> str:
        return self.transport.target

    @property
    def port(self) -> int:
        return self.transport.port

    def stop(self, grace: float = 5.0) -> None:
        """Wake every long poll first (they return at once), let calls in flight finish, then
        close the store."""
        self.service.close()
        self.transport.stop(grace)
        self.store.close()

    def __enter__(self) -> HubServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_hub(config: HubConfig, *, passphrase: bytes | None = None) -> HubServer:
    """Open the store, load credentials and trust files, and serve the Hub API."""
    creds = load_member_credentials(identity_key=config.identity_key, tls_key=config.tls_key, cert=config.cert,
                                    root_cert=config.root_cert, root_fingerprint=config.root_fingerprint,
                                    passphrase=passphrase)
    if creds.identity.public.role != "hub":
        raise HubError(f"the credentials are of a {creds.identity.public.role}, not a hub")
    trust = TrustFiles(config.registry, config.revocations, creds.tls.root_cert_pem, config.root_fingerprint)
    trust.current()                                 # refuse to start on missing or foreign files
    store = HubStore(config.database)
    service = HubService(store, trust.for_service, prepare_seconds=config.prepare_seconds,
                         answer_seconds=config.answer_seconds)
    auth = AuthInterceptor(ALLOWED_ROLES, revoked=trust.revoked, lookup=trust.lookup)
    server_creds = tls.server_credentials(creds.tls.cert_pem, creds.tls.key_pem, creds.tls.root_cert_pem)
    try:
        transport = make_server([Service(SERVICE_NAME, functools.partial(fgrpc.add_HubServicer_to_server, service))],
                                server_creds, auth, host=config.host, port=config.port,
                                max_workers=MAX_WORKERS, max_concurrent_rpcs=MAX_CONCURRENT_RPCS)
    except BaseException:
        service.close()
        store.close()
        raise
    return HubServer(transport, service, store)
