"""Mutual-TLS gRPC end to end: real servers on 127.0.0.1 (free ports), real certificates from the
federation root in tmp directories, and the real NodeAdmin service with a trivial servicer."""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from oncofed.keys import tls, x509ca
from oncofed.keys.keystore import passphrase_unbox
from oncofed.transport import (
    AuthInterceptor,
    Service,
    TransportError,
    TransportServer,
    current_peer,
    make_channel,
    make_server,
)
from oncofed.v1 import admin_pb2, admin_pb2_grpc

PASS = b"integration root passphrase"
DESCRIBE = "/oncofed.v1.NodeAdmin/Describe"
STATUS = "/oncofed.v1.NodeAdmin/Status"
ALLOWED = {DESCRIBE: {"centre", "hub", "researcher"}, STATUS: {"centre", "hub"}}


@dataclass
class Member:
    cert_pem: bytes
    key_pem: bytes

    @property
    def info(self):
        return x509ca.cert_info(self.cert_pem)


@dataclass
class Pki:
    ca: x509ca.RootCA
    members: dict[str, Member] = field(default_factory=dict)

    def credentials(self, name: str) -> grpc.ChannelCredentials:
        m = self.members[name]
        return tls.channel_credentials(m.cert_pem, m.key_pem, self.ca.cert_pem)


def _issue(ca, directory, role, member_id):
    key_path, csr_path = x509ca.new_member_tls_key(directory, role, member_id)
    return Member(ca.sign_csr(csr_path.read_bytes(), role, member_id), tls.load_tls_key(key_path))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    base = tmp_path_factory.mktemp("pki")
    ca = x509ca.create_root(base / "ca", PASS)
    pki = Pki(ca)
    for name, role, member_id in [
        ("hub", "hub", "hub"), ("centre-a", "centre", "centre-a"),
        ("centre-b", "centre", "centre-b"), ("alice", "researcher", "alice"),
    ]:
        pki.members[name] = _issue(ca, base / name, role, member_id)
    # A second, valid certificate for centre-a that the registry does not list.
    pki.members["centre-a-other"] = _issue(ca, base / "other", "centre", "centre-a")
    foreign = x509ca.create_root(base / "foreign-ca", PASS)
    pki.members["foreign"] = _issue(foreign, base / "foreign", "centre", "centre-a")
    pki.members["expired"] = _forge_expired(base, pki.members["centre-a"])
    return pki


def _forge_expired(base, member):
    """Same key and identity as a good certificate, signed by the real root, but expired."""
    key_file = base / "ca" / x509ca.ROOT_KEY_FILE
    root_key = serialization.load_der_private_key(
        passphrase_unbox(key_file.read_bytes(), PASS, label="federation root key", path=key_file), None)
    root = x509.load_pem_x509_certificate((base / "ca" / x509ca.ROOT_CERT_FILE).read_bytes())
    good = x509.load_pem_x509_certificate(member.cert_pem)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(good.subject).issuer_name(root.subject)
               .public_key(good.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=30))
               .not_valid_after(now - dt.timedelta(days=1)))
    for ext in good.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    cert = builder.sign(root_key, hashes.SHA256())
    return Member(cert.public_bytes(serialization.Encoding.PEM), member.key_pem)


class Admin(admin_pb2_grpc.NodeAdminServicer):
    """Describe echoes the caller; Status can be made slow to test deadlines and draining."""

    def __init__(self):
        self.seen = []
        self.delay = 0.0
        self.started = threading.Event()

    def Describe(self, request, context):
        peer = current_peer()
        self.seen.append((peer.role, peer.member_id))
        return admin_pb2.DescribeResponse(node_id=f"{peer.role}/{peer.member_id}")

    def Status(self, request, context):
        self.started.set()
        end = time.monotonic() + self.delay
        while time.monotonic() < end and context.is_active():
            time.sleep(0.01)
        return admin_pb2.StatusResponse(node_id=current_peer().member_id, tumours=1)


@dataclass
class Running:
    server: TransportServer
    admin: Admin
    registry: dict
    revoked: set


