"""
Tests for C{securechat-client} (L{securechat.client.cli},
L{securechat.client.endpoint}): its settings and start-up checks, and its
connection code run in memory against a relay (real TLS included) to see
which endings are final and what the user is told.
"""

from __future__ import annotations

import datetime
import io
import os
import struct
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from securechat.client.cli import (
    ClientError,
    is_final,
    parser,
    read_private_key,
    SessionFactory,
    server_host,
    settings,
)
from securechat.client.endpoint import relay_endpoint, split_description
from securechat.client.pins import PinStore
from securechat.client.terminal import ChatTerminal
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.delegate import PeerRejected
from securechat.protocol import SecureChatProtocol
from securechat.wire.messages import CertificateIdentity
from tests.relay_harness import SERVER_IDENTITY, SERVER_KEY, Harness, RecordingClient, user_key
from securechat.crypto import keys
from securechat.errors import Alert, LocalProtocolError, PeerAlert, RemoteProtocolError


class SettingsTests(unittest.TestCase):
    """
    Command line over config file over defaults.
    """

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "client.ini")

    def test_configFileThenCommandLine(self) -> None:
        """
        Values come from the config file unless the command line says
        otherwise; the server name defaults to the endpoint's host.
        """
        with open(self.config, "w") as f:
            f.write("[securechat]\nserver = tcp:chat.example.org:7070\nca = /ca.pem\n"
                    "user = alice\nkey = /alice.key\n")
        conf = settings(["--config", self.config])
        self.assertEqual(conf["server"], "tcp:chat.example.org:7070")
        self.assertEqual(conf["server-name"], "chat.example.org")
        self.assertEqual(conf["known-peers"], os.path.join(self.dir, "known_peers"))
        conf = settings(["--config", self.config, "--user", "bob", "--server-name", "relay"])
        self.assertEqual((conf["user"], conf["server-name"]), ("bob", "relay"))

    def test_missingRequired(self) -> None:
        """
        Without a CA, user or key the client says which is missing.
        """
        e = self.assertRaises(ClientError, settings, ["--config", self.config, "--user", "a"])
        self.assertIn("--ca", str(e))

    def test_serverHost(self) -> None:
        """
        The host is found in the usual endpoint spellings.
        """
        self.assertEqual(server_host("tcp:127.0.0.1:7070"), "127.0.0.1")
        self.assertEqual(server_host("tcp:host=relay.example:port=7070"), "relay.example")
        self.assertEqual(server_host("tls:relay.example:7443"), "relay.example")
        self.assertEqual(server_host("unix:/run/securechat.sock"), "localhost")


class KeyTests(unittest.TestCase):
    """
    Reading the user's key.
    """

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.path = os.path.join(self.dir, "me.key")
        with open(self.path, "wb") as f:
            f.write(keys.private_key_pem(self.key, b"right"))

    def passfile(self, text: str) -> str:
        path = os.path.join(self.dir, "pass")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_passphraseFile(self) -> None:
        """
        The passphrase file opens the key (a trailing newline is ignored).
        """
        key = read_private_key(self.path, self.passfile("right\n"), io.StringIO())
        self.assertEqual(keys.fingerprint(key.public_key()), keys.fingerprint(self.key.public_key()))

    def test_wrongPassphrase(self) -> None:
        """
        A wrong passphrase is one clear error.
        """
        e = self.assertRaises(ClientError, read_private_key, self.path, self.passfile("wrong"),
                              io.StringIO())
        self.assertIn("wrong passphrase", str(e))

    def test_noTerminalNoPassphrase(self) -> None:
        """
        An encrypted key with no passphrase file and no terminal to ask on
        is refused with what to do.
        """
        e = self.assertRaises(ClientError, read_private_key, self.path, None, io.StringIO())
        self.assertIn("--passphrase-file", str(e))

    def test_missingKey(self) -> None:
        """
        A key file that is not there is named.
        """
        e = self.assertRaises(ClientError, read_private_key, "/nonexistent.key", None, io.StringIO())
        self.assertIn("/nonexistent.key", str(e))


