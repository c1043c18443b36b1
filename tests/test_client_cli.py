"""
Tests for C{securechat-client}'s settings and start-up checks
(L{securechat.client.cli}), without a relay.
"""

from __future__ import annotations

import io
import os

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial import unittest

from securechat.client.cli import ClientError, is_final, read_private_key, server_host, settings
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
