from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_ROLE_UNSPECIFIED: _ClassVar[MemberRole]
    MEMBER_ROLE_CENTRE: _ClassVar[MemberRole]
    MEMBER_ROLE_RESEARCHER: _ClassVar[MemberRole]
    MEMBER_ROLE_HUB: _ClassVar[MemberRole]
MEMBER_ROLE_UNSPECIFIED: MemberRole
MEMBER_ROLE_CENTRE: MemberRole
MEMBER_ROLE_RESEARCHER: MemberRole
MEMBER_ROLE_HUB: MemberRole

class EnrolmentRequest(_message.Message):
    __slots__ = ("role", "member_id", "ed25519_public_key", "x25519_public_key", "csr_pem", "created_at")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ED25519_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    X25519_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    role: MemberRole
    member_id: str
    ed25519_public_key: bytes
    x25519_public_key: bytes
    csr_pem: bytes
    created_at: int
    def __init__(self, role: _Optional[_Union[MemberRole, str]] = ..., member_id: _Optional[str] = ..., ed25519_public_key: _Optional[bytes] = ..., x25519_public_key: _Optional[bytes] = ..., csr_pem: _Optional[bytes] = ..., created_at: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("member_id", "role", "cert_fingerprint", "cert_serial", "ed25519_public_key", "x25519_public_key", "added_in_version", "keys_since_version")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CERT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CERT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    ED25519_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    X25519_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ADDED_IN_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEYS_SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    role: MemberRole
    cert_fingerprint: str
    cert_serial: str
    ed25519_public_key: bytes
    x25519_public_key: bytes
    added_in_version: int
    keys_since_version: int
    def __init__(self, member_id: _Optional[str] = ..., role: _Optional[_Union[MemberRole, str]] = ..., cert_fingerprint: _Optional[str] = ..., cert_serial: _Optional[str] = ..., ed25519_public_key: _Optional[bytes] = ..., x25519_public_key: _Optional[bytes] = ..., added_in_version: _Optional[int] = ..., keys_since_version: _Optional[int] = ...) -> None: ...

class Registry(_message.Message):
    __slots__ = ("federation", "version", "issued_at", "next_update", "root_fingerprint", "members")
    FEDERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    federation: str
    version: int
    issued_at: int
    next_update: int
    root_fingerprint: str
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, federation: _Optional[str] = ..., version: _Optional[int] = ..., issued_at: _Optional[int] = ..., next_update: _Optional[int] = ..., root_fingerprint: _Optional[str] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class Permit(_message.Message):
    __slots__ = ("permit_id", "root_fingerprint", "researcher_id", "researcher_ed25519_public_key", "researcher_x25519_public_key", "researcher_cert_fingerprint", "project_title", "allowed_analyses", "allowed_fields", "min_cell_count", "epsilon", "not_before", "not_after", "issued_at", "data_holders", "allow_exact_dates", "allowed_outcomes")
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    RESEARCHER_ID_FIELD_NUMBER: _ClassVar[int]
    RESEARCHER_ED25519_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    RESEARCHER_X25519_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    RESEARCHER_CERT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_TITLE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ANALYSES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    MIN_CELL_COUNT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_HOLDERS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_EXACT_DATES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    permit_id: str
    root_fingerprint: str
    researcher_id: str
    researcher_ed25519_public_key: bytes
    researcher_x25519_public_key: bytes
    researcher_cert_fingerprint: str
    project_title: str
    allowed_analyses: _containers.RepeatedScalarFieldContainer[str]
    allowed_fields: _containers.RepeatedScalarFieldContainer[str]
    min_cell_count: int
    epsilon: float
    not_before: int
    not_after: int
    issued_at: int
    data_holders: _containers.RepeatedScalarFieldContainer[str]
    allow_exact_dates: bool
    allowed_outcomes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, permit_id: _Optional[str] = ..., root_fingerprint: _Optional[str] = ..., researcher_id: _Optional[str] = ..., researcher_ed25519_public_key: _Optional[bytes] = ..., researcher_x25519_public_key: _Optional[bytes] = ..., researcher_cert_fingerprint: _Optional[str] = ..., project_title: _Optional[str] = ..., allowed_analyses: _Optional[_Iterable[str]] = ..., allowed_fields: _Optional[_Iterable[str]] = ..., min_cell_count: _Optional[int] = ..., epsilon: _Optional[float] = ..., not_before: _Optional[int] = ..., not_after: _Optional[int] = ..., issued_at: _Optional[int] = ..., data_holders: _Optional[_Iterable[str]] = ..., allow_exact_dates: _Optional[bool] = ..., allowed_outcomes: _Optional[_Iterable[str]] = ...) -> None: ...

class RevokedPermit(_message.Message):
    __slots__ = ("permit_id", "permit_sha256", "revoked_at", "reason")
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMIT_SHA256_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    permit_id: str
    permit_sha256: str
    revoked_at: int
    reason: str
    def __init__(self, permit_id: _Optional[str] = ..., permit_sha256: _Optional[str] = ..., revoked_at: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokedKey(_message.Message):
    __slots__ = ("member_id", "ed25519_sha256", "x25519_sha256", "cert_fingerprint", "cert_serial", "revoked_at", "reason")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ED25519_SHA256_FIELD_NUMBER: _ClassVar[int]
    X25519_SHA256_FIELD_NUMBER: _ClassVar[int]
    CERT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CERT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    ed25519_sha256: str
    x25519_sha256: str
    cert_fingerprint: str
    cert_serial: str
    revoked_at: int
    reason: str
    def __init__(self, member_id: _Optional[str] = ..., ed25519_sha256: _Optional[str] = ..., x25519_sha256: _Optional[str] = ..., cert_fingerprint: _Optional[str] = ..., cert_serial: _Optional[str] = ..., revoked_at: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RevocationList(_message.Message):
    __slots__ = ("version", "issued_at", "next_update", "root_fingerprint", "permits", "keys")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PERMITS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    version: int
    issued_at: int
    next_update: int
    root_fingerprint: str
    permits: _containers.RepeatedCompositeFieldContainer[RevokedPermit]
    keys: _containers.RepeatedCompositeFieldContainer[RevokedKey]
    def __init__(self, version: _Optional[int] = ..., issued_at: _Optional[int] = ..., next_update: _Optional[int] = ..., root_fingerprint: _Optional[str] = ..., permits: _Optional[_Iterable[_Union[RevokedPermit, _Mapping]]] = ..., keys: _Optional[_Iterable[_Union[RevokedKey, _Mapping]]] = ...) -> None: ...
