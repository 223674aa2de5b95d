"""The kubelet endpoint's serving certificate: keys, PEM, a self-signed certificate, and the live TLS context
whose certificate can be replaced while the server runs (new connections get the new one, open ones keep theirs).
The apiserver does not verify kubelet certificates unless told to (--kubelet-certificate-authority)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----\n?", re.S)


def new_key() -> PrivateKey:
    # P-256, as the kubelet uses: fast to make on small machines, accepted by every signer.
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_blocks(data: bytes) -> dict[str, bytes]:
    """The first PEM block of each kind ("PRIVATE KEY", "CERTIFICATE", ...) in a file holding several."""
    blocks: dict[str, bytes] = {}
    for match in _PEM_BLOCK.finditer(data):
        blocks.setdefault(match.group(1).decode(), match.group(0))
    return blocks


def general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def self_signed_pem(node: str, hosts: list[str], days: int = 365) -> tuple[bytes, bytes]:
    """A fresh (certificate, key) pair in PEM for `hosts` (names or IPs), the node's name and localhost."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    now = dt.datetime.now(dt.UTC)
    names = list(dict.fromkeys([*hosts, node, "localhost"]))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([general_name(h) for h in names]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def write_private(path: Path, data: bytes) -> None:
    """Write a file that holds a private key: mode 0600 from its creation, replaced atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a directory made for it is private too
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


class ServingContext:
    """The server's SSLContext, and the certificate it presents. `ssl` reads certificates only from files,
    so each one installed is written to a private scratch directory first."""

    def __init__(self, context: ssl.SSLContext, scratch: Path) -> None:
        self.context = context
        self.scratch = scratch
        self.certificate: x509.Certificate | None = None
        self._generation = 0

    def install(self, cert_pem: bytes, key: bytes) -> None:
        self._generation += 1
        cert_path = self.scratch / f"serving-{self._generation}.crt"
        key_path = self.scratch / f"serving-{self._generation}.key"
        write_private(key_path, key)
        cert_path.write_bytes(cert_pem)
        try:
            # Tried on a context of its own first: a pair that does not fit would leave the live one broken.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert_path), str(key_path))
            # Runs on the event loop thread, between handshakes: no connection sees a half-replaced pair.
            self.context.load_cert_chain(str(cert_path), str(key_path))
        finally:
            cert_path.unlink(missing_ok=True)  # loaded into memory (or refused): the copies have done their job
            key_path.unlink(missing_ok=True)
        self.certificate = x509.load_pem_x509_certificate(cert_pem)
