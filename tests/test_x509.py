"""
Tests for L{securechat.crypto.x509.verify_server_identity}: one named test
for each way the relay's certificate identity can be wrong, and the
client-server handshake through it.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from twisted.trial import unittest

from securechat import pki
from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.crypto.events import HandshakeComplete
from securechat.crypto.handshake import Connection
from securechat.crypto.x509 import CertificateError, verify_server_identity
from securechat.wire.messages import CertificateIdentity, UserIdentity
from tests.support import failure, run

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
DER = serialization.Encoding.DER


class PKI:
    """
    A CA, a relay certificate and a CRL, made with L{securechat.pki}.
    """

    def __init__(self, names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
                 server_key: keys.PrivateKey | None = None, now: datetime.datetime = NOW,
                 days: int = 365) -> None:
        self.ca_key, self.ca = pki.new_ca("test CA", now)
        self.server_key = server_key or ed25519.Ed25519PrivateKey.generate()
        self.cert = pki.issue_server_certificate(
            self.ca_key, self.ca, self.server_key.public_key(), list(names), now, days)
        self.revoked: list[tuple[int, datetime.datetime]] = []
        self.crl = self.make_crl(now)

    def make_crl(self, now: datetime.datetime, key: ec.EllipticCurvePrivateKey | None = None,
                 days: int = 30) -> x509.CertificateRevocationList:
        return pki.issue_crl(key or self.ca_key, self.ca, self.revoked, 1, now, days)

    def chain(self) -> list[bytes]:
        return [self.cert.public_bytes(DER)]

    def verify(self, name: str = "localhost", now: datetime.datetime = NOW, chain=None, crl=None):  # type: ignore[no-untyped-def]
        return verify_server_identity(
            self.chain() if chain is None else chain,
            (self.crl if crl is None else crl).public_bytes(DER), self.ca, name, now)


class VerifyTests(unittest.TestCase):
    """
    Each check of docs/protocol.rst, section 9.
    """

    def code(self, f, *a, **kw) -> str:  # type: ignore[no-untyped-def]
        return self.assertRaises(CertificateError, f, *a, **kw).code

    def test_validEd25519(self) -> None:
        """
        A good chain returns the relay's Ed25519 key.
        """
        p = PKI()
        self.assertEqual(keys.public_key_der(p.verify()), keys.public_key_der(p.server_key.public_key()))

    def test_validP256(self) -> None:
        """
        A relay key of ECDSA P-256 works too.
        """
        p = PKI(server_key=ec.generate_private_key(ec.SECP256R1()))
        self.assertIsInstance(p.verify(), ec.EllipticCurvePublicKey)

    def test_ipAddresses(self) -> None:
        """
        127.0.0.1 and ::1 match their IP subjectAltNames.
        """
        p = PKI()
        p.verify("127.0.0.1")
        p.verify("::1")

    def test_otherCA(self) -> None:
        """
        A certificate from another CA is C{untrusted}.
        """
        p, other = PKI(), PKI()
        self.assertEqual(self.code(verify_server_identity, other.chain(), p.crl.public_bytes(DER),
                                   p.ca, "localhost", NOW), "untrusted")

    def test_expired(self) -> None:
        """
        After its end date the certificate is C{expired}.
        """
        self.assertEqual(self.code(PKI(days=30).verify, now=NOW + datetime.timedelta(days=31)),
                         "expired")

    def test_notYetValid(self) -> None:
        """
        Before its start date it is C{not-yet-valid}.
        """
        self.assertEqual(self.code(PKI().verify, now=NOW - datetime.timedelta(days=1)),
                         "not-yet-valid")

    def test_wrongName(self) -> None:
        """
        A name the certificate does not carry is C{name-mismatch}, and the
        message lists the names it does carry.
        """
        e = self.assertRaises(CertificateError, PKI().verify, "chat.example.org")
        self.assertEqual(e.code, "name-mismatch")
        self.assertIn("localhost", str(e))

    def test_revoked(self) -> None:
        """
        A certificate listed in the CRL is C{revoked}.
        """
        p = PKI()
        p.revoked.append((p.cert.serial_number, NOW))
        self.assertEqual(self.code(p.verify, crl=p.make_crl(NOW)), "revoked")

    def test_crlWrongKey(self) -> None:
        """
        A CRL signed by a key other than the CA's is C{crl-bad-signature}.
        """
        p = PKI()
        forged = p.make_crl(NOW, key=ec.generate_private_key(ec.SECP256R1()))
        self.assertEqual(self.code(p.verify, crl=forged), "crl-bad-signature")

    def test_crlWrongIssuer(self) -> None:
        """
        Another CA's CRL is C{crl-wrong-issuer}.
        """
        p, other = PKI(), PKI()
        other.ca = pki.new_ca("another CA", NOW)[1]
        other_crl = pki.issue_crl(other.ca_key, other.ca, [], 1, NOW)
        self.assertEqual(self.code(p.verify, crl=other_crl), "crl-wrong-issuer")

    def test_crlExpired(self) -> None:
        """
        A CRL past its next update is C{crl-expired} (a relay cannot staple
        an old CRL from before its revocation forever).
        """
        p = PKI()
        self.assertEqual(self.code(p.verify, now=NOW + datetime.timedelta(days=31)), "crl-expired")

    def test_crlNotYetValid(self) -> None:
        """
        A CRL issued in the future is C{crl-not-yet-valid}.
        """
        p = PKI()
        self.assertEqual(self.code(p.verify, crl=p.make_crl(NOW + datetime.timedelta(days=1))),
                         "crl-not-yet-valid")

    def test_missingServerAuth(self) -> None:
        """
        A certificate for client authentication only is C{key-usage}.
        """
        p = PKI()
        client_cert = pki.issue_user_certificate(p.ca_key, p.ca, "localhost",
                                                 p.server_key.public_key(), NOW)
        self.assertEqual(self.code(p.verify, chain=[client_cert.public_bytes(DER)]), "name-mismatch")
        builder = (
            x509.CertificateBuilder().subject_name(p.cert.subject).issuer_name(p.ca.subject)
            .public_key(p.server_key.public_key()).serial_number(7)
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                           critical=True)
        )
        cert = builder.sign(p.ca_key, hashes.SHA256())
        self.assertEqual(self.code(p.verify, chain=[cert.public_bytes(DER)]), "key-usage")

    def test_malformed(self) -> None:
        """
        Garbage instead of a certificate or a CRL, or no certificate at all,
        is C{malformed}.
        """
        p = PKI()
        self.assertEqual(self.code(p.verify, chain=[b"\x30\x03\x02\x01\x01"]), "malformed")
        self.assertEqual(self.code(p.verify, chain=[]), "malformed")
        self.assertEqual(self.code(verify_server_identity, p.chain(), b"not a crl", p.ca,
                                   "localhost", NOW), "malformed")


def _leafBuilder(p: PKI, issuer: x509.Name, **usage: bool) -> x509.CertificateBuilder:
    """
    A relay certificate for localhost, without keyUsage/extendedKeyUsage
    unless asked (C{ku}, C{eku}, C{digital_signature}).
    """
    builder = (
        x509.CertificateBuilder().subject_name(p.cert.subject).issuer_name(issuer)
        .public_key(p.server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    )
    if usage.get("ku", True):
        builder = builder.add_extension(x509.KeyUsage(
            usage.get("digital_signature", True), False, False, False, False, False, False, False,
            False), critical=True)
    if usage.get("eku", True):
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder


class MoreVerifyTests(unittest.TestCase):
    """
    Finer points: the separate key usage checks, name matching rules,
    intermediates, and arguments that are a caller's bug.
    """

    def code(self, f, *a, **kw) -> str:  # type: ignore[no-untyped-def]
        return self.assertRaises(CertificateError, f, *a, **kw).code

    def test_emptyChain(self) -> None:
        """
        No certificate at all is C{malformed}.
        """
        e = self.assertRaises(CertificateError, PKI().verify, chain=[])
        self.assertEqual(e.code, "malformed")
        self.assertIn("no certificate", str(e))

    def test_missingDigitalSignature(self) -> None:
        """
        keyUsage without digitalSignature is C{key-usage}.
        """
        p = PKI()
        cert = _leafBuilder(p, p.ca.subject, digital_signature=False).sign(p.ca_key, hashes.SHA256())
        self.assertEqual(self.code(p.verify, chain=[cert.public_bytes(DER)]), "key-usage")

    def test_missingKeyUsage(self) -> None:
        """
        No keyUsage extension at all is C{key-usage}.
        """
        p = PKI()
        cert = _leafBuilder(p, p.ca.subject, ku=False).sign(p.ca_key, hashes.SHA256())
        self.assertEqual(self.code(p.verify, chain=[cert.public_bytes(DER)]), "key-usage")

    def test_missingExtendedKeyUsage(self) -> None:
        """
        No extendedKeyUsage extension at all is C{key-usage}.
        """
        p = PKI()
        cert = _leafBuilder(p, p.ca.subject, eku=False).sign(p.ca_key, hashes.SHA256())
        self.assertEqual(self.code(p.verify, chain=[cert.public_bytes(DER)]), "key-usage")

    def test_nameIgnoresCase(self) -> None:
        """
        DNS names match whatever their case, and with the root's trailing
        dot.
        """
        p = PKI(names=("Chat.Example.org",))
        p.verify("chat.example.org")
        p.verify("CHAT.EXAMPLE.ORG")
        p.verify("chat.example.org.")

    def test_ipNotDnsName(self) -> None:
        """
        An IP address does not match a DNS name spelled the same, nor
        another IP address.
        """
        p = PKI(names=("localhost",))
        self.assertEqual(self.code(p.verify, "127.0.0.1"), "name-mismatch")
        self.assertEqual(self.code(PKI().verify, "127.0.0.2"), "name-mismatch")
        self.assertEqual(self.code(PKI().verify, "::2"), "name-mismatch")

    def test_notAName(self) -> None:
        """
        A server name that is neither a DNS name nor an IP address is
        C{name-mismatch}, even if a (hand-made) certificate carries it.
        """
        p = PKI()
        for name in ("", "héllo.example", "."):
            self.assertEqual(self.code(p.verify, name), "name-mismatch")
        odd = (
            x509.CertificateBuilder().subject_name(p.cert.subject).issuer_name(p.ca.subject)
            .public_key(p.server_key.public_key()).serial_number(9)
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("a b")]), critical=False)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(p.ca_key, hashes.SHA256()))
        self.assertEqual(self.code(p.verify, "a b", chain=[odd.public_bytes(DER)]), "name-mismatch")

    def test_naiveNow(self) -> None:
        """
        A naive C{now} is the caller's bug: a plain ValueError, not a
        certificate verdict.
        """
        e = self.assertRaises(ValueError, PKI().verify, now=NOW.replace(tzinfo=None))
        self.assertNotIsInstance(e, CertificateError)

    def test_otherTimezone(self) -> None:
        """
        An aware C{now} in another timezone is the same instant.
        """
        p = PKI(days=30)
        later = (NOW + datetime.timedelta(days=31)).astimezone(
            datetime.timezone(datetime.timedelta(hours=-5)))
        self.assertEqual(self.code(p.verify, now=later), "expired")

    def intermediate(self) -> tuple[PKI, x509.Certificate, x509.Certificate]:
        """
        A root allowing one intermediate, an intermediate, and a relay
        certificate it issued; the PKI's CA is replaced by that root.
        """
        p = PKI()
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "root")])
        root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())

        def ca_cert(name: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                    signer: ec.EllipticCurvePrivateKey, path_length: int) -> x509.Certificate:
            return (
                x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(days=1))
                .not_valid_after(NOW + datetime.timedelta(days=100))
                .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
                               critical=False)
                .sign(signer, hashes.SHA256()))
        root = ca_cert(root_name, root_key, root_name, root_key, 1)
        mid_key = ec.generate_private_key(ec.SECP256R1())
        mid_name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "intermediate")])
        mid = ca_cert(mid_name, mid_key, root_name, root_key, 0)
        mid_ski = x509.SubjectKeyIdentifier.from_public_key(mid_key.public_key())
        leaf = (_leafBuilder(p, mid_name)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(p.server_key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(mid_ski),
                               critical=False)
                .sign(mid_key, hashes.SHA256()))
        p.ca, p.ca_key, p.cert = root, root_key, leaf
        p.crl = p.make_crl(NOW)
        return p, mid, leaf

    def test_intermediate(self) -> None:
        """
        Intermediates are not allowed (docs/protocol.rst, section 9: the
        CA's CRL could not revoke what an intermediate issued): a chain
        through one is C{intermediate} when the relay sends it, and
        C{untrusted} when it does not.
        """
        p, mid, leaf = self.intermediate()
        self.assertEqual(self.code(p.verify, chain=[leaf.public_bytes(DER), mid.public_bytes(DER)]),
                         "intermediate")
        self.assertEqual(self.code(p.verify, chain=[leaf.public_bytes(DER)]), "untrusted")

    def test_intermediateWithCaCopy(self) -> None:
        """
        An intermediate followed by a copy of the CA is still
        C{intermediate}, and so is the CA copy alone after a leaf the CA
        did not issue: C{untrusted}.
        """
        p, mid, leaf = self.intermediate()
        self.assertEqual(self.code(p.verify, chain=[leaf.public_bytes(DER), mid.public_bytes(DER),
                                                    p.ca.public_bytes(DER)]), "intermediate")
        self.assertEqual(self.code(p.verify, chain=[leaf.public_bytes(DER), p.ca.public_bytes(DER)]),
                         "untrusted")

    def test_checkOrder(self) -> None:
        """
        The leaf's own checks come before the chain: an expired certificate
        from another CA is C{expired}; a good certificate with a bad CRL is
        about the CRL.
        """
        p, other = PKI(), PKI(days=30)
        later = NOW + datetime.timedelta(days=31)
        self.assertEqual(self.code(verify_server_identity, other.chain(), p.crl.public_bytes(DER),
                                   p.ca, "localhost", later), "expired")
        self.assertEqual(self.code(PKI().verify, now=later), "crl-expired")


class ClientServerHandshakeTests(unittest.TestCase):
    """
    The client-server context end to end in the core, with the relay's
    certificate checked by L{verify_server_identity}.
    """

    def handshake(self, p: PKI, name: str = "localhost"):  # type: ignore[no-untyped-def]
        user = ed25519.Ed25519PrivateKey.generate()
        identity = CertificateIdentity(tuple(p.chain()), p.crl.public_bytes(DER))
        server = Connection(Config(CLIENT_SERVER, Role.RESPONDER, p.server_key, identity))
        client = Connection(Config(CLIENT_SERVER, Role.INITIATOR, user, UserIdentity("alice")))

        def check_server(ident):  # type: ignore[no-untyped-def]
            try:
                return verify_server_identity(list(ident.chain), ident.crl, p.ca, name, NOW)
            except CertificateError as e:
                return ("bad-certificate", f"{e} [{e.code}]")
        return run(client, server, check_server, lambda ident: user.public_key())

    def test_complete(self) -> None:
        """
        The client accepts the relay's chain and the handshake completes.
        """
        ec_, es = self.handshake(PKI())
        self.assertIsInstance(ec_[-1], HandshakeComplete)
        self.assertIsInstance(es[-1], HandshakeComplete)

    def test_rejectedCertificateFailsHandshake(self) -> None:
        """
        A certificate for the wrong name fails the handshake at the client
        with C{bad-certificate}; the relay sees its HANDSHAKE_FAILED in the
        clear, which it cannot authenticate (protocol 8.3).
        """
        ec_, es = self.handshake(PKI(), name="elsewhere.example")
        self.assertEqual(failure(ec_), "bad-certificate")
        self.assertEqual(failure(es), "unauthenticated-alert")

    def test_serverWithWrongKey(self) -> None:
        """
        A relay presenting a valid certificate but signing with another key
        fails with C{bad-signature}.
        """
        p = PKI()
        genuine = p.server_key
        p.server_key = ed25519.Ed25519PrivateKey.generate()
        p.cert = pki.issue_server_certificate(p.ca_key, p.ca, genuine.public_key(),
                                              ["localhost"], NOW)
        ec_, es = self.handshake(p)
        self.assertEqual(failure(ec_), "bad-signature")


class OpensslKeyMatrixTests(unittest.TestCase):
    """
    The client-server handshake for each AEAD suite and each user key type,
    with user keys made by the openssl command line in the test itself.
    """

    def test_eachSuiteAndOpensslKey(self) -> None:
        """
        Ed25519, ECDSA P-256 and RSA-2048 keys from openssl (the RSA one
        encrypted) complete a handshake with the relay under AES-256-GCM and
        ChaCha20-Poly1305, the relay's certificate checked on the way.
        """
        import os
        import subprocess

        from securechat.crypto.suites import SUITES

        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=workdir, check=True, capture_output=True)
        openssl("genpkey", "-algorithm", "ed25519", "-out", "ed.key")
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.key")
        openssl("genrsa", "-aes256", "-passout", "pass:pw", "-out", "rsa.key", "2048")
        loaded = []
        for name, passphrase in (("ed.key", None), ("ec.key", None), ("rsa.key", b"pw")):
            with open(os.path.join(workdir, name), "rb") as f:
                loaded.append(keys.load_private_key(f.read(), passphrase))
        p = PKI()
        identity = CertificateIdentity(tuple(p.chain()), p.crl.public_bytes(DER))

        def check_server(ident: CertificateIdentity | UserIdentity) -> keys.PublicKey:
            assert isinstance(ident, CertificateIdentity)
            return verify_server_identity(list(ident.chain), ident.crl, p.ca, "localhost", NOW)
        for suite in SUITES.values():
            for user in loaded:
                server = Connection(Config(CLIENT_SERVER, Role.RESPONDER, p.server_key, identity))
                client = Connection(Config(CLIENT_SERVER, Role.INITIATOR, user, UserIdentity("alice"),
                                           suites=(suite.code,)))
                ec_, es = run(client, server, check_server, lambda ident: user.public_key())
                self.assertEqual(ec_[-1], HandshakeComplete(identity, suite), keys.describe(user.public_key()))
                self.assertEqual(es[-1], HandshakeComplete(UserIdentity("alice"), suite))
