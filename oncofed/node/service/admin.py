"""The NodeAdmin servicer: what this node is (Describe) and how its store is doing (Status).

Describe returns the node id, software version, dictionary reference and every FieldSpec — the
dictionary, never data — so it is open to every federation role. Status reveals this centre's
volumes (tumour and patient counts), which secure aggregation exists to hide from the hub and
researchers: over mutual TLS only this centre's own certificate may call it; over the Unix
socket, whoever can open the 0700 node directory (the centre admin) may.

While the node's registry or revocation list is missing or stale the node answers no one else,
as its query verifier does: every other member gets the coarse `declined: BUSY` (UNAVAILABLE),
since a stale registry may still list a member the authority has since removed.

Every reply carries the node's signed audit head (`audit_head`; docs/audit.md), and AuditHead
returns it alone, so every caller holds evidence of how long the node's audit log was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from oncofed import __version__
from oncofed.dictionary import Dictionary, Field
from oncofed.node.service.errors import AdminDenied, handled
from oncofed.query.refusals import Refusal
from oncofed.transport import current_peer
from oncofed.v1 import admin_pb2, admin_pb2_grpc, common_pb2

if TYPE_CHECKING:
    from oncofed.node.node import Node

SERVICE_NAME = "oncofed.v1.NodeAdmin"
DESCRIBE = f"/{SERVICE_NAME}/Describe"
STATUS = f"/{SERVICE_NAME}/Status"
AUDIT_HEAD = f"/{SERVICE_NAME}/AuditHead"
#: Who may call what over mutual TLS (the handler narrows Status to this centre itself).
ALLOWED_ROLES: dict[str, set[str]] = {DESCRIBE: {"centre", "hub", "researcher"}, STATUS: {"centre"},
                                      AUDIT_HEAD: {"centre", "hub", "researcher"}}


def dictionary_ref(d: Dictionary) -> common_pb2.DictionaryRef:
    """The reference queries carry and nodes compare."""
    ext = f"{d.extension_name} {d.extension_version}".strip()
    return common_pb2.DictionaryRef(name=d.name, version=d.version,
                                    extension_sha256=d.extension_sha256, extension_name=ext)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def field_spec(f: Field) -> common_pb2.FieldSpec:
    """A dictionary field as the contract describes it (no data: codes, range, bins)."""
    return common_pb2.FieldSpec(
        name=f.name, type=f.type, description=f.description, unit=f.unit,
        codes=[common_pb2.Code(value=str(v), label=str(label)) for v, label in f.codes.items()],
        minimum=_text(f.minimum), maximum=_text(f.maximum), code_set=f.code_set,
        derived=not f.input, extension=f.extension, bins=[str(b) for b in f.bins])


def describe_response(node_id: str, d: Dictionary) -> admin_pb2.DescribeResponse:
    return admin_pb2.DescribeResponse(
        node_id=node_id, software_version=__version__, dictionary=dictionary_ref(d),
        fields=[field_spec(f) for f in d.fields.values()])


def status_response(status: Mapping[str, Any], d: Dictionary) -> admin_pb2.StatusResponse:
    """Node.status() as the contract's StatusResponse; schema_version counts the migrations
    applied over all store components."""
    resp = admin_pb2.StatusResponse(
        node_id=status["node_id"], dictionary=dictionary_ref(d), tumours=int(status["tumours"]),
        patients=int(status["patients"]), store_bytes=int(status["store_bytes"]),
        schema_version=sum(int(v) for v in status.get("schema_versions", {}).values()))
    last = status.get("last_ingest")
    if last:
        resp.last_ingest.CopyFrom(admin_pb2.IngestSummary(
            ingest_id=int(last["ingest_id"]), file_name=str(last["file_name"]),
            file_sha256=str(last["file_sha256"]), rows=int(last["rows"]),
            inserted=int(last["inserted"]), updated=int(last["updated"]),
            unchanged=int(last["unchanged"]), finished_at=_text(last["finished_at"])))
    return resp


class NodeAdminService(admin_pb2_grpc.NodeAdminServicer):
    """Thin handlers over an opened Node. `mutual_tls` says whether callers arrive through
    AuthInterceptor (then `current_peer()` names them) or over the node's Unix socket.
    `audit_head` signs the node's current audit head (AuditLog.signed_head); None: no identity key,
    replies carry no head."""

    def __init__(self, node: Node, *, mutual_tls: bool,
                 trust_ready: Callable[[], bool] | None = None,
                 audit_head: Callable[[], bytes] | None = None) -> None:
        if mutual_tls and trust_ready is None:
            raise ValueError("a mutual-TLS admin API needs the node's trust state (trust_ready)")
        self.node, self.mutual_tls, self.trust_ready = node, mutual_tls, trust_ready
        self._audit_head = audit_head
        self.node_id: str = node.config.node_id
        self._describe = describe_response(self.node_id, node.dictionary)
        self._lock = threading.Lock()  # one sqlite3 connection, many RPC threads

    @handled
    def Describe(self, request: admin_pb2.DescribeRequest,
                 context: grpc.ServicerContext) -> admin_pb2.DescribeResponse:
        self._require_fresh_trust()
        resp = admin_pb2.DescribeResponse()
        resp.CopyFrom(self._describe)
        resp.audit_head = self._head()
        return resp

    @handled
    def Status(self, request: admin_pb2.StatusRequest,
               context: grpc.ServicerContext) -> admin_pb2.StatusResponse:
        self._require_this_centre()
        with self._lock:
            status = self.node.status()
        resp = status_response(status, self.node.dictionary)
        resp.audit_head = self._head()
        return resp

    @handled
    def AuditHead(self, request: admin_pb2.AuditHeadRequest,
                  context: grpc.ServicerContext) -> admin_pb2.AuditHeadResponse:
        self._require_fresh_trust()
        return admin_pb2.AuditHeadResponse(audit_head=self._head())

    def _head(self) -> bytes:
        """The signed head at the moment of the reply (empty without an identity key)."""
        return self._audit_head() if self._audit_head is not None else b""

    def _require_fresh_trust(self) -> None:
        """Members other than this centre are served only while the trust state is fresh."""
        if not self.mutual_tls or self._is_this_centre():
            return
        assert self.trust_ready is not None
        if not self.trust_ready():
            raise Refusal("registry_stale", "registry or revocation list missing or stale")

    def _is_this_centre(self) -> bool:
        peer = current_peer()
        return peer.role == "centre" and peer.member_id == self.node_id

    def _require_this_centre(self) -> None:
        if not self.mutual_tls:
            return  # the Unix socket: access is the node directory's permissions
        if not self._is_this_centre():
            peer = current_peer()
            raise AdminDenied(f"{peer.role}/{peer.member_id} may not read {self.node_id}'s status")