class FinalityTests(unittest.TestCase):
    """
    Which endings stop the client instead of reconnecting.
    """

    def test_final(self) -> None:
        """
        A refused login, revocation, a replaced session and a bad relay
        certificate are final.
        """
        for alert in (Alert.HANDSHAKE_FAILED, Alert.ACCESS_REVOKED, Alert.SESSION_REPLACED):
            self.assertTrue(is_final(PeerAlert(alert)))
        self.assertTrue(is_final(RemoteProtocolError("bad-certificate", "name-mismatch")))

    def test_notFinal(self) -> None:
        """
        A lost connection, a timeout or a relay shutting down are retried.
        """
        self.assertFalse(is_final(RemoteProtocolError("connection-closed")))
        self.assertFalse(is_final(LocalProtocolError("timeout")))
        self.assertFalse(is_final(PeerAlert(Alert.SHUTTING_DOWN)))


class ConfigFileTests(unittest.TestCase):
    """
    The config file: C{~} in paths, and keys that are not settings.
    """

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "client.ini")
        home = os.environ.get("HOME")
        os.environ["HOME"] = "/home/alice"
        self.addCleanup(lambda: os.environ.__setitem__("HOME", home) if home is not None
                        else os.environ.pop("HOME", None))

    def write(self, text: str) -> None:
        with open(self.config, "w") as f:
            f.write(text)

    def test_tildeExpanded(self) -> None:
        """
        A leading C{~} in the config file's paths (CA, key, passphrase file,
        known peers) is the user's home directory, and so on the command
        line (C{--key=~/...} is not expanded by the shell).
        """
        self.write("[securechat]\nca = ~/.config/securechat/ca.pem\nuser = alice\n"
                   "key = ~/.config/securechat/me.key\npassphrase_file = ~/pass\n"
                   "known-peers = ~/peers\n")
        conf = settings(["--config", self.config])
        self.assertEqual((conf["ca"], conf["key"], conf["passphrase-file"], conf["known-peers"]),
                         ("/home/alice/.config/securechat/ca.pem",
                          "/home/alice/.config/securechat/me.key", "/home/alice/pass",
                          "/home/alice/peers"))
        conf = settings(["--config", self.config, "--key=~/other.key"])
        self.assertEqual(conf["key"], "/home/alice/other.key")

    def test_misspelledKeyRefused(self) -> None:
        """
        A misspelled key is refused in one line naming the file, the key
        and the closest valid key, instead of being ignored.
        """
        self.write("[securechat]\nsever = tcp:chat.example.org:7070\nca = /ca.pem\n"
                   "user = alice\nkey = /k\n")
        e = self.assertRaises(ClientError, settings, ["--config", self.config])
        self.assertEqual(str(e), f"{self.config}: unknown key 'sever' in [securechat]; "
                                 "did you mean 'server'?")

    def test_unknownKeyRefused(self) -> None:
        """
        A key like no setting at all is refused with the list of keys.
        """
        self.write("[securechat]\ncolour = blue\n")
        e = self.assertRaises(ClientError, settings, ["--config", self.config])
        self.assertEqual(str(e), f"{self.config}: unknown key 'colour' in [securechat]; the keys "
                                 "are server, ca, server-name, user, key, passphrase-file, "
                                 "known-peers, pkcs11-module, irc-password-file")

    def test_percentInConfigFile(self) -> None:
        """
        A lone % in the config file (a PKCS#11 URI's escapes) is one line
        saying to write %%, not a traceback; %% reads as %.
        """
        self.write("[securechat]\nkey = pkcs11:token=My%20Card\n")
        e = self.assertRaises(ClientError, settings, ["--config", self.config])
        self.assertEqual(str(e), f"{self.config}: '%' must be followed by '%' or '(', found: "
                                 "'%20Card' (write a % as %% in the config file, e.g. in a "
                                 "PKCS#11 URI)")
        self.write("[securechat]\nkey = pkcs11:token=My%%20Card\nuser = a\nca = c\n")
        self.assertEqual(settings(["--config", self.config])["key"], "pkcs11:token=My%20Card")

    def test_unknownSectionRefused(self) -> None:
        """
        Settings under another section than [securechat] are refused, not
        silently ignored.
        """
        self.write("[secure-chat]\nuser = alice\n")
        e = self.assertRaises(ClientError, settings, ["--config", self.config])
        self.assertEqual(str(e), f"{self.config}: unknown section [secure-chat]; "
                                 "the settings go in [securechat]")

    def test_helpSaysSo(self) -> None:
        """
        C{--help} says that C{~} is expanded, that unknown keys are refused,
        and that tls:/ssl: are checked against --ca.
        """
        text = " ".join(parser().format_help().split())
        self.assertIn("A leading ~ in a path", text)
        self.assertIn("an unknown key is refused", text)
        self.assertIn("its certificate is checked against --ca for", text)


