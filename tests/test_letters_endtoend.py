"""
Letters end to end in memory: real L{ChatClient}s with their letters files,
logged in to the real relay (L{securechat.server.mailbox} on its in-memory
store) over the in-memory network, with the relay's clock.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.letterstore import STORED, LetterStore
from securechat.client.pins import PinStore
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.protocol import SecureChatProtocol
from securechat.server.limits import Limits
from securechat.wire.mailbox import MAILBOX_FROM_SERVER
from securechat.wire.messages import UserIdentity
from tests.relay_harness import Harness, user_key
from tests.test_client_core import RecordingView, verify_test_server


class LetterHarness(Harness):
    """The relay harness with real clients that keep letters."""

    def __init__(self, limits: Limits = Limits()) -> None:
        super().__init__(limits)
        self.stores: dict[str, LetterStore] = {}
        self.pins: dict[str, PinStore] = {}

    def client(self, name: str, key: Any = None) -> tuple[ChatClient, RecordingView]:
        view = RecordingView()
        store = self.stores.setdefault(name, LetterStore(None))
        pins = self.pins.setdefault(name, PinStore(None))
        key = key or user_key(name)
        client = ChatClient(name, key, view, verify_test_server, pins,
                            clock=lambda: 1_700_000_000 + self.clock.seconds(), letters=store)
        config = Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity(name),
                        registry=MAILBOX_FROM_SERVER)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        self.links[name] = self.network.connect(proto, self.factory.buildProtocol(None))
        self.pump()
        assert client.logged_in, view.seen
        return client, view

    def leave(self, client: ChatClient) -> None:
        client.logout()
        self.pump()


class EndToEndTests(unittest.TestCase):
    """alice writes to bob while bob is offline."""

    def test_offlineLetterReadWithVerifiedReceipts(self) -> None:
        """
        bob logs in once (his prekeys go up) and leaves; alice sends him a
        letter, which the relay stores; bob logs in, is told, lists and
        reads it (Verification: ok); alice, online, gets both receipts
        verified, and her status shows the letter delivered and read with
        verified receipts.
        """
        h = LetterHarness()
        bob, vb = h.client("bob")
        h.leave(bob)
        alice, va = h.client("alice")
        assert alice.mailbox is not None
        alice.mailbox.send_letter("bob", "dinner at eight?")
        h.pump()
        [(recipient, letter_id, stored_at, expires_at)] = va.of("letter_sent")
        self.assertEqual(recipient, "bob")
        self.assertEqual(h.stores["alice"].sent(letter_id).state, STORED)  # type: ignore[union-attr]

        h.clock.advance(60)
        bob, vb = h.client("bob")
        self.assertEqual(vb.of("new_letters"), [(1,)])
        assert bob.mailbox is not None
        bob.mailbox.list_letters(new_only=True)
        h.pump()
        [(letters, total, more)] = vb.of("letter_list")
        self.assertEqual((letters[0].sender, letters[0].letter_id, total), ("alice", letter_id, 1))
        bob.mailbox.read("1")
        h.pump()
        [opened] = vb.of("letter_opened")
        self.assertEqual((opened[0], opened[1], opened[4], opened[5]),
                         ("alice", letter_id, "dinner at eight?", False))
        self.assertEqual(vb.of("letter_failed"), [])

        self.assertEqual(va.of("receipt"), [("bob", letter_id, 1, "ok"), ("bob", letter_id, 2, "ok")])
        alice.mailbox.sent_status()
        h.pump()
        [(rows, total, more)] = va.of("sent_status")
        [row] = rows
        self.assertEqual((row.recipient, row.letter_id, row.state, row.delivery, row.read),
                         ("bob", letter_id, STORED, "ok", "ok"))
        self.assertTrue(row.delivered_at and row.read_at)

    def test_usersListed(self) -> None:
        """/users lists every registered user, online marked."""
        h = LetterHarness()
        alice, va = h.client("alice")
        assert alice.mailbox is not None
        alice.mailbox.list_users()
        h.pump()
        [(users, total)] = va.of("users")
        self.assertIn(("alice", True), users)
        self.assertIn(("bob", False), users)


class ProcessTests(unittest.TestCase):
    """Letters with real processes: C{twistd securechat} and two clients."""

    def test_offlineLetterRealProcesses(self) -> None:
        """
        bob (RSA key from openssl) logs in once and leaves; alice sends him
        a letter while he is offline (stored by the relay); bob logs in, is
        told, reads it (Verification: ok); alice's /sent shows it delivered
        and read, both receipts verified.  Each client's letters file is
        its own, mode 0600.
        """
        import os
        import stat

        from tests.test_endtoend import Deployment, listening_port
        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        server = f"tcp:127.0.0.1:{listening_port(relay)}"

        bob = d.client("bob", server)
        bob.expect(r"\* logged in as bob")
        bob.send("!users")  # answered after the prekey upload: bob's prekeys are on the relay
        bob.expect(r"\* users: alice, bob \(online\)")
        bob.send("!exit")
        self.assertEqual(bob.wait(), 0, bob.output())

        alice = d.client("alice", server)
        alice.expect(r"\* logged in as alice")
        alice.send("!letter bob dinner at eight?")
        letter = alice.expect(r"\* letter ([0-9a-f]{8}) to bob stored by the relay").group(1)
        alice.send("!exit")
        self.assertEqual(alice.wait(), 0, alice.output())

        bob = d.client("bob", server)
        bob.expect(r"\* you have 1 new letter: /letters new")
        bob.send("!letters new")
        bob.expect(rf"\* 1\. \[{letter}\] from alice, .*, new")
        bob.send("!read 1")
        bob.expect(rf"\* letter \[{letter}\] from alice, written .*; Verification: ok")
        bob.expect(r"\*   \| dinner at eight\?")
        bob.send("!exit")
        self.assertEqual(bob.wait(), 0, bob.output())

        alice = d.client("alice", server)
        alice.expect(r"\* logged in as alice")
        alice.send("!sent")
        alice.expect(rf"\* \[{letter}\] to bob: stored")
        alice.expect(r"\*     delivered: Time received .*; Verification: ok")
        alice.expect(r"\*     read: Time received .*; Verification: ok")
        alice.send("!exit")
        self.assertEqual(alice.wait(), 0, alice.output())
        for name in ("alice", "bob"):
            path = os.path.join(d.dir, f"letters-{name}.sqlite3")
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertNotIn("dinner", relay.output())
