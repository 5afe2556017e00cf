import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BaseBackupCompression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BASE_BACKUP_COMPRESSION_UNKNOWN: _ClassVar[BaseBackupCompression]
    BASE_BACKUP_COMPRESSION_NONE: _ClassVar[BaseBackupCompression]
    BASE_BACKUP_COMPRESSION_GZIP: _ClassVar[BaseBackupCompression]

class GetPageClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GET_PAGE_CLASS_UNKNOWN: _ClassVar[GetPageClass]
    GET_PAGE_CLASS_NORMAL: _ClassVar[GetPageClass]
    GET_PAGE_CLASS_PREFETCH: _ClassVar[GetPageClass]
    GET_PAGE_CLASS_BACKGROUND: _ClassVar[GetPageClass]

class GetPageStatusCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GET_PAGE_STATUS_CODE_UNKNOWN: _ClassVar[GetPageStatusCode]
    GET_PAGE_STATUS_CODE_OK: _ClassVar[GetPageStatusCode]
    GET_PAGE_STATUS_CODE_NOT_FOUND: _ClassVar[GetPageStatusCode]
    GET_PAGE_STATUS_CODE_INVALID_REQUEST: _ClassVar[GetPageStatusCode]
    GET_PAGE_STATUS_CODE_INTERNAL_ERROR: _ClassVar[GetPageStatusCode]
    GET_PAGE_STATUS_CODE_SLOW_DOWN: _ClassVar[GetPageStatusCode]
BASE_BACKUP_COMPRESSION_UNKNOWN: BaseBackupCompression
BASE_BACKUP_COMPRESSION_NONE: BaseBackupCompression
BASE_BACKUP_COMPRESSION_GZIP: BaseBackupCompression
GET_PAGE_CLASS_UNKNOWN: GetPageClass
GET_PAGE_CLASS_NORMAL: GetPageClass
GET_PAGE_CLASS_PREFETCH: GetPageClass
GET_PAGE_CLASS_BACKGROUND: GetPageClass
GET_PAGE_STATUS_CODE_UNKNOWN: GetPageStatusCode
GET_PAGE_STATUS_CODE_OK: GetPageStatusCode
GET_PAGE_STATUS_CODE_NOT_FOUND: GetPageStatusCode
GET_PAGE_STATUS_CODE_INVALID_REQUEST: GetPageStatusCode
GET_PAGE_STATUS_CODE_INTERNAL_ERROR: GetPageStatusCode
GET_PAGE_STATUS_CODE_SLOW_DOWN: GetPageStatusCode

class ReadLsn(_message.Message):
    __slots__ = ("request_lsn", "not_modified_since_lsn")
    REQUEST_LSN_FIELD_NUMBER: _ClassVar[int]
    NOT_MODIFIED_SINCE_LSN_FIELD_NUMBER: _ClassVar[int]
    request_lsn: int
    not_modified_since_lsn: int
    def __init__(self, request_lsn: _Optional[int] = ..., not_modified_since_lsn: _Optional[int] = ...) -> None: ...

class RelTag(_message.Message):
    __slots__ = ("spc_oid", "db_oid", "rel_number", "fork_number")
    SPC_OID_FIELD_NUMBER: _ClassVar[int]
    DB_OID_FIELD_NUMBER: _ClassVar[int]
    REL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    FORK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    spc_oid: int
    db_oid: int
    rel_number: int
    fork_number: int
    def __init__(self, spc_oid: _Optional[int] = ..., db_oid: _Optional[int] = ..., rel_number: _Optional[int] = ..., fork_number: _Optional[int] = ...) -> None: ...

class GetBaseBackupRequest(_message.Message):
    __slots__ = ("lsn", "replica", "full", "compression")
    LSN_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    replica: bool
    full: bool
    compression: BaseBackupCompression
    def __init__(self, lsn: _Optional[int] = ..., replica: _Optional[bool] = ..., full: _Optional[bool] = ..., compression: _Optional[_Union[BaseBackupCompression, str]] = ...) -> None: ...

