# -*- test-case-name: tests.test_pki -*-
"""
The operator's private CA: the CA certificate, the relay's certificate,
certificate revocation lists, and user certificates from CSRs.

The profile passes the strict RFC 5280 checks of
C{cryptography.x509.verification}: the CA is ECDSA P-256 with critical
basicConstraints and keyUsage, subject and authority key identifiers
everywhere; the relay's certificate carries a subjectAltName for each of its
names (DNS names and IP addresses), keyUsage digitalSignature and
extendedKeyUsage serverAuth.

Every function takes the time as C{now} (timezone-aware UTC) instead of
reading a clock, so tests can make expired and not-yet-valid material.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securechat.crypto import keys
from securechat.crypto.x509 import is_host_name
from securechat.extsign import CaKey, ca_public_key, sign_certificate, sign_crl

CA_DAYS = 3650
SERVER_DAYS = 365
USER_DAYS = 365
CRL_DAYS = 30
#: Certificates start an hour in the past, to tolerate clock skew.
BACKDATE = datetime.timedelta(hours=1)

SERVER_KEY_TYPES = ("ed25519", "ecdsa-p256")


def check_server_name(name: str) -> str:
    """
    Return C{name} if it can go in the relay's certificate: an IP address
    literal or an ASCII DNS host name (internationalised names in their
    C{xn--} form).  Wildcards are not issued.

    @raise ValueError: saying what is wrong with it.
    """
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    if not is_host_name(name):
        raise ValueError(
            f"server name {name!r} is neither an IP address nor a DNS host name "
            "(letters, digits, hyphens and dots; internationalised names in their xn-- form)")
    return name


def check_days(days: int, what: str) -> int:
    """
    Return C{days} if it is a usable validity period (at least one day).
    """
    if days < 1:
        raise ValueError(f"the {what} must be valid for at least 1 day, not {days}")
    return days


def certificate_names(cert: x509.Certificate) -> list[str]:
    """
    The names (DNS names and IP addresses) in C{cert}'s subjectAltName, as
    text; empty if it has none.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san]


def _key_usage(*, signature: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    if not 1 <= len(common_name) <= 64:
        raise ValueError(f"a certificate's common name must be 1 to 64 characters, not {len(common_name)}: "
                         f"{common_name[:70]!r}")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_server_key(kind: str = "ed25519") -> keys.PrivateKey:
    """
    A fresh private key for the relay: Ed25519 (fast handshakes) or ECDSA
    P-256.
    """
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown server key type {kind!r}: use one of {', '.join(SERVER_KEY_TYPES)}")


def new_ca(common_name: str, now: datetime.datetime, days: int = CA_DAYS,
           key: CaKey | None = None) -> tuple[CaKey, x509.Certificate]:
    """
    A new CA: its ECDSA P-256 key (made here, or C{key}, one on a token)
    and self-signed certificate.
    """
    check_days(days, "CA certificate")
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    public = ca_public_key(key)
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    cert = sign_certificate(
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False),
        key)
    return key, cert


def _leaf(ca_key: CaKey, ca_cert: x509.Certificate, subject: str,
          public_key: keys.PublicKey, now: datetime.datetime, days: int) -> x509.CertificateBuilder:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject)).issuer_name(ca_cert.subject).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signature=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
    )


def subject_alt_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """
    A DNSName for each name, and an IPAddress for each that is an IP literal.
    """
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def issue_server_certificate(
    ca_key: CaKey, ca_cert: x509.Certificate, public_key: keys.PublicKey,
    names: Sequence[str], now: datetime.datetime, days: int = SERVER_DAYS,
) -> x509.Certificate:
    """
    The relay's certificate for C{names} (the first is also its CN).
    """
    if not names:
        raise ValueError("a server certificate needs at least one name")
    for name in names:
        check_server_name(name)
    if len(names[0]) > 64:
        raise ValueError(f"the first server name becomes the certificate's common name, so it must be "
                         f"at most 64 characters: {names[0]!r}")
    check_days(days, "server certificate")
    return sign_certificate(
        _leaf(ca_key, ca_cert, names[0], public_key, now, days)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(subject_alt_names(names)), critical=False),
        ca_key)


def issue_user_certificate(
    ca_key: CaKey, ca_cert: x509.Certificate, user: str,
    public_key: keys.PublicKey, now: datetime.datetime, days: int = USER_DAYS,
) -> x509.Certificate:
    """
    A client certificate (CN = user name, extendedKeyUsage clientAuth).
    """
    check_days(days, "user certificate")
    return sign_certificate(
        _leaf(ca_key, ca_cert, user, public_key, now, days)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False),
        ca_key)


def issue_crl(
    ca_key: CaKey, ca_cert: x509.Certificate,
    revoked: Iterable[tuple[int, datetime.datetime]], number: int, now: datetime.datetime,
    days: int = CRL_DAYS,
) -> x509.CertificateRevocationList:
    """
    A CRL listing C{revoked} (serial, revocation time), valid from C{now}
    for C{days}.
    """
    check_days(days, "CRL")
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now).next_update(now + datetime.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return sign_crl(builder, ca_key)


def check_csr(csr: x509.CertificateSigningRequest, registered: keys.PublicKey) -> None:
    """
    Refuse a CSR whose signature is bad or whose key is not C{registered}.
    """
    if not csr.is_signature_valid:
        raise ValueError("the CSR's signature does not verify")
    if keys.public_key_der(csr.public_key()) != keys.public_key_der(registered):  # type: ignore[arg-type]
        raise ValueError("the CSR's key is not the user's registered key")
