"""
The CA key on a PKCS#11 token (a real SoftHSM2 token, L{tests.token_fixture}):
C{securechat-admin init --ca-key URI}, then C{revoke}, C{refresh-crl},
C{rotate-server-cert} and C{issue-cert} signing through the token
(L{securechat.extsign}); certificates and CRLs that the relay's and the
clients' checks accept; and the failures, in one line.  The CA key is
ECDSA P-256 by design (L{securechat.pki}), so that is the type tested here.
"""

from __future__ import annotations

import datetime
import io
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.trial import unittest

from securechat.admin.cli import main
from securechat.crypto import keys
from securechat.crypto.x509 import verify_server_identity
from securechat.datadir import DataDir
from securechat.token import open_key
from tests.token_fixture import PIN, USER_TOKEN, softhsm

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


class TokenCaTests(unittest.TestCase):
    """
    A data directory whose CA key is the P-256 key on the token.
    """

    def setUp(self) -> None:
        self.hsm = softhsm(self)
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")
        self.pin = os.path.join(self.dir, "pin")
        with open(self.pin, "w") as f:
            f.write(PIN + "\n")
        self.uri = f"pkcs11:token={USER_TOKEN};object=p256?pin-source=file:{self.pin}"

    def admin(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--data-dir", self.data, *argv], out=out, err=err, now=lambda: NOW,
                    stdin=io.StringIO())
        return code, out.getvalue(), err.getvalue()

    def ok(self, *argv: str) -> str:
        code, out, err = self.admin(*argv)
        self.assertEqual((code, err), (0, ""), argv)
        return out

    def refused(self, *argv: str) -> str:
        code, out, err = self.admin(*argv)
        self.assertEqual(code, 1, (argv, out))
        self.assertEqual(err.count("\n"), 1, err)
        return err

    def token_public(self, label: str = "p256") -> keys.PublicKey:
        k = open_key(self.hsm.uri(label), self.hsm.module)
        self.addCleanup(k.close)
        return k.public_key()

    def init(self) -> DataDir:
        out = self.ok("init", "--server-name", "localhost", "--ca-key", self.uri,
                      "--pkcs11-module", self.hsm.module)
        self.assertIn(f"the CA key is the ecdsa-p256 key on token {USER_TOKEN!r}", out)
        return DataDir(self.data)

    def check_crl(self, d: DataDir) -> x509.CertificateRevocationList:
        crl = d.load_crl()
        ca = d.load_ca_certificate().public_key()
        assert isinstance(ca, ec.EllipticCurvePublicKey)
        self.assertTrue(crl.is_signature_valid(ca))
        return crl

    def test_init(self) -> None:
        """
        init --ca-key makes a CA whose key is the token's (ca/ca.key holds
        the URI, never a key), self-signed by the token, and a relay
        certificate and CRL the relay's own checks accept.
        """
        d = self.init()
        ca = d.load_ca_certificate()
        self.assertEqual(keys.public_key_der(ca.public_key()),  # type: ignore[arg-type]
                         keys.public_key_der(self.token_public()))
        ca.verify_directly_issued_by(ca)
        with open(d.ca_key_path, "rb") as f:
            self.assertEqual(f.read(), self.uri.encode() + b"\n")
        self.assertEqual(os.stat(d.ca_key_path).st_mode & 0o777, 0o600)
        creds = d.relay_credentials()
        self.assertIsInstance(verify_server_identity(creds.chain, creds.crl, ca, "localhost", NOW),
                              ed25519.Ed25519PublicKey)
        self.check_crl(d)

    def test_revokeRefreshRotateIssue(self) -> None:
        """
        revoke, refresh-crl, rotate-server-cert and issue-cert sign through
        the token: each new CRL and certificate verifies with the CA's key
        and the CRL number goes up.
        """
        d = self.init()
        ca = d.load_ca_certificate()
        numbers = [self.check_crl(d).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number]
        user = ec.generate_private_key(ec.SECP256R1())
        pub = os.path.join(self.dir, "u.pem")
        with open(pub, "wb") as f:
            f.write(keys.public_key_pem(user.public_key()))
        self.ok("add-user", "ursula", pub)
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "ursula")]))
               .sign(user, hashes.SHA256()))
        csr_path, cert_path = os.path.join(self.dir, "u.csr"), os.path.join(self.dir, "u.crt")
        with open(csr_path, "wb") as f:
            f.write(csr.public_bytes(Encoding.PEM))
        self.ok("issue-cert", "ursula", "--csr", csr_path, "--out", cert_path,
                "--pkcs11-module", self.hsm.module)
        with open(cert_path, "rb") as f:
            x509.load_pem_x509_certificate(f.read()).verify_directly_issued_by(ca)
        for argv in (("revoke", "ursula"), ("refresh-crl",), ("rotate-server-cert",)):
            self.ok(*argv, "--pkcs11-module", self.hsm.module)
            crl = self.check_crl(d)
            numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        self.assertEqual(numbers, sorted(set(numbers)))
        creds = d.relay_credentials()
        verify_server_identity(creds.chain, creds.crl, ca, "localhost", NOW)

    def test_wrongKeyOnToken(self) -> None:
        """
        A ca/ca.key URI naming another key than the CA certificate's is
        refused in one line with both fingerprints, before anything is
        signed.
        """
        d = self.init()
        other = f"pkcs11:token={USER_TOKEN};object=twin;id=%10?pin-source=file:{self.pin}"
        with open(d.ca_key_path, "w") as f:
            f.write(other + "\n")
        before = d.load_crl().public_bytes(Encoding.DER)
        err = self.refused("refresh-crl", "--pkcs11-module", self.hsm.module)
        self.assertIn(f"the key on the token ({other}) is not the CA's key: its fingerprint is ",
                      err)
        self.assertEqual(d.load_crl().public_bytes(Encoding.DER), before)

    def test_caKeyMustBeP256(self) -> None:
        """
        A token key other than P-256 cannot be the CA key.
        """
        err = self.refused("init", "--server-name", "localhost", "--ca-key",
                           f"pkcs11:token={USER_TOKEN};object=ed25519?pin-source=file:{self.pin}",
                           "--pkcs11-module", self.hsm.module)
        self.assertEqual(err, "securechat-admin: error: the CA key must be ECDSA P-256 (the "
                              "token's key is not)\n")
        self.assertFalse(DataDir(self.data).initialized())

    def test_pinValueNotStored(self) -> None:
        """
        A --ca-key URI with pin-value is refused: it would be kept in
        ca/ca.key.
        """
        err = self.refused("init", "--server-name", "localhost", "--ca-key",
                           self.hsm.uri("p256"), "--pkcs11-module", self.hsm.module)
        self.assertEqual(err, "securechat-admin: error: the --ca-key URI is kept in ca/ca.key: "
                              "give the PIN with pin-source=file:PATH or on the terminal, not "
                              "pin-value\n")

    def test_tokenProblemOneLine(self) -> None:
        """
        A wrong PIN (or any token problem) when a later command opens the CA
        key is one line.
        """
        d = self.init()
        with open(self.pin, "w") as f:
            f.write("000000\n")
        err = self.refused("refresh-crl", "--pkcs11-module", self.hsm.module)
        self.assertTrue(err.startswith(f"securechat-admin: error: wrong PIN for token "
                                       f"{USER_TOKEN!r}"), err)
        self.assertTrue(d.initialized())
