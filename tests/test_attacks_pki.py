"""
Attacks on the relay's certificate identity, in memory, with real
certificates and CRLs from L{securechat.pki} and the real client verifier
(L{securechat.client.cli.make_server_verifier}) and its CRL memory
(L{securechat.client.crlstate.CrlStore}).
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial import unittest

from securechat import pki
from securechat.client.cli import make_server_verifier
from securechat.client.core import ChatClient
from securechat.client.crlstate import CrlStore
from securechat.client.pins import PinStore
from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.crypto.x509 import ca_fingerprint
from securechat.protocol import SecureChatProtocol
from securechat.server.relay import ServerCredentials
from securechat.wire.messages import CertificateIdentity, UserIdentity
from securechat.wire.relay import FROM_SERVER
from tests.relay_harness import Harness, user_key
from tests.test_client_core import RecordingView

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
DER = serialization.Encoding.DER


class RelayPKI:
    """
    The operator's CA; the relay's first certificate (key C{old_key}) and
    CRL number C{n} listing nothing; after a rotation, the relay's new
    certificate and CRL C{n + 1} revoking the old one.
    """

    def __init__(self, n: int = 4) -> None:
        self.ca_key, self.ca = pki.new_ca("test CA", NOW)
        self.old_key = ed25519.Ed25519PrivateKey.generate()
        self.old = pki.issue_server_certificate(self.ca_key, self.ca, self.old_key.public_key(),
                                                ["localhost"], NOW)
        self.crl_n = pki.issue_crl(self.ca_key, self.ca, [], n, NOW)
        self.new_key = ed25519.Ed25519PrivateKey.generate()
        self.new = pki.issue_server_certificate(self.ca_key, self.ca, self.new_key.public_key(),
                                                ["localhost"], NOW)
        self.crl_n1 = pki.issue_crl(self.ca_key, self.ca, [(self.old.serial_number, NOW)], n + 1, NOW)

    def credentials(self, key: keys.PrivateKey, cert: x509.Certificate,
                    crl: x509.CertificateRevocationList) -> ServerCredentials:
        return ServerCredentials(key, CertificateIdentity((cert.public_bytes(DER),), crl.public_bytes(DER)))


def connect(h: Harness, ca: x509.Certificate, crls: CrlStore, name: str = "alice"
            ) -> tuple[ChatClient, RecordingView]:
    """
    A real L{ChatClient} checking the relay as C{securechat-client} does.
    """
    view = RecordingView()
    verify = make_server_verifier(ca, "localhost", now=lambda: NOW, crls=crls)
    client = ChatClient(name, user_key(name), view, verify, PinStore(None))
    config = Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
                    registry=FROM_SERVER)
    proto = SecureChatProtocol(config, client, h.clock, handshake_timeout=1e9)
    h.network.connect(proto, h.factory.buildProtocol(None))
    h.pump()
    return client, view


class CrlRollbackAttacks(unittest.TestCase):
    """
    Whoever holds a revoked relay key tries to keep using it by stapling
    the last CRL from before the revocation.
    """

    def setUp(self) -> None:
        self.p = RelayPKI()
        self.state = os.path.join(os.path.abspath(self.mktemp()), "seen_crls.json")

    def test_olderCrlRefusedAfterNewerSeen(self) -> None:
        """
        The relay's certificate is revoked in CRL n+1; alice's client has
        logged in once to the genuine relay stapling n+1.  An attacker with
        the old relay key and certificate, stapling CRL n (still within its
        validity), is refused with C{crl-rollback} by alice's client,
        restarted (its memory read back from the file), and she is not
        logged in.  A client that never saw n+1 would have accepted it:
        the memory is what stops the attack.
        """
        p = self.p
        genuine = Harness()
        genuine.relay.credentials = p.credentials(p.new_key, p.new, p.crl_n1)
        client, view = connect(genuine, p.ca, CrlStore(self.state))
        self.assertTrue(client.logged_in, view.seen)
        self.assertEqual(CrlStore(self.state).seen(ca_fingerprint(p.ca)).number, 5)  # type: ignore[union-attr]

        attacker = Harness()
        attacker.relay.credentials = p.credentials(p.old_key, p.old, p.crl_n)
        client, view = connect(attacker, p.ca, CrlStore(self.state))
        self.assertFalse(client.logged_in)
        [reason] = view.of("disconnected")
        self.assertIn("[crl-rollback]", reason[0])
        self.assertEqual(attacker.relay.sessions, {})

        victim = Harness()
        victim.relay.credentials = p.credentials(p.old_key, p.old, p.crl_n)
        naive, _ = connect(victim, p.ca, CrlStore(None))
        self.assertTrue(naive.logged_in)

    def test_revokedSerialRememberedWhenRefused(self) -> None:
        """
        A client that meets CRL n+1 while the relay still serves the old
        (now revoked) certificate refuses it (C{revoked}), and remembers
        n+1 all the same, so the attacker's CRL n is a rollback afterwards.
        """
        p = self.p
        stale = Harness()
        stale.relay.credentials = p.credentials(p.old_key, p.old, p.crl_n1)
        client, view = connect(stale, p.ca, CrlStore(self.state))
        self.assertFalse(client.logged_in)
        self.assertIn("[revoked]", view.of("disconnected")[0][0])
        seen = CrlStore(self.state).seen(ca_fingerprint(p.ca))
        assert seen is not None
        self.assertEqual((seen.number, p.old.serial_number in seen.revoked), (5, True))

        attacker = Harness()
        attacker.relay.credentials = p.credentials(p.old_key, p.old, p.crl_n)
        client, view = connect(attacker, p.ca, CrlStore(self.state))
        self.assertFalse(client.logged_in)
        self.assertIn("[crl-rollback]", view.of("disconnected")[0][0])
