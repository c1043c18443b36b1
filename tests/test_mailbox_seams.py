"""
Where the mailbox's parts meet (docs/protocol.rst 14): the client's answer
to a re-keyed user, a revoked sender, and the words of a changed key in a
letter; the relay's and the store's sides are in L{tests.test_mailbox_relay}
and L{tests.test_store}.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from securechat.client.letterstore import LetterStore
from securechat.client.pins import PinStore
from securechat.client.terminal import ChatTerminal
from securechat.crypto.prekeys import SignedPrekey, parse_one_time_prekeys, verify_signed_prekey
from securechat.wire.mailbox import (
    FetchLetter, GetUserKey, Letter, LetterEntry, LetterList, PrekeysLow, PrekeysStored,
    UploadPrekeys, UserKey)
from tests.relay_harness import user_key
from tests.test_client_letters import NOW, ONE_TIME_STOCK, User, der, post


class RekeyedClientTests(unittest.TestCase):
    """
    14.1: a client whose registered key was replaced (C{securechat-admin
    rekey}) makes a new signed prekey with its new key; it never uploads
    one signed by the old key (the relay would refuse it as BAD_PREKEY).
    """

    def rekeyed_bob(self) -> tuple[User, int]:
        store = LetterStore(None)
        bob = User("bob", store)
        old_id = SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id
        bob.feed(PrekeysStored(old_id, ONE_TIME_STOCK))
        return User("bob", store, key=user_key("new-bob")), old_id

    def test_newSignedPrekeyAtLoginAfterRekey(self) -> None:
        """
        At the first login with a new key the client uploads a new signed
        prekey (a new id) that verifies for the new key, though the relay
        had confirmed the old one.
        """
        again, old_id = self.rekeyed_bob()
        [upload] = again.upload
        prekey = SignedPrekey.parse(upload.signed_prekey)
        self.assertNotEqual(prekey.prekey_id, old_id)
        verify_signed_prekey("bob", prekey, user_key("new-bob").public_key())

    def test_prekeysLowAfterRekeyRefillsWithNewKey(self) -> None:
        """
        PREKEYS_LOW(0, 0), what the relay sends when it dropped prekeys
        signed by the old key (right after WELCOME), is answered with the
        signed prekey of the new key and a full stock of one-time prekeys.
        """
        again, _ = self.rekeyed_bob()
        again.feed(PrekeysLow(0, 0))
        [upload] = again.relay.take(UploadPrekeys)
        verify_signed_prekey("bob", SignedPrekey.parse(upload.signed_prekey),
                             user_key("new-bob").public_key())
        self.assertEqual(len(parse_one_time_prekeys(upload.one_time_prekeys)), ONE_TIME_STOCK)


class RevokedSenderTests(unittest.TestCase):
    """USER_KEY's ``revoked`` flag (14.6) reaches the user."""

    def test_revokedSenderShown(self) -> None:
        """
        A letter from a user the relay says is revoked still opens (its
        signature verifies with its registered key), and the reader is
        told the sender's access was revoked.
        """
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "written before")
        bob.box.list_letters(False)
        bob.feed(LetterList((LetterEntry("alice", posted.letter_id, NOW, len(posted.letter), 0),), 1))
        bob.box.read("1")
        bob.relay.take(FetchLetter)
        bob.feed(Letter("alice", posted.letter_id, NOW, NOW + 100, posted.letter))
        [ask] = bob.relay.take(GetUserKey)
        bob.feed(UserKey(ask.user, der("alice"), 1))
        [opened] = bob.view.of("letter_opened")
        self.assertEqual(opened[4], "written before")
        self.assertIn(("alice's access to the relay was revoked (what it signed before still "
                       "verifies with its registered key)",), bob.view.of("notice"))

    def test_notRevokedNoNotice(self) -> None:
        """A sender that is not revoked gets no such line."""
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "hello")
        bob.box.list_letters(False)
        bob.feed(LetterList((LetterEntry("alice", posted.letter_id, NOW, len(posted.letter), 0),), 1))
        bob.box.read("1")
        bob.feed(Letter("alice", posted.letter_id, NOW, NOW + 100, posted.letter))
        bob.feed(UserKey("alice", der("alice"), 0))
        self.assertEqual([n for n in bob.view.of("notice") if "revoked" in n[0]], [])


class LetterKeyChangedWordsTests(unittest.TestCase):
    """A changed key met while sending or reading a letter is worded for letters."""

    def test_letterKeyChangeNotWordedAsChat(self) -> None:
        """
        The mailbox tells the view the change is about letters, and the
        line then says letters are refused and how to go on, not that a
        chat was refused.
        """
        pins = PinStore(None)
        pins.pin("bob", user_key("old-bob").public_key())
        alice, bob = User("alice", pins=pins), User("bob")
        alice.box.send_letter("bob", "hello")
        alice.feed(bob.bundle())
        [changed] = alice.view.of("key_changed")
        self.assertEqual((changed[0], changed[3]), ("bob", True))
        terminal = ChatTerminal(clock=lambda: 0.0)
        transport = StringTransport()
        terminal.makeConnection(transport)
        terminal.key_changed("bob", "SHA256:old", "SHA256:new", True)
        written = transport.value().decode("utf-8")
        self.assertIn("Letters to and from bob are refused until you trust the new key. If bob "
                      "confirms the new fingerprint out of band, run !trust bob, then send or "
                      "read the letter again.", written)
        self.assertNotIn("chat", written)
