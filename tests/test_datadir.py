"""
Tests for L{securechat.datadir}: atomic writes, change stamps, the user
directory and its refusals of mangled files, the relay's credentials,
locking, and the CA's bookkeeping.
"""

from __future__ import annotations

import datetime
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.pki import certificate_names
from securechat.datadir import DataDir, UserDirectory, parse_utc, utc_text
from securechat.datafiles import (
    CorruptDataDir,
    DataDirError,
    RelayCredentials,
    UnsafeDataDir,
    atomic_write,
)

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


class AtomicWriteTests(unittest.TestCase):
    """
    L{atomic_write} and L{DataDir.stamp}.
    """

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "f")

    def test_noTemporaryFiles(self) -> None:
        """
        After writes only the file itself is left, with the new content.
        """
        atomic_write(self.path, b"one")
        atomic_write(self.path, b"two!")
        self.assertEqual(os.listdir(self.dir), ["f"])
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"two!")

    def test_mode(self) -> None:
        """
        The file gets the mode asked for (0600 by default), whatever it had
        before.
        """
        atomic_write(self.path, b"secret")
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        atomic_write(self.path, b"public", 0o644)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o644)
        atomic_write(self.path, b"secret again")
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_failureLeavesNothing(self) -> None:
        """
        A write that cannot complete (the target is a directory) removes its
        temporary file and names the target, not the temporary file.
        """
        target = os.path.join(self.dir, "sub")
        os.makedirs(target)
        e = self.assertRaises(OSError, atomic_write, target, b"x")
        self.assertEqual(e.filename, target)
        self.assertEqual(os.listdir(self.dir), ["sub"])

    def test_missingDirectory(self) -> None:
        """
        Writing into a directory that does not exist names the target.
        """
        target = os.path.join(self.dir, "nowhere", "f")
        self.assertEqual(self.assertRaises(OSError, atomic_write, target, b"x").filename, target)

    def test_stampChanges(self) -> None:
        """
        The stamp of a file changes after every write, even one of the same
        size, and is None for a missing file.
        """
        data = DataDir(self.dir)
        self.assertIsNone(data.stamp(self.path))
        atomic_write(self.path, b"one")
        first = data.stamp(self.path)
        atomic_write(self.path, b"two")
        second = data.stamp(self.path)
        self.assertNotEqual(first, second)
        self.assertEqual(second, data.stamp(self.path))

    def test_utcText(self) -> None:
        """
        Times are stored as ISO-8601 UTC to the second and read back.
        """
        text = utc_text(NOW)
        self.assertEqual(text, "2026-06-01T12:00:00Z")
        self.assertEqual(parse_utc(text), NOW)
        self.assertRaises(ValueError, parse_utc, "yesterday")


class DataDirCase(unittest.TestCase):
    """
    A freshly initialised data directory.
    """

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        self.data = DataDir(self.path)
        self.data.init(["localhost", "127.0.0.1"], NOW)

    def writeUsers(self, users: object, version: int = 1) -> None:
        atomic_write(self.data.users_path,
                     json.dumps({"version": version, "users": users}).encode())

    def corrupt(self) -> str:
        e = self.assertRaises(CorruptDataDir, self.data.load_users)
        self.assertIn(self.data.users_path, str(e))
        self.assertNotIn("\n", str(e))
        return str(e)


