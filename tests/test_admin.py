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
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from twisted.trial import unittest

from securechat.admin import commands as commands_module
from securechat.admin.cli import main
from securechat.crypto import keys
from securechat.crypto.x509 import verify_server_identity
from securechat.datadir import DataDir
from securechat.datafiles import CorruptDataDir, atomic_write

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class AdminCase(unittest.TestCase):
    """
    A temporary directory and C{main} run in process against a data
    directory inside it, at a fixed time.
    """

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

    def test_corruptUsersOnEveryCommand(self) -> None:
        """
        Commands that read users.json refuse a mangled one in one line
        naming it, and write nothing.
        """
        self.init()
        d = DataDir(self.data)
        atomic_write(d.users_path, b'{"version": 1, "users": {"alice": {"key": 5}}}')
        pub = self.file("k.pub", keys.public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
        for argv in (("add-user", "bob", pub), ("revoke", "alice"),
                     ("new-user", "bob", "--out", self.dir, "--no-passphrase"), ("show",)):
            self.assertIn("users.json", self.refused(*argv))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "bob.key")))

    def test_corruptState(self) -> None:
        """
        A mangled state.json is refused in one line naming it.
        """
        self.init()
        atomic_write(DataDir(self.data).state_path, b"[]")
        self.assertIn("state.json", self.refused("refresh-crl"))

    def test_locked(self) -> None:
        """
        While another command holds the lock, a changing command refuses.
        """
        self.init()
        with DataDir(self.data).locked():
            self.assertIn("locked", self.refused("refresh-crl"))
        self.ok("refresh-crl")


class MoreInitTests(AdminCase):
    """
    C{init} options and refusals.
    """

    def test_options(self) -> None:
        """
        --ca-name, --server-key-type ecdsa-p256 and --days shape the CA and
        the relay's certificate, which the client-side verifier accepts for
        each name, IP literals included.
        """
        self.ok("init", "--server-name", "localhost", "--server-name", "127.0.0.1",
                "--server-name", "::1", "--ca-name", "Example CA", "--server-key-type", "ecdsa-p256",
                "--days", "30")
        d = DataDir(self.data)
        ca = d.load_ca_certificate()
        self.assertEqual(ca.subject.rfc4514_string(), "CN=Example CA")
        creds = d.relay_credentials()
        for name in ("localhost", "127.0.0.1", "::1"):
            key = verify_server_identity(creds.chain, creds.crl, ca, name, NOW)
            self.assertIsInstance(key, ec.EllipticCurvePublicKey)
        leaf = d.load_server_chain()[0]
        self.assertEqual(leaf.not_valid_after_utc, NOW + datetime.timedelta(days=30))

    def test_defaultCAName(self) -> None:
        """
        Without --ca-name the CA is named after the first server name.
        """
        self.init()
        self.assertEqual(DataDir(self.data).load_ca_certificate().subject.rfc4514_string(),
                         "CN=securechat CA for localhost")

    def test_badServerName(self) -> None:
        """
        A server name that is no host name or IP address is refused and
        nothing is written.
        """
        self.assertIn("bad name!", self.refused("init", "--server-name", "bad name!"))
        self.assertFalse(DataDir(self.data).initialized())
        self.assertFalse(os.path.exists(DataDir(self.data).ca_key_path))

    def test_usageErrors(self) -> None:
        """
        Usage mistakes exit 2 with argparse's message on our error stream:
        no command, no --server-name, a lifetime under a day, an unknown key
        type.
        """
        for argv in ((), ("init",), ("init", "--server-name", "x", "--days", "0"),
                     ("refresh-crl", "--days", "soon"),
                     ("init", "--server-name", "x", "--server-key-type", "rsa")):
            code, out, err = self.admin(*argv)
            self.assertEqual(code, 2, argv)
            self.assertIn("usage:", err)
            self.assertNotIn("Traceback", err)
        self.assertFalse(DataDir(self.data).initialized())

    def test_helpInProcess(self) -> None:
        """
        --help goes to the output stream and exits 0; each command has help.
        """
        code, out, err = self.admin("--help")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("rotate-server-cert", out)
        code, out, err = self.admin("init", "--help")
        self.assertEqual(code, 0)
        self.assertIn("--ca-passphrase-file", out)

    def test_caPassphraseFiles(self) -> None:
        """
        A missing or empty --ca-passphrase-file is refused before anything
        is written; a wrong passphrase later is refused in one line.
        """
        self.assertIn("cannot read", self.refused("init", "--server-name", "localhost",
                                                  "--ca-passphrase-file", "/nonexistent"))
        self.assertIn("empty", self.refused("init", "--server-name", "localhost",
                                            "--ca-passphrase-file", self.file("empty", "")))
        self.assertFalse(DataDir(self.data).initialized())
        self.ok("init", "--server-name", "localhost", "--ca-passphrase-file", self.file("pp", "right\n"))
        err = self.refused("refresh-crl", "--ca-passphrase-file", self.file("wrong", "wrong\n"))
        self.assertIn("passphrase", err)
        self.ok("refresh-crl", "--ca-passphrase-file", os.path.join(self.dir, "pp"))

    def test_defaultDataDir(self) -> None:
        """
        Without --data-dir, $SECURECHAT_DATA_DIR is used, else
        ~/.local/share/securechat.
        """
        from securechat.admin.cli import default_data_dir
        self.patch(os, "environ", {**os.environ, "SECURECHAT_DATA_DIR": self.data})
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main(["init", "--server-name", "localhost"], out=out, err=err,
                              now=lambda: NOW), 0)
        self.assertTrue(DataDir(self.data).initialized())
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "SECURECHAT_DATA_DIR"}
                   | {"HOME": self.dir})
        self.assertEqual(default_data_dir(), os.path.join(self.dir, ".local", "share", "securechat"))


