"""Mutual-TLS helpers shared by hub, node and bridge, and ``alpr certs`` (uses ``cryptography``).

A deployment has one CA (``alpr certs init``). Every edge node gets a certificate whose CN is
its node id and OU ``node``; services (hub, bridge, agency endpoints) get OU ``service``. The
hub identifies a node by its certificate CN and refuses revoked nodes
(``alpr nodes revoke``, checked on every stream).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

CA_CERT, CA_KEY = "ca.crt", "ca.key"


def _key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def init_ca(directory: Path, name: str = "ALPR deployment CA", days: int = 3650) -> tuple[Path, Path]:
    """Create ``ca.crt`` / ``ca.key`` in ``directory`` (refuses to overwrite)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    crt, keyp = directory / CA_CERT, directory / CA_KEY
    if crt.exists() or keyp.exists():
        raise FileExistsError(f"{crt} already exists: a deployment has one CA")
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(keyp, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, keyp


def issue(
    ca_dir: Path,
    name: str,
    kind: str = "node",
    out_dir: Path | None = None,
    hosts: list[str] | None = None,
    days: int = 825,
) -> tuple[Path, Path]:
    """Issue ``NAME.crt`` / ``NAME.key`` signed by the CA: CN = name, OU = kind (node/service).

    ``hosts`` (DNS names or IPs) become subjectAltNames: needed for servers (the hub).
    Node certificates are TLS clients only; service certificates are client and server (the
    hub, agency endpoints). Each carries Subject/Authority Key Identifiers and KeyUsage, so
    strict verifiers (``openssl verify -x509_strict``, Python 3.13's defaults) accept it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if kind not in ("node", "service"):
        raise ValueError("kind must be node or service")
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if kind == "service":
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    out = out_dir or ca_dir
    out.mkdir(parents=True, exist_ok=True)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = []
    for h in hosts or []:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    crt, keyp = out / f"{safe}.crt", out / f"{safe}.key"
    _write_key(keyp, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, keyp


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The issuing CA's key identifier (from its SKI; computed for CAs made before it was added)."""
    from cryptography import x509

    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]


def server_credentials(
    cert_file: str, key_file: str, ca_file: str = "", require_client_cert: bool = True
) -> grpc.ServerCredentials:
    """Server side: the service's certificate; with a CA, clients must present one it signed."""
    root = Path(ca_file).read_bytes() if ca_file else None
    return grpc.ssl_server_credentials(
        [(Path(key_file).read_bytes(), Path(cert_file).read_bytes())],
        root_certificates=root,
        require_client_auth=bool(root) and require_client_cert,
    )


def channel_credentials(ca_file: str, cert_file: str = "", key_file: str = "") -> grpc.ChannelCredentials:
    """Client side: trust the deployment CA and present our certificate (mutual TLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes(),
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )
