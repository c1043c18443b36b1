"""
Tests for the relay's check of its own certificate identity
(L{securechat.server.service}): at start-up (refused with one line), on
reload (the previous credentials kept, one log line), and what a rotation
or a revocation of the relay's certificate does to connected sessions
(ended with SERVER_REKEYED; clients reconnect and check the new one).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial import unittest

from securechat import pki
from securechat.client.cli import is_final, make_server_verifier
from securechat.client.core import ChatClient, describe_error
from securechat.client.crlstate import CrlStore
from securechat.client.pins import PinStore
from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.crypto.x509 import MAX_IDENTITY_BYTES
from securechat.datadir import DataDir, utc_text
from securechat.datafiles import atomic_write
from securechat.errors import Alert, PeerAlert
from securechat.protocol import SecureChatProtocol
from securechat.server.limits import Limits
from securechat.server.relay import RelayFactory
from securechat.server.service import RelayService, StartupError, relay_service
from securechat.wire.messages import UserIdentity
from securechat.wire.relay import FROM_SERVER
from tests.memnet import Network
from tests.relay_harness import user_key
from tests.test_client_core import RecordingView

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
PEM = serialization.Encoding.PEM


def revoke_relay_certificate(data: DataDir, when: datetime.datetime) -> None:
    """
    Revoke the relay's current certificate in a reissued CRL, without
    rotating it (what an operator's mistake, or a hurried revocation, does).
    """
    state = data.load_state()
    state.revoked.append({"serial": state.server_serial or "", "at": utc_text(when)})
    data._write_crl(data.load_ca_key(None), data.load_ca_certificate(), state, when)


def write_crl_with(data: DataDir, count: int, when: datetime.datetime) -> None:
    """
    Reissue the CRL with C{count} revoked serials of the same size (none of
    them the relay's).
    """
    state = data.load_state()
    state.revoked = [{"serial": format(2**150 + i, "x"), "at": utc_text(when)} for i in range(count)]
    data._write_crl(data.load_ca_key(None), data.load_ca_certificate(), state, when)


class CredentialsCase(unittest.TestCase):
    """
    A data directory made at C{NOW}; the relay's wall clock a minute on.
    """

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        self.data = DataDir(self.path)
        self.data.init(["localhost"], NOW)
        self.clock = Clock()
        self.wall = NOW + datetime.timedelta(minutes=1)

    def start(self) -> RelayService:
        return relay_service(self.path, [], None, Limits(), clock=self.clock, now=lambda: self.wall)

    def refused(self) -> str:
        return str(self.assertRaises(StartupError, self.start))


class StartupCheckTests(CredentialsCase):
    """
    The relay refuses to start with credentials every client would refuse,
    saying why and what to do in one line.
    """

    def test_certificateFromAnotherCA(self) -> None:
        """
        A certificate (and its key) from another CA, as in a doctored data
        directory: C{untrusted}, naming the files.
        """
        other_key, other_ca = pki.new_ca("other CA", NOW)
        key = pki.new_server_key()
        cert = pki.issue_server_certificate(other_key, other_ca, key.public_key(), ["localhost"], NOW)
        atomic_write(self.data.server_key_path, keys.private_key_pem(key, None), 0o600)
        atomic_write(self.data.server_cert_path, cert.public_bytes(PEM))
        line = self.refused()
        self.assertIn("[untrusted]", line)
        self.assertIn(self.data.server_cert_path, line)
        self.assertNotIn("\n", line)

    def test_revokedCertificate(self) -> None:
        """
        A certificate the CA's CRL revokes: C{revoked}, and the line says
        to rotate it.
        """
        revoke_relay_certificate(self.data, NOW)
        line = self.refused()
        self.assertIn("[revoked]", line)
        self.assertIn("rotate-server-cert", line)

    def test_expiredCrl(self) -> None:
        """
        An out-of-date CRL: C{crl-expired}, and the line says to refresh it.
        """
        self.wall = NOW + datetime.timedelta(days=pki.CRL_DAYS + 1)
        line = self.refused()
        self.assertIn("[crl-expired]", line)
        self.assertIn("refresh-crl", line)

    def test_intermediateInChain(self) -> None:
        """
        A chain with a certificate after the leaf that is not the CA:
        C{intermediate}.
        """
        with open(self.data.server_cert_path, "rb") as f:
            leaf = f.read()
        _, other_ca = pki.new_ca("some intermediate", NOW)
        atomic_write(self.data.server_cert_path, leaf + other_ca.public_bytes(PEM))
        self.assertIn("[intermediate]", self.refused())

    def test_makeServiceOneLine(self) -> None:
        """
        Through C{twistd securechat}'s makeService, the refusal is one line
        on standard error starting C{twistd securechat: error:}, exit 1.
        """
        import io
        import sys

        from securechat.tap import Options, makeService
        revoke_relay_certificate(self.data, datetime.datetime.now(datetime.timezone.utc))
        options = Options()
        options.parseOptions(["--data-dir", self.path])
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        e = self.assertRaises(SystemExit, makeService, options)
        self.assertEqual(e.code, 1)
        self.assertTrue(err.getvalue().startswith("twistd securechat: error: every client would refuse"))
        self.assertEqual(err.getvalue().count("\n"), 1)


class SizeLimitTests(CredentialsCase):
    """
    The relay's certificate identity (chain and stapled CRL) must fit
    L{MAX_IDENTITY_BYTES}, so that its handshake record fits the 16384-byte
    frame maximum every client applies before the handshake completes.
    """

    def largest_fitting(self) -> int:
        """
        How many revoked serials (of 19 bytes each) the CRL can hold with
        the relay's certificate identity still fitting, with 4 bytes to
        spare (the CA's ECDSA signature on the CRL varies by a byte or two).
        """
        from securechat.server.service import read_credentials
        sizes = []
        for count in (100, 200):
            write_crl_with(self.data, count, NOW)
            credentials, _ = read_credentials(self.data, self.wall)
            sizes.append(len(credentials.identity.encode()))
        per_entry = (sizes[1] - sizes[0]) / 100
        return 100 + int((MAX_IDENTITY_BYTES - 4 - sizes[0]) // per_entry)

    def test_limitRefusedAtStartup(self) -> None:
        """
        A CRL two revoked serials over what fits is refused at start-up
        with C{too-large} and the limit; the most that fit starts (about
        360 with an Ed25519 relay certificate: docs/protocol.rst, 4.6).
        """
        fits = self.largest_fitting()
        self.assertTrue(340 <= fits <= 380, fits)
        write_crl_with(self.data, fits, NOW)
        self.assertLessEqual(len(self.start().relay.credentials.identity.encode()), MAX_IDENTITY_BYTES)
        write_crl_with(self.data, fits + 2, NOW)
        line = self.refused()
        self.assertIn("[too-large]", line)
        self.assertIn(str(MAX_IDENTITY_BYTES), line)

    def test_largestCrlStillLogsIn(self) -> None:
        """
        With the largest CRL that fits, a client with the default
        pre-handshake frame maximum still completes the handshake and logs
        in (the CRL does not lock clients out).
        """
        write_crl_with(self.data, self.largest_fitting(), NOW)
        service = self.start()
        self.data.add_user("alice", user_key("alice").public_key(), NOW)
        service.refresh(force=True)
        client, view = connect(service, Network(self.clock), self.data, self.wall)
        self.assertTrue(client.logged_in, view.seen)


def connect(service: RelayService, network: Network, data: DataDir, wall: datetime.datetime,
            name: str = "alice", crls: CrlStore | None = None) -> tuple[ChatClient, RecordingView]:
    """
    A real client, checking the relay's certificate as securechat-client
    does, connected to C{service}'s relay.
    """
    view = RecordingView()
    verify = make_server_verifier(data.load_ca_certificate(), "localhost", now=lambda: wall,
                                  crls=crls or CrlStore(None))
    client = ChatClient(name, user_key(name), view, verify, PinStore(None))
    proto = SecureChatProtocol(
        Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name), registry=FROM_SERVER),
        client, network.clock, handshake_timeout=1e9)
    network.connect(proto, RelayFactory(service.relay).buildProtocol(None))
    return client, view


class RunningRelayCase(CredentialsCase):
    """
    A running relay with alice registered, its log events in C{events}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.data.add_user("alice", user_key("alice").public_key(), NOW)
        self.service = self.start()
        self.events: list[dict[str, Any]] = []
        self.service.log = Logger(observer=self.events.append)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.network = Network(self.clock)


class ReloadCheckTests(RunningRelayCase):
    """
    Credentials changed on disk while the relay runs.
    """

    def errors(self) -> list[str]:
        from twisted.logger import LogLevel, formatEvent
        return [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.error]

    def login(self, crls: CrlStore | None = None) -> tuple[ChatClient, RecordingView]:
        return connect(self.service, self.network, self.data, self.wall, crls=crls)

    def test_badReloadKeepsPrevious(self) -> None:
        """
        A certificate from another CA put in place while running is not
        served: the relay keeps its credentials, logs one error line (once,
        not at every check), and clients still log in.
        """
        before = self.service.relay.credentials
        other_key, other_ca = pki.new_ca("other CA", NOW)
        key = pki.new_server_key()
        cert = pki.issue_server_certificate(other_key, other_ca, key.public_key(), ["localhost"], NOW)
        atomic_write(self.data.server_key_path, keys.private_key_pem(key, None), 0o600)
        atomic_write(self.data.server_cert_path, cert.public_bytes(PEM))
        self.clock.advance(2)
        self.clock.advance(2)
        self.assertIs(self.service.relay.credentials, before)
        [line] = self.errors()
        self.assertIn("keeping the previous relay certificate", line)
        self.assertIn("[untrusted]", line)
        self.assertNotIn("\n", line)
        client, view = self.login()
        self.assertTrue(client.logged_in, view.seen)

    def test_rotationEndsOldSessions(self) -> None:
        """
        After C{securechat-admin rotate-server-cert}, a session established
        under the old certificate is ended with SERVER_REKEYED at the
        reload (the second check after it); the client is told to reconnect
        (not a final error), and its reconnection checks and accepts the
        new certificate.
        """
        client, view = self.login()
        self.assertTrue(client.logged_in)
        old_leaf = self.service.relay.credentials.identity.chain[0]
        self.data.rotate_server_certificate(NOW)
        self.clock.advance(2)
        self.clock.advance(2)
        self.network.pump()
        [reason] = view.of("disconnected")
        self.assertIn("changed its certificate; reconnecting", reason[0])
        error = client.protocol.error
        self.assertIsInstance(error, PeerAlert)
        self.assertEqual(error.peer_alert, Alert.SERVER_REKEYED)  # type: ignore[union-attr]
        self.assertFalse(is_final(error))
        self.assertEqual(self.service.relay.sessions, {})
        again, view = self.login()
        self.assertTrue(again.logged_in, view.seen)
        self.assertNotEqual(again.protocol.connection.peer_identity.chain[0], old_leaf)  # type: ignore[union-attr]

    def test_crlRefreshKeepsSessions(self) -> None:
        """
        A reissued CRL that does not touch the relay's certificate (the
        daily refresh-crl) ends no session.
        """
        client, view = self.login()
        before = self.service.relay.credentials
        self.data.refresh_crl(NOW)
        self.clock.advance(2)
        self.clock.advance(2)
        self.network.pump()
        self.assertIsNot(self.service.relay.credentials, before)
        self.assertIn("alice", self.service.relay.sessions)
        self.assertEqual(view.of("disconnected"), [])

    def test_revocationWithoutRotationEndsSessions(self) -> None:
        """
        A CRL revoking the relay's own certificate is adopted (the relay
        does not hide it by stapling the older CRL), one error line says to
        rotate, every session is ended with SERVER_REKEYED, and a client
        reconnecting is refused with C{revoked}, a final error.
        """
        client, view = self.login()
        revoke_relay_certificate(self.data, NOW)
        self.clock.advance(2)
        self.clock.advance(2)
        self.network.pump()
        self.assertEqual(client.protocol.error.peer_alert, Alert.SERVER_REKEYED)  # type: ignore[union-attr]
        [line] = self.errors()
        self.assertIn("[revoked]", line)
        self.assertIn("rotate-server-cert", line)
        again, view = self.login()
        self.assertFalse(again.logged_in)
        self.assertIn("[revoked]", view.of("disconnected")[0][0])
        self.assertTrue(is_final(again.protocol.error))

    def test_describeRekeyed(self) -> None:
        """
        The client's line for SERVER_REKEYED says it reconnects, whether or
        not it was logged in.
        """
        for logged_in in (True, False):
            self.assertEqual(describe_error(PeerAlert(Alert.SERVER_REKEYED), logged_in),
                             "the relay changed its certificate; reconnecting to check the new one")


class RelayRekeyTests(unittest.TestCase):
    """
    L{securechat.server.relay.Relay.replace_credentials} on its own.
    """

    def test_handshakeUnderPreviousCertificateEnded(self) -> None:
        """
        A connection whose handshake began under the previous certificate
        and completes after the change is ended at login with
        SERVER_REKEYED, not let in under the old certificate.
        """
        from tests.relay_harness import SERVER_KEY, Harness, RecordingClient
        from securechat.server.relay import ServerCredentials
        from securechat.wire.messages import CertificateIdentity

        h = Harness()
        client = RecordingClient("alice")
        proto = SecureChatProtocol(
            Config(CLIENT_SERVER, Role.INITIATOR, user_key("alice"), UserIdentity("alice"),
                   registry=FROM_SERVER), client, h.clock, handshake_timeout=1e9)
        server = h.factory.buildProtocol(None)  # configured with the current certificate
        h.relay.replace_credentials(
            ServerCredentials(SERVER_KEY, CertificateIdentity((b"the new certificate",), b"crl")))
        h.network.connect(proto, server)
        self.assertFalse(client.logged_in)
        self.assertIsInstance(client.error, PeerAlert)
        self.assertEqual(client.error.peer_alert, Alert.SERVER_REKEYED)  # type: ignore[union-attr]
        self.assertEqual(h.relay.sessions, {})


class CrlPruningTests(CredentialsCase):
    """
    How the CA numbers and fills its CRL: it leaves out certificates long
    expired, so it does not grow for ever towards the size limit, and its
    numbers never go back.
    """

    def test_longExpiredRevocationLeftOut(self) -> None:
        """
        A revoked relay certificate is listed while valid and for a CRL
        lifetime after it expires, and left out after that.
        """
        old = self.data.load_server_chain()[0]
        self.data.rotate_server_certificate(NOW)
        listed = lambda: self.data.load_crl().get_revoked_certificate_by_serial_number(  # noqa: E731
            old.serial_number) is not None
        self.assertTrue(listed())
        expiry = old.not_valid_after_utc
        self.data.refresh_crl(expiry + datetime.timedelta(days=pki.CRL_DAYS - 1))
        self.assertTrue(listed())
        self.data.refresh_crl(expiry + datetime.timedelta(days=pki.CRL_DAYS + 1))
        self.assertFalse(listed())
        self.assertIn(format(old.serial_number, "x"), [r["serial"] for r in self.data.load_state().revoked])


    def test_crlNumberNeverGoesBack(self) -> None:
        """
        After ca/state.json is restored from an older backup, the next CRL
        is still numbered above the current one, or every client that saw
        it would refuse the relay as a rollback.
        """
        def number() -> int:
            crl = self.data.load_crl()
            return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        backup = self.data.load_state()
        for _ in range(3):
            self.data.refresh_crl(NOW)
        current = number()
        self.data.save_state(backup)
        self.data.refresh_crl(NOW)
        self.assertEqual(number(), current + 1)

class ExpiryWatchTests(CredentialsCase):
    """
    Credentials that go out of date while the relay runs, nothing on disk
    changing: the operator is warned before and told when.
    """

    def setUp(self) -> None:
        super().setUp()
        self.service = self.start()
        self.events: list[dict[str, Any]] = []
        self.service.log = Logger(observer=self.events.append)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        # Only what comes after start-up (the start-up hint is not ours).
        del self.events[:]

    def lines(self) -> list[tuple[str, str]]:
        from twisted.logger import formatEvent
        return [(e["log_level"].name, formatEvent(e)) for e in self.events]

    def test_crlGoingOutOfDate(self) -> None:
        """
        Three days before the CRL's nextUpdate one warning says to run
        refresh-crl; past it, one error says every client now refuses the
        relay; after refresh-crl, nothing more.
        """
        next_update = self.data.load_crl().next_update_utc
        assert next_update is not None
        self.clock.advance(2)
        self.assertEqual(self.lines(), [])
        self.wall = next_update - datetime.timedelta(days=2)
        self.clock.advance(2)
        self.clock.advance(2)
        self.assertEqual(self.lines(), [("warn", "the relay's CRL goes out of date at "
                                         f"{next_update:%Y-%m-%d %H:%M} UTC: run `securechat-admin "
                                         "refresh-crl`")])
        self.wall = next_update + datetime.timedelta(minutes=1)
        self.clock.advance(2)
        self.clock.advance(2)
        self.assertEqual(len(self.lines()), 2)
        level, line = self.lines()[1]
        self.assertEqual(level, "error")
        self.assertIn("every client now refuses the relay: the relay's CRL went out of date", line)
        self.data.refresh_crl(self.wall)
        self.clock.advance(2)
        self.clock.advance(2)
        self.assertEqual([level for level, _ in self.lines()], ["warn", "error", "info"])
