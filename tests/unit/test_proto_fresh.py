"""The committed page_api modules are what protoc makes of the committed .proto, and that .proto
is the pageserver's service exactly: any gRPC client or server built from
the same definition must interoperate with ours, so every name, number and type is pinned here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor_pb2 import FieldDescriptorProto, FileDescriptorProto

from compute_ctl.storage.proto import generate
from compute_ctl.storage.proto import page_service_pb2 as pb

U64 = FieldDescriptorProto.TYPE_UINT64
U32 = FieldDescriptorProto.TYPE_UINT32
BOOL = FieldDescriptorProto.TYPE_BOOL
BYTES = FieldDescriptorProto.TYPE_BYTES
STRING = FieldDescriptorProto.TYPE_STRING

# (message, [(number, field, type, repeated)]), in declaration order; a str type is a
# message or enum type's full name.
MESSAGES: list[tuple[str, list[tuple[int, str, int | str, bool]]]] = [
    ("ReadLsn", [(1, "request_lsn", U64, False), (2, "not_modified_since_lsn", U64, False)]),
    (
        "RelTag",
        [
            (1, "spc_oid", U32, False),
            (2, "db_oid", U32, False),
            (3, "rel_number", U32, False),
            (4, "fork_number", U32, False),
        ],
    ),
    (
        "GetBaseBackupRequest",
        [
            (1, "lsn", U64, False),
            (2, "replica", BOOL, False),
            (3, "full", BOOL, False),
            (4, "compression", "page_api.BaseBackupCompression", False),
        ],
    ),
    ("GetBaseBackupResponseChunk", [(1, "chunk", BYTES, False)]),
    ("GetDbSizeRequest", [(1, "read_lsn", "page_api.ReadLsn", False), (2, "db_oid", U32, False)]),
    ("GetDbSizeResponse", [(1, "num_bytes", U64, False)]),
    (
        "GetPageRequest",
        [
            (1, "request_id", "page_api.RequestID", False),
            (2, "request_class", "page_api.GetPageClass", False),
            (3, "read_lsn", "page_api.ReadLsn", False),
            (4, "rel", "page_api.RelTag", False),
            (5, "block_number", U32, True),
        ],
    ),
    ("RequestID", [(1, "id", U64, False), (2, "attempt", U32, False)]),
    (
        "GetPageResponse",
        [
            (1, "request_id", "page_api.RequestID", False),
            (2, "status_code", "page_api.GetPageStatusCode", False),
            (3, "reason", STRING, False),
            (4, "rel", "page_api.RelTag", False),
            (5, "page", "page_api.Page", True),
        ],
    ),
    ("Page", [(1, "block_number", U32, False), (2, "image", BYTES, False)]),
    (
        "GetRelSizeRequest",
        [
            (1, "read_lsn", "page_api.ReadLsn", False),
            (2, "rel", "page_api.RelTag", False),
            (3, "allow_missing", BOOL, False),
        ],
    ),
    ("GetRelSizeResponse", [(1, "num_blocks", U32, False), (2, "missing", BOOL, False)]),
    (
        "GetSlruSegmentRequest",
        [
            (1, "read_lsn", "page_api.ReadLsn", False),
            (2, "kind", U32, False),
            (3, "segno", U32, False),
        ],
    ),
    ("GetSlruSegmentResponse", [(1, "segment", BYTES, False)]),
    ("LeaseLsnRequest", [(1, "lsn", U64, False)]),
    ("LeaseLsnResponse", [(1, "expires", "google.protobuf.Timestamp", False)]),
]

ENUMS: dict[str, list[tuple[str, int]]] = {
    "BaseBackupCompression": [
        ("BASE_BACKUP_COMPRESSION_UNKNOWN", 0),
        ("BASE_BACKUP_COMPRESSION_NONE", 1),
        ("BASE_BACKUP_COMPRESSION_GZIP", 2),
    ],
    "GetPageClass": [
        ("GET_PAGE_CLASS_UNKNOWN", 0),
        ("GET_PAGE_CLASS_NORMAL", 1),
        ("GET_PAGE_CLASS_PREFETCH", 2),
        ("GET_PAGE_CLASS_BACKGROUND", 3),
    ],
    "GetPageStatusCode": [
        ("GET_PAGE_STATUS_CODE_UNKNOWN", 0),
        ("GET_PAGE_STATUS_CODE_OK", 1),
        ("GET_PAGE_STATUS_CODE_NOT_FOUND", 2),
        ("GET_PAGE_STATUS_CODE_INVALID_REQUEST", 3),
        ("GET_PAGE_STATUS_CODE_INTERNAL_ERROR", 4),
        ("GET_PAGE_STATUS_CODE_SLOW_DOWN", 5),
    ],
}

# (rpc, request, response, client streaming, server streaming), in declaration order.
METHODS = [
    ("GetBaseBackup", "GetBaseBackupRequest", "GetBaseBackupResponseChunk", False, True),
    ("GetDbSize", "GetDbSizeRequest", "GetDbSizeResponse", False, False),
    ("GetPages", "GetPageRequest", "GetPageResponse", True, True),
    ("GetRelSize", "GetRelSizeRequest", "GetRelSizeResponse", False, False),
    ("GetSlruSegment", "GetSlruSegmentRequest", "GetSlruSegmentResponse", False, False),
    ("LeaseLsn", "LeaseLsnRequest", "LeaseLsnResponse", False, False),
]


def _file() -> FileDescriptorProto:
    """The file as protoc compiled it (what goes over reflection, too)."""
    return FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)


def _type_of(field: FieldDescriptorProto) -> int | str:
    if field.type_name:
        return field.type_name.removeprefix(".")
    return field.type


def test_file_package_and_imports() -> None:
    file = _file()
    assert file.package == "page_api"
    assert file.syntax == "proto3"
    assert list(file.dependency) == ["google/protobuf/timestamp.proto"]
    assert pb.DESCRIPTOR.package == "page_api"


def test_messages_in_declaration_order() -> None:
    assert [m.name for m in _file().message_type] == [name for name, _ in MESSAGES]


@pytest.mark.parametrize(("name", "fields"), MESSAGES, ids=[name for name, _ in MESSAGES])
def test_message_fields(name: str, fields: list[tuple[int, str, int | str, bool]]) -> None:
    (message,) = [m for m in _file().message_type if m.name == name]
    actual = [
        (f.number, f.name, _type_of(f), f.label == FieldDescriptorProto.LABEL_REPEATED)
        for f in message.field
    ]
    assert actual == fields
    assert not any(f.proto3_optional for f in message.field)
    assert not message.oneof_decl
    assert pb.DESCRIPTOR.message_types_by_name[name].full_name == f"page_api.{name}"


def test_enums() -> None:
    file = _file()
    assert [e.name for e in file.enum_type] == list(ENUMS)
    for enum in file.enum_type:
        assert [(v.name, v.number) for v in enum.value] == ENUMS[enum.name]


def test_service_methods() -> None:
    (service,) = _file().service
    assert service.name == "PageService"
    assert pb.DESCRIPTOR.services_by_name["PageService"].full_name == "page_api.PageService"
    actual = [
        (
            m.name,
            m.input_type.removeprefix(".page_api."),
            m.output_type.removeprefix(".page_api."),
            m.client_streaming,
            m.server_streaming,
        )
        for m in service.method
    ]
    assert actual == METHODS


def test_committed_modules_are_fresh(tmp_path: Path) -> None:
    """Regenerate with the documented command and compare byte for byte: a stale module means
    someone edited the .proto (or the output) without running `make proto`."""
    made = generate.generate(tmp_path)
    assert [p.name for p in made] == list(generate.GENERATED)
    for fresh in made:
        committed = generate.PROTO_DIR / fresh.name
        assert committed.exists(), f"{fresh.name} is not committed: run make proto"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{fresh.name} is stale: run make proto"
        )


def test_generated_grpc_module_imports_its_sibling() -> None:
    """protoc ran with `src` as include root, so the stubs import the package, not a top-level
    `page_service_pb2` that only exists when the folder happens to be on sys.path."""
    source = (generate.PROTO_DIR / "page_service_pb2_grpc.py").read_text(encoding="utf-8")
    assert "from compute_ctl.storage.proto import page_service_pb2 as" in source
    assert "\nimport page_service_pb2" not in source
