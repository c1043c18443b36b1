"""
Tests for the exact rules of docs/protocol.rst, section 9, beyond the
basic checks of C{tests.test_x509}: what the chain may hold, the CRL
profile (number, nextUpdate, critical extensions), the CRL memory that
refuses a rollback, the name rules, and the relay's check of its own
credentials (L{securechat.crypto.x509.check_relay_credentials}).
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial import unittest

from securechat import pki
from securechat.crypto import keys
from securechat.crypto.x509 import (
    MAX_IDENTITY_BYTES,
    CertificateError,
    SeenCrl,
    ca_fingerprint,
    check_relay_credentials,
    check_server_identity,
)
from securechat.wire.messages import CertificateIdentity
from tests.test_x509 import NOW, PKI, _leafBuilder

DER = serialization.Encoding.DER


def crl_builder(p: PKI, number: int | None = 1, revoked: tuple[int, ...] = ()) -> x509.CertificateRevocationListBuilder:
    """
    A CRL of C{p}'s CA, numbered C{number} (or not numbered at all).
    """
    builder = (x509.CertificateRevocationListBuilder().issuer_name(p.ca.subject)
               .last_update(NOW - datetime.timedelta(hours=1))
               .next_update(NOW + datetime.timedelta(days=30)))
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build())
    return builder


def numbered(p: PKI, number: int, revoked: tuple[int, ...] = ()) -> bytes:
    """
    The DER of a CRL of C{p}'s CA numbered C{number}.
    """
    return crl_builder(p, number, revoked=revoked).sign(p.ca_key, hashes.SHA256()).public_bytes(DER)


def _tlv(data: bytes, at: int) -> tuple[int, int]:
    """
    The (start, end) of the DER element at C{at} in C{data}.
    """
    length, head = data[at + 1], 2
    if length & 0x80:
        count = length & 0x7F
        length, head = int.from_bytes(data[at + 2:at + 2 + count], "big"), 2 + count
    return at, at + head + length


def _children(data: bytes) -> list[bytes]:
    """
    The DER elements inside the SEQUENCE C{data}.
    """
    _, end = _tlv(data, 0)
    at = 2 + (data[1] & 0x7F if data[1] & 0x80 else 0)
    out = []
    while at < end:
        start, stop = _tlv(data, at)
        out.append(data[start:stop])
        at = stop
    return out


def _sequence(parts: list[bytes], tag: int = 0x30) -> bytes:
    body = b"".join(parts)
    n = len(body)
    size = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + size + body


def crl_without_next_update(p: PKI) -> bytes:
    """
    A CRL of C{p}'s CA with no nextUpdate (which C{cryptography} will not
    build): a normal one with that field cut out of the signed part, signed
    again with the CA's key.
    """
    from cryptography.hazmat.primitives.asymmetric import ec
    crl = crl_builder(p).sign(p.ca_key, hashes.SHA256())
    tbs = _children(crl.tbs_certlist_bytes)
    assert tbs[3][0] == tbs[4][0] == 0x17  # thisUpdate, nextUpdate (UTCTime)
    signed = _sequence(tbs[:4] + tbs[5:])
    signature = p.ca_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    algorithm = _children(crl.public_bytes(DER))[1]
    return _sequence([signed, algorithm, _sequence([b"\x00" + signature], tag=0x03)])


class ChainShapeTests(unittest.TestCase):
    """
    The chain is the leaf, optionally followed by an exact copy of the CA;
    nothing else.
    """

    def code(self, f, *a, **kw) -> str:  # type: ignore[no-untyped-def]
        return self.assertRaises(CertificateError, f, *a, **kw).code

    def test_caCopyAllowed(self) -> None:
        """
        The leaf followed by a byte-identical copy of the CA verifies.
        """
        p = PKI()
        p.verify(chain=p.chain() + [p.ca.public_bytes(DER)])

    def test_otherCertificateAfterLeaf(self) -> None:
        """
        Anything but the CA's own certificate after the leaf, even another
        relay certificate from the same CA, is C{intermediate}.
        """
        p = PKI()
        other = PKI()
        self.assertEqual(self.code(p.verify, chain=p.chain() + [other.ca.public_bytes(DER)]),
                         "intermediate")
        self.assertEqual(self.code(p.verify, chain=p.chain() + p.chain()), "intermediate")

    def test_caCopyTwice(self) -> None:
        """
        Three certificates are never allowed, even leaf, CA, CA.
        """
        p = PKI()
        ca = p.ca.public_bytes(DER)
        self.assertEqual(self.code(p.verify, chain=p.chain() + [ca, ca]), "intermediate")


class PathValidationTests(unittest.TestCase):
    """
    RFC 5280 checks of section 9, step 6, that are not about the leaf alone.
    """

    def test_expiredCA(self) -> None:
        """
        A leaf still valid from a CA certificate that has expired is
        C{untrusted}: the trust anchor's validity is checked too.
        """
        ca_key, ca = pki.new_ca("short-lived CA", NOW, days=2)
        key = ed25519.Ed25519PrivateKey.generate()
        cert = pki.issue_server_certificate(ca_key, ca, key.public_key(), ["localhost"], NOW, 30)
        later = NOW + datetime.timedelta(days=5)
        crl = pki.issue_crl(ca_key, ca, [], 1, later).public_bytes(DER)
        e = self.assertRaises(CertificateError, check_server_identity, [cert.public_bytes(DER)], crl,
                              ca, "localhost", later)
        self.assertEqual(e.code, "untrusted")


class CrlProfileTests(unittest.TestCase):
    """
    Only the CA's complete, direct, numbered CRL with a nextUpdate is
    accepted.
    """

    def code(self, p: PKI, crl: bytes, seen: SeenCrl | None = None) -> str:
        return self.assertRaises(CertificateError, check_server_identity, p.chain(), crl, p.ca,
                                 "localhost", NOW, seen).code

    def test_noNextUpdate(self) -> None:
        """
        A CRL without nextUpdate would never go out of date, so a CRL
        stapled once could be replayed for ever: C{crl-no-next-update}.
        """
        p = PKI()
        crl = crl_without_next_update(p)
        self.assertIsNone(x509.load_der_x509_crl(crl).next_update_utc)
        self.assertEqual(self.code(p, crl), "crl-no-next-update")

    def test_noNumber(self) -> None:
        """
        A CRL without a CRL number cannot be ordered against others:
        C{crl-no-number}.
        """
        p = PKI()
        crl = crl_builder(p, number=None).sign(p.ca_key, hashes.SHA256()).public_bytes(DER)
        self.assertEqual(self.code(p, crl), "crl-no-number")

    def test_criticalExtension(self) -> None:
        """
        A critical CRL extension (here a delta CRL indicator: a partial
        CRL) is C{crl-unsupported}: only complete CRLs are accepted.
        """
        p = PKI()
        crl = (crl_builder(p).add_extension(x509.DeltaCRLIndicator(1), critical=True)
               .sign(p.ca_key, hashes.SHA256()).public_bytes(DER))
        self.assertEqual(self.code(p, crl), "crl-unsupported")

    def test_criticalEntryExtension(self) -> None:
        """
        A critical extension on a CRL entry (here a certificate issuer: an
        indirect CRL, revoking another issuer's serials) is
        C{crl-unsupported}.
        """
        p = PKI()
        entry = (x509.RevokedCertificateBuilder().serial_number(7).revocation_date(NOW)
                 .add_extension(x509.CertificateIssuer([x509.DNSName("other.example")]), critical=True)
                 .build())
        crl = crl_builder(p).add_revoked_certificate(entry).sign(p.ca_key, hashes.SHA256())
        self.assertEqual(self.code(p, crl.public_bytes(DER)), "crl-unsupported")


class CrlMemoryTests(unittest.TestCase):
    """
    What a client remembers of a CA's CRLs: a lower CRL number than the
    highest seen is a rollback, and a serial once seen revoked stays
    revoked.
    """

    def test_firstCrlRemembered(self) -> None:
        """
        With nothing remembered, a good identity returns its CRL's number
        and revoked serials to remember.
        """
        p = PKI()
        result = check_server_identity(p.chain(), numbered(p, 4, (11, 12)), p.ca, "localhost", NOW)
        self.assertEqual(result.seen, SeenCrl(4, frozenset({11, 12})))
        self.assertEqual(keys.public_key_der(result.public_key),
                         keys.public_key_der(p.server_key.public_key()))

    def test_rollbackRefused(self) -> None:
        """
        A CRL numbered lower than the highest seen is C{crl-rollback}, and
        nothing new is remembered from it.
        """
        p = PKI()
        e = self.assertRaises(CertificateError, check_server_identity, p.chain(), numbered(p, 4),
                              p.ca, "localhost", NOW, SeenCrl(5, frozenset()))
        self.assertEqual(e.code, "crl-rollback")
        self.assertIsNone(e.seen)

    def test_sameNumberAccepted(self) -> None:
        """
        The same CRL number again (the relay re-stapling its current CRL) is
        fine and changes nothing remembered.
        """
        p = PKI()
        seen = SeenCrl(5, frozenset({3}))
        self.assertEqual(check_server_identity(p.chain(), numbered(p, 5, (3,)), p.ca, "localhost",
                                               NOW, seen).seen, seen)

    def test_newerNumberRemembered(self) -> None:
        """
        A newer CRL raises the number remembered and adds its serials to
        those already remembered.
        """
        p = PKI()
        result = check_server_identity(p.chain(), numbered(p, 9, (21,)), p.ca, "localhost", NOW,
                                       SeenCrl(5, frozenset({3})))
        self.assertEqual(result.seen, SeenCrl(9, frozenset({3, 21})))

    def test_rememberedRevocation(self) -> None:
        """
        A leaf whose serial was seen revoked is C{revoked} even when the
        stapled CRL (same number, re-signed without it) omits it.
        """
        p = PKI()
        seen = SeenCrl(5, frozenset({p.cert.serial_number}))
        e = self.assertRaises(CertificateError, check_server_identity, p.chain(), numbered(p, 5),
                              p.ca, "localhost", NOW, seen)
        self.assertEqual(e.code, "revoked")

    def test_newerCrlRememberedWhenRefused(self) -> None:
        """
        A newer authentic CRL that revokes the relay refuses it and still
        tells the caller to remember the CRL (so an older one is a rollback
        afterwards).
        """
        p = PKI()
        e = self.assertRaises(CertificateError, check_server_identity, p.chain(),
                              numbered(p, 6, (p.cert.serial_number,)), p.ca, "localhost", NOW,
                              SeenCrl(5, frozenset()))
        self.assertEqual(e.code, "revoked")
        self.assertEqual(e.seen, SeenCrl(6, frozenset({p.cert.serial_number})))

    def test_forgedCrlNotRemembered(self) -> None:
        """
        A CRL not signed by the CA is refused before anything is learnt
        from it, however high its number.
        """
        p = PKI()
        other = PKI()
        forged = (crl_builder(p, 10**6).sign(other.ca_key, hashes.SHA256()).public_bytes(DER))
        e = self.assertRaises(CertificateError, check_server_identity, p.chain(), forged, p.ca,
                              "localhost", NOW, SeenCrl(5, frozenset()))
        self.assertEqual((e.code, e.seen), ("crl-bad-signature", None))

    def test_caFingerprint(self) -> None:
        """
        CRL memory is kept per CA certificate: different CAs, different
        keys; the same CA, the same key.
        """
        p, q = PKI(), PKI()
        self.assertEqual(ca_fingerprint(p.ca), ca_fingerprint(p.ca))
        self.assertNotEqual(ca_fingerprint(p.ca), ca_fingerprint(q.ca))
        self.assertTrue(ca_fingerprint(p.ca).startswith("SHA256:"))


class NameRuleTests(unittest.TestCase):
    """
    Name matching: ASCII case-insensitive dNSName equality, one trailing
    dot, A-labels only, IP literals against iPAddress only, no wildcards,
    never the common name.
    """

    def code(self, f, *a, **kw) -> str:  # type: ignore[no-untyped-def]
        return self.assertRaises(CertificateError, f, *a, **kw).code

    def test_aLabels(self) -> None:
        """
        An internationalised name matches in its A-label (xn--) form,
        ignoring case; its U-label form is refused as a name.
        """
        p = PKI(names=("xn--bcher-kva.example",))
        p.verify("XN--BCHER-KVA.example")
        self.assertEqual(self.code(p.verify, "bücher.example"), "name-mismatch")

    def test_wildcardNeverMatches(self) -> None:
        """
        A wildcard subjectAltName matches nothing, neither a name under it
        nor the wildcard spelled out.
        """
        p = PKI()
        cert = (_leafBuilder(p, p.ca.subject)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(p.ca_key, hashes.SHA256()))
        san = x509.SubjectAlternativeName([x509.DNSName("*.example.org")])
        wild = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(p.ca.subject)
                .public_key(p.server_key.public_key()).serial_number(5)
                .not_valid_before(NOW - datetime.timedelta(days=1))
                .not_valid_after(NOW + datetime.timedelta(days=1))
                .add_extension(san, critical=False)
                .add_extension(cert.extensions.get_extension_for_class(x509.KeyUsage).value, critical=True)
                .add_extension(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value,
                               critical=False)
                .sign(p.ca_key, hashes.SHA256()))
        chain = [wild.public_bytes(DER)]
        self.assertEqual(self.code(p.verify, "chat.example.org", chain=chain), "name-mismatch")
        self.assertEqual(self.code(p.verify, "*.example.org", chain=chain), "name-mismatch")

    def test_oneTrailingDotOnly(self) -> None:
        """
        One trailing dot (the root) is dropped; two are not a name.
        """
        p = PKI()
        p.verify("localhost.")
        self.assertEqual(self.code(p.verify, "localhost.."), "name-mismatch")

    def test_ipv6Spellings(self) -> None:
        """
        An IPv6 literal matches by value whatever its spelling; brackets
        and zone identifiers are not part of a name.
        """
        p = PKI()
        p.verify("0:0:0:0:0:0:0:1")
        self.assertEqual(self.code(p.verify, "[::1]"), "name-mismatch")
        self.assertEqual(self.code(p.verify, "::1%lo"), "name-mismatch")

    def test_commonNameIgnored(self) -> None:
        """
        The subject's common name is never matched: only subjectAltName.
        """
        p = PKI(names=("other.example",))
        p.cert = (x509.CertificateBuilder().subject_name(
            x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(p.ca.subject).public_key(p.server_key.public_key()).serial_number(6)
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("other.example")]), critical=False)
            .add_extension(p.cert.extensions.get_extension_for_class(x509.KeyUsage).value, critical=True)
            .add_extension(p.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value,
                           critical=False)
            .sign(p.ca_key, hashes.SHA256()))
        self.assertEqual(self.code(p.verify, "localhost"), "name-mismatch")


class RelayCredentialTests(unittest.TestCase):
    """
    The relay checks its own key, chain and CRL with the clients' verifier
    before serving them.
    """

    def check(self, p: PKI, chain: list[bytes] | None = None, crl: bytes | None = None,
              key: keys.PrivateKey | None = None, now: datetime.datetime = NOW) -> list[str]:
        chain = p.chain() if chain is None else chain
        crl = p.crl.public_bytes(DER) if crl is None else crl
        size = len(CertificateIdentity(tuple(chain), crl).encode())
        return check_relay_credentials(key or p.server_key, chain, crl, p.ca, now, size)

    def code(self, *a, **kw) -> str:  # type: ignore[no-untyped-def]
        return self.assertRaises(CertificateError, self.check, *a, **kw).code

    def test_good(self) -> None:
        """
        Good credentials return the names clients may use.
        """
        self.assertEqual(self.check(PKI()), ["localhost", "127.0.0.1", "::1"])

    def test_keyMismatch(self) -> None:
        """
        A private key that is not the certificate's is C{key-mismatch}.
        """
        self.assertEqual(self.code(PKI(), key=ed25519.Ed25519PrivateKey.generate()), "key-mismatch")

    def test_otherCA(self) -> None:
        """
        A certificate from another CA (a doctored data directory) is
        C{untrusted}, as every client would find.
        """
        p, other = PKI(), PKI()
        self.assertEqual(self.code(p, chain=other.chain(), key=other.server_key), "untrusted")

    def test_revoked(self) -> None:
        """
        A certificate the CA's CRL revokes is C{revoked}.
        """
        p = PKI()
        self.assertEqual(self.code(p, crl=numbered(p, 2, (p.cert.serial_number,))), "revoked")

    def test_crlExpired(self) -> None:
        """
        An out-of-date CRL is C{crl-expired}: no client would accept it.
        """
        self.assertEqual(self.code(PKI(), now=NOW + datetime.timedelta(days=31)), "crl-expired")

    def test_tooLarge(self) -> None:
        """
        Credentials whose encoding is over L{MAX_IDENTITY_BYTES} are
        C{too-large}, and the message says how many bytes they take.
        """
        p = PKI()
        crl = numbered(p, 2, tuple(range(10**40, 10**40 + 400)))
        e = self.assertRaises(CertificateError, self.check, p, crl=crl)
        self.assertEqual(e.code, "too-large")
        self.assertIn(str(MAX_IDENTITY_BYTES), str(e))
