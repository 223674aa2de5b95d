"""The stand-in's certificates: one CA that signs the serving certificate, client certificates and CSRs.

Generated at start, kept in memory, written to a directory only because `ssl` and kubectl want files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Issued:
    cert_pem: bytes
    key_pem: bytes


class CertificateAuthority:
    """A throw-away CA; EC P-256 keeps generation fast on a 2-core machine."""

    def __init__(self, common_name: str = "slurmlink-kube-standin-ca") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def _sign(self, subject: x509.Name, public_key: object, *, server: bool, client: bool,
              sans: list[x509.GeneralName] | None = None, lifetime: dt.timedelta = dt.timedelta(days=1)) -> bytes:
        now = dt.datetime.now(dt.UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH]
                                                                          if client else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def issue_server(self, hosts: list[str]) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        return Issued(self._sign(subject, key.public_key(), server=True, client=False, sans=sans), _pem_key(key))

    def issue_client(self, user: str, groups: tuple[str, ...] = ()) -> Issued:
        # Kubernetes reads a client certificate's CN as the user name and each O as a group.
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        subject = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, user)])
        return Issued(self._sign(subject, key.public_key(), server=False, client=True), _pem_key(key))

    def sign_csr(self, csr_pem: bytes, usages: list[str], lifetime: dt.timedelta) -> bytes:
        """Sign a PKCS#10 request as a Kubernetes signer would: subject and SANs from the request."""
        csr = x509.load_pem_x509_csr(csr_pem)
        try:
            sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            sans = None
        return self._sign(csr.subject, csr.public_key(), server="server auth" in usages,
                          client="client auth" in usages, sans=sans, lifetime=lifetime)

    def write(self, directory: Path, name: str, issued: Issued | None = None) -> tuple[Path, Path | None]:
        """Write the CA certificate (issued=None) or an issued pair; return (cert path, key path)."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{name}.crt"
        cert_path.write_bytes(issued.cert_pem if issued else self.cert_pem)
        if issued is None:
            return cert_path, None
        key_path = directory / f"{name}.key"
        key_path.write_bytes(issued.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path


def subject_identity(peer_cert: dict) -> tuple[str, tuple[str, ...]]:
    """User and groups from `ssl.SSLSocket.getpeercert()` output (CN → user, O → groups)."""
    user, groups = "", []
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return user, tuple(groups)
