"""Client channels with oncofed's transport policy: mutual TLS, bounded message sizes and a
deadline on every call.

Why a default deadline: a call without one waits forever on a hub that accepted the connection
and then stalled, and a node that waits forever stops pulling work. Callers that know better pass
`timeout=` per call; everything else gets `default_timeout`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import grpc

from oncofed.transport.server import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_TIMEOUT_SECONDS = 30.0


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _Details(_CallDetails, grpc.ClientCallDetails):
    """grpc.ClientCallDetails is an abstract interface; a named tuple is the usual concrete one."""


class DefaultDeadlineInterceptor(
    grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor,
):
    """Give every call that has no deadline the default one; explicit timeouts are kept."""

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError("the default deadline must be positive")
        self.timeout = timeout

    def _with_deadline(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        if details.timeout is not None:
            return details
        return _Details(details.method, self.timeout, details.metadata, details.credentials,
                        getattr(details, "wait_for_ready", None),
                        getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Callable[..., Any],
                              client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._with_deadline(client_call_details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any],
                               client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._with_deadline(client_call_details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any],
                               client_call_details: grpc.ClientCallDetails,
                               request_iterator: Iterator[Any]) -> Any:
        return continuation(self._with_deadline(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Callable[..., Any],
                                client_call_details: grpc.ClientCallDetails,
                                request_iterator: Iterator[Any]) -> Any:
        return continuation(self._with_deadline(client_call_details), request_iterator)


def make_channel(
    target: str, credentials: grpc.ChannelCredentials, *,
    default_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """Open a mutual-TLS channel to `target` ("host:port"). `credentials` come from
    `oncofed.keys.tls.channel_credentials` (our certificate, trusting only the federation root).
    `server_name` checks the server certificate against that name instead of the target's host,
    for dialling an address its certificate does not name. Close the channel when done (it is a
    context manager). Create channels after any fork."""
    if not isinstance(credentials, grpc.ChannelCredentials):
        raise TypeError("channels are mutual-TLS only: pass tls.channel_credentials(...)")
    opts: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if server_name is not None:
        opts.append(("grpc.ssl_target_name_override", server_name))
    channel = grpc.secure_channel(target, credentials, options=[*opts, *options])
    return grpc.intercept_channel(channel, DefaultDeadlineInterceptor(default_timeout))