class LayoutTests(DataDirCase):
    """
    What L{DataDir.init} creates.
    """

    def test_paths(self) -> None:
        """
        The documented layout, under the data directory.
        """
        d = self.data
        expected = {
            d.ca_cert_path: "ca/ca.pem", d.ca_key_path: "ca/ca.key", d.crl_path: "ca/crl.pem",
            d.state_path: "ca/state.json", d.server_cert_path: "server/server.pem",
            d.server_key_path: "server/server.key", d.users_path: "users.json",
            d.lock_path: ".lock",
        }
        for path, relative in expected.items():
            self.assertEqual(path, os.path.join(self.path, relative))
        for path in list(expected)[:-1]:
            self.assertTrue(os.path.isfile(path), path)
        self.assertTrue(d.initialized())

    def test_modes(self) -> None:
        """
        The directory is 0700 and both private keys 0600; the server key is
        unencrypted PKCS#8.
        """
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o700)
        for path in (self.data.ca_key_path, self.data.server_key_path):
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(self.data.server_key_path, "rb") as f:
            self.assertTrue(f.read().startswith(b"-----BEGIN PRIVATE KEY-----"))

    def test_stateAndEmptyCRL(self) -> None:
        """
        state.json records the server certificate; the CRL starts empty.
        """
        state = self.data.load_state()
        leaf = self.data.load_server_chain()[0]
        self.assertEqual(state.server_serial, format(leaf.serial_number, "x"))
        self.assertEqual([i["kind"] for i in state.issued], ["server"])
        self.assertEqual(state.revoked, [])
        self.assertEqual(len(list(self.data.load_crl())), 0)

    def test_refusesSecondInit(self) -> None:
        """
        init on a directory with a CA refuses and changes nothing.
        """
        before = self.data.stamp(self.data.ca_key_path)
        e = self.assertRaises(DataDirError, self.data.init, ["localhost"], NOW)
        self.assertIn("already has a CA", str(e))
        self.assertEqual(self.data.stamp(self.data.ca_key_path), before)

    def test_checksBeforeWriting(self) -> None:
        """
        A bad server name or key type is refused before any key is written.
        """
        other = DataDir(os.path.abspath(self.mktemp()))
        self.assertRaises(ValueError, other.init, ["bad name"], NOW)
        self.assertRaises(DataDirError, other.init, ["localhost"], NOW, server_key_type="rsa")
        self.assertFalse(os.path.exists(other.ca_key_path))
        self.assertFalse(os.path.exists(other.server_key_path))


