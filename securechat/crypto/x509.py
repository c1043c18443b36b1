# -*- test-case-name: tests.test_x509 -*-
"""
Checking the relay's certificate identity: its certificate (with at most a
copy of the operator's CA after it, never an intermediate) and the CA's CRL,
which the relay staples (docs/protocol.rst, section 9).

Pure: the time is an argument, and so is what the caller remembers of the
CA's earlier CRLs (L{SeenCrl}); the caller keeps that memory wherever it
likes (the client: securechat.client.crlstate).  The precise checks on the
leaf (dates, name, key usage, the chain's shape) come first so that each
failure has its own code; the chain itself is then verified by
C{cryptography.x509.verification}, a strict RFC 5280 implementation, and
finally the CRL is checked, against rollback too.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass
from typing import NoReturn, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from securechat.crypto import keys

#: The largest certificate identity (section 4.6 encoding) a relay may
#: send: with its AUTH fields, the largest signature of section 7, the
#: record header and tag, the relay's handshake record then stays well
#: under the 16384-byte frame maximum clients apply before the handshake
#: completes (docs/protocol.rst, sections 3 and 4.6).
MAX_IDENTITY_BYTES = 14 * 1024

#: One DNS label: letters, digits and hyphens, not starting or ending with a
#: hyphen (RFC 1123 host names; internationalised labels in their xn-- form).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


class CertificateError(ValueError):
    """
    The relay's certificate identity was rejected.  C{code} says which check
    failed (docs/protocol.rst, section 9).

    @ivar seen: when the stapled CRL was authentic (signed by the CA) and
        newer than what the caller remembered, what to remember now, even
        though the identity was refused; else C{None}.
    """

    def __init__(self, code: str, message: str, seen: SeenCrl | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.seen = seen


@dataclass(frozen=True)
class SeenCrl:
    """
    What a client remembers of one CA's CRLs: the highest CRL number it has
    verified, and every serial revoked in the CRLs it verified.
    """

    number: int
    revoked: frozenset[int]

    def merged(self, number: int, revoked: frozenset[int]) -> SeenCrl:
        """
        This memory after verifying a CRL numbered C{number} revoking
        C{revoked}.
        """
        return SeenCrl(max(self.number, number), self.revoked | revoked)


@dataclass(frozen=True)
class VerifiedServer:
    """
    A relay identity that passed every check: its public key, and what to
    remember of its CA's CRLs from now on.
    """

    public_key: keys.PublicKey
    seen: SeenCrl


def is_host_name(name: str) -> bool:
    """
    Whether C{name} is an ASCII DNS host name: dot-separated labels of
    letters, digits and hyphens, at most 253 characters, no trailing dot.
    """
    return bool(name) and len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def ca_fingerprint(ca: x509.Certificate) -> str:
    """
    The key under which a CA's CRL memory is kept: C{SHA256:} and the
    unpadded base64 SHA-256 of the CA certificate's DER encoding.
    """
    import base64
    import hashlib
    digest = hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _subject(name: str) -> x509.DNSName | x509.IPAddress:
    """
    The subjectAltName C{name} must match: an IP address if it is an IP
    literal, else a DNS host name (one trailing dot, the root, is dropped).

    @raise CertificateError: C{name-mismatch} if it is neither.
    """
    if "%" not in name:  # no IPv6 zone identifiers
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            pass
    host = name[:-1] if name.endswith(".") else name
    if not is_host_name(host):
        raise CertificateError(
            "name-mismatch", f"{name!r} is not a DNS host name or IP address "
            "(give internationalised names in their xn-- form; wildcards are never matched)")
    return x509.DNSName(host)


def _matches(wanted: x509.DNSName | x509.IPAddress, cert: x509.Certificate) -> bool:
    """
    Whether C{cert}'s subjectAltName holds C{wanted}: an IP address only an
    iPAddress entry of the same value, a DNS name only a dNSName entry equal
    to it ignoring ASCII case.  Wildcards never match, and the subject's
    common name is never used.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if isinstance(wanted, x509.IPAddress):
        return wanted in list(san)
    host = wanted.value.lower()
    return any(n.isascii() and n.lower() == host for n in san.get_values_for_type(x509.DNSName))


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san]


def _check_chain_shape(chain: Sequence[x509.Certificate], chain_der: Sequence[bytes],
                       ca: x509.Certificate) -> None:
    """
    The chain is the leaf alone, or the leaf and an exact copy of the CA:
    intermediates are not allowed, so the CA's own CRL covers the leaf.
    """
    if len(chain) == 1:
        return
    if len(chain) == 2 and chain_der[1] == ca.public_bytes(serialization.Encoding.DER):
        return
    raise CertificateError(
        "intermediate", "the relay's chain holds a certificate other than its own and the CA's "
        "(intermediate CAs are not allowed: the relay's certificate must be issued by the CA itself)")


def verify_server_identity(
    chain_der: Sequence[bytes],
    crl_der: bytes,
    ca: x509.Certificate,
    server_name: str,
    now: datetime.datetime,
) -> keys.PublicKey:
    """
    L{check_server_identity} with nothing remembered: the relay's public key.
    """
    return check_server_identity(chain_der, crl_der, ca, server_name, now).public_key