class GetBaseBackupResponseChunk(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class GetDbSizeRequest(_message.Message):
    __slots__ = ("read_lsn", "db_oid")
    READ_LSN_FIELD_NUMBER: _ClassVar[int]
    DB_OID_FIELD_NUMBER: _ClassVar[int]
    read_lsn: ReadLsn
    db_oid: int
    def __init__(self, read_lsn: _Optional[_Union[ReadLsn, _Mapping]] = ..., db_oid: _Optional[int] = ...) -> None: ...

class GetDbSizeResponse(_message.Message):
    __slots__ = ("num_bytes",)
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    num_bytes: int
    def __init__(self, num_bytes: _Optional[int] = ...) -> None: ...

class GetPageRequest(_message.Message):
    __slots__ = ("request_id", "request_class", "read_lsn", "rel", "block_number")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CLASS_FIELD_NUMBER: _ClassVar[int]
    READ_LSN_FIELD_NUMBER: _ClassVar[int]
    REL_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    request_id: RequestID
    request_class: GetPageClass
    read_lsn: ReadLsn
    rel: RelTag
    block_number: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, request_id: _Optional[_Union[RequestID, _Mapping]] = ..., request_class: _Optional[_Union[GetPageClass, str]] = ..., read_lsn: _Optional[_Union[ReadLsn, _Mapping]] = ..., rel: _Optional[_Union[RelTag, _Mapping]] = ..., block_number: _Optional[_Iterable[int]] = ...) -> None: ...

class RequestID(_message.Message):
    __slots__ = ("id", "attempt")
    ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    id: int
    attempt: int
    def __init__(self, id: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class GetPageResponse(_message.Message):
    __slots__ = ("request_id", "status_code", "reason", "rel", "page")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: RequestID
    status_code: GetPageStatusCode
    reason: str
    rel: RelTag
    page: _containers.RepeatedCompositeFieldContainer[Page]
    def __init__(self, request_id: _Optional[_Union[RequestID, _Mapping]] = ..., status_code: _Optional[_Union[GetPageStatusCode, str]] = ..., reason: _Optional[str] = ..., rel: _Optional[_Union[RelTag, _Mapping]] = ..., page: _Optional[_Iterable[_Union[Page, _Mapping]]] = ...) -> None: ...

class Page(_message.Message):
    __slots__ = ("block_number", "image")
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    block_number: int
    image: bytes
    def __init__(self, block_number: _Optional[int] = ..., image: _Optional[bytes] = ...) -> None: ...

class GetRelSizeRequest(_message.Message):
    __slots__ = ("read_lsn", "rel", "allow_missing")
    READ_LSN_FIELD_NUMBER: _ClassVar[int]
    REL_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    read_lsn: ReadLsn
    rel: RelTag
    allow_missing: bool
    def __init__(self, read_lsn: _Optional[_Union[ReadLsn, _Mapping]] = ..., rel: _Optional[_Union[RelTag, _Mapping]] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class GetRelSizeResponse(_message.Message):
    __slots__ = ("num_blocks", "missing")
    NUM_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    num_blocks: int
    missing: bool
    def __init__(self, num_blocks: _Optional[int] = ..., missing: _Optional[bool] = ...) -> None: ...

class GetSlruSegmentRequest(_message.Message):
    __slots__ = ("read_lsn", "kind", "segno")
    READ_LSN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEGNO_FIELD_NUMBER: _ClassVar[int]
    read_lsn: ReadLsn
    kind: int
    segno: int
    def __init__(self, read_lsn: _Optional[_Union[ReadLsn, _Mapping]] = ..., kind: _Optional[int] = ..., segno: _Optional[int] = ...) -> None: ...

class GetSlruSegmentResponse(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: bytes
    def __init__(self, segment: _Optional[bytes] = ...) -> None: ...

class LeaseLsnRequest(_message.Message):
    __slots__ = ("lsn",)
    LSN_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    def __init__(self, lsn: _Optional[int] = ...) -> None: ...

class LeaseLsnResponse(_message.Message):
    __slots__ = ("expires",)
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    expires: _timestamp_pb2.Timestamp
    def __init__(self, expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
