from oncofed.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("node_id", "software_version", "dictionary", "fields", "audit_head")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DICTIONARY_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    software_version: str
    dictionary: _common_pb2.DictionaryRef
    fields: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldSpec]
    audit_head: bytes
    def __init__(self, node_id: _Optional[str] = ..., software_version: _Optional[str] = ..., dictionary: _Optional[_Union[_common_pb2.DictionaryRef, _Mapping]] = ..., fields: _Optional[_Iterable[_Union[_common_pb2.FieldSpec, _Mapping]]] = ..., audit_head: _Optional[bytes] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IngestSummary(_message.Message):
    __slots__ = ("ingest_id", "file_name", "file_sha256", "rows", "inserted", "updated", "unchanged", "finished_at")
    INGEST_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_SHA256_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ingest_id: int
    file_name: str
    file_sha256: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    finished_at: str
    def __init__(self, ingest_id: _Optional[int] = ..., file_name: _Optional[str] = ..., file_sha256: _Optional[str] = ..., rows: _Optional[int] = ..., inserted: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., finished_at: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "dictionary", "tumours", "patients", "last_ingest", "store_bytes", "schema_version", "audit_head")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DICTIONARY_FIELD_NUMBER: _ClassVar[int]
    TUMOURS_FIELD_NUMBER: _ClassVar[int]
    PATIENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_INGEST_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    dictionary: _common_pb2.DictionaryRef
    tumours: int
    patients: int
    last_ingest: IngestSummary
    store_bytes: int
    schema_version: int
    audit_head: bytes
    def __init__(self, node_id: _Optional[str] = ..., dictionary: _Optional[_Union[_common_pb2.DictionaryRef, _Mapping]] = ..., tumours: _Optional[int] = ..., patients: _Optional[int] = ..., last_ingest: _Optional[_Union[IngestSummary, _Mapping]] = ..., store_bytes: _Optional[int] = ..., schema_version: _Optional[int] = ..., audit_head: _Optional[bytes] = ...) -> None: ...

class AuditHeadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditHeadResponse(_message.Message):
    __slots__ = ("audit_head",)
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    audit_head: bytes
    def __init__(self, audit_head: _Optional[bytes] = ...) -> None: ...
