"""The node's local admin API as a real server: on the node's Unix socket and with mutual TLS on
127.0.0.1 (port 0), with health and reflection; and `oncofed node serve` as a real process that
drains and exits 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from conftest import valid_row, write_csv
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from node_fed_helpers import make_fed

from oncofed import __version__
from oncofed.errors import NodeError
from oncofed.keys import tls
from oncofed.node.node import init_node, open_node
from oncofed.node.service import admin_channel, resolve_endpoint, start_admin_server
from oncofed.node.service.errors import public_error
from oncofed.node.verify import RequestRefused
from oncofed.v1 import admin_pb2, admin_pb2_grpc

ROWS = [valid_row(1), valid_row(2, sex="1", topography="C61.9"), valid_row(3),
        valid_row(4, patient_id="PAT-000003")]  # 4 tumours of 3 patients


@pytest.fixture
def node(node_dir, tmp_path):
    n = open_node(node_dir)
    n.ingest(write_csv(tmp_path / "registry.csv", ROWS))
    yield n
    n.close()


@pytest.fixture
def servers():
    started = []
    yield started.append
    for s in started:
        s.stop(grace=1)


def _health(channel, service=""):
    return health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5).status


def _services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=5))
    return {s.name for s in reply.list_services_response.service}


def test_unix_socket_admin_api_describes_and_reports_without_data(node, servers):
    server = start_admin_server(node)  # no [tls]: falls back to the node's socket
    servers(server)
    assert server.endpoint.kind == "unix" and server.address == f"unix:{node.paths.root.resolve()}/admin.sock"
    assert oct(server.endpoint.socket_path.stat().st_mode & 0o777) == "0o600"
    with admin_channel(server.endpoint) as ch:
        stub = admin_pb2_grpc.NodeAdminStub(ch)
        described = stub.Describe(admin_pb2.DescribeRequest(), timeout=5)
        status = stub.Status(admin_pb2.StatusRequest(), timeout=5)
        assert _health(ch) == _health(ch, "oncofed.v1.NodeAdmin") == health_pb2.HealthCheckResponse.SERVING
        assert {"oncofed.v1.NodeAdmin", "grpc.health.v1.Health"} <= _services(ch)
    d = node.dictionary
    assert (described.node_id, described.software_version) == ("centre-test", __version__)
    assert (described.dictionary.name, described.dictionary.version) == (d.name, d.version)
    assert [f.name for f in described.fields] == list(d.fields)
    sex = next(f for f in described.fields if f.name == "sex")
    assert {c.value: c.label for c in sex.codes} == d.fields["sex"].codes
    age = next(f for f in described.fields if f.name == "age_at_incidence")
    assert age.derived and list(age.bins) == [str(b) for b in d.fields["age_at_incidence"].bins]
    assert (status.node_id, status.tumours, status.patients) == ("centre-test", 4, 3)
    assert status.last_ingest.rows == 4 and status.last_ingest.file_name == "registry.csv"
    assert status.store_bytes > 0 and status.schema_version >= 1
    # never data: no raw identifier and no stored pseudonym appears in either answer
    wire = described.SerializeToString() + status.SerializeToString()
    pseudonyms = [r[0] for r in node.conn.execute("SELECT tumour_id FROM tumours UNION "
                                                  "SELECT patient_pid FROM tumours")]
    assert b"PAT-" not in wire and b"TUM-" not in wire
    assert not any(str(p).encode() in wire for p in pseudonyms)


def test_a_failing_handler_returns_a_catalogued_status_and_no_internals(node, servers, monkeypatch):
    server = start_admin_server(node)
    servers(server)

    def broken():
        raise RuntimeError("disk at /secret/path exploded")

    monkeypatch.setattr(node, "status", broken)
    with admin_channel(server.endpoint) as ch, pytest.raises(grpc.RpcError) as info:
        admin_pb2_grpc.NodeAdminStub(ch).Status(admin_pb2.StatusRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "incident" in info.value.details() and "secret" not in info.value.details()
    refused = public_error(RequestRefused("field_not_allowed", "grade is not allowed"))
    assert (refused.code, refused.message) == (grpc.StatusCode.PERMISSION_DENIED, "declined: POLICY")


def test_endpoint_rules_and_a_second_server_on_one_socket(node, servers):
    tcp = resolve_endpoint(node, "127.0.0.1:7443")
    assert tcp.kind == "unix" and "no [tls]" in tcp.note  # never plaintext TCP
    custom = resolve_endpoint(node, "unix:ctl.sock")
    assert custom.socket_path == node.paths.root.resolve() / "ctl.sock"
    with pytest.raises(NodeError, match="host:port or unix"):
        resolve_endpoint(node, "localhost")
    servers(start_admin_server(node))
    with pytest.raises(NodeError, match="already listening"):
        start_admin_server(node)


def test_mutual_tls_admin_api_admits_by_role_and_identity(tmp_path, servers):
    fed = make_fed(tmp_path / "fed")
    root = init_node(tmp_path / "node", "centre-a").root
    (root / "root.pem").write_bytes(fed.root_pem)
    with (root / "node.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'\n[tls]\ncert = "{fed.cert_path("centre", "centre-a")}"\n'
                 f'key = "{fed.tls_keys["centre-a"]}"\nroot = "root.pem"\n')
    with open_node(root) as n:
        fed.attach(n.paths.store, "centre-a").close()
        server = start_admin_server(n, listen="127.0.0.1:0")
        servers(server)
        assert server.endpoint.kind == "tls" and server.address.startswith("127.0.0.1:")

        def creds(role, member):
            key = tls.load_tls_key(fed.tls_keys[member])
            return tls.channel_credentials(fed.cert_path(role, member).read_bytes(), key, fed.root_pem)

        with admin_channel(server.address, creds("centre", "centre-a"), server_name="localhost") as ch:
            stub = admin_pb2_grpc.NodeAdminStub(ch)
            assert stub.Status(admin_pb2.StatusRequest(), timeout=5).node_id == "centre-a"
            assert _health(ch) == health_pb2.HealthCheckResponse.SERVING
            assert "oncofed.v1.NodeAdmin" in _services(ch)
        for role, member in (("researcher", "res-1"), ("centre", "centre-b")):
            with admin_channel(server.address, creds(role, member), server_name="localhost") as ch:
                stub = admin_pb2_grpc.NodeAdminStub(ch)
                assert stub.Describe(admin_pb2.DescribeRequest(), timeout=5).node_id == "centre-a"
                with pytest.raises(grpc.RpcError) as info:
                    stub.Status(admin_pb2.StatusRequest(), timeout=5)
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _wait_serving(address, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            with admin_channel(address) as ch:
                if _health(ch) == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            time.sleep(0.1)
    raise AssertionError("node serve never became SERVING")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_node_serve_runs_until_a_signal_then_drains_and_exits_0(node, signum):
    sock = node.paths.root.resolve() / "admin.sock"
    proc = subprocess.Popen([sys.executable, "-m", "oncofed", "node", "serve", "-n", str(node.paths.root),
                             "--grace", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _wait_serving(f"unix:{sock}", proc)
        with admin_channel(f"unix:{sock}") as ch:
            assert admin_pb2_grpc.NodeAdminStub(ch).Status(admin_pb2.StatusRequest(), timeout=5).tumours == 4
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "serving oncofed.v1.NodeAdmin on unix:" in out and out.rstrip().endswith("stopped")
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # nothing of its process group is left
        assert not sock.exists()
        log = (node.paths.logs / "node.log").read_text()
        assert "draining" in log and "admin API stopped (drained)" in log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
