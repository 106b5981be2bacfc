from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DictionaryRef(_message.Message):
    __slots__ = ("name", "version", "extension_sha256", "extension_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_SHA256_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    extension_sha256: str
    extension_name: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., extension_sha256: _Optional[str] = ..., extension_name: _Optional[str] = ...) -> None: ...

class Code(_message.Message):
    __slots__ = ("value", "label")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    value: str
    label: str
    def __init__(self, value: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class FieldSpec(_message.Message):
    __slots__ = ("name", "type", "description", "unit", "codes", "minimum", "maximum", "code_set", "derived", "extension", "bins")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    CODE_SET_FIELD_NUMBER: _ClassVar[int]
    DERIVED_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    unit: str
    codes: _containers.RepeatedCompositeFieldContainer[Code]
    minimum: str
    maximum: str
    code_set: str
    derived: bool
    extension: bool
    bins: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., unit: _Optional[str] = ..., codes: _Optional[_Iterable[_Union[Code, _Mapping]]] = ..., minimum: _Optional[str] = ..., maximum: _Optional[str] = ..., code_set: _Optional[str] = ..., derived: _Optional[bool] = ..., extension: _Optional[bool] = ..., bins: _Optional[_Iterable[str]] = ...) -> None: ...