class UserDirectoryTests(DataDirCase):
    """
    L{DataDir.load_users} and L{UserDirectory}.
    """

    def test_lookup(self) -> None:
        """
        Registered users are found with their loaded key; unknown ones are
        None.
        """
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        self.data.add_user("alice", key, NOW)
        users = self.data.load_users()
        record = users.lookup("alice")
        assert record is not None
        self.assertEqual(keys.public_key_der(record.public_key), keys.public_key_der(key))
        self.assertIsNone(record.revoked)
        self.assertEqual(record.added, "2026-06-01T12:00:00Z")
        self.assertEqual(record.key_type, "ed25519")
        self.assertIsNone(users.lookup("bob"))
        self.assertEqual(users.names(), ["alice"])

    def test_fileFormat(self) -> None:
        """
        users.json holds the documented fields.
        """
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        self.data.add_user("alice", key, NOW)
        with open(self.data.users_path) as f:
            entry = json.load(f)["users"]["alice"]
        self.assertEqual(entry, {
            "key": keys.public_key_pem(key).decode("ascii"), "type": "ecdsa-p256",
            "fingerprint": keys.fingerprint(key), "added": "2026-06-01T12:00:00Z",
            "revoked": None, "certificates": [], "history": []})

    def test_stamp(self) -> None:
        """
        The loaded directory carries the stamp of the file it came from,
        which changes when a user is added.
        """
        first = self.data.load_users()
        self.assertEqual(first.stamp, self.data.stamp(self.data.users_path))
        self.data.add_user("alice", ed25519.Ed25519PrivateKey.generate().public_key(), NOW)
        second = self.data.load_users()
        self.assertNotEqual(first.stamp, second.stamp)
        self.assertIsNone(UserDirectory().stamp)

    def test_duplicate(self) -> None:
        """
        A name can be registered once.
        """
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        self.data.add_user("alice", key, NOW)
        self.assertIn("already exists", str(self.assertRaises(
            DataDirError, self.data.add_user, "alice", key, NOW)))

    def test_notJSON(self) -> None:
        """
        A file that is not JSON is refused naming the file.
        """
        atomic_write(self.data.users_path, b"{not json")
        self.assertIn("not valid JSON", self.corrupt())

    def test_missing(self) -> None:
        """
        A missing users.json says so and suggests init.
        """
        os.unlink(self.data.users_path)
        self.assertIn("missing", self.corrupt())

    def test_wrongVersion(self) -> None:
        """
        Another format version is refused.
        """
        self.writeUsers({}, version=2)
        self.assertIn("version 1", self.corrupt())

    def test_noUsersTable(self) -> None:
        """
        A "users" that is not a table is refused.
        """
        self.writeUsers(["alice"])
        self.assertIn("users", self.corrupt())

    def test_badEntries(self) -> None:
        """
        Each way of mangling an entry by hand is refused, naming the user.
        """
        pem = keys.public_key_pem(ed25519.Ed25519PrivateKey.generate().public_key()).decode()
        good: dict[str, object] = {"key": pem, "added": "2026-06-01T12:00:00Z", "revoked": None, "certificates": []}
        self.writeUsers({"alice": good})
        self.data.load_users()
        weak = keys.public_key_pem(ec.generate_private_key(ec.SECP384R1()).public_key()).decode()
        for name, entry in [
            ("Bad Name", good),
            ("alice", "not a table"),
            ("alice", {**good, "key": "nope"}),
            ("alice", {**good, "key": weak}),
            ("alice", {**good, "key": 5}),
            ("alice", {k: v for k, v in good.items() if k != "key"}),
            ("alice", {**good, "added": "last week"}),
            ("alice", {**good, "revoked": 1}),
            ("alice", {**good, "revoked": "yes"}),
            ("alice", {**good, "certificates": "ab"}),
            ("alice", {**good, "certificates": ["not hex"]}),
        ]:
            self.writeUsers({name: entry})
            self.assertIn(repr(name), self.corrupt(), entry)

    def test_corruptState(self) -> None:
        """
        A mangled state.json is refused naming the file.
        """
        atomic_write(self.data.state_path, json.dumps({"version": 1, "issued": []}).encode())
        e = self.assertRaises(CorruptDataDir, self.data.load_state)
        self.assertIn(self.data.state_path, str(e))


class CredentialsTests(DataDirCase):
    """
    L{DataDir.relay_credentials}: what the relay loads.
    """

    def test_credentials(self) -> None:
        """
        The key, the chain as DER (just the leaf today), the CRL as DER and
        the CA certificate; the key belongs to the leaf.
        """
        creds = self.data.relay_credentials()
        self.assertIsInstance(creds, RelayCredentials)
        self.assertEqual(len(creds.chain), 1)
        leaf = x509.load_der_x509_certificate(creds.chain[0])
        self.assertEqual(keys.public_key_der(leaf.public_key()),  # type: ignore[arg-type]
                         keys.public_key_der(creds.private_key.public_key()))
        self.assertEqual(x509.load_der_x509_crl(creds.crl).issuer, creds.ca.subject)
        self.assertEqual(creds.ca, self.data.load_ca_certificate())
        key, chain, crl = self.data.server_credentials()
        self.assertEqual((chain, crl), (list(creds.chain), creds.crl))

    def test_eachFileMissing(self) -> None:
        """
        Each missing file is named in the error.
        """
        for path in (self.data.server_key_path, self.data.server_cert_path, self.data.crl_path,
                     self.data.ca_cert_path):
            with open(path, "rb") as f:
                saved = f.read()
            os.unlink(path)
            e = self.assertRaises(CorruptDataDir, self.data.relay_credentials)
            self.assertIn(path, str(e))
            self.assertIn("missing", str(e))
            atomic_write(path, saved)

    def test_garbage(self) -> None:
        """
        A file that does not parse is named in the error.
        """
        for path in (self.data.server_key_path, self.data.server_cert_path, self.data.crl_path):
            with open(path, "rb") as f:
                saved = f.read()
            atomic_write(path, b"garbage")
            self.assertIn(path, str(self.assertRaises(CorruptDataDir, self.data.relay_credentials)))
            atomic_write(path, saved)

    def test_keyMismatch(self) -> None:
        """
        A server key that does not belong to the certificate is refused.
        """
        atomic_write(self.data.server_key_path,
                     keys.private_key_pem(ec.generate_private_key(ec.SECP256R1()), None))
        self.assertIn("does not belong", str(self.assertRaises(
            CorruptDataDir, self.data.relay_credentials)))


