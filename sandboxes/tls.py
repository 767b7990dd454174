"""Test TLS material for the sandboxes: a private CA, a loopback server certificate, an ES256 signing key.

Contract:

- ``ensure_certs(directory)`` leaves ``ca.pem``, ``ca.key``, ``server.pem`` and ``server.key`` in
  ``directory`` and returns their paths. Files already there are reused when they still form a valid
  set (the server certificate is signed by that CA, covers the requested hosts and is not about to
  expire); otherwise a new set replaces them. Concurrent callers (xdist workers, a test process and
  its worker subprocesses) are serialised by a lock file, so they never see a mixed set.
- ``server_context(paths)`` / ``client_context(ca_path)`` build TLS 1.2+ contexts for either side.
  The server offers ALPN when asked, but still accepts clients that offer none.
- ``generate_es256_key()``: a P-256 key as Apple issues it
  (PKCS#8 PEM, the ``.p8`` format) plus its public half, which a sandbox verifies JWTs with.

Nothing here is fit for production: keys are unencrypted and the CA signs anything for loopback.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
_RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class CertPaths:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class Es256Key:
    """An APNs-style token signing key: ``private_pem`` is the .p8 content, ``public_pem`` verifies."""

    private_pem: str
    public_pem: str


def ensure_certs(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> CertPaths:
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(
        directory / "ca.pem", directory / "ca.key", directory / "server.pem", directory / "server.key"
    )
    with _locked(directory / ".tls.lock"):
        if not _still_valid(paths, hosts):
            _issue(paths, hosts)
    return paths


def server_context(paths: CertPaths, alpn: Sequence[str] = ("h2",)) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.server_cert, paths.server_key)
    if alpn:
        # A client that offers no ALPN (aioapns) still gets a connection; OpenSSL only picks when asked.
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def client_context(ca_path: Path | str, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_path))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def generate_es256_key() -> Es256Key:
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = _key_pem(key)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Es256Key(private_pem.decode(), public_pem.decode())


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _still_valid(paths: CertPaths, hosts: Sequence[str]) -> bool:
    if not all(p.exists() for p in (paths.ca_cert, paths.ca_key, paths.server_cert, paths.server_key)):
        return False
    try:
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        server.verify_directly_issued_by(ca)
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    covered = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    covered |= set(san.get_values_for_type(x509.DNSName))
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    deadline = dt.datetime.now(dt.UTC) + _RENEW_BEFORE
    return wanted <= covered and server.not_valid_after_utc > deadline and ca.not_valid_after_utc > deadline


def _issue(paths: CertPaths, hosts: Sequence[str]) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notify sandbox test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))  # tolerate clock skew between processes
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # Keys first, certificates last: a reader that sees a new certificate also finds its key.
    _write_atomic(paths.ca_key, _key_pem(ca_key), private=True)
    _write_atomic(paths.server_key, _key_pem(server_key), private=True)
    _write_atomic(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_atomic(paths.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_atomic(path: Path, data: bytes, *, private: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
