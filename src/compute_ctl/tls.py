"""TLS for Postgres: the key and certificate copied into PGDATA, and the certificate watcher.

With feature `tls_experimental` and `compute_ctl_config.tls`, `postgresql.conf` turns `ssl` on
with `server.crt`/`server.key` relative to PGDATA. Postgres insists that the key file is owned
by its user and not readable by others, so the files named by `tls.cert_path`/`tls.key_path`
(typically mounted read-only, with other owners and modes) are copied: atomically, mode 0600,
owned by the owner of PGDATA. A copy happens only when the key matches the first certificate
(a renewal writes the two files one after the other: a half-renewed pair is never installed).

Upstream retries the copy (and the wait for the certificate at start-up) every second
forever; here both give up after a bounded time (`COMPUTE_CTL_TLS_WAIT_TIMEOUT` seconds,
default 60) with an error naming the file and the problem.

The watcher re-reads the certificate's digest every `COMPUTE_CTL_TLS_WATCH_INTERVAL` seconds
(default 60; tests shorten it) and moves a running compute to `configuration_pending`, so the
configurator re-applies the spec, which copies the files again and reloads Postgres. As
upstream, it also does so once right after the compute first reaches `running`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path

from compute_ctl.errors import ComputeError
from compute_ctl.postgres.conf import SERVER_CERT_FILE, SERVER_KEY_FILE
from compute_ctl.spec.models import ComputeFeature, ComputeSpec, TlsConfig
from compute_ctl.state import ComputeState, ComputeStatus

log = logging.getLogger(__name__)

RETRY_INTERVAL = 1.0
"""Seconds between attempts while the files are missing or do not match (as upstream)."""

DEFAULT_WAIT_TIMEOUT = 60.0
WAIT_TIMEOUT_ENV = "COMPUTE_CTL_TLS_WAIT_TIMEOUT"
"""How long start-up and re-configure wait for a usable key/certificate pair (seconds)."""

DEFAULT_WATCH_INTERVAL = 60.0
WATCH_INTERVAL_ENV = "COMPUTE_CTL_TLS_WATCH_INTERVAL"
"""How often the watcher re-reads the certificate's digest (seconds)."""

SEC1_KEY_LABEL = b"-----BEGIN EC PRIVATE KEY-----"

# Statuses in which the watcher waits (the compute is starting or busy re-configuring).
_WAIT_STATUSES = frozenset(
    {
        ComputeStatus.EMPTY,
        ComputeStatus.INIT,
        ComputeStatus.CONFIGURATION,
        ComputeStatus.REFRESH_CONFIGURATION_PENDING,
        ComputeStatus.REFRESH_CONFIGURATION,
    }
)

_LIVE_STATUSES = _WAIT_STATUSES | {ComputeStatus.RUNNING, ComputeStatus.CONFIGURATION_PENDING}


class TlsError(ComputeError):
    """A key/certificate pair that cannot be installed (yet): missing, unreadable, mismatched."""


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ComputeError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ComputeError(f"{name} must be positive, not {raw!r}")
    return value


def wait_timeout() -> float:
    return _env_seconds(WAIT_TIMEOUT_ENV, DEFAULT_WAIT_TIMEOUT)


def watch_interval() -> float:
    return _env_seconds(WATCH_INTERVAL_ENV, DEFAULT_WATCH_INTERVAL)


def tls_active(spec: ComputeSpec, tls: TlsConfig | None) -> TlsConfig | None:
    """The TLS config when Postgres must serve TLS (feature and config both present)."""
    if tls is not None and spec.has_feature(ComputeFeature.TLS_EXPERIMENTAL):
        return tls
    return None


# --------------------------------------------------------------------------------------------
# The key/certificate check


def verify_key_cert(key_pem: bytes, cert_pem: bytes) -> None:
    """Raise TlsError unless the key is a SEC1 P-256 PEM whose public half is the public key
    of the first certificate in `cert_pem`, and that certificate is signed ecdsa-with-SHA256
    (upstream accepts nothing else)."""
    # cryptography costs about 17 ms to import; only a compute with TLS needs it, and only here.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )
    from cryptography.x509.oid import SignatureAlgorithmOID  # noqa: PLC0415

    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise TlsError(f"the certificate file holds no valid PEM certificate: {exc}") from None
    cert = certs[0]
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        oid = cert.signature_algorithm_oid.dotted_string
        raise TlsError(
            f"unknown TLS key type: the certificate's signature algorithm is {oid}, "
            "only ecdsa-with-SHA256 (1.2.840.10045.4.3.2) is supported"
        )
    if SEC1_KEY_LABEL not in key_pem:
        raise TlsError('the key is not a SEC1 PEM ("EC PRIVATE KEY") key')
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"the key file holds no valid private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TlsError("the key is not a P-256 (secp256r1) EC key")
    cert_key = cert.public_key()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or not isinstance(
        cert_key.curve, ec.SECP256R1
    ):
        raise TlsError("the certificate's public key is not a P-256 (secp256r1) EC key")
    point = PublicFormat.UncompressedPoint
    if key.public_key().public_bytes(Encoding.X962, point) != cert_key.public_bytes(
        Encoding.X962, point
    ):
        raise TlsError("private key file does not match certificate")


