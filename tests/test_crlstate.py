"""
Tests for the client's CRL memory file (L{securechat.client.crlstate}) and
its use by the client's server verifier
(L{securechat.client.cli.make_server_verifier}).
"""

from __future__ import annotations

import json
import os
import stat

from twisted.trial import unittest

from securechat.client.cli import crl_state_path, make_server_verifier
from securechat.client.crlstate import CorruptCrlState, CrlStore
from securechat.crypto.x509 import SeenCrl, ca_fingerprint
from securechat.delegate import PeerRejected
from securechat.wire.messages import CertificateIdentity
from tests.test_attacks_pki import DER, NOW, RelayPKI

CA = "SHA256:" + "A" * 43


class CrlStoreTests(unittest.TestCase):
    """
    The memory survives restarts, is private, is written atomically, and a
    damaged file is an error instead of a silent reset.
    """

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        self.path = os.path.join(self.dir, "seen_crls.json")

    def test_roundTrip(self) -> None:
        """
        What is remembered is read back by a new store on the same file.
        """
        CrlStore(self.path).remember(CA, SeenCrl(7, frozenset({0x1F, 2**150})))
        self.assertEqual(CrlStore(self.path).seen(CA), SeenCrl(7, frozenset({0x1F, 2**150})))
        self.assertIsNone(CrlStore(self.path).seen("SHA256:other"))

    def test_modeAndNoLeftovers(self) -> None:
        """
        The file is mode 0600, and no temporary file is left beside it.
        """
        store = CrlStore(self.path)
        store.remember(CA, SeenCrl(1, frozenset()))
        store.remember(CA, SeenCrl(2, frozenset({5})))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.dir), ["seen_crls.json"])

    def test_corruptFileIsAnError(self) -> None:
        """
        A file that is not the memory's JSON, or has a malformed entry, is
        C{CorruptCrlState} naming the file, and the file is left as it was.
        """
        os.makedirs(self.dir)
        for content in ("{not json", json.dumps({"version": 2, "cas": {}}),
                        json.dumps({"version": 1, "cas": {CA: {"crl_number": "7", "revoked": []}}}),
                        json.dumps({"version": 1, "cas": {CA: {"crl_number": 7, "revoked": ["xyz"]}}})):
            with open(self.path, "w") as f:
                f.write(content)
            e = self.assertRaises(CorruptCrlState, CrlStore, self.path)
            self.assertIn(self.path, str(e))
            with open(self.path) as f:
                self.assertEqual(f.read(), content)

    def test_failedWriteKeepsPrevious(self) -> None:
        """
        When the file cannot be written, the error is raised, the file on
        disk is unchanged, and the store still holds the previous memory.
        """
        store = CrlStore(self.path)
        store.remember(CA, SeenCrl(1, frozenset()))
        with open(self.path) as f:
            before = f.read()
        store.path = os.path.join(self.path, "cannot-be-under-a-file.json")
        self.assertRaises(OSError, store.remember, CA, SeenCrl(2, frozenset()))
        self.assertEqual(store.seen(CA), SeenCrl(1, frozenset()))
        with open(self.path) as f:
            self.assertEqual(f.read(), before)

    def test_twoProcessesMerge(self) -> None:
        """
        Two clients sharing the file (two users on one account): one that
        read the file before the other saved a newer CRL merges instead of
        writing its older memory back.
        """
        first, second = CrlStore(self.path), CrlStore(self.path)
        second.remember(CA, SeenCrl(9, frozenset({1})))
        first.remember(CA, SeenCrl(5, frozenset({2})))
        self.assertEqual(CrlStore(self.path).seen(CA), SeenCrl(9, frozenset({1, 2})))
        self.assertEqual(first.seen(CA), SeenCrl(9, frozenset({1, 2})))

    def test_besideKnownPeers(self) -> None:
        """
        The client keeps the file beside its known-peers file.
        """
        self.assertEqual(crl_state_path("/home/a/.config/securechat/known_peers"),
                         "/home/a/.config/securechat/seen_crls.json")


class VerifierMemoryTests(unittest.TestCase):
    """
    The client's verifier consults and updates the memory.
    """

    def setUp(self) -> None:
        self.p = RelayPKI()
        self.path = os.path.join(os.path.abspath(self.mktemp()), "seen_crls.json")

    def identity(self, cert, crl) -> CertificateIdentity:  # type: ignore[no-untyped-def]
        return CertificateIdentity((cert.public_bytes(DER),), crl.public_bytes(DER))

    def test_rollbackIsBadCertificate(self) -> None:
        """
        After CRL n+1, CRL n is refused as C{bad-certificate} whose detail
        names C{crl-rollback}.
        """
        p = self.p
        verify = make_server_verifier(p.ca, "localhost", now=lambda: NOW, crls=CrlStore(self.path))
        verify(self.identity(p.new, p.crl_n1))
        e = self.assertRaises(PeerRejected, verify, self.identity(p.new, p.crl_n))
        self.assertEqual(e.code, "bad-certificate")
        self.assertIn("[crl-rollback]", e.detail)

    def test_unrecordableCrlFailsClosed(self) -> None:
        """
        A newer CRL that cannot be recorded refuses the relay (it could be
        rolled back after a restart), saying where and why: C{crl-memory}.
        """
        p = self.p
        store = CrlStore(self.path)
        os.makedirs(os.path.dirname(self.path))
        os.mkdir(self.path)  # a directory where the file should go: renaming onto it fails
        verify = make_server_verifier(p.ca, "localhost", now=lambda: NOW, crls=store)
        e = self.assertRaises(PeerRejected, verify, self.identity(p.new, p.crl_n1))
        self.assertIn("[crl-memory]", e.detail)
        self.assertIn(self.path, e.detail)

    def test_keyedByCa(self) -> None:
        """
        The memory is kept under the CA certificate's fingerprint.
        """
        p = self.p
        store = CrlStore(self.path)
        make_server_verifier(p.ca, "localhost", now=lambda: NOW, crls=store)(
            self.identity(p.new, p.crl_n1))
        self.assertEqual(store.seen(ca_fingerprint(p.ca)),
                         SeenCrl(5, frozenset({p.old.serial_number})))
