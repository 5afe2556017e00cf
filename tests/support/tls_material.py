"""Key/certificate pairs for the TLS tests, made with `cryptography`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: Key, *, pkcs8: bool = False) -> bytes:
    """SEC1 ("EC PRIVATE KEY") for an EC key unless `pkcs8`; RSA keys are PKCS#1 otherwise."""
    form = PrivateFormat.PKCS8 if pkcs8 else PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(Encoding.PEM, form, NoEncryption())


def cert_pem(
    key: Key,
    *,
    signer: Key | None = None,
    algorithm: hashes.SHA256 | hashes.SHA384 | None = None,
    name: str = "localhost",
) -> bytes:
    """A certificate for `key`'s public half, signed by `signer` (self-signed by default) with
    `algorithm` (SHA-256 by default: ecdsa-with-SHA256 for an EC signer)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer or key, algorithm or hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


def pair() -> tuple[bytes, bytes]:
    """A matching (SEC1 P-256 key, self-signed ecdsa-with-SHA256 certificate) pair."""
    key = ec_key()
    return key_pem(key), cert_pem(key)