# --------------------------------------------------------------------------------------------
# Installing the files


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"could not read the TLS {what} file {path}: {exc.strerror}") from None


def _write_private(target: Path, data: bytes, owner: tuple[int, int] | None) -> None:
    """Replace `target` atomically by a mode-0600 file holding `data`."""
    tmp = target.with_name(f".{target.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def try_install(pgdata: Path, tls: TlsConfig) -> None:
    """One attempt: read both files, check them, copy them into PGDATA (TlsError if not)."""
    key_path, cert_path = Path(tls.key_path), Path(tls.cert_path)
    key = _read(key_path, "key")
    cert = _read(cert_path, "certificate")
    try:
        verify_key_cert(key, cert)
    except TlsError as exc:
        raise TlsError(f"{key_path} and {cert_path}: {exc}") from None
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:  # a privileged caller: the files belong to Postgres' user
        st = pgdata.stat()
        owner = (st.st_uid, st.st_gid)
    try:
        _write_private(pgdata / SERVER_KEY_FILE, key, owner)
        _write_private(pgdata / SERVER_CERT_FILE, cert, owner)
    except OSError as exc:
        raise TlsError(f"could not write the TLS files into {pgdata}: {exc}") from exc


async def install_tls_files(
    pgdata: Path,
    tls: TlsConfig,
    *,
    timeout: float | None = None,
    interval: float = RETRY_INTERVAL,
) -> None:
    """Copy the key and certificate into PGDATA, retrying every `interval` while they are
    missing or do not match; after `timeout` (default: the environment's, else 60 s) raise
    the last problem."""
    limit = wait_timeout() if timeout is None else timeout
    deadline = time.monotonic() + limit
    while True:
        try:
            await asyncio.to_thread(try_install, pgdata, tls)
        except TlsError as exc:
            if time.monotonic() + interval > deadline:
                raise TlsError(f"gave up installing the TLS files after {limit:g} s") from exc
            log.error("could not install the TLS key and certificate (retrying): %s", exc)
            await asyncio.sleep(interval)
            continue
        log.info("TLS key and certificate installed into %s", pgdata)
        return


# --------------------------------------------------------------------------------------------
# The certificate watcher


def cert_digest(path: Path) -> bytes:
    return hashlib.sha256(_read(path, "certificate")).digest()


async def wait_for_cert(
    cert_path: Path, *, timeout: float | None = None, interval: float = RETRY_INTERVAL
) -> bytes:
    """The certificate's digest once the file can be read, retrying every `interval`;
    TlsError after `timeout` (default: the environment's, else 60 s)."""
    limit = wait_timeout() if timeout is None else timeout
    deadline = time.monotonic() + limit
    while True:
        try:
            return await asyncio.to_thread(cert_digest, cert_path)
        except TlsError as exc:
            if time.monotonic() + interval > deadline:
                raise TlsError(
                    f"gave up waiting for the TLS certificate after {limit:g} s"
                ) from exc
            log.error("waiting for the TLS certificate: %s", exc)
            await asyncio.sleep(interval)


async def watch_cert(
    state: ComputeState, cert_path: Path, digest: bytes, *, interval: float | None = None
) -> None:
    """Ask for a re-configure once the compute runs, then on every change of the
    certificate's digest (checked every `interval` seconds)."""
    period = watch_interval() if interval is None else interval
    while True:
        if not await state.request_reconfigure(_WAIT_STATUSES):
            log.info("TLS certificate watcher stopped: compute is %s", state.status)
            return
        while True:
            await asyncio.sleep(period)
            if state.status not in _LIVE_STATUSES:
                log.info("TLS certificate watcher stopped: compute is %s", state.status)
                return
            try:
                new = await asyncio.to_thread(cert_digest, cert_path)
            except TlsError as exc:
                log.error("TLS certificate watcher: %s", exc)
                continue
            if new != digest:
                digest = new
                log.info("TLS certificate %s changed: re-configuring", cert_path)
                break
