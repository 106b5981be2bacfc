from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("query_hash", "permit_hash", "targets", "min_participants", "expires_at", "sealed", "prepare_seconds", "retry_of")
    class SealedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    PERMIT_HASH_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    MIN_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    PREPARE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRY_OF_FIELD_NUMBER: _ClassVar[int]
    query_hash: bytes
    permit_hash: bytes
    targets: _containers.RepeatedScalarFieldContainer[str]
    min_participants: int
    expires_at: int
    sealed: _containers.ScalarMap[str, bytes]
    prepare_seconds: int
    retry_of: bytes
    def __init__(self, query_hash: _Optional[bytes] = ..., permit_hash: _Optional[bytes] = ..., targets: _Optional[_Iterable[str]] = ..., min_participants: _Optional[int] = ..., expires_at: _Optional[int] = ..., sealed: _Optional[_Mapping[str, bytes]] = ..., prepare_seconds: _Optional[int] = ..., retry_of: _Optional[bytes] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("query_hash",)
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    query_hash: bytes
    def __init__(self, query_hash: _Optional[bytes] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("query_hash", "after_version", "wait_ms", "until_final")
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FINAL_FIELD_NUMBER: _ClassVar[int]
    query_hash: bytes
    after_version: int
    wait_ms: int
    until_final: bool
    def __init__(self, query_hash: _Optional[bytes] = ..., after_version: _Optional[int] = ..., wait_ms: _Optional[int] = ..., until_final: _Optional[bool] = ...) -> None: ...

class QueryState(_message.Message):
    __slots__ = ("query_hash", "state", "version", "centres", "participants", "answers", "error", "declines", "retry_of", "abstentions", "failed_centres")
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CENTRES_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DECLINES_FIELD_NUMBER: _ClassVar[int]
    RETRY_OF_FIELD_NUMBER: _ClassVar[int]
    ABSTENTIONS_FIELD_NUMBER: _ClassVar[int]
    FAILED_CENTRES_FIELD_NUMBER: _ClassVar[int]
    query_hash: bytes
    state: str
    version: int
    centres: _containers.RepeatedCompositeFieldContainer[CentreProgress]
    participants: _containers.RepeatedScalarFieldContainer[bytes]
    answers: _containers.RepeatedCompositeFieldContainer[SealedAnswer]
    error: str
    declines: _containers.RepeatedScalarFieldContainer[bytes]
    retry_of: bytes
    abstentions: _containers.RepeatedScalarFieldContainer[bytes]
    failed_centres: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query_hash: _Optional[bytes] = ..., state: _Optional[str] = ..., version: _Optional[int] = ..., centres: _Optional[_Iterable[_Union[CentreProgress, _Mapping]]] = ..., participants: _Optional[_Iterable[bytes]] = ..., answers: _Optional[_Iterable[_Union[SealedAnswer, _Mapping]]] = ..., error: _Optional[str] = ..., declines: _Optional[_Iterable[bytes]] = ..., retry_of: _Optional[bytes] = ..., abstentions: _Optional[_Iterable[bytes]] = ..., failed_centres: _Optional[_Iterable[str]] = ...) -> None: ...

class CentreProgress(_message.Message):
    __slots__ = ("centre", "state", "coarse", "at_ms")
    CENTRE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COARSE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    centre: str
    state: str
    coarse: str
    at_ms: int
    def __init__(self, centre: _Optional[str] = ..., state: _Optional[str] = ..., coarse: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...

class SealedAnswer(_message.Message):
    __slots__ = ("centre", "sealed")
    CENTRE_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    centre: str
    sealed: bytes
    def __init__(self, centre: _Optional[str] = ..., sealed: _Optional[bytes] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("wait_ms", "audit_head")
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    wait_ms: int
    audit_head: bytes
    def __init__(self, wait_ms: _Optional[int] = ..., audit_head: _Optional[bytes] = ...) -> None: ...

class PullReply(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("kind", "query_hash", "sealed_query", "participants", "abstentions")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Task.Kind]
        KIND_PREPARE: _ClassVar[Task.Kind]
        KIND_ANSWER: _ClassVar[Task.Kind]
        KIND_ABSTAIN: _ClassVar[Task.Kind]
    KIND_UNSPECIFIED: Task.Kind
    KIND_PREPARE: Task.Kind
    KIND_ANSWER: Task.Kind
    KIND_ABSTAIN: Task.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    SEALED_QUERY_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    ABSTENTIONS_FIELD_NUMBER: _ClassVar[int]
    kind: Task.Kind
    query_hash: bytes
    sealed_query: bytes
    participants: _containers.RepeatedScalarFieldContainer[bytes]
    abstentions: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, kind: _Optional[_Union[Task.Kind, str]] = ..., query_hash: _Optional[bytes] = ..., sealed_query: _Optional[bytes] = ..., participants: _Optional[_Iterable[bytes]] = ..., abstentions: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("query_hash", "accept", "decline", "sealed_answer", "failure", "abstention", "audit_head", "wait_ms")
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    DECLINE_FIELD_NUMBER: _ClassVar[int]
    SEALED_ANSWER_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    ABSTENTION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    query_hash: bytes
    accept: bytes
    decline: bytes
    sealed_answer: bytes
    failure: bytes
    abstention: bytes
    audit_head: bytes
    wait_ms: int
    def __init__(self, query_hash: _Optional[bytes] = ..., accept: _Optional[bytes] = ..., decline: _Optional[bytes] = ..., sealed_answer: _Optional[bytes] = ..., failure: _Optional[bytes] = ..., abstention: _Optional[bytes] = ..., audit_head: _Optional[bytes] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class PushReply(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class GetTrustRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrustDocuments(_message.Message):
    __slots__ = ("registry", "revocations")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    registry: bytes
    revocations: bytes
    def __init__(self, registry: _Optional[bytes] = ..., revocations: _Optional[bytes] = ...) -> None: ...

class DeclineBody(_message.Message):
    __slots__ = ("query_hash", "centre", "coarse")
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    CENTRE_FIELD_NUMBER: _ClassVar[int]
    COARSE_FIELD_NUMBER: _ClassVar[int]
    query_hash: bytes
    centre: str
    coarse: str
    def __init__(self, query_hash: _Optional[bytes] = ..., centre: _Optional[str] = ..., coarse: _Optional[str] = ...) -> None: ...

class FailureBody(_message.Message):
    __slots__ = ("query_hash", "centre", "coarse")
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    CENTRE_FIELD_NUMBER: _ClassVar[int]
    COARSE_FIELD_NUMBER: _ClassVar[int]
    query_hash: bytes
    centre: str
    coarse: str
    def __init__(self, query_hash: _Optional[bytes] = ..., centre: _Optional[str] = ..., coarse: _Optional[str] = ...) -> None: ...

class AbstentionBody(_message.Message):
    __slots__ = ("query_hash", "centre")
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    CENTRE_FIELD_NUMBER: _ClassVar[int]
    query_hash: bytes
    centre: str
    def __init__(self, query_hash: _Optional[bytes] = ..., centre: _Optional[str] = ...) -> None: ...

class AnswerBody(_message.Message):
    __slots__ = ("tag", "query_hash", "round", "participants_digest", "centre", "recipient_key_id", "n_values", "n_flags", "vector", "audit_head")
    TAG_FIELD_NUMBER: _ClassVar[int]
    QUERY_HASH_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CENTRE_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    N_VALUES_FIELD_NUMBER: _ClassVar[int]
    N_FLAGS_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    tag: str
    query_hash: bytes
    round: int
    participants_digest: bytes
    centre: str
    recipient_key_id: bytes
    n_values: int
    n_flags: int
    vector: bytes
    audit_head: bytes
    def __init__(self, tag: _Optional[str] = ..., query_hash: _Optional[bytes] = ..., round: _Optional[int] = ..., participants_digest: _Optional[bytes] = ..., centre: _Optional[str] = ..., recipient_key_id: _Optional[bytes] = ..., n_values: _Optional[int] = ..., n_flags: _Optional[int] = ..., vector: _Optional[bytes] = ..., audit_head: _Optional[bytes] = ...) -> None: ...
