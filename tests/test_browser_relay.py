"""
The browser client's protocol core against the real relay: C{twistd
securechat} with C{--listen-websocket}, a user logged in with
C{securechat-client} over TCP, and the JavaScript core (run by Node with
the standard WebSocket API, as a browser would) logging in over the
WebSocket with a key registered by C{securechat-admin add-user}, the
relay's certificate and CRL checked as section 9 says.

Then the two chat end to end: the
JavaScript core (12.1-12.3) against securechat-client, through the relay.

Without Node 20 or later the test skips, loudly, unless
SECURECHAT_REQUIRE_SERVICES=1 (as in .ci/run, which installs it).
"""

from __future__ import annotations

import os
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial import unittest

from tests.processes import ROOT, Process, admin
from tests.recording_proxy import RecordingProxy
from tests.test_browser_core import NODE, REQUIRED, _node_major
from tests.test_endtoend import Deployment


class BrowserLoginTests(unittest.TestCase):
    """
    A browser user and a terminal user on one relay.
    """

    def setUp(self) -> None:
        if NODE is None or _node_major() < 20:
            message = ("node 20 or later is not installed: the browser client's core was NOT "
                       "tested against the real relay (install nodejs; .ci/run does)")
            if REQUIRED:
                self.fail(message)
            raise unittest.SkipTest(message)

    def start(self) -> tuple[Deployment, Process, Process, bytes, str]:
        """
        A relay with TCP and WebSocket listeners, bob logged in over TCP,
        and carol registered with a key made here: the deployment, the
        relay, bob, carol's seed and the WebSocket URL.
        """
        d = Deployment(self)
        seed = os.urandom(32)
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        pub = os.path.join(d.dir, "carol.pub")
        with open(pub, "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        admin(d.data, "add-user", "carol", pub)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1",
                        "--listen-websocket", "tcp:0:interface=127.0.0.1")
        hint = relay.expect(r"listening on 127\.0\.0\.1:(\d+), WebSocket on 127\.0\.0\.1:(\d+)/relay")
        bob = d.client("bob", f"tcp:127.0.0.1:{hint.group(1)}")
        bob.expect(r"\* logged in as bob")
        return d, relay, bob, seed, f"ws://127.0.0.1:{hint.group(2)}/relay"

    def browser(self, d: Deployment, url: str, seed: bytes, *extra: str) -> Process:
        assert NODE is not None
        with open(d.ca, "rb") as f:
            ca_der = x509.load_pem_x509_certificate(f.read()).public_bytes(
                serialization.Encoding.DER)
        return Process(self, [NODE, "--experimental-websocket", "--no-warnings",
                              os.path.join(ROOT, "securechat", "web", "tests", "live_relay.js"),
                              url, "carol", seed.hex(), ca_der.hex(), "localhost", *extra],
                       "browser", stdin=False)

    def test_chatWithTerminalUser(self) -> None:
        """
        The JavaScript core (carol, over WebSocket) asks bob (securechat-client
        over TCP) to chat; bob accepts; the end-to-end handshake runs through
        the relay between the two implementations; each reads the other's
        line; carol ends the chat with END and bob reports a clean end with
        the count.  A proxy recording carol's WebSocket connection sees
        the upgrade and binary frames, and neither line.
        """
        d, relay, bob, seed, url = self.start()
        port = int(url.split(":")[2].split("/")[0])
        proxy = RecordingProxy(self, ("127.0.0.1", port))
        carol = self.browser(d, url.replace(f":{port}/", f":{proxy.port}/"), seed, "bob")
        bob.expect(r"\* carol wants to chat")
        bob.send("!accept carol")
        bob.expect(r"chat with carol is end-to-end encrypted")
        carol.expect(r"secured with bob")
        bob.expect(r"\] carol: hello bob, from the browser core")
        bob.send("hi carol, from the terminal")
        carol.expect(r"text bob: hi carol, from the terminal")
        bob.expect(r"chat with carol ended by carol \(1 messages received\)")
        carol.expect(r"ended: stopped by you, 1 received")
        carol.expect(r"closed")
        self.assertEqual(carol.wait(), 0, carol.output())
        self.assertFalse([line for line in carol.lines if re.match(r"failed|lost|chat failed", line)],
                         carol.output())
        wire = proxy.recorded
        self.assertIn(b"HTTP/1.1 101 Switching Protocols", wire)
        self.assertGreater(len(wire), 2000)
        for secret in (b"from the browser core", b"from the terminal", b"hello bob", b"hi carol"):
            self.assertNotIn(secret, wire)

    def test_letterToOfflineTerminalUser(self) -> None:
        """
        bob (securechat-client) publishes his prekeys and leaves; carol (the
        JavaScript core) fetches his bundle, checks its signed prekey with
        his registered key, seals a letter (14.3) and posts it; bob logs in,
        is told, reads it (his client verifies and opens what the browser
        sealed); carol, still online, receives his delivery and read
        receipts and verifies both.  The relay's log holds no letter text.
        """
        d, relay, bob, seed, url = self.start()
        bob.send("!users")  # answered after the prekey upload
        bob.expect(r"\* users: alice, bob \(online\), carol")
        bob.send("!exit")
        self.assertEqual(bob.wait(), 0, bob.output())
        carol = self.browser(d, url, seed, "letter:bob")
        carol.expect(r"bundle verified")
        carol.expect(r"letter stored for bob")
        server = re.search(r"--server (tcp:\S+)", " ".join(relay.lines))
        assert server is not None
        bob = d.client("bob", server.group(1))
        bob.expect(r"\* you have 1 new letter")
        bob.send("!letters new")
        bob.expect(r"\* 1\. \[([0-9a-f]{8})\] from carol, .*, new")
        bob.send("!read 1")
        bob.expect(r"\* letter \[[0-9a-f]{8}\] from carol, written .*; Verification: ok")
        bob.expect(r"\*   \| dear bob, a letter from the browser core")
        carol.expect(r"receipt delivered verified")
        carol.expect(r"receipt read verified")
        carol.expect(r"closed")
        self.assertEqual(carol.wait(), 0, carol.output())
        bob.send("!exit")
        self.assertEqual(bob.wait(), 0, bob.output())
        self.assertNotIn("a letter from the browser core", relay.output())

    def test_loginOverWebSocket(self) -> None:
        """
        The JavaScript core logs in through --listen-websocket (its
        handshake, records and section-9 check against the real relay's
        certificate and CRL), sees itself and the TCP user bob online, and
        logs out cleanly; the relay logs the browser user's login.
        """
        d, relay, bob, seed, url = self.start()
        browser = self.browser(d, url, seed)
        browser.expect(r"relay certificate verified")
        browser.expect(r"established")
        browser.expect(r"welcome carol max_payload 65408")
        browser.expect(r"online bob,carol of 2")
        browser.expect(r"closed")
        self.assertEqual(browser.wait(), 0, browser.output())
        relay.expect(r"user carol logged in")
        relay.expect(r"user carol disconnected: logged out")
        self.assertFalse([line for line in browser.lines if re.match(r"failed|lost", line)],
                         browser.output())
