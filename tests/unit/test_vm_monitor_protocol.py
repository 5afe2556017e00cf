"""The vm-monitor's wire format and the numbers and texts the agent sees, without a socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compute_ctl.vm_monitor.cgroup import (
    CgroupUnavailableError,
    MemorySampler,
    locate_memory_stat,
    read_non_reclaimable,
)
from compute_ctl.vm_monitor.filecache import FileCacheConfig
from compute_ctl.vm_monitor.protocol import (
    AgentHealthCheck,
    AgentInternalError,
    AgentInvalidMessage,
    Allocation,
    DownscaleRequest,
    DownscaleResult,
    ErrorContent,
    ErrorResponse,
    Granted,
    HealthCheck,
    InternalError,
    InvalidMessage,
    NoContent,
    ProtocolError,
    ProtocolRange,
    Target,
    UpscaleConfirmation,
    UpscaleNotification,
    UpscaleRequest,
    VersionMismatchError,
    VersionResponse,
    decode_inbound,
    decode_outbound,
    decode_range,
    encode,
    negotiate,
)
from compute_ctl.vm_monitor.session import MonitorSettings
from compute_ctl.vm_monitor.units import MiB, mib_text

GiB = 1 << 30

# --------------------------------------------------------------------------------------------
# Monitor → agent: fields next to "type", then "id"


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (UpscaleConfirmation(id=4), '{"type":"UpscaleConfirmation","id":4}'),
        (UpscaleRequest(id=3), '{"type":"UpscaleRequest","id":3}'),
        (
            DownscaleResult(ok=True, status="set file cache size to 607 MiB", id=6),
            '{"type":"DownscaleResult","Ok":true,"Status":"set file cache size to 607 MiB","id":6}',
        ),
        (
            DownscaleResult(ok=False, status="no", id=8),
            '{"type":"DownscaleResult","Ok":false,"Status":"no","id":8}',
        ),
        (HealthCheck(id=8), '{"type":"HealthCheck","id":8}'),
        (
            InternalError(error="failed to downscale", id=6),
            '{"type":"InternalError","error":"failed to downscale","id":6}',
        ),
        (InvalidMessage(error="bad", id=2), '{"type":"InvalidMessage","error":"bad","id":2}'),
    ],
)
def test_outbound_exact_json(message: HealthCheck, text: str) -> None:
    assert encode(message) == text
    assert decode_outbound(text) == message


# --------------------------------------------------------------------------------------------
# Agent → monitor: adjacently tagged


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (
            UpscaleNotification(
                content=Granted(granted=Allocation(cpu=2.0, mem=8 * GiB)),
                id=4,
            ),
            '{"type":"UpscaleNotification","content":{"granted":{"cpu":2.0,"mem":8589934592}},'
            '"id":4}',
        ),
        (
            DownscaleRequest(content=Target(target=Allocation(cpu=0.25, mem=GiB)), id=6),
            '{"type":"DownscaleRequest","content":{"target":{"cpu":0.25,"mem":1073741824}},"id":6}',
        ),
        (
            AgentHealthCheck(content=NoContent(), id=8),
            '{"type":"HealthCheck","content":{},"id":8}',
        ),
        (
            AgentInvalidMessage(content=ErrorContent(error="x"), id=10),
            '{"type":"InvalidMessage","content":{"error":"x"},"id":10}',
        ),
        (
            AgentInternalError(content=ErrorContent(error="y"), id=12),
            '{"type":"InternalError","content":{"error":"y"},"id":12}',
        ),
    ],
)
def test_inbound_exact_json(message: UpscaleNotification, text: str) -> None:
    assert encode(message) == text
    assert decode_inbound(text) == message


def test_inbound_as_the_agent_writes_it() -> None:
    """Key order, whitespace, integral cpu and unknown keys do not matter."""
    text = (
        '{"id": 4, "content": {"granted": {"mem": 8589934592, "cpu": 2, "extra": 1}},'
        ' "type": "UpscaleNotification", "future": true}'
    )
    message = decode_inbound(text)
    assert isinstance(message, UpscaleNotification)
    assert message.id == 4
    assert message.content.granted == Allocation(cpu=2.0, mem=8 * GiB)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"type":"HealthCheck","content":{}}',  # no id
        '{"type":"HealthCheck","id":2}',  # no content
        '{"type":"HealthCheck","content":{},"id":-2}',
        '{"type":"HealthCheck","content":{},"id":2.0}',
        '{"type":"HealthCheck","content":{},"id":"2"}',
        '{"type":"Bogus","content":{},"id":2}',
        '{"content":{},"id":2}',
        '{"type":"UpscaleNotification","content":{"granted":{"cpu":1,"mem":1.5}},"id":2}',
        '{"type":"UpscaleNotification","content":{"granted":{"cpu":"1","mem":1}},"id":2}',
        '{"type":"DownscaleRequest","content":{"granted":{"cpu":1,"mem":1}},"id":2}',
        '{"type":"InternalError","content":{"error":5},"id":2}',
        # the monitor's own shape is not an agent message
        '{"type":"UpscaleConfirmation","id":4}',
    ],
)
def test_undecodable_inbound(text: str) -> None:
    with pytest.raises(ProtocolError, match="failed to deserialize text message"):
        decode_inbound(text)


@given(
    mid=st.integers(min_value=0, max_value=2**64 - 1),
    cpu=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    mem=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_inbound_round_trip(mid: int, cpu: float, mem: int) -> None:
    message = DownscaleRequest(content=Target(target=Allocation(cpu=cpu, mem=mem)), id=mid)
    text = encode(message)
    assert json.loads(text) == {
        "type": "DownscaleRequest",
        "content": {"target": {"cpu": cpu, "mem": mem}},
        "id": mid,
    }
    assert decode_inbound(text) == message


# --------------------------------------------------------------------------------------------
# Handshake


def test_handshake_answers() -> None:
    assert encode(VersionResponse(version=1)) == '{"version":1}'
    assert encode(ErrorResponse(error="e")) == '{"error":"e"}'


@pytest.mark.parametrize(("low", "high"), [(1, 1), (0, 1), (1, 7), (0, 255)])
def test_overlapping_ranges_agree_on_v1(low: int, high: int) -> None:
    assert negotiate(decode_range(json.dumps({"min": low, "max": high}))) == 1


@pytest.mark.parametrize(
    ("low", "high", "text"),
    [
        (
            2,
            3,
            "Received protocol version range <unknown: 2> to <unknown: 3> "
            "which does not overlap with v1.0",
        ),
        (
            2,
            2,
            "Received protocol version range <unknown: 2> which does not overlap with v1.0",
        ),
        (
            0,
            0,
            "Received protocol version range <invalid: zero> which does not overlap with v1.0",
        ),
    ],
)
def test_disjoint_ranges(low: int, high: int, text: str) -> None:
    with pytest.raises(VersionMismatchError) as caught:
        negotiate(ProtocolRange(min=low, max=high))
    assert str(caught.value) == text


@pytest.mark.parametrize(
    "text",
    ['{"min":2,"max":1}', '{"min":1}', '{"min":1,"max":256}', '{"min":"1","max":1}', "1"],
)
def test_bad_range(text: str) -> None:
    with pytest.raises(ProtocolError, match="failed to deserialize protocol version range"):
        decode_range(text)


def test_inverted_range_says_why() -> None:
    with pytest.raises(ProtocolError, match=r"min version = v1\.0 is greater than"):
        decode_range('{"min":1,"max":0}')


# --------------------------------------------------------------------------------------------
# Numbers and texts the agent sees


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (0, "0"),
        (100 * MiB, "100"),
        (GiB, "1024"),
        (5 * MiB // 2, "2.5"),
        (912680550, "870.4"),  # 0.85 GiB
        (367213363, "350.20197"),
        (123456789, "117.73757"),
        (1, "0.0000009536743"),
        (1 << 40, "1048576"),
    ],
)
def test_mib_text_prints_like_a_32_bit_float(num_bytes: int, text: str) -> None:
    assert mib_text(num_bytes) == text


@pytest.mark.parametrize(
    ("total", "size_mib"),
    [
        (0, 0),
        (256 * MiB, 0),  # everything is kept outside the cache
        (257 * MiB, 0),  # rounded down to whole MiB
        (300 * MiB, 40),  # (300 - 256) / 1.1
        (924 * MiB, 607),  # (924 - 256) / 1.1 = 607.27
        (1948 * MiB, 1461),  # 0.75 × 1948 is lower than (1948 - 256) / 1.1
        (4 * GiB, 3072),  # 0.75 × total
    ],
)
def test_file_cache_size(total: int, size_mib: int) -> None:
    assert FileCacheConfig().calculate_cache_size(total) == size_mib * MiB


def test_cgroup_threshold_is_85_percent() -> None:
    settings = MonitorSettings()
    assert settings.cgroup_threshold(GiB) == 912680550
    assert settings.cgroup_threshold(0) == 0


# --------------------------------------------------------------------------------------------
# cgroup files


def _cgroup_root(tmp_path: Path, stat: str | None) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    if stat is not None:
        (tmp_path / "neon-postgres").mkdir()
        (tmp_path / "neon-postgres" / "memory.stat").write_text(stat)
    return tmp_path


def test_non_reclaimable_is_anonymous_memory(tmp_path: Path) -> None:
    root = _cgroup_root(
        tmp_path, "anon 999\nfile 5000\nactive_anon 300\ninactive_anon 200\nactive_file 7\n"
    )
    path = locate_memory_stat(root, "neon-postgres")
    assert path == root / "neon-postgres" / "memory.stat"
    assert read_non_reclaimable(path) == 500


def test_no_cgroup_v2(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()  # a v1 layout: controllers as directories
    with pytest.raises(CgroupUnavailableError, match="cgroup v2 is not available"):
        locate_memory_stat(tmp_path, "neon-postgres")


def test_missing_cgroup(tmp_path: Path) -> None:
    root = _cgroup_root(tmp_path, None)
    with pytest.raises(CgroupUnavailableError, match="'neon-postgres' has no memory statistics"):
        locate_memory_stat(root, "neon-postgres")


def test_sampler_averages_the_last_five(tmp_path: Path) -> None:
    root = _cgroup_root(tmp_path, "")
    stat = root / "neon-postgres" / "memory.stat"
    now = [10.0]
    sampler = MemorySampler(stat, interval=0.1, clock=lambda: now[0])
    assert sampler.latest.history.samples_count == 0
    averages = []
    for value in [100, 200, 300, 400, 500, 600, 1600]:
        stat.write_text(f"active_anon {value}\ninactive_anon 0\n")
        now[0] += 0.1
        sample = sampler.sample_once()
        assert sample is not None
        assert sample.at == now[0]
        averages.append((sample.history.avg_non_reclaimable, sample.history.samples_count))
    assert averages == [
        (100, 1),
        (150, 2),
        (200, 3),
        (250, 4),
        (300, 5),
        (400, 5),
        (680, 5),
    ]
    assert sampler.latest.history.samples_span == pytest.approx(0.4)


def test_sampler_skips_unreadable_samples(tmp_path: Path) -> None:
    root = _cgroup_root(tmp_path, "active_anon 10\ninactive_anon 0\n")
    stat = root / "neon-postgres" / "memory.stat"
    sampler = MemorySampler(stat)
    assert sampler.sample_once() is not None
    stat.unlink()
    assert sampler.sample_once() is None
    assert sampler.samples_taken == 1
    stat.write_text("active_anon 30\ninactive_anon 0\n")
    sample = sampler.sample_once()
    assert sample is not None
    assert sample.history.avg_non_reclaimable == 20
