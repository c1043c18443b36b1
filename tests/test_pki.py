"""
Tests for L{securechat.pki}: the CA, relay and user certificate profiles
(checked against C{cryptography.x509.verification}, a strict RFC 5280
verifier), CRLs, CSR checks and the refusals of bad names and lifetimes.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from twisted.trial import unittest

from securechat import pki
from securechat.crypto import keys

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
DER = serialization.Encoding.DER


def ext(cert: x509.Certificate | x509.CertificateRevocationList, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


class CATests(unittest.TestCase):
    """
    L{pki.new_ca}.
    """

    def setUp(self) -> None:
        self.key, self.cert = pki.new_ca("test CA", NOW)

    def test_keyAndSignature(self) -> None:
        """
        The CA key is ECDSA P-256 and the certificate is self-signed with
        SHA-256.
        """
        self.assertIsInstance(self.key, ec.EllipticCurvePrivateKey)
        self.assertIsInstance(self.key.curve, ec.SECP256R1)
        self.assertEqual(self.cert.subject, self.cert.issuer)
        self.assertIsInstance(self.cert.signature_hash_algorithm, hashes.SHA256)
        self.cert.verify_directly_issued_by(self.cert)

    def test_extensions(self) -> None:
        """
        basicConstraints CA with path length 0 and keyUsage keyCertSign and
        cRLSign, both critical; subject and authority key identifiers.
        """
        bc = ext(self.cert, x509.BasicConstraints)
        self.assertTrue(bc.critical)
        self.assertEqual(bc.value, x509.BasicConstraints(ca=True, path_length=0))
        ku = ext(self.cert, x509.KeyUsage)
        self.assertTrue(ku.critical)
        self.assertTrue(ku.value.key_cert_sign and ku.value.crl_sign)
        self.assertFalse(ku.value.digital_signature)
        ski = ext(self.cert, x509.SubjectKeyIdentifier).value
        aki = ext(self.cert, x509.AuthorityKeyIdentifier).value
        self.assertEqual(aki.key_identifier, ski.digest)

    def test_validity(self) -> None:
        """
        Ten years from an hour before C{now}; the common name is the one
        given.
        """
        self.assertEqual(self.cert.not_valid_before_utc, NOW - datetime.timedelta(hours=1))
        self.assertEqual(self.cert.not_valid_after_utc, NOW + datetime.timedelta(days=3650))
        self.assertEqual(
            self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "test CA")

    def test_badCommonName(self) -> None:
        """
        An empty or over-long CA name is refused with a sentence, not an
        ASN.1 error.
        """
        for name in ("", "x" * 65):
            e = self.assertRaises(ValueError, pki.new_ca, name, NOW)
            self.assertIn("common name", str(e))


class ServerCertificateTests(unittest.TestCase):
    """
    L{pki.issue_server_certificate} and L{pki.new_server_key}.
    """

    names = ["chat.example.org", "localhost", "127.0.0.1", "::1"]

    def setUp(self) -> None:
        self.ca_key, self.ca = pki.new_ca("test CA", NOW)

    def issue(self, key: keys.PrivateKey, names: list[str] | None = None,
              days: int = pki.SERVER_DAYS) -> x509.Certificate:
        return pki.issue_server_certificate(self.ca_key, self.ca, key.public_key(),
                                            names or self.names, NOW, days)

    def verifyWith(self, cert: x509.Certificate, name: x509.DNSName | x509.IPAddress) -> None:
        verifier = PolicyBuilder().store(Store([self.ca])).time(NOW).build_server_verifier(name)
        chain = verifier.verify(cert, [])
        self.assertEqual(chain[-1], self.ca)

    def test_ed25519PassesStrictVerifier(self) -> None:
        """
        An Ed25519 relay certificate passes cryptography's RFC 5280 server
        verifier for each of its DNS names and IP addresses.
        """
        cert = self.issue(pki.new_server_key("ed25519"))
        self.assertIsInstance(cert.public_key(), ed25519.Ed25519PublicKey)
        self.verifyWith(cert, x509.DNSName("chat.example.org"))
        self.verifyWith(cert, x509.DNSName("localhost"))
        self.verifyWith(cert, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        self.verifyWith(cert, x509.IPAddress(ipaddress.ip_address("::1")))

    def test_p256PassesStrictVerifier(self) -> None:
        """
        An ECDSA P-256 relay certificate passes the same verifier.
        """
        cert = self.issue(pki.new_server_key("ecdsa-p256"))
        self.assertIsInstance(cert.public_key(), ec.EllipticCurvePublicKey)
        self.verifyWith(cert, x509.DNSName("localhost"))

    def test_unknownKeyType(self) -> None:
        """
        Only the two documented relay key types are made.
        """
        self.assertIn("ed25519", str(self.assertRaises(ValueError, pki.new_server_key, "rsa")))

    def test_profile(self) -> None:
        """
        CN is the first name; SAN has a DNSName per host name and an
        IPAddress per IP literal; keyUsage digitalSignature and
        basicConstraints CA:false are critical; extendedKeyUsage serverAuth;
        key identifiers link to the CA; one year from an hour ago.
        """
        cert = self.issue(pki.new_server_key())
        self.assertEqual(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                         "chat.example.org")
        self.assertEqual(cert.issuer, self.ca.subject)
        san = ext(cert, x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["chat.example.org", "localhost"])
        self.assertEqual(san.get_values_for_type(x509.IPAddress),
                         [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")])
        self.assertEqual(pki.certificate_names(cert), self.names)
        ku = ext(cert, x509.KeyUsage)
        self.assertTrue(ku.critical)
        self.assertTrue(ku.value.digital_signature)
        self.assertFalse(ku.value.key_cert_sign)
        bc = ext(cert, x509.BasicConstraints)
        self.assertTrue(bc.critical)
        self.assertFalse(bc.value.ca)
        self.assertEqual(list(ext(cert, x509.ExtendedKeyUsage).value), [ExtendedKeyUsageOID.SERVER_AUTH])
        self.assertEqual(ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier,
                         ext(self.ca, x509.SubjectKeyIdentifier).value.digest)
        self.assertEqual(cert.not_valid_before_utc, NOW - pki.BACKDATE)
        self.assertEqual(cert.not_valid_after_utc, NOW + datetime.timedelta(days=365))
        cert.verify_directly_issued_by(self.ca)

    def test_randomSerials(self) -> None:
        """
        Two certificates get different, large serial numbers.
        """
        key = pki.new_server_key()
        a, b = self.issue(key), self.issue(key)
        self.assertNotEqual(a.serial_number, b.serial_number)
        self.assertGreater(a.serial_number.bit_length(), 64)

    def test_days(self) -> None:
        """
        The lifetime is configurable, and must be at least a day.
        """
        cert = self.issue(pki.new_server_key(), days=30)
        self.assertEqual(cert.not_valid_after_utc, NOW + datetime.timedelta(days=30))
        self.assertIn("at least 1 day", str(self.assertRaises(
            ValueError, self.issue, pki.new_server_key(), days=0)))

    def test_badNames(self) -> None:
        """
        Names that are neither host names nor IP literals, wildcards
        included, and an empty list are refused before anything is signed.
        """
        for name in ("", "bad name", "héllo.example", "*.example.org", "-x.example", "a..b", "x" * 64):
            e = self.assertRaises(ValueError, self.issue, pki.new_server_key(), [name])
            self.assertIn("neither an IP address nor a DNS host name", str(e))
        self.assertRaises(ValueError, pki.issue_server_certificate, self.ca_key, self.ca,
                          pki.new_server_key().public_key(), [], NOW)

    def test_goodNames(self) -> None:
        """
        Host names, IDNA A-labels and IPv4/IPv6 literals are accepted.
        """
        for name in ("localhost", "chat-1.example.org", "xn--hlo-bma.example", "10.0.0.1", "fe80::1"):
            self.assertEqual(pki.check_server_name(name), name)

    def test_longFirstName(self) -> None:
        """
        The first name becomes the CN, limited to 64 characters: a longer
        one is refused with that reason; a long later name is fine.
        """
        long_name = "a" * 60 + ".example.org"
        e = self.assertRaises(ValueError, self.issue, pki.new_server_key(), [long_name])
        self.assertIn("common name", str(e))
        cert = self.issue(pki.new_server_key(), ["localhost", long_name])
        self.assertEqual(pki.certificate_names(cert), ["localhost", long_name])


class UserCertificateTests(unittest.TestCase):
    """
    L{pki.issue_user_certificate} and L{pki.check_csr}.
    """

    def setUp(self) -> None:
        self.ca_key, self.ca = pki.new_ca("test CA", NOW)
        self.user_key = ed25519.Ed25519PrivateKey.generate()

    def csr(self, key: keys.PrivateKey, cn: str = "alice") -> x509.CertificateSigningRequest:
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        return builder.sign(key, algorithm)

    def test_profile(self) -> None:
        """
        CN is the user name, keyUsage digitalSignature (critical),
        extendedKeyUsage clientAuth, a year, signed by the CA.
        """
        cert = pki.issue_user_certificate(self.ca_key, self.ca, "alice", self.user_key.public_key(), NOW)
        self.assertEqual(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "alice")
        self.assertTrue(ext(cert, x509.KeyUsage).critical)
        self.assertTrue(ext(cert, x509.KeyUsage).value.digital_signature)
        self.assertEqual(list(ext(cert, x509.ExtendedKeyUsage).value), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertFalse(ext(cert, x509.BasicConstraints).value.ca)
        self.assertEqual(cert.not_valid_after_utc, NOW + datetime.timedelta(days=365))
        cert.verify_directly_issued_by(self.ca)

    def test_csrMatchingKey(self) -> None:
        """
        A CSR signed by the registered key is accepted, for each key type.
        """
        for key in (self.user_key, ec.generate_private_key(ec.SECP256R1()),
                    rsa.generate_private_key(65537, 2048)):
            pki.check_csr(self.csr(key), key.public_key())

    def test_csrOtherKey(self) -> None:
        """
        A CSR for a key other than the registered one is refused.
        """
        other = ed25519.Ed25519PrivateKey.generate()
        e = self.assertRaises(ValueError, pki.check_csr, self.csr(other), self.user_key.public_key())
        self.assertIn("registered key", str(e))

    def test_csrBadSignature(self) -> None:
        """
        A CSR whose signature does not verify is refused.
        """
        good = self.csr(self.user_key).public_bytes(DER)
        tampered = bytearray(good)
        tampered[-1] ^= 0x01
        csr = x509.load_der_x509_csr(bytes(tampered))
        e = self.assertRaises(ValueError, pki.check_csr, csr, self.user_key.public_key())
        self.assertIn("signature", str(e))


class CRLTests(unittest.TestCase):
    """
    L{pki.issue_crl}.
    """

    def setUp(self) -> None:
        self.ca_key, self.ca = pki.new_ca("test CA", NOW)

    def test_empty(self) -> None:
        """
        An empty CRL from the CA: number, AKI, SHA-256, valid from C{now}
        for 30 days, signature checked with the CA's key.
        """
        crl = pki.issue_crl(self.ca_key, self.ca, [], 1, NOW)
        self.assertEqual(len(list(crl)), 0)
        self.assertEqual(crl.issuer, self.ca.subject)
        self.assertEqual(ext(crl, x509.CRLNumber).value.crl_number, 1)
        self.assertEqual(ext(crl, x509.AuthorityKeyIdentifier).value.key_identifier,
                         ext(self.ca, x509.SubjectKeyIdentifier).value.digest)
        self.assertIsInstance(crl.signature_hash_algorithm, hashes.SHA256)
        self.assertEqual(crl.last_update_utc, NOW)
        self.assertEqual(crl.next_update_utc, NOW + datetime.timedelta(days=30))
        self.assertTrue(crl.is_signature_valid(self.ca_key.public_key()))

    def test_revoked(self) -> None:
        """
        Revoked serials are listed with their revocation time.
        """
        when = NOW - datetime.timedelta(days=2)
        crl = pki.issue_crl(self.ca_key, self.ca, [(12345, when), (678, NOW)], 7, NOW, days=3)
        entry = crl.get_revoked_certificate_by_serial_number(12345)
        assert entry is not None
        self.assertEqual(entry.revocation_date_utc, when)
        self.assertIsNotNone(crl.get_revoked_certificate_by_serial_number(678))
        self.assertIsNone(crl.get_revoked_certificate_by_serial_number(9))
        self.assertEqual(crl.next_update_utc, NOW + datetime.timedelta(days=3))

    def test_days(self) -> None:
        """
        A CRL must be valid for at least a day.
        """
        self.assertRaises(ValueError, pki.issue_crl, self.ca_key, self.ca, [], 1, NOW, 0)