class CATests(DataDirCase):
    """
    The CA's bookkeeping: encrypted key, certificates, revocation, rotation.
    """

    def test_encryptedCAKey(self) -> None:
        """
        An encrypted CA key needs its passphrase: none asks for
        --ca-passphrase-file, a wrong one says so.
        """
        other = DataDir(os.path.abspath(self.mktemp()))
        other.init(["localhost"], NOW, ca_passphrase=b"sesame")
        self.assertIsInstance(other.load_ca_key(b"sesame"), ec.EllipticCurvePrivateKey)
        self.assertIn("--ca-passphrase-file", str(self.assertRaises(
            DataDirError, other.load_ca_key, None)))
        e = self.assertRaises(DataDirError, other.load_ca_key, b"wrong")
        self.assertIn(other.ca_key_path, str(e))
        self.assertNotIn("--ca-passphrase-file", str(e))

    def test_lock(self) -> None:
        """
        Only one changing command at a time: a second lock is refused.
        """
        with self.data.locked():
            with self.assertRaises(DataDirError) as cm:
                with self.data.locked():
                    pass
            self.assertIn("locked", str(cm.exception))
        with self.data.locked():
            pass

    def test_issueAndRevoke(self) -> None:
        """
        A user certificate is recorded in users.json and state.json;
        revoking the user lists it in a new CRL with a higher number.
        """
        key = ed25519.Ed25519PrivateKey.generate()
        self.data.add_user("alice", key.public_key(), NOW)
        csr = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "alice")])).sign(key, None)
        cert = self.data.issue_user_certificate("alice", csr, NOW)
        serial = format(cert.serial_number, "x")
        record = self.data.load_users().lookup("alice")
        assert record is not None
        self.assertEqual(record.certificates, (serial,))
        self.assertIn(serial, [i["serial"] for i in self.data.load_state().issued])
        number = self.data.load_crl().extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        later = NOW + datetime.timedelta(hours=1)
        self.data.revoke_user("alice", later)
        crl = self.data.load_crl()
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        assert entry is not None
        self.assertEqual(entry.revocation_date_utc, later)
        self.assertGreater(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number, number)
        record = self.data.load_users().lookup("alice")
        assert record is not None
        self.assertEqual(record.revoked, utc_text(later))
        self.assertRaises(DataDirError, self.data.revoke_user, "alice", later)
        self.assertRaises(DataDirError, self.data.issue_user_certificate, "alice", csr, later)

    def test_refreshCRL(self) -> None:
        """
        refresh_crl moves the CRL's dates and keeps its entries.
        """
        self.data.rotate_server_certificate(NOW)
        later = NOW + datetime.timedelta(days=20)
        self.data.refresh_crl(later, days=5)
        crl = self.data.load_crl()
        self.assertEqual(crl.last_update_utc, later)
        self.assertEqual(crl.next_update_utc, later + datetime.timedelta(days=5))
        self.assertEqual(len(list(crl)), 1)

    def test_rotate(self) -> None:
        """
        Rotation makes a new key and certificate with the same names (or new
        ones) and revokes the old serial.
        """
        old_chain = self.data.load_server_chain()
        old_key = keys.private_key_pem(self.data.load_server_key(), None)
        cert = self.data.rotate_server_certificate(NOW, key_type="ecdsa-p256")
        self.assertEqual(cert.subject, old_chain[0].subject)
        self.assertNotEqual(keys.private_key_pem(self.data.load_server_key(), None), old_key)
        self.assertIsInstance(cert.public_key(), ec.EllipticCurvePublicKey)
        self.assertIsNotNone(self.data.load_crl().get_revoked_certificate_by_serial_number(
            old_chain[0].serial_number))
        self.assertEqual(self.data.load_state().server_serial, format(cert.serial_number, "x"))
        renamed = self.data.rotate_server_certificate(NOW, names=["chat.example.org"])
        self.assertEqual(certificate_names(renamed), ["chat.example.org"])
        self.data.relay_credentials()


