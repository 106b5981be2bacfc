"""oncofed's gRPC transport: mutual-TLS servers and channels with authentication, authorisation,
limits, deadlines, health and reflection built in (DESIGN §2, §7).

    creds  = tls.server_credentials(cert_pem, key_pem, root_cert_pem)
    auth   = AuthInterceptor({"/oncofed.v1.NodeAdmin/Describe": {"hub"}},
                             revoked=crl_holder.serials, lookup=registry.tls_fingerprint)
    server = make_server([Service(name, register)], creds, auth, port=0)
    ...    # handlers call current_peer() for the caller's (role, member_id)
    server.stop(grace=10)

    channel = make_channel(f"localhost:{port}", tls.channel_credentials(cert, key, root))
"""

from oncofed.transport.channel import DefaultDeadlineInterceptor, make_channel
from oncofed.transport.interceptor import (
    OPERATIONS_METHODS,
    AuthInterceptor,
    Peer,
    current_peer,
)
from oncofed.transport.server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Service,
    TransportError,
    TransportServer,
    make_server,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "OPERATIONS_METHODS",
    "AuthInterceptor",
    "DefaultDeadlineInterceptor",
    "Peer",
    "Service",
    "TransportError",
    "TransportServer",
    "current_peer",
    "make_channel",
    "make_server",
]
