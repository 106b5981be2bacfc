from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AuditHead(_message.Message):
    __slots__ = ("node_id", "seq", "entry_hash", "signed_at_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    seq: int
    entry_hash: bytes
    signed_at_ms: int
    def __init__(self, node_id: _Optional[str] = ..., seq: _Optional[int] = ..., entry_hash: _Optional[bytes] = ..., signed_at_ms: _Optional[int] = ...) -> None: ...
