"""The key/certificate check, the copy into PGDATA and the certificate watcher."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from compute_ctl import tls
from compute_ctl.errors import ComputeError
from compute_ctl.spec.models import TlsConfig
from compute_ctl.state import ComputeState, ComputeStatus
from tests.support.tls_material import cert_pem, ec_key, key_pem, pair, rsa_key

S = ComputeStatus


# --------------------------------------------------------------------------------------------
# verify_key_cert


def test_matching_pair_is_accepted() -> None:
    key, cert = pair()
    tls.verify_key_cert(key, cert)


def test_first_certificate_of_a_chain_is_the_one_checked() -> None:
    key = ec_key()
    ca = ec_key()
    chain = cert_pem(key, signer=ca) + cert_pem(ca)
    tls.verify_key_cert(key_pem(key), chain)
    with pytest.raises(tls.TlsError, match="does not match"):
        tls.verify_key_cert(key_pem(ca), chain)


def test_mismatched_key_is_refused() -> None:
    _, cert = pair()
    other, _ = pair()
    with pytest.raises(tls.TlsError, match="private key file does not match certificate"):
        tls.verify_key_cert(other, cert)


def test_rsa_certificate_is_refused() -> None:
    key = rsa_key()
    with pytest.raises(tls.TlsError, match="ecdsa-with-SHA256"):
        tls.verify_key_cert(key_pem(key), cert_pem(key))


def test_ecdsa_with_another_hash_is_refused() -> None:
    key = ec_key()
    with pytest.raises(tls.TlsError, match=re.escape("1.2.840.10045.4.3.3")):
        tls.verify_key_cert(key_pem(key), cert_pem(key, algorithm=hashes.SHA384()))


def test_pkcs8_key_is_refused_even_when_it_matches() -> None:
    key = ec_key()
    with pytest.raises(tls.TlsError, match="SEC1"):
        tls.verify_key_cert(key_pem(key, pkcs8=True), cert_pem(key))


def test_other_curve_is_refused() -> None:
    key = ec_key(ec.SECP384R1())
    with pytest.raises(tls.TlsError, match="P-256"):
        tls.verify_key_cert(key_pem(key), cert_pem(key))


def test_p256_key_with_a_certificate_for_another_curve_is_refused() -> None:
    cert_key = ec_key(ec.SECP384R1())
    signer = ec_key()
    with pytest.raises(tls.TlsError, match="certificate's public key"):
        tls.verify_key_cert(key_pem(signer), cert_pem(cert_key, signer=signer))


@pytest.mark.parametrize("garbage", [b"", b"not a certificate"])
def test_garbage_certificate_is_refused(garbage: bytes) -> None:
    key, _ = pair()
    with pytest.raises(tls.TlsError, match="no valid PEM certificate"):
        tls.verify_key_cert(key, garbage)


def test_garbage_key_is_refused() -> None:
    _, cert = pair()
    bad = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
    with pytest.raises(tls.TlsError, match="no valid private key"):
        tls.verify_key_cert(bad, cert)


# --------------------------------------------------------------------------------------------
# install_tls_files


def _source(tmp_path: Path, key: bytes, cert: bytes) -> TlsConfig:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "tls.key").write_bytes(key)
    (src / "tls.crt").write_bytes(cert)
    (src / "tls.key").chmod(0o644)
    return TlsConfig(key_path=str(src / "tls.key"), cert_path=str(src / "tls.crt"))


def _pgdata(tmp_path: Path) -> Path:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir(mode=0o700)
    return pgdata


def test_install_copies_with_mode_0600(tmp_path: Path) -> None:
    key, cert = pair()
    config = _source(tmp_path, key, cert)
    pgdata = _pgdata(tmp_path)
    (pgdata / "server.key").write_bytes(b"old")
    (pgdata / "server.key").chmod(0o644)
    asyncio.run(tls.install_tls_files(pgdata, config, timeout=5))
    assert (pgdata / "server.key").read_bytes() == key
    assert (pgdata / "server.crt").read_bytes() == cert
    for name in ("server.key", "server.crt"):
        st = (pgdata / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert (st.st_uid, st.st_gid) == (pgdata.stat().st_uid, pgdata.stat().st_gid)
    assert sorted(p.name for p in pgdata.iterdir()) == ["server.crt", "server.key"]


def test_install_gives_up_naming_the_file(tmp_path: Path) -> None:
    key, cert = pair()
    config = _source(tmp_path, key, cert)
    os.unlink(config.cert_path)
    pgdata = _pgdata(tmp_path)
    with pytest.raises(tls.TlsError, match="gave up") as info:
        asyncio.run(tls.install_tls_files(pgdata, config, timeout=0.2, interval=0.05))
    assert config.cert_path in str(info.value.__cause__)
    assert "No such file" in str(info.value.__cause__)
    assert not (pgdata / "server.key").exists()


def test_install_refuses_a_mismatch_and_installs_nothing(tmp_path: Path) -> None:
    _, cert = pair()
    other, _ = pair()
    config = _source(tmp_path, other, cert)
    pgdata = _pgdata(tmp_path)
    with pytest.raises(tls.TlsError, match="gave up") as info:
        asyncio.run(tls.install_tls_files(pgdata, config, timeout=0.1, interval=0.05))
    cause = str(info.value.__cause__)
    assert config.key_path in cause
    assert "does not match" in cause
    assert list(pgdata.iterdir()) == []


def test_install_waits_until_the_pair_matches(tmp_path: Path) -> None:
    key, cert = pair()
    other, _ = pair()
    config = _source(tmp_path, other, cert)  # half-renewed: the key is still the old one
    pgdata = _pgdata(tmp_path)

    async def scenario() -> None:
        task = asyncio.create_task(tls.install_tls_files(pgdata, config, timeout=30, interval=0.02))
        await asyncio.sleep(0.1)
        assert not task.done()
        Path(config.key_path).write_bytes(key)
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert (pgdata / "server.key").read_bytes() == key


def test_environment_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tls.WATCH_INTERVAL_ENV, raising=False)
    monkeypatch.delenv(tls.WAIT_TIMEOUT_ENV, raising=False)
    assert tls.watch_interval() == 60.0
    assert tls.wait_timeout() == 60.0
    monkeypatch.setenv(tls.WATCH_INTERVAL_ENV, "0.5")
    monkeypatch.setenv(tls.WAIT_TIMEOUT_ENV, "3")
    assert tls.watch_interval() == 0.5
    assert tls.wait_timeout() == 3.0
    monkeypatch.setenv(tls.WATCH_INTERVAL_ENV, "0")
    with pytest.raises(ComputeError, match=tls.WATCH_INTERVAL_ENV):
        tls.watch_interval()


# --------------------------------------------------------------------------------------------
# The watcher


def _status(state: ComputeState) -> ComputeStatus:
    return state.status  # (not narrowed by earlier checks: other tasks change it)


async def _wait_status(state: ComputeState, *targets: ComputeStatus) -> ComputeStatus:
    return await asyncio.wait_for(state.wait_for(*targets), 10)


def test_watcher_reconfigures_after_start_and_on_change(tmp_path: Path) -> None:
    _, cert = pair()
    cert_path = tmp_path / "tls.crt"
    cert_path.write_bytes(cert)

    async def scenario() -> None:
        state = ComputeState(status=S.INIT)
        digest = await tls.wait_for_cert(cert_path, timeout=5)
        watcher = asyncio.create_task(tls.watch_cert(state, cert_path, digest, interval=0.02))
        await asyncio.sleep(0.05)
        assert not watcher.done()
        assert state.status is S.INIT  # nothing while starting
        await state.set_status(S.RUNNING)
        await _wait_status(state, S.CONFIGURATION_PENDING)  # the extra one after start
        await state.set_status(S.CONFIGURATION)
        await state.set_status(S.RUNNING)
        await asyncio.sleep(0.1)
        assert _status(state) is S.RUNNING  # unchanged certificate: nothing
        _, renewed = pair()
        cert_path.write_bytes(renewed)
        await _wait_status(state, S.CONFIGURATION_PENDING)
        await state.set_status(S.CONFIGURATION)
        await state.set_status(S.FAILED)
        await asyncio.wait_for(watcher, 10)  # a failed compute ends the watcher

    asyncio.run(scenario())


def test_wait_for_cert_gives_up(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    with pytest.raises(tls.TlsError, match="gave up waiting") as info:
        asyncio.run(tls.wait_for_cert(missing, timeout=0.1, interval=0.02))
    assert str(missing) in str(info.value.__cause__)
