"""The node's gRPC services. Today: the local admin API (NodeAdmin, health, reflection).

    server = start_admin_server(node)            # Unix socket or mutual TLS, see server.py
    with admin_channel(server.endpoint) as ch:   # a client on the same machine
        NodeAdminStub(ch).Status(StatusRequest())
    server.stop(grace=10)                        # drains: NOT_SERVING, in-flight calls finish
"""

from oncofed.node.service.admin import NodeAdminService, describe_response, status_response
from oncofed.node.service.errors import CATALOGUE, AdminDenied, PublicError, handled, public_error
from oncofed.node.service.server import (
    AdminEndpoint,
    AdminServer,
    admin_channel,
    resolve_endpoint,
    start_admin_server,
)

__all__ = [
    "CATALOGUE",
    "AdminDenied",
    "AdminEndpoint",
    "AdminServer",
    "NodeAdminService",
    "PublicError",
    "admin_channel",
    "describe_response",
    "handled",
    "public_error",
    "resolve_endpoint",
    "start_admin_server",
    "status_response",
]