class TerminalStdin(io.StringIO):
    """
    A standard input that claims to be a terminal.
    """

    def isatty(self) -> bool:
        return True


class MoreUserTests(AdminCase):
    """
    new-user's passphrase handling, listings, certificates and show.
    """

    def setUp(self) -> None:
        super().setUp()
        self.init()

    def prompting(self, *answers: str) -> tuple[int, str, str]:
        replies = list(answers)
        prompts: list[str] = []

        def getpass(prompt: str = "") -> str:
            prompts.append(prompt)
            return replies.pop(0)
        self.patch(commands_module.getpass, "getpass", getpass)
        out, err = io.StringIO(), io.StringIO()
        code = main(["--data-dir", self.data, "new-user", "bob", "--out", self.dir],
                    out=out, err=err, now=lambda: NOW, stdin=TerminalStdin())
        self.assertEqual(len(prompts), 2)
        return code, out.getvalue(), err.getvalue()

    def test_newUserPrompts(self) -> None:
        """
        On a terminal, new-user asks twice and encrypts the key with the
        answer.
        """
        code, out, err = self.prompting("tty secret", "tty secret")
        self.assertEqual((code, err), (0, ""))
        with open(os.path.join(self.dir, "bob.key"), "rb") as f:
            keys.load_private_key(f.read(), b"tty secret")

    def test_newUserPromptsDiffer(self) -> None:
        """
        Two different answers are refused and nothing is written.
        """
        code, out, err = self.prompting("one", "two")
        self.assertEqual(code, 1)
        self.assertIn("differ", err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "bob.key")))
        self.assertIsNone(DataDir(self.data).load_users().lookup("bob"))

    def test_newUserEmptyPrompt(self) -> None:
        """
        An empty answer is refused, pointing at --no-passphrase.
        """
        code, out, err = self.prompting("", "")
        self.assertEqual(code, 1)
        self.assertIn("--no-passphrase", err)

    def test_newUserNoPassphrase(self) -> None:
        """
        --no-passphrase writes an unencrypted PKCS#8 key, still 0600, and
        the public key.
        """
        self.ok("new-user", "bob", "--out", self.dir, "--no-passphrase")
        key_path = os.path.join(self.dir, "bob.key")
        with open(key_path, "rb") as f:
            self.assertTrue(f.read().startswith(b"-----BEGIN PRIVATE KEY-----"))
        self.assertEqual(os.stat(key_path).st_mode & 0o777, 0o600)
        with open(os.path.join(self.dir, "bob.pub.pem"), "rb") as f:
            self.assertIsInstance(keys.load_public_key(f.read()), ed25519.Ed25519PublicKey)

    def test_newUserRefusals(self) -> None:
        """
        A bad name, a taken name, or an existing key file are refused and
        no key is written.
        """
        self.assertIn("user name", self.refused("new-user", "Bob", "--out", self.dir, "--no-passphrase"))
        pub = self.file("k.pub", keys.public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
        self.ok("add-user", "carol", pub)
        self.assertIn("already exists", self.refused("new-user", "carol", "--out", self.dir,
                                                     "--no-passphrase"))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "carol.key")))
        self.file("dave.key", "precious")
        self.assertIn("not overwriting", self.refused("new-user", "dave", "--out", self.dir,
                                                      "--no-passphrase"))
        with open(os.path.join(self.dir, "dave.key")) as f:
            self.assertEqual(f.read(), "precious")
        self.assertIn("No such file", self.refused("new-user", "erin", "--out", "/proc/nope",
                                                   "--no-passphrase"))

    def test_listUsers(self) -> None:
        """
        list-users prints a table: name, type, fingerprint, and "active" or
        "REVOKED <date>".
        """
        self.assertIn("no users yet", self.ok("list-users"))
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        self.ok("add-user", "alice", self.file("a.pub", keys.public_key_pem(key)))
        self.ok("new-user", "bob", "--out", self.dir, "--no-passphrase")
        self.ok("revoke", "bob")
        lines = self.ok("list-users").splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "TYPE", "FINGERPRINT", "STATUS"])
        self.assertEqual(lines[1].split(), ["alice", "ecdsa-p256", keys.fingerprint(key), "active"])
        self.assertEqual(lines[2].split()[0:2], ["bob", "ed25519"])
        self.assertEqual(lines[2].split()[3:], ["REVOKED", "2026-06-01T12:00:00Z"])
        self.assertEqual(len(lines), 3)

    def test_issueCertOpensslKeys(self) -> None:
        """
        CSRs made by openssl req for ECDSA P-256 and (encrypted) RSA keys
        are signed: CN is the user, clientAuth, issued by the CA, and the
        serial is recorded for the user.
        """
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.key", cwd=self.dir)
        openssl("ec", "-in", "ec.key", "-pubout", "-out", "ec.pub", cwd=self.dir)
        openssl("req", "-new", "-key", "ec.key", "-subj", "/CN=ecco", "-out", "ec.csr", cwd=self.dir)
        openssl("genrsa", "-aes256", "-passout", "pass:x", "-out", "rsa.key", "2048", cwd=self.dir)
        openssl("rsa", "-in", "rsa.key", "-passin", "pass:x", "-pubout", "-out", "rsa.pub", cwd=self.dir)
        openssl("req", "-new", "-key", "rsa.key", "-passin", "pass:x", "-subj", "/CN=rosa",
                "-out", "rsa.csr", cwd=self.dir)
        ca = DataDir(self.data).load_ca_certificate()
        for name, prefix in (("ecco", "ec"), ("rosa", "rsa")):
            self.ok("add-user", name, os.path.join(self.dir, prefix + ".pub"))
            out_path = os.path.join(self.dir, prefix + ".pem")
            self.assertIn("issued", self.ok("issue-cert", name, "--csr",
                                            os.path.join(self.dir, prefix + ".csr"), "--out", out_path))
            with open(out_path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            self.assertEqual(cert.subject.rfc4514_string(), f"CN={name}")
            cert.verify_directly_issued_by(ca)
            self.assertEqual(list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
                             [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
            record = DataDir(self.data).load_users().lookup(name)
            assert record is not None
            self.assertEqual(record.certificates, (format(cert.serial_number, "x"),))

    def test_issueCertRefusals(self) -> None:
        """
        An unknown user, a file that is no CSR, and an --out that cannot be
        written are refused in one line, and no certificate is recorded.
        """
        openssl("genpkey", "-algorithm", "ed25519", "-out", "a.key", cwd=self.dir)
        openssl("pkey", "-in", "a.key", "-pubout", "-out", "a.pub", cwd=self.dir)
        openssl("req", "-new", "-key", "a.key", "-subj", "/CN=alice", "-out", "a.csr", cwd=self.dir)
        csr = os.path.join(self.dir, "a.csr")
        out_path = os.path.join(self.dir, "a.pem")
        self.assertIn("no user", self.refused("issue-cert", "alice", "--csr", csr, "--out", out_path))
        self.ok("add-user", "alice", os.path.join(self.dir, "a.pub"))
        self.assertIn("certificate request", self.refused(
            "issue-cert", "alice", "--csr", os.path.join(self.dir, "a.pub"), "--out", out_path))
        self.assertIn("does not exist", self.refused(
            "issue-cert", "alice", "--csr", csr, "--out", os.path.join(self.dir, "no", "a.pem")))
        self.assertIn("is a directory", self.refused(
            "issue-cert", "alice", "--csr", csr, "--out", self.dir))
        self.assertEqual(DataDir(self.data).load_users().lookup("alice").certificates, ())  # type: ignore[union-attr]
        self.assertEqual([i["kind"] for i in DataDir(self.data).load_state().issued], ["server"])

    def test_show(self) -> None:
        """
        show prints the paths, the CA's subject and fingerprint, the relay's
        names and expiry and the CRL's next update.
        """
        d = DataDir(self.data)
        ca = d.load_ca_certificate()
        out = self.ok("show")
        self.assertIn(f"data directory: {d.path}", out)
        self.assertIn("CN=securechat CA for localhost", out)
        self.assertIn(keys.fingerprint(ca.public_key()), out)  # type: ignore[arg-type]
        self.assertIn(d.ca_cert_path, out)
        self.assertIn("relay certificate: localhost, 127.0.0.1, until 2027-06-01", out)
        self.assertIn("next update 2026-07-01", out)


def public_key_file(case: AdminCase, name: str) -> tuple[str, keys.PublicKey]:
    """
    A fresh Ed25519 public key written to C{name} in the test's directory.
    """
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return case.file(name, keys.public_key_pem(key)), key


class RekeyTests(AdminCase):
    """
    C{rekey}: a user gets a new key, recorded in their history; a revoked
    user can be given one and becomes active again.
    """

    def setUp(self) -> None:
        super().setUp()
        self.init()
        self.old_path, self.old = public_key_file(self, "old.pub")
        self.new_path, self.new = public_key_file(self, "new.pub")
        self.ok("add-user", "alice", self.old_path)

    def record(self) -> object:
        record = DataDir(self.data).load_users().lookup("alice")
        assert record is not None
        return record

    def test_rekeyReplacesKey(self) -> None:
        """
        After rekey the user's key is the new one and the old one is in the
        history with when it was replaced; the output names both
        fingerprints and says the relay applies it at once.
        """
        out = self.ok("rekey", "alice", self.new_path)
        self.assertIn(keys.fingerprint(self.new), out)
        self.assertIn(f"the old key {keys.fingerprint(self.old)} is refused", out)
        self.assertIn("applies it at once", out)
        record = DataDir(self.data).load_users().lookup("alice")
        assert record is not None
        self.assertEqual(keys.fingerprint(record.public_key), keys.fingerprint(self.new))
        self.assertEqual(len(record.history), 1)
        self.assertEqual(keys.fingerprint(record.history[0].public_key), keys.fingerprint(self.old))
        self.assertEqual(record.history[0].replaced, "2026-06-01T12:00:00Z")
        with open(DataDir(self.data).users_path) as f:
            entry = json.load(f)["users"]["alice"]
        self.assertEqual(entry["history"][0]["fingerprint"], keys.fingerprint(self.old))
        self.assertIn("key replaced 2026-06-01T12:00:00Z", self.ok("list-users"))

    def test_rekeyRevokedUser(self) -> None:
        """
        A revoked user can be given a new key and is active again; the
        revocation stays in the history, and they can be revoked again.
        """
        self.ok("revoke", "alice")
        out = self.ok("rekey", "alice", self.new_path)
        self.assertIn("was revoked; active again", out)
        record = DataDir(self.data).load_users().lookup("alice")
        assert record is not None
        self.assertIsNone(record.revoked)
        self.assertEqual(record.history[0].revoked, "2026-06-01T12:00:00Z")
        self.ok("revoke", "alice")

    def test_rekeyRefusesOldKeys(self) -> None:
        """
        Neither the current key nor one the user had before (perhaps
        compromised) is accepted as a new key.
        """
        self.assertIn("already has this key", self.refused("rekey", "alice", self.old_path))
        self.ok("rekey", "alice", self.new_path)
        self.assertIn("had this key before", self.refused("rekey", "alice", self.old_path))
        self.assertIn("no user", self.refused("rekey", "bob", self.new_path))

    def test_rekeyRevokesCertificates(self) -> None:
        """
        Certificates issued for the old key are revoked in a reissued CRL
        (they bind the name to the key that was replaced).
        """
        openssl("genpkey", "-algorithm", "ed25519", "-out", "a.key", cwd=self.dir)
        openssl("pkey", "-in", "a.key", "-pubout", "-out", "a.pub", cwd=self.dir)
        openssl("req", "-new", "-key", "a.key", "-subj", "/CN=carol", "-out", "a.csr", cwd=self.dir)
        self.ok("add-user", "carol", os.path.join(self.dir, "a.pub"))
        cert_path = os.path.join(self.dir, "carol.pem")
        self.ok("issue-cert", "carol", "--csr", os.path.join(self.dir, "a.csr"), "--out", cert_path)
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.ok("rekey", "carol", self.new_path)
        crl = DataDir(self.data).load_crl()
        self.assertIsNotNone(crl.get_revoked_certificate_by_serial_number(cert.serial_number))

    def test_addUserExistingSuggestsRekey(self) -> None:
        """
        add-user of a registered (even revoked) name says to use rekey.
        """
        self.ok("revoke", "alice")
        err = self.refused("add-user", "alice", self.new_path)
        self.assertIn("revoked since", err)
        self.assertIn("rekey alice", err)


class CommandLineTests(AdminCase):
    """
    Options in any position, --version, prompts, and messages that say what
    really happens.
    """

    def test_optionsAfterCommand(self) -> None:
        """
        --data-dir (and --allow-readable-keys) may come after the command
        name; given before it, a later absence does not reset it.
        """
        self.init()
        out, err = io.StringIO(), io.StringIO()
        code = main(["list-users", "--data-dir", self.data], out=out, err=err, now=lambda: NOW,
                    stdin=io.StringIO())
        self.assertEqual((code, err.getvalue()), (0, ""))
        self.assertIn("no users yet", out.getvalue())
        os.chmod(DataDir(self.data).ca_key_path, 0o640)
        self.assertIn("--allow-readable-keys", self.refused("refresh-crl"))
        self.ok("refresh-crl", "--allow-readable-keys")
        self.ok("--allow-readable-keys", "refresh-crl")

    def test_version(self) -> None:
        """
        --version prints the tool's name and version and exits 0.
        """
        from securechat import __version__
        code, out, err = self.admin("--version")
        self.assertEqual((code, out, err), (0, f"securechat-admin {__version__}\n", ""))

    def test_unsafeDirectoryRefused(self) -> None:
        """
        Every command refuses a directory another user could have changed,
        in one line naming the file and the fix, before doing anything.
        """
        self.init()
        users = DataDir(self.data).users_path
        os.chmod(users, 0o664)
        pub, _ = public_key_file(self, "k.pub")
        for argv in (("list-users",), ("add-user", "bob", pub), ("show",), ("refresh-crl",)):
            err = self.refused(*argv)
            self.assertIn(f"{users} is writable by", err)
            self.assertIn(f"chmod go-w {users}", err)
        os.chmod(users, 0o600)
        self.assertIn("no users yet", self.ok("list-users"))

    def prompt(self, answers: list[str], *argv: str) -> tuple[int, str, str, list[str]]:
        prompts: list[str] = []

        def getpass(prompt: str = "") -> str:
            prompts.append(prompt)
            return answers.pop(0)
        self.patch(commands_module.getpass, "getpass", getpass)
        out, err = io.StringIO(), io.StringIO()
        code = main(["--data-dir", self.data, *argv], out=out, err=err, now=lambda: NOW,
                    stdin=TerminalStdin())
        return code, out.getvalue(), err.getvalue(), prompts

    def test_caPassphraseAskedOnTerminal(self) -> None:
        """
        On a terminal, init asks for a CA passphrase (twice), and commands
        that need the encrypted CA key ask for it instead of failing; off a
        terminal they say to give --ca-passphrase-file.
        """
        code, out, err, prompts = self.prompt(["ca secret", "ca secret"], "init",
                                              "--server-name", "localhost")
        self.assertEqual((code, err, len(prompts)), (0, "", 2))
        self.assertTrue(DataDir(self.data).ca_key_encrypted())
        code, out, err, prompts = self.prompt(["ca secret"], "refresh-crl")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(prompts, [f"passphrase for the CA key {DataDir(self.data).ca_key_path}: "])
        code, out, err, prompts = self.prompt(["wrong"], "refresh-crl")
        self.assertEqual(code, 1)
        self.assertIn("passphrase", err)
        self.assertIn("--ca-passphrase-file", self.refused("refresh-crl"))
        code, out, err, prompts = self.prompt([], "init", "--server-name", "localhost")
        self.assertEqual((code, prompts), (1, []))
        self.assertIn("already has a CA", err)

    def test_initEmptyPassphraseUnencrypted(self) -> None:
        """
        An empty answer to init's CA passphrase prompt leaves the key
        unencrypted; --no-ca-passphrase does not ask.
        """
        code, out, err, prompts = self.prompt(["", ""], "init", "--server-name", "localhost")
        self.assertEqual((code, err, len(prompts)), (0, "", 2))
        self.assertFalse(DataDir(self.data).ca_key_encrypted())
        self.data = os.path.join(self.dir, "other")
        code, out, err, prompts = self.prompt([], "init", "--server-name", "localhost",
                                              "--no-ca-passphrase")
        self.assertEqual((code, err, prompts), (0, "", []))

    def test_rotateSaysRelayReloads(self) -> None:
        """
        rotate-server-cert says the running relay switches by itself, not
        that it must be restarted.
        """
        self.init()
        out = self.ok("rotate-server-cert")
        self.assertIn("switches to it by itself within 4 seconds", out)
        self.assertNotIn("restart the relay", out)

    def test_addUserSaysAtOnce(self) -> None:
        """
        add-user and new-user say a running relay accepts the user at once
        (it re-checks users.json at every login).
        """
        self.init()
        pub, _ = public_key_file(self, "k.pub")
        self.assertIn("a running relay accepts them at once", self.ok("add-user", "bob", pub))
        out = self.ok("new-user", "carol", "--out", self.dir, "--no-passphrase")
        self.assertIn("a running relay accepts them at once", out)

    def test_everyOptionHasHelp(self) -> None:
        """
        Every option and argument of every command has a help text.
        """
        from securechat.admin.cli import parser
        p = parser()
        subparsers = [a for a in p._actions if isinstance(a, __import__("argparse")._SubParsersAction)]
        for name, sp in subparsers[0].choices.items():
            for action in sp._actions:
                self.assertTrue(action.help, f"{name} {action.option_strings or action.dest}")
