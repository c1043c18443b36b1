"""
Tests for C{securechat-admin} (L{securechat.admin.cli}) and the data
directory (L{securechat.datadir}), with keys and CSRs made by the real
C{openssl} command line.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial import unittest

from securechat.admin.cli import main
from securechat.crypto import keys
from securechat.datadir import CorruptDataDir, DataDir, atomic_write

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class AdminCase(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")

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
        self.assertEqual(code, 1, argv)
        self.assertTrue(err.startswith("securechat-admin: error: "), err)
        self.assertEqual(err.count("\n"), 1, "one line")
        self.assertNotIn("Traceback", err)
        return err

    def init(self) -> None:
        self.ok("init", "--server-name", "localhost", "--server-name", "127.0.0.1")

    def file(self, name: str, content: str | bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        return path


class InitTests(AdminCase):
    """
    C{init}.
    """

    def test_layout(self) -> None:
        """
        init creates the CA, the relay's key and certificate, the CRL and an
        empty user list; private keys are 0600 and the directory 0700.
        """
        self.init()
        d = DataDir(self.data)
        for path in (d.ca_cert_path, d.ca_key_path, d.crl_path, d.state_path,
                     d.server_cert_path, d.server_key_path, d.users_path):
            self.assertTrue(os.path.exists(path), path)
        for path in (d.ca_key_path, d.server_key_path):
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(self.data).st_mode & 0o777, 0o700)
        key, chain, crl = d.server_credentials()
        self.assertEqual(len(chain), 1)
        self.assertEqual(d.load_users().names(), [])

    def test_refusesToOverwrite(self) -> None:
        """
        A second init refuses and leaves the CA untouched.
        """
        self.init()
        before = open(DataDir(self.data).ca_cert_path, "rb").read()
        self.assertIn("already has a CA", self.refused("init", "--server-name", "x"))
        self.assertEqual(open(DataDir(self.data).ca_cert_path, "rb").read(), before)

    def test_encryptedCAKey(self) -> None:
        """
        With --ca-passphrase-file the CA key is encrypted; revoking needs
        the passphrase.
        """
        pp = self.file("ca.pass", "ca secret\n")
        self.ok("init", "--server-name", "localhost", "--ca-passphrase-file", pp)
        self.assertIn(b"ENCRYPTED", open(DataDir(self.data).ca_key_path, "rb").read())
        self.ok("new-user", "bob", "--out", self.dir, "--no-passphrase")
        self.assertIn("passphrase", self.refused("revoke", "bob"))
        self.ok("revoke", "bob", "--ca-passphrase-file", pp)

    def test_helpListsCommands(self) -> None:
        """
        --help lists every command (run as the console script would be).
        """
        result = subprocess.run([sys.executable, "-m", "securechat.admin", "--help"],
                                capture_output=True, text=True, check=True)
        for command in ("init", "add-user", "new-user", "revoke", "list-users", "issue-cert",
                        "refresh-crl", "rotate-server-cert", "show", "SECURECHAT_DATA_DIR"):
            self.assertIn(command, result.stdout)


class UserTests(AdminCase):
    """
    Adding, generating, listing and revoking users.
    """

    def setUp(self) -> None:
        super().setUp()
        self.init()

    def test_opensslKeys(self) -> None:
        """
        Public keys made by the openssl command line are accepted: Ed25519,
        ECDSA P-256, and RSA 2048 from an encrypted genrsa key.
        """
        openssl("genpkey", "-algorithm", "ed25519", "-out", "ed.key", cwd=self.dir)
        openssl("pkey", "-in", "ed.key", "-pubout", "-out", "ed.pub", cwd=self.dir)
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.key", cwd=self.dir)
        openssl("ec", "-in", "ec.key", "-pubout", "-out", "ec.pub", cwd=self.dir)
        openssl("genrsa", "-aes256", "-passout", "pass:x", "-out", "rsa.key", "2048", cwd=self.dir)
        openssl("rsa", "-in", "rsa.key", "-passin", "pass:x", "-pubout", "-out", "rsa.pub", cwd=self.dir)
        for name, pub, kind in (("eddie", "ed.pub", "ed25519"), ("ecco", "ec.pub", "ecdsa-p256"),
                                ("rosa", "rsa.pub", "rsa-2048")):
            out = self.ok("add-user", name, os.path.join(self.dir, pub))
            self.assertIn(kind, out)
        listing = self.ok("list-users")
        self.assertIn("rsa-2048", listing)

    def test_weakAndUnsupportedKeys(self) -> None:
        """
        RSA 1024, P-384 and a private key given by mistake are refused with
        a message saying why.
        """
        openssl("genrsa", "-out", "weak.key", "1024", cwd=self.dir)
        openssl("rsa", "-in", "weak.key", "-pubout", "-out", "weak.pub", cwd=self.dir)
        openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "p384.key", cwd=self.dir)
        openssl("ec", "-in", "p384.key", "-pubout", "-out", "p384.pub", cwd=self.dir)
        self.assertIn("too weak", self.refused("add-user", "weak", os.path.join(self.dir, "weak.pub")))
        self.assertIn("P-256", self.refused("add-user", "p", os.path.join(self.dir, "p384.pub")))
        self.assertIn("private key", self.refused("add-user", "oops", os.path.join(self.dir, "weak.key")))
        self.assertIn("not a PEM", self.refused("add-user", "junk", self.file("junk.pem", "hello")))
        self.assertIn("cannot read", self.refused("add-user", "gone", "/nonexistent.pem"))

    def test_badNames(self) -> None:
        """
        User names outside the rule are refused.
        """
        pub = self.file("k.pub", keys.public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
        for name in ("Alice", "1bob", "a b", "x" * 33):
            self.assertIn("user name", self.refused("add-user", name, pub))

    def test_duplicate(self) -> None:
        """
        A name already registered is refused.
        """
        pub = self.file("k.pub", keys.public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
        self.ok("add-user", "alice", pub)
        self.assertIn("already exists", self.refused("add-user", "alice", pub))

    def test_newUser(self) -> None:
        """
        new-user writes an encrypted PKCS#8 key (0600) that the passphrase
        opens, the public key, and registers it.
        """
        pp = self.file("bob.pass", "correct horse\n")
        out_dir = os.path.join(self.dir, "keys")
        self.ok("new-user", "bob", "--out", out_dir, "--passphrase-file", pp)
        key_path = os.path.join(out_dir, "bob.key")
        data = open(key_path, "rb").read()
        self.assertIn(b"BEGIN ENCRYPTED PRIVATE KEY", data)
        self.assertEqual(os.stat(key_path).st_mode & 0o777, 0o600)
        key = keys.load_private_key(data, b"correct horse")
        self.assertRaises(keys.WrongPassphrase, keys.load_private_key, data, b"wrong")
        record = DataDir(self.data).load_users().lookup("bob")
        assert record is not None
        self.assertEqual(record.fingerprint, keys.fingerprint(key.public_key()))

    def test_newUserNeedsPassphrase(self) -> None:
        """
        Without a terminal, new-user refuses to write an unencrypted key
        unless told --no-passphrase.
        """
        self.assertIn("--passphrase-file", self.refused("new-user", "bob", "--out", self.dir))

    def test_revoke(self) -> None:
        """
        revoke marks the user, lists them as REVOKED, and reissues the CRL
        with their certificate's serial.
        """
        openssl("genpkey", "-algorithm", "ed25519", "-out", "a.key", cwd=self.dir)
        openssl("pkey", "-in", "a.key", "-pubout", "-out", "a.pub", cwd=self.dir)
        openssl("req", "-new", "-key", "a.key", "-subj", "/CN=alice", "-out", "a.csr", cwd=self.dir)
        self.ok("add-user", "alice", os.path.join(self.dir, "a.pub"))
        cert_path = os.path.join(self.dir, "alice.pem")
        self.ok("issue-cert", "alice", "--csr", os.path.join(self.dir, "a.csr"), "--out", cert_path)
        cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
        crl_before = DataDir(self.data).load_crl()
        self.ok("revoke", "alice")
        crl = DataDir(self.data).load_crl()
        self.assertIsNotNone(crl.get_revoked_certificate_by_serial_number(cert.serial_number))
        self.assertGreater(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
                           crl_before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        self.assertIn("REVOKED", self.ok("list-users"))
        self.assertIn("already revoked", self.refused("revoke", "alice"))
        self.assertIn("no user", self.refused("revoke", "nobody"))

    def test_csrKeyMismatch(self) -> None:
        """
        A CSR whose key is not the user's registered key is refused.
        """
        openssl("genpkey", "-algorithm", "ed25519", "-out", "a.key", cwd=self.dir)
        openssl("pkey", "-in", "a.key", "-pubout", "-out", "a.pub", cwd=self.dir)
        openssl("genpkey", "-algorithm", "ed25519", "-out", "m.key", cwd=self.dir)
        openssl("req", "-new", "-key", "m.key", "-subj", "/CN=alice", "-out", "m.csr", cwd=self.dir)
        self.ok("add-user", "alice", os.path.join(self.dir, "a.pub"))
        err = self.refused("issue-cert", "alice", "--csr", os.path.join(self.dir, "m.csr"),
                           "--out", os.path.join(self.dir, "x.pem"))
        self.assertIn("registered key", err)

    def test_rotateServerCertificate(self) -> None:
        """
        rotate-server-cert issues a new relay key and certificate for the
        same names and revokes the old one.
        """
        d = DataDir(self.data)
        old = d.load_server_chain()[0]
        self.ok("rotate-server-cert")
        new = d.load_server_chain()[0]
        self.assertNotEqual(old.serial_number, new.serial_number)
        self.assertEqual(
            old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
            new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        self.assertIsNotNone(d.load_crl().get_revoked_certificate_by_serial_number(old.serial_number))
        d.server_credentials()  # key and certificate match

    def test_refreshCrlAndShow(self) -> None:
        """
        refresh-crl moves the next update; show summarises the directory.
        """
        self.ok("refresh-crl", "--days", "7")
        crl = DataDir(self.data).load_crl()
        self.assertEqual(crl.next_update_utc, NOW + datetime.timedelta(days=7))
        out = self.ok("show")
        self.assertIn("localhost, 127.0.0.1", out)
        self.assertIn("users: 0", out)


class DataDirTests(AdminCase):
    """
    The data directory's files.
    """

    def test_corruptUsers(self) -> None:
        """
        A hand-mangled users.json is refused with one line naming the file.
        """
        self.init()
        d = DataDir(self.data)
        with open(d.users_path, "w") as f:
            f.write("{not json")
        e = self.assertRaises(CorruptDataDir, d.load_users)
        self.assertIn("users.json", str(e))
        self.assertIn("users.json", self.refused("list-users"))
        with open(d.users_path, "w") as f:
            json.dump({"version": 1, "users": {"alice": {"key": "nope"}}}, f)
        self.assertIn("alice", str(self.assertRaises(CorruptDataDir, d.load_users)))

    def test_missing(self) -> None:
        """
        Commands on a directory that was never initialised say so.
        """
        self.assertIn("init", self.refused("list-users"))

    def test_atomicWrite(self) -> None:
        """
        An atomic write leaves no temporary file and changes the stamp.
        """
        path = os.path.join(self.dir, "f")
        atomic_write(path, b"one")
        stamp = DataDir(self.dir).stamp(path)
        atomic_write(path, b"two!")
        self.assertNotEqual(DataDir(self.dir).stamp(path), stamp)
        self.assertEqual(sorted(os.listdir(self.dir)), ["f"])
        self.assertEqual(open(path, "rb").read(), b"two!")

    def test_serverKeyMismatch(self) -> None:
        """
        A server key that does not belong to the certificate is refused.
        """
        self.init()
        d = DataDir(self.data)
        atomic_write(d.server_key_path, keys.private_key_pem(ec.generate_private_key(ec.SECP256R1()), None))
        self.assertIn("does not belong", str(self.assertRaises(CorruptDataDir, d.server_credentials)))
