"""Remote-extension name resolution, the preload-library rules and control-file writing, as
the reference states them (upstream's texts, which clients see as 404 bodies)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from compute_ctl.errors import ComputeError
from compute_ctl.remote_ext.errors import ExtensionNotFoundError
from compute_ctl.remote_ext.index import (
    archive_path,
    control_files_allowed,
    go_arch,
    library_base_name,
    pg_major_tag,
    preload_libraries,
    resolve_archive,
)
from compute_ctl.remote_ext.install import write_control_files
from compute_ctl.spec.models import Cluster, RemoteExtSpec


def remote(**fields: Any) -> RemoteExtSpec:
    document: dict[str, Any] = {
        "public_extensions": ["anon", "pg_buffercache"],
        "custom_extensions": ["mine"],
        "library_index": {"anon": "anon", "libmine": "mine", "ghost": "ghost", "orphan": "nope"},
        "extension_data": {
            "anon": {"control_data": {"anon.control": "comment = 'a'\n"}, "archive_path": ""},
            "mine": {"control_data": {"mine.control": "m"}, "archive_path": ""},
            "secret": {"control_data": {"secret.control": "s"}, "archive_path": ""},
        },
    }
    document.update(fields)
    return RemoteExtSpec.model_validate(document)


def resolve(name: str, *, is_library: bool = False, spec: RemoteExtSpec | None = None) -> str:
    archive = resolve_archive(
        spec or remote(),
        name,
        is_library=is_library,
        build_tag="latest",
        pg_major="v15",
        arch="x86_64",
    )
    return archive.path


def test_extensions_resolve_to_their_archive() -> None:
    assert resolve("anon") == "latest/amd64/v15/extensions/anon.tar.zst"
    assert resolve("mine") == "latest/amd64/v15/extensions/mine.tar.zst"
    archive = resolve_archive(
        remote(), "anon", is_library=False, build_tag="5670669815", pg_major="v17", arch="aarch64"
    )
    assert (archive.extension, archive.name) == ("anon", "anon.tar.zst")
    assert archive.path == "5670669815/arm64/v17/extensions/anon.tar.zst"


@pytest.mark.parametrize(
    ("library", "expected"),
    [("libmine", "mine"), ("libmine.so", "mine"), ("libmine.so.3", "mine"), ("anon.so", "anon")],
)
def test_libraries_lose_their_so_suffix_and_map_through_the_index(
    library: str, expected: str
) -> None:
    assert resolve(library, is_library=True).endswith(f"/{expected}.tar.zst")


def test_library_suffix_is_cut_at_the_first_so() -> None:
    assert library_base_name("postgis-3.so.1.2") == "postgis-3"
    assert library_base_name("a.solid.so") == "a"  # upstream's regex: `.so` anywhere
    assert library_base_name("plain") == "plain"


@pytest.mark.parametrize(
    ("name", "is_library", "message"),
    [
        ("unknown", True, "library unknown is not found"),
        ("unknown.so.1", True, "library unknown is not found"),
        ("secret", False, "extension secret is not found"),  # has data, not listed
        ("orphan", True, "extension nope is not found"),
        ("ghost", True, "extension ghost is not found"),
        ("pg_buffercache", False, "real_ext_name pg_buffercache is not found"),  # listed, no data
    ],
)
def test_unresolvable_names_say_why(name: str, is_library: bool, message: str) -> None:
    with pytest.raises(ExtensionNotFoundError) as caught:
        resolve(name, is_library=is_library)
    assert str(caught.value) == message


def test_missing_lists_allow_nothing_to_download() -> None:
    spec = remote(public_extensions=None, custom_extensions=None)
    with pytest.raises(ExtensionNotFoundError, match="extension anon is not found"):
        resolve("anon", spec=spec)


@pytest.mark.parametrize(
    ("machine", "arch"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("riscv64", "riscv64")]
)
def test_architecture_names(machine: str, arch: str) -> None:
    assert go_arch(machine) == arch
    assert archive_path("t", "v14", "e", machine) == f"t/{arch}/v14/extensions/e.tar.zst"


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("PostgreSQL 15.4", "v15"),
        ("PostgreSQL 15.18 (Debian 15.18-0+deb12u1)\n", "v15"),
        ("PostgreSQL 16devel", "v16"),
        ("PostgreSQL 17rc1", "v17"),
        ("PostgreSQL 14.0", "v14"),
    ],
)
def test_pg_major_tag(text: str, tag: str) -> None:
    assert pg_major_tag(text) == tag


@pytest.mark.parametrize("text", ["PostgreSQL 14", "EnterpriseDB 15.1", ""])
def test_pg_major_tag_refuses_other_texts(text: str) -> None:
    with pytest.raises(ComputeError, match="unsupported PostgreSQL version"):
        pg_major_tag(text)


def cluster(settings: str | None = None, conf: str | None = None) -> Cluster:
    document: dict[str, Any] = {"roles": [], "databases": [], "postgresql_conf": conf}
    if settings is not None:
        document["settings"] = [
            {"name": "shared_preload_libraries", "value": settings, "vartype": "string"}
        ]
    return Cluster.model_validate(document)


def test_preload_libraries_from_settings_skip_builtins_empties_and_unindexed() -> None:
    spec = remote()
    found = preload_libraries(cluster("neon, anon,'libmine',,databricks_auth,local"), spec)
    assert found == ["anon", "libmine"]


def test_preload_libraries_from_postgresql_conf_use_the_last_line() -> None:
    conf = (
        "shared_preload_libraries='ghost'\n"
        "port=5432\n"
        "shared_preload_libraries='neon,anon'\n"
        "# shared_preload_libraries='libmine'\n"
    )
    assert preload_libraries(cluster(conf=conf), remote()) == ["anon"]
    # Only `='` separates the value: a spaced assignment contributes nothing.
    assert preload_libraries(cluster(conf="shared_preload_libraries = 'anon'"), remote()) == []
    # Settings first, then the file; duplicates are kept (the downloads are de-duplicated).
    both = cluster("anon", "shared_preload_libraries='anon,libmine'")
    assert preload_libraries(both, remote()) == ["anon", "anon", "libmine"]


def test_control_files_follow_upstreams_allowance_rule() -> None:
    spec = remote()
    assert control_files_allowed(spec, "anon")
    assert control_files_allowed(spec, "mine")
    assert not control_files_allowed(spec, "secret")
    assert control_files_allowed(remote(public_extensions=None), "secret")
    assert control_files_allowed(remote(custom_extensions=None), "secret")


def test_control_files_are_written_once_and_never_through_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    ext_dir = tmp_path / "extension"
    ext_dir.mkdir()
    (ext_dir / "mine.control").symlink_to(outside)
    spec = remote(
        extension_data={
            "anon": {"control_data": {"anon.control": "comment = 'a'\n"}, "archive_path": ""},
            "mine": {"control_data": {"mine.control": "m"}, "archive_path": ""},
            "secret": {"control_data": {"secret.control": "s"}, "archive_path": ""},
            "pg_buffercache": {
                "control_data": {"../escape.control": "x", "": "y", "ok.control": "z"},
                "archive_path": "",
            },
        }
    )
    assert write_control_files(spec, ext_dir) == 2
    assert (ext_dir / "anon.control").read_text() == "comment = 'a'\n"
    assert (ext_dir / "ok.control").read_text() == "z"
    assert oct((ext_dir / "anon.control").stat().st_mode & 0o777) == "0o644"
    assert outside.read_text() == "untouched"
    assert not (ext_dir / "secret.control").exists()
    assert not (tmp_path / "escape.control").exists()
    assert sorted(os.listdir(ext_dir)) == ["anon.control", "mine.control", "ok.control"]
    # Existing files are kept on a second run.
    (ext_dir / "anon.control").write_text("local")
    assert write_control_files(spec, ext_dir) == 0
    assert (ext_dir / "anon.control").read_text() == "local"


def test_control_files_need_the_extension_directory(tmp_path: Path) -> None:
    with pytest.raises(ComputeError, match="cannot open the extension directory"):
        write_control_files(remote(), tmp_path / "missing")
