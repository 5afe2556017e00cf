"""Scalar identifier formats: upstream's vectors for LSNs, ids and shard indexes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from compute_ctl.spec.types import Lsn, ShardIndex, TenantId, TenantShardId, TimelineId


@pytest.mark.parametrize(
    ("value", "text"),
    [(0x16B5A50, "0/16B5A50"), (0x1_0000000A, "1/A"), (0, "0/0"), (2**64 - 1, "FFFFFFFF/FFFFFFFF")],
)
def test_lsn_display(value: int, text: str) -> None:
    assert str(Lsn(value)) == text
    assert Lsn.parse(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12345678/AAAA5555", 0x12345678_AAAA5555),
        ("aaaa/bbbb", 0xAAAA_0000BBBB),
        ("1/A", 0x1_0000000A),
        (" 0/3C490F8 ", 0x3C490F8),
        ("+1/+2", 0x1_00000002),
    ],
)
def test_lsn_parse_accepts(text: str, value: int) -> None:
    assert Lsn.parse(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "/", "0", "16B5A50", "0/", "/0", "0/0/0", "0x1/0", "1/100000000", "g/0", "0/-1", "+/1"],
)
def test_lsn_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid LSN"):
        Lsn.parse(text)


@pytest.mark.parametrize("text", ["0/16B5A50\n", "\t0/16B5A50\r\n", "\u00a00/16B5A50\u3000"])
def test_lsn_parse_trims_unicode_white_space(text: str) -> None:
    """Upstream trims surrounding White_Space (a newline included) before parsing."""
    assert Lsn.parse(text) == 0x16B5A50


@pytest.mark.parametrize("separator", ["\x1c", "\x1d", "\x1e", "\x1f"])
def test_lsn_parse_keeps_what_python_alone_calls_space(separator: str) -> None:
    """U+001C..U+001F are spaces to `str.strip()` but not to upstream's trim: refused."""
    with pytest.raises(ValueError, match="invalid LSN"):
        Lsn.parse(f"{separator}0/1")
    with pytest.raises(ValueError, match="invalid LSN"):
        Lsn.parse(f"0/1{separator}")


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_round_trip(value: int) -> None:
    assert Lsn.parse(str(Lsn(value))) == value


class _Holder(BaseModel):
    lsn: Lsn
    tenant: TenantId


def test_lsn_in_json_must_be_a_string() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        _Holder.model_validate({"lsn": 22, "tenant": "00" * 16})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("abc", "Odd number of digits"),
        ("", "Invalid string length"),
        ("abcd", "Invalid string length"),
        ("0123g" + "0" * 27, "Invalid character 'g' at position 4"),
        ("TENANT_ID", "Odd number of digits"),
    ],
)
def test_id_errors_use_hex_crate_texts(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TenantId(text)


def test_ids_print_lower_case() -> None:
    assert TimelineId("DE200BD42B49CC1814412C7E592DD6E9") == "de200bd42b49cc1814412c7e592dd6e9"


@pytest.mark.parametrize(
    ("number", "count", "text"),
    [
        (0, 0, "0000"),
        (0, 1, "0001"),
        (1, 4, "0104"),
        (0, 2, "0002"),
        (10, 16, "0a10"),
        (3, 8, "0308"),
    ],
)
def test_shard_index_text(number: int, count: int, text: str) -> None:
    assert str(ShardIndex(number, count)) == text
    assert ShardIndex.parse(text) == ShardIndex(number, count)
    assert ShardIndex.parse(text.upper()) == ShardIndex(number, count)


@pytest.mark.parametrize("text", ["000", "00000", "zz00", ""])
def test_shard_index_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"Invalid|Odd"):
        ShardIndex.parse(text)


def test_tenant_shard_id() -> None:
    tenant = TenantId("1f359dd625e519a1a4e8d7509690f6fc")
    assert str(TenantShardId(tenant, ShardIndex(0, 0))) == str(tenant)
    assert str(TenantShardId(tenant, ShardIndex(1, 4))) == f"{tenant}-0104"