def check_server_identity(
    chain_der: Sequence[bytes],
    crl_der: bytes,
    ca: x509.Certificate,
    server_name: str,
    now: datetime.datetime,
    seen: SeenCrl | None = None,
) -> VerifiedServer:
    """
    Check the relay's chain (DER, leaf first) and stapled CRL (DER) against
    C{ca} for C{server_name} (a DNS name or IP literal) at time C{now},
    given what the caller remembers of C{ca}'s CRLs (C{seen}), and return
    the leaf's public key and what to remember from now on.

    @raise CertificateError: with C{code} one of C{malformed}, C{expired},
        C{not-yet-valid}, C{name-mismatch}, C{key-usage}, C{intermediate},
        C{untrusted}, C{crl-wrong-issuer}, C{crl-bad-signature},
        C{crl-unsupported}, C{crl-no-number}, C{crl-rollback},
        C{crl-not-yet-valid}, C{crl-no-next-update}, C{crl-expired},
        C{revoked}, C{bad-key}.
    @raise ValueError: if C{now} is not timezone-aware (a caller's bug).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("check_server_identity needs a timezone-aware `now`")
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
    _check_chain_shape(chain, chain_der, ca)

    try:
        verifier = PolicyBuilder().store(Store([ca])).time(now).build_server_verifier(wanted)
    except ValueError as e:
        raise CertificateError("name-mismatch", f"{server_name!r} is not a valid server name: {e}") from None
    try:
        verifier.verify(leaf, [])
    except VerificationError as e:
        raise CertificateError("untrusted", f"the relay's certificate is not from the expected CA: {e}") from None

    revoked, number = _authentic_crl(crl, ca)
    if seen is not None and number < seen.number:
        raise CertificateError(
            "crl-rollback", f"the relay stapled CRL number {number}, older than number {seen.number} "
            "already seen from this CA (a revoked relay key may be replaying an old CRL)")
    remembered = SeenCrl(number, revoked) if seen is None else seen.merged(number, revoked)
    newer = remembered if remembered != seen else None

    def refuse(code: str, message: str) -> NoReturn:
        raise CertificateError(code, message, newer)

    if now < crl.last_update_utc:
        refuse("crl-not-yet-valid", f"the relay's CRL is not valid before {crl.last_update_utc}")
    next_update = crl.next_update_utc
    if next_update is None:
        refuse("crl-no-next-update", "the relay's CRL has no nextUpdate (it would never go out of date)")
    if now > next_update:
        refuse("crl-expired", f"the relay's CRL is out of date (next update was due {next_update})")
    if leaf.serial_number in remembered.revoked:
        refuse("revoked", "the relay's certificate has been revoked")
    try:
        return VerifiedServer(keys.check_public_key(leaf.public_key()), remembered)
    except keys.KeyFormatError as e:
        refuse("bad-key", f"the relay's key is not usable: {e}")


def _authentic_crl(crl: x509.CertificateRevocationList, ca: x509.Certificate
                   ) -> tuple[frozenset[int], int]:
    """
    Check that C{crl} is the CA's own complete CRL (issuer, signature, no
    critical extension we do not implement, a CRL number) and return its
    revoked serials and its number.
    """
    if crl.issuer != ca.subject:
        raise CertificateError("crl-wrong-issuer", "the relay's CRL is not from the expected CA")
    if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise CertificateError("crl-bad-signature", "the relay's CRL is not signed by the CA")
    critical = [e.oid.dotted_string for e in crl.extensions if e.critical]
    revoked: set[int] = set()
    for entry in crl:
        critical.extend(e.oid.dotted_string for e in entry.extensions if e.critical)
        revoked.add(entry.serial_number)
    if critical:
        raise CertificateError(
            "crl-unsupported", f"the relay's CRL has a critical extension securechat does not "
            f"implement ({', '.join(sorted(set(critical)))}): only complete, direct CRLs are accepted")
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        raise CertificateError("crl-no-number", "the relay's CRL has no CRL number") from None
    return frozenset(revoked), number


def check_relay_credentials(
    private_key: keys.PrivateKey,
    chain_der: Sequence[bytes],
    crl_der: bytes,
    ca: x509.Certificate,
    now: datetime.datetime,
    identity_size: int,
) -> list[str]:
    """
    The relay's check of its own credentials before it serves them: its key
    belongs to the leaf, the encoded identity (C{identity_size} bytes) fits
    L{MAX_IDENTITY_BYTES}, and the chain and CRL pass the very checks a
    client makes (L{check_server_identity}) for a name the certificate
    carries (one is enough: the name check is the client's).  Returns the
    names a client can ask for.

    @raise CertificateError: C{key-mismatch}, C{too-large}, C{name-mismatch}
        (a certificate naming nothing usable), or any code of
        L{check_server_identity}.
    """
    try:
        leaf = x509.load_der_x509_certificate(chain_der[0]) if chain_der else None
    except ValueError as e:
        raise CertificateError("malformed", f"the relay's certificate does not parse: {e}") from None
    if leaf is None:
        raise CertificateError("malformed", "the relay has no certificate")
    if keys.public_key_der(private_key.public_key()) != keys.public_key_der(
            leaf.public_key()):  # type: ignore[arg-type]
        raise CertificateError("key-mismatch", "the relay's private key does not belong to its certificate")
    if identity_size > MAX_IDENTITY_BYTES:
        raise CertificateError(
            "too-large", f"the certificate chain and CRL take {identity_size} bytes, more than the "
            f"{MAX_IDENTITY_BYTES} that fit in a handshake record every client accepts: remove the CA "
            "copy or expired revocations, or start a new CA")
    names = []
    for name in _names(leaf):
        try:
            _subject(name)
        except CertificateError:
            continue  # no client can ask for it (a wildcard, say): harmless
        names.append(name)
    if not names:
        raise CertificateError(
            "name-mismatch", "the relay's certificate names no DNS host name or IP address "
            f"({', '.join(_names(leaf)) or 'no subjectAltName'})")
    check_server_identity(chain_der, crl_der, ca, names[0], now)
    return names