def other_owner(test: unittest.TestCase, *paths: str) -> int:
    """
    Make C{paths} belong to someone other than the user a L{DataDir} is
    then opened for, and return that user's id: as root, the files are
    given to uid 4242 and the directory opened for uid 1000; otherwise the
    files stay the tester's and the directory is opened for another uid.
    """
    if os.geteuid() == 0:
        for path in paths:
            os.chown(path, 4242, 4242, follow_symlinks=False)
        return 1000
    return os.geteuid() + 1


class TrustTests(DataDirCase):
    """
    Attacks through the data directory's files: nothing another user could
    have written, and no private key others could have read, is believed
    (as OpenSSH refuses such key files).  Each refusal is one line naming
    the file, the problem and the command that fixes it.
    """

    def refused(self, call: object, *args: object, fix: str) -> str:
        e = self.assertRaises(UnsafeDataDir, call, *args)  # type: ignore[arg-type]
        self.assertIsInstance(e, CorruptDataDir)
        self.assertNotIn("\n", str(e))
        self.assertIn(fix, str(e))
        return str(e)

    def test_groupWritableUsersRefused(self) -> None:
        """
        A users.json its group can write (anyone in it could register
        themselves) is refused by every reader, naming the chmod.
        """
        os.chmod(self.data.users_path, 0o660)
        error = self.refused(self.data.load_users, fix=f"chmod go-w {self.data.users_path}")
        self.assertIn("writable by its group (mode 0660)", error)
        self.refused(self.data.verify, fix=f"chmod go-w {self.data.users_path}")

    def test_worldWritableUsersRefused(self) -> None:
        """
        A users.json anyone can write is refused.
        """
        os.chmod(self.data.users_path, 0o606)
        error = self.refused(self.data.load_users, fix=f"chmod go-w {self.data.users_path}")
        self.assertIn("writable by others", error)

    def test_writableCRLRefused(self) -> None:
        """
        A CRL others can write (they could un-revoke the relay's old
        certificate) is refused like users.json.
        """
        os.chmod(self.data.crl_path, 0o666)
        self.refused(self.data.relay_credentials, fix=f"chmod go-w {self.data.crl_path}")

    def test_readableCAKeyRefused(self) -> None:
        """
        A CA key its group can read is refused unless the operator allows
        it explicitly.
        """
        os.chmod(self.data.ca_key_path, 0o640)
        error = self.refused(self.data.load_ca_key, None, fix=f"chmod 600 {self.data.ca_key_path}")
        self.assertIn("private key readable by its group", error)
        self.assertIn("--allow-readable-keys", error)
        self.refused(self.data.verify, fix=f"chmod 600 {self.data.ca_key_path}")
        allowed = DataDir(self.path, allow_readable_keys=True)
        allowed.verify()
        allowed.load_ca_key(None)

    def test_readableServerKeyRefused(self) -> None:
        """
        A relay key anyone can read is refused when the relay loads its
        credentials.
        """
        os.chmod(self.data.server_key_path, 0o644)
        error = self.refused(self.data.relay_credentials, fix=f"chmod 600 {self.data.server_key_path}")
        self.assertIn("readable by group and others", error)
        DataDir(self.path, allow_readable_keys=True).relay_credentials()

    def test_directoryOwnedByAnotherUser(self) -> None:
        """
        A data directory that belongs to another user (not root) is refused
        with the chown that fixes it; one owned by root is accepted.
        """
        DataDir(self.path, uid=1000).verify()  # owned by the tester or root
        uid = other_owner(self, self.path)
        error = self.refused(DataDir(self.path, uid=uid).verify, fix="chown -R ")
        self.assertIn(f"{self.path} is owned by", error)

    def test_fileOwnedByAnotherUser(self) -> None:
        """
        A users.json that belongs to another user is refused when read.
        """
        uid = other_owner(self, self.data.users_path)
        data = DataDir(self.path, uid=uid)
        error = self.refused(data.load_users, fix=f"{self.data.users_path}")
        self.assertIn("is owned by", error)
        self.assertIn("chown ", error)

    def test_rootMayUseAnyOwnersDirectory(self) -> None:
        """
        Root may work on a directory its service user owns (sudo
        securechat-admin).
        """
        other_owner(self, self.path, self.data.users_path)
        DataDir(self.path, uid=0).verify()
        DataDir(self.path, uid=0).load_users()

    def test_groupWritableDirectoryRefused(self) -> None:
        """
        A data directory (or its ca/ subdirectory) others can write in (and
        so replace files in) is refused.
        """
        os.chmod(self.data.ca_dir, 0o770)
        error = self.refused(self.data.verify, fix=f"chmod go-w {self.data.ca_dir}")
        self.assertIn("writable by its group", error)
        os.chmod(self.data.ca_dir, 0o700)
        os.chmod(self.path, 0o777)
        self.refused(self.data.verify, fix=f"chmod go-w {self.path}")

    def test_symlinkOutOfDirectoryRefused(self) -> None:
        """
        A users.json that is a symbolic link to a file outside the data
        directory is refused; a link inside it is accepted.
        """
        outside = os.path.abspath(self.mktemp())
        with open(self.data.users_path, "rb") as f, open(outside, "wb") as g:
            g.write(f.read())
        os.chmod(outside, 0o600)
        inside = os.path.join(self.path, "users-copy.json")
        os.rename(self.data.users_path, inside)
        os.symlink(inside, self.data.users_path)
        self.data.load_users()
        os.unlink(self.data.users_path)
        os.symlink(outside, self.data.users_path)
        error = self.refused(self.data.load_users, fix="replace it with the file itself")
        self.assertIn(f"{self.data.users_path} is a symbolic link out of the data directory", error)
        self.refused(self.data.verify, fix="symbolic link out")

    def test_rootWritesKeepDirectoryOwner(self) -> None:
        """
        Files and directories root writes into a directory owned by another
        user (the relay's) keep that user and group, so the relay can still
        read them.
        """
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to write as root into another user's directory")
        path = os.path.abspath(self.mktemp())
        os.makedirs(path, mode=0o700)
        os.chown(path, 4242, 4343)
        data = DataDir(path)
        with data.locked():
            data.init(["localhost"], NOW)
            data.add_user("alice", ed25519.Ed25519PrivateKey.generate().public_key(), NOW)
        for directory, _, files in os.walk(path):
            for name in [directory] + [os.path.join(directory, f) for f in files]:
                st = os.stat(name)
                self.assertEqual((st.st_uid, st.st_gid), (4242, 4343), name)


class PermissionTests(DataDirCase):
    """
    A data directory the running user may not enter (made by root, relay
    run as the service user) is reported as exactly that.
    """

    def test_permissionDeniedNamesDirectory(self) -> None:
        """
        The refusal says permission is denied on the directory, who owns
        it, and the chown that lets the running user in, not that the CA
        is missing.
        """
        from securechat import filetrust
        from securechat.filetrust import user_name
        self.patch(filetrust.os, "access", lambda path, mode: False)
        owner = user_name(os.stat(self.path).st_uid)
        e = self.assertRaises(UnsafeDataDir, DataDir(self.path, uid=65534).verify)
        self.assertEqual(
            str(e), f"permission denied on {self.path} (owned by {owner}, mode 0700), and this runs "
                    f"as {user_name(65534)}: chown -R {user_name(65534)}: on the data directory, or "
                    f"run this as {owner}")