@pytest.fixture
def serve(pki):
    """Start servers on free loopback ports; every one is stopped at teardown."""
    started: list[TransportServer] = []

    def start(*, lookup=True, revoked_provider=None, **kwargs) -> Running:
        admin = Admin()
        registry = {(m.info.role, m.info.member_id): m.info.fingerprint
                    for name, m in pki.members.items()
                    if name in ("hub", "centre-a", "centre-b", "alice")}
        revoked: set[int] = set()
        auth = AuthInterceptor(
            kwargs.pop("allowed", ALLOWED), revoked=revoked_provider or (lambda: revoked),
            lookup=(lambda role, mid: registry.get((role, mid))) if lookup else None)
        hub = pki.members["hub"]
        server = make_server(
            [Service("oncofed.v1.NodeAdmin",
                     functools.partial(admin_pb2_grpc.add_NodeAdminServicer_to_server, admin))],
            tls.server_credentials(hub.cert_pem, hub.key_pem, pki.ca.cert_pem), auth, **kwargs)
        started.append(server)
        return Running(server, admin, registry, revoked)

    yield start
    for server in started:
        server.stop(grace=0)


@pytest.fixture
def running(serve):
    return serve()


def describe(target, credentials, **channel_kwargs):
    with make_channel(target, credentials, **channel_kwargs) as channel:
        return admin_pb2_grpc.NodeAdminStub(channel).Describe(admin_pb2.DescribeRequest())


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_mutual_tls_call_reaches_the_handler_with_the_callers_identity(running, pki):
    reply = describe(running.server.target, pki.credentials("centre-a"))
    assert reply.node_id == "centre/centre-a"
    assert running.admin.seen == [("centre", "centre-a")]
    # The certificate also names 127.0.0.1, so dialling the address works too.
    reply = describe(f"127.0.0.1:{running.server.port}", pki.credentials("alice"))
    assert reply.node_id == "researcher/alice"