class _Relay:
    """
    What a test needs to run the client's own connection code
    (L{SessionFactory}) against something in memory.
    """

    def __init__(self, test: unittest.TestCase) -> None:
        self.reactor = MemoryReactorClock()
        self.harness = Harness(clock=self.reactor)
        self.lines: list[str] = []
        self.finished: list[int] = []
        self.terminal = ChatTerminal(write=self.lines.append)
        self.factory = SessionFactory(self.reactor, "alice", user_key("alice"), self.terminal,
                                      _verify_test_server, PinStore(None),
                                      self.finished.append)

    def connect(self, server: Protocol) -> None:
        client = self.factory.buildProtocol(None)
        self.harness.network.connect(client, server)


def _verify_test_server(identity: CertificateIdentity) -> keys.PublicKey:
    if identity != SERVER_IDENTITY:
        raise PeerRejected("bad-certificate", "not the test server")
    return SERVER_KEY.public_key()


class _OddSuiteRelay(Protocol):
    """
    A relay that answers HELLO with a HELLO_REPLY choosing suite 0x0003,
    which no client offered.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        body = struct.pack(">H", 1) + b"\x01" * 64 + struct.pack(">H", 3)
        self.transport.write(struct.pack(">IB", len(body) + 1, 0x02) + body)


class SuiteTests(unittest.TestCase):
    """
    No AEAD suite in common with the relay is final: one line naming the
    problem and exit status 1, not reconnection forever.
    """

    def test_noCommonSuiteIsFinal(self) -> None:
        """
        A relay that accepts none of the suites offered (it answers
        NO_COMMON_SUITE) ends the client with one line and status 1.
        """
        r = _Relay(self)
        relay_side = SecureChatProtocol(
            Config(CLIENT_SERVER, Role.RESPONDER, SERVER_KEY, SERVER_IDENTITY, suites=(0x00FF,)),
            RecordingClient("relay"), r.reactor, handshake_timeout=1e9)
        r.connect(relay_side)
        self.assertEqual(r.lines, [
            "! disconnected: the relay accepts none of the encryption suites this client offers "
            "(AES-256-GCM, CHACHA20-POLY1305): no suite in common\n"])
        self.assertEqual(r.finished, [1])

    def test_suiteNotOfferedIsFinal(self) -> None:
        """
        A relay that chooses a suite the client did not offer ends the
        client with one line naming the suite, and status 1.
        """
        r = _Relay(self)
        r.connect(_OddSuiteRelay())
        self.assertEqual(r.lines, [
            "! disconnected: the relay chose an encryption suite this client does not offer "
            "(suite 0x0003; it offers AES-256-GCM, CHACHA20-POLY1305): no suite in common\n"])
        self.assertEqual(r.finished, [1])

    def test_suiteErrorsFinal(self) -> None:
        """
        L{is_final} holds for both suite failures and a differing version.
        """
        self.assertTrue(is_final(PeerAlert(Alert.NO_COMMON_SUITE)))
        self.assertTrue(is_final(RemoteProtocolError("suite-not-offered", "suite 0x0003")))
        self.assertTrue(is_final(RemoteProtocolError("unsupported-version", "version 2")))

    def test_otherLossesReconnect(self) -> None:
        """
        A connection lost for no such reason still says it reconnects, and
        does not end the client.
        """
        r = _Relay(self)
        r.connect(Protocol())
        r.harness.network.links[-1].close(ConnectionError("network down"))
        self.assertEqual(r.lines, ["! disconnected: connection lost\n", "* reconnecting...\n"])
        self.assertEqual(r.finished, [])


def _tls_server_options(ca_key: Any, ca_cert: Any, names: list[str]) -> Any:
    from OpenSSL import crypto
    from twisted.internet.ssl import CertificateOptions

    from securechat import pki

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ed25519.Ed25519PrivateKey.generate()
    cert = pki.issue_server_certificate(ca_key, ca_cert, key.public_key(), names, now)
    return CertificateOptions(privateKey=crypto.PKey.from_cryptography_key(key),
                              certificate=crypto.X509.from_cryptography(cert))


class TLSTests(unittest.TestCase):
    """
    C{--server tls:...} / C{ssl:...}: TLS around the protocol, checked
    against the operator's CA from C{--ca} by default, with one line when
    TLS refuses the relay.  In memory, with real TLS.
    """

    def setUp(self) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding

        from securechat import pki

        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca_key, self.ca_cert = pki.new_ca("securechat test CA", now)
        self.ca_pem = self.ca_cert.public_bytes(Encoding.PEM)

    def connect(self, description: str, server_options: Any) -> _Relay:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        r = _Relay(self)
        endpoint = relay_endpoint(r.reactor, description, self.ca_pem, "localhost")
        endpoint.connect(r.factory)
        r.reactor.advance(0)
        [(host, port, factory, _, _)] = r.reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 7443))
        server = TLSMemoryBIOFactory(server_options, False, r.harness.factory, clock=r.reactor)
        r.harness.network.connect(factory.buildProtocol(IPv4Address("TCP", host, port)),
                                  server.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000)))
        return r

    def test_tlsWithTheCA(self) -> None:
        """
        C{tls:HOST:PORT} and C{ssl:HOST:PORT} with no trust options verify
        the relay's TLS certificate against the CA of C{--ca} (the relay's
        data directory issues it) and log in.
        """
        for kind in ("tls", "ssl"):
            options = _tls_server_options(self.ca_key, self.ca_cert, ["localhost"])
            r = self.connect(f"{kind}:127.0.0.1:7443", options)
            self.assertEqual(r.lines, ["* logged in as alice; !help lists the commands\n"], kind)

    def test_verifyFailedUnknownCA(self) -> None:
        """
        A TLS certificate from another CA is refused in one line that says
        TLS verification failed and why, and the client ends with status 1
        instead of "connection lost" and reconnecting.
        """
        from securechat import pki

        other_key, other_cert = pki.new_ca("another CA",
                                           datetime.datetime.now(datetime.timezone.utc))
        r = self.connect("tls:127.0.0.1:7443",
                         _tls_server_options(other_key, other_cert, ["localhost"]))
        self.assertEqual(r.lines, [
            "! disconnected: TLS: certificate verify failed: the relay's TLS certificate "
            "(issuer CN=another CA) is not issued by the CA given with --ca "
            "(CN=securechat test CA)\n"])
        self.assertEqual(r.finished, [1])

    def test_verifyFailedName(self) -> None:
        """
        A TLS certificate from the CA but for another name is refused in
        one line naming the name expected, with status 1.
        """
        r = self.connect("ssl:127.0.0.1:7443",
                         _tls_server_options(self.ca_key, self.ca_cert, ["relay.example.org"]))
        self.assertEqual(r.lines, [
            "! disconnected: TLS: certificate verify failed: the relay's TLS certificate is "
            "not for localhost\n"])
        self.assertEqual(r.finished, [1])

    def test_ownTrustRootsLeftToTwisted(self) -> None:
        """
        A string that names its own trust roots is Twisted's to parse, as
        is any other kind; an option that needs them is refused without
        them, naming the option.
        """
        reactor = MemoryReactorClock()
        roots = os.path.abspath(self.mktemp())
        os.makedirs(roots)
        self.assertIsNotNone(relay_endpoint(
            reactor, f"tls:127.0.0.1:7443:trustRoots={roots}", self.ca_pem, "localhost"))
        self.assertIsInstance(relay_endpoint(reactor, "tcp:127.0.0.1:7070", self.ca_pem, "x"),
                              TCP4ClientEndpoint)
        e = self.assertRaises(ValueError, relay_endpoint, reactor,
                              "tls:127.0.0.1:7443:certificate=me.pem", self.ca_pem, "localhost")
        self.assertIn("option certificate= needs trust roots of your own (trustRoots=DIR)", str(e))
        e = self.assertRaises(ValueError, relay_endpoint, reactor, "ssl:relay.example", self.ca_pem,
                              "localhost")
        self.assertEqual(str(e), "write it as ssl:HOST:PORT")

    def test_splitDescription(self) -> None:
        """
        Endpoint strings are split like Twisted does, escapes included.
        """
        self.assertEqual(split_description("tls:host=h:port=1:bindAddress=10.0.0.1"),
                         ("tls", [], {"host": "h", "port": "1", "bindAddress": "10.0.0.1"}))
        self.assertEqual(split_description(r"tls:\:\:1:7443:timeout=5"),
                         ("tls", ["::1", "7443"], {"timeout": "5"}))
