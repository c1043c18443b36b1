# -*- test-case-name: tests.test_x509 -*-
"""
Checking the relay's certificate identity: its chain to the operator's CA
and the CA's CRL, which the relay staples (docs/protocol.rst, section 9).

Pure: the time is an argument.  The precise checks on the leaf (dates,
name, key usage) come first so that each failure has its own code; the chain
itself is then built and verified by C{cryptography.x509.verification}, a
strict RFC 5280 implementation, and finally the CRL is checked.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from securechat.crypto import keys


class CertificateError(ValueError):
    """
    The relay's certificate identity was rejected.  C{code} says which check
    failed (docs/protocol.rst, section 9).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _subject(name: str) -> x509.DNSName | x509.IPAddress:
    """
    The subjectAltName C{name} must match: an IP address if it is an IP
    literal, else a DNS name (one trailing dot, the root, is dropped).

    @raise CertificateError: C{name-mismatch} if it is neither.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    host = name[:-1] if name.endswith(".") else name
    if not host or not host.isascii():
        raise CertificateError(
            "name-mismatch", f"{name!r} is not a DNS name or IP address "
            "(give internationalised names in their xn-- form)")
    return x509.DNSName(host)


def _matches(wanted: x509.DNSName | x509.IPAddress, cert: x509.Certificate) -> bool:
    """
    Whether C{cert}'s subjectAltName holds C{wanted}: IP addresses by
    value, DNS names ignoring case.  Wildcards never match (securechat's CA
    does not issue them).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if isinstance(wanted, x509.IPAddress):
        return wanted in list(san)
    host = wanted.value.lower()
    return any(n.lower() == host for n in san.get_values_for_type(x509.DNSName))


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san]


def verify_server_identity(
    chain_der: Sequence[bytes],
    crl_der: bytes,
    ca: x509.Certificate,
    server_name: str,
    now: datetime.datetime,
) -> keys.PublicKey:
    """
    Check the relay's chain (DER, leaf first) and stapled CRL (DER) against
    C{ca} for C{server_name} (a DNS name or IP literal) at time C{now}, and
    return the leaf's public key.

    @raise CertificateError: with C{code} one of C{malformed}, C{expired},
        C{not-yet-valid}, C{name-mismatch}, C{key-usage}, C{untrusted},
        C{crl-wrong-issuer}, C{crl-bad-signature}, C{crl-not-yet-valid},
        C{crl-expired}, C{revoked}, C{bad-key}.
    @raise ValueError: if C{now} is not timezone-aware (a caller's bug).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("verify_server_identity needs a timezone-aware `now`")
    if not chain_der:
        raise CertificateError("malformed", "the relay sent no certificate")
    try:
        chain = [x509.load_der_x509_certificate(c) for c in chain_der]
    except ValueError as e:
        raise CertificateError("malformed", f"the relay's certificate does not parse: {e}") from None
    try:
        crl = x509.load_der_x509_crl(crl_der)
    except ValueError as e:
        raise CertificateError("malformed", f"the relay's CRL does not parse: {e}") from None
    leaf = chain[0]

    if now < leaf.not_valid_before_utc:
        raise CertificateError(
            "not-yet-valid", f"the relay's certificate is not valid before {leaf.not_valid_before_utc}")
    if now > leaf.not_valid_after_utc:
        raise CertificateError("expired", f"the relay's certificate expired on {leaf.not_valid_after_utc}")
    wanted = _subject(server_name)
    if not _matches(wanted, leaf):
        raise CertificateError(
            "name-mismatch",
            f"the relay's certificate is for {', '.join(_names(leaf)) or 'no name'}, not {server_name}")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usable = usage.digital_signature and ExtendedKeyUsageOID.SERVER_AUTH in eku
    except x509.ExtensionNotFound:
        usable = False
    if not usable:
        raise CertificateError(
            "key-usage", "the relay's certificate is not for server authentication "
            "(needs keyUsage digitalSignature and extendedKeyUsage serverAuth)")

    try:
        verifier = PolicyBuilder().store(Store([ca])).time(now).build_server_verifier(wanted)
    except ValueError as e:
        raise CertificateError("name-mismatch", f"{server_name!r} is not a valid server name: {e}") from None
    try:
        built = verifier.verify(leaf, chain[1:])
    except VerificationError as e:
        raise CertificateError("untrusted", f"the relay's certificate is not from the expected CA: {e}") from None

    if crl.issuer != ca.subject:
        raise CertificateError("crl-wrong-issuer", "the relay's CRL is not from the expected CA")
    if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise CertificateError("crl-bad-signature", "the relay's CRL is not signed by the CA")
    if now < crl.last_update_utc:
        raise CertificateError("crl-not-yet-valid", f"the relay's CRL is not valid before {crl.last_update_utc}")
    next_update = crl.next_update_utc
    if next_update is None or now > next_update:
        raise CertificateError(
            "crl-expired", f"the relay's CRL is out of date (next update was due {next_update})")
    for cert in built[:-1]:
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise CertificateError("revoked", "the relay's certificate has been revoked")

    try:
        return keys.check_public_key(leaf.public_key())
    except keys.KeyFormatError as e:
        raise CertificateError("bad-key", f"the relay's key is not usable: {e}") from None