def test_plaintext_client_is_refused(running):
    with grpc.insecure_channel(running.server.target) as channel:
        stub = admin_pb2_grpc.NodeAdminStub(channel)
        code = code_of(lambda: stub.Describe(admin_pb2.DescribeRequest(), timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert running.admin.seen == []


@pytest.mark.parametrize("client", ["foreign", "expired", "no-certificate"])
def test_handshake_without_a_valid_client_certificate_is_refused(running, pki, client):
    if client == "no-certificate":
        credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    else:  # raw gRPC credentials: oncofed's own checks would refuse to build these
        m = pki.members[client]
        credentials = grpc.ssl_channel_credentials(pki.ca.cert_pem, m.key_pem, m.cert_pem)
    code = code_of(lambda: describe(running.server.target, credentials))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert running.admin.seen == []


def test_oncofed_credentials_refuse_expired_or_foreign_certificates_up_front(pki):
    for name in ("expired", "foreign"):
        with pytest.raises(tls.TlsConfigError):
            pki.credentials(name)


def test_failed_handshakes_are_logged_by_the_server_process(running, capfd):
    with grpc.insecure_channel(running.server.target) as channel:
        code_of(lambda: admin_pb2_grpc.NodeAdminStub(channel).Describe(
            admin_pb2.DescribeRequest(), timeout=5))
    deadline = time.monotonic() + 3
    err = ""
    while "Handshake failed" not in err and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capfd.readouterr().err
    assert "Handshake failed" in err


def test_revoked_certificate_is_denied_without_a_restart(running, pki):
    target = running.server.target
    assert describe(target, pki.credentials("centre-b")).node_id == "centre/centre-b"
    pki.ca.revoke(pki.members["centre-b"].info.serial, "key_compromise")
    running.revoked.update(x509ca.load_crl_serials(pki.ca.crl_pem(), pki.ca.cert_pem))
    with pytest.raises(grpc.RpcError) as info:
        describe(target, pki.credentials("centre-b"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in info.value.details()
    assert describe(target, pki.credentials("centre-a")).node_id == "centre/centre-a"


def test_researcher_may_not_call_a_centre_only_method(running, pki):
    with make_channel(running.server.target, pki.credentials("alice")) as channel:
        stub = admin_pb2_grpc.NodeAdminStub(channel)
        assert stub.Describe(admin_pb2.DescribeRequest()).node_id == "researcher/alice"
        with pytest.raises(grpc.RpcError) as info:
            stub.Status(admin_pb2.StatusRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == "a researcher may not call this method"


def test_methods_not_in_the_allow_list_are_denied(serve, pki):
    running = serve(allowed={DESCRIBE: {"centre"}})
    with make_channel(running.server.target, pki.credentials("hub")) as channel:
        stub = admin_pb2_grpc.NodeAdminStub(channel)
        assert code_of(lambda: stub.Status(admin_pb2.StatusRequest())) == (
            grpc.StatusCode.PERMISSION_DENIED)
        unknown = channel.unary_unary("/oncofed.v1.NodeAdmin/DropTables")
        assert code_of(lambda: unknown(b"")) == grpc.StatusCode.PERMISSION_DENIED


def test_certificate_not_in_the_registry_is_unauthenticated(running, pki):
    code = code_of(lambda: describe(running.server.target, pki.credentials("centre-a-other")))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    del running.registry[("researcher", "alice")]
    code = code_of(lambda: describe(running.server.target, pki.credentials("alice")))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert running.admin.seen == []


def test_without_a_registry_any_certificate_of_the_root_is_admitted(serve, pki):
    running = serve(lookup=False)  # the hub's enrolment phase
    assert describe(running.server.target, pki.credentials("centre-a-other")).node_id == (
        "centre/centre-a")


def test_a_failing_credential_provider_fails_closed(serve, pki):
    def broken():
        raise OSError("CRL file unreadable")
    running = serve(revoked_provider=broken)
    with pytest.raises(grpc.RpcError) as info:
        describe(running.server.target, pki.credentials("centre-a"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "CRL" not in info.value.details()  # no internals in the public message


def test_oversized_messages_are_resource_exhausted(serve, pki):
    running = serve(max_message_bytes=64 * 1024)
    big = b"\x7a" + b"\x80\x80\x08" + bytes(128 * 1024)  # unknown field 15 carrying 128 KiB
    with make_channel(running.server.target, pki.credentials("centre-a")) as channel:
        raw = channel.unary_unary(DESCRIBE)
        assert code_of(lambda: raw(big)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    with make_channel(running.server.target, pki.credentials("centre-a"),
                      max_message_bytes=16 * 1024) as channel:  # the client's own send cap
        raw = channel.unary_unary(DESCRIBE)
        assert code_of(lambda: raw(big)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert running.admin.seen == []


def test_calls_without_a_deadline_get_the_default_one(running, pki):
    running.admin.delay = 5.0
    with make_channel(running.server.target, pki.credentials("centre-a"),
                      default_timeout=0.3) as channel:
        stub = admin_pb2_grpc.NodeAdminStub(channel)
        t0 = time.monotonic()
        assert code_of(lambda: stub.Status(admin_pb2.StatusRequest())) == (
            grpc.StatusCode.DEADLINE_EXCEEDED)
        assert time.monotonic() - t0 < 2.0
        running.admin.delay = 0.2  # an explicit, longer timeout is kept
        assert stub.Status(admin_pb2.StatusRequest(), timeout=5).tumours == 1


def test_excess_concurrent_calls_are_resource_exhausted(serve, pki):
    running = serve(max_concurrent_rpcs=1)
    running.admin.delay = 1.0
    with make_channel(running.server.target, pki.credentials("centre-a")) as channel:
        stub = admin_pb2_grpc.NodeAdminStub(channel)
        slow = stub.Status.future(admin_pb2.StatusRequest(), timeout=5)
        assert running.admin.started.wait(5)
        assert code_of(lambda: stub.Describe(admin_pb2.DescribeRequest())) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert slow.result().tumours == 1


def test_health_is_serving_and_reflection_lists_the_service(running, pki):
    with make_channel(running.server.target, pki.credentials("alice")) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "oncofed.v1.NodeAdmin"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service="oncofed.v1.NodeAdmin"))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        reflect = reflection_pb2_grpc.ServerReflectionStub(ch)
        [reply] = list(reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in reply.list_services_response.service}
    assert {"oncofed.v1.NodeAdmin", "grpc.health.v1.Health"} <= names


def test_graceful_stop_lets_an_in_flight_call_finish(serve, pki):
    running = serve()
    running.admin.delay = 0.5
    with make_channel(running.server.target, pki.credentials("centre-a")) as channel:
        stub = admin_pb2_grpc.NodeAdminStub(channel)
        in_flight = stub.Status.future(admin_pb2.StatusRequest(), timeout=10)
        assert running.admin.started.wait(5)
        stopped = []
        stopper = threading.Thread(target=lambda: stopped.append(running.server.stop(grace=5)))
        stopper.start()
        assert in_flight.result().tumours == 1
        stopper.join(10)
        assert stopped == [True]
        check = health_pb2.HealthCheckRequest(service="oncofed.v1.NodeAdmin")
        status = running.server.health.Check(check, None).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert code_of(lambda: stub.Describe(admin_pb2.DescribeRequest(), timeout=2)) == (
            grpc.StatusCode.UNAVAILABLE)


def test_a_port_in_use_is_an_error_not_a_shared_port(serve, pki):
    first = serve()
    with pytest.raises(TransportError, match="cannot listen"):
        serve(port=first.server.port)
