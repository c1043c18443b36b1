"""
Letters, receipts and prekeys signed on a real SoftHSM2 token
(L{tests.token_fixture}; issue 19): a client whose key is on the token
uploads its signed prekey, sends a letter, reads one and sends delivery
and read receipts, each signature made by the token, and the other side
(a client with its key in memory) verifies them all, through the real
relay in memory (as L{tests.test_letters_endtoend}).  And a token removed
mid-session fails the letter in one line, with nothing sent.

The token's sign call runs in the test's thread (a synchronous
C{sign_runner}), so no real threads or time are involved.
"""

from __future__ import annotations

from securechat import token
from securechat.client.core import ChatClient
from securechat.client.letterstore import PENDING, STORED, LetterStore
from securechat.client.pins import PinStore
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.crypto.prekeys import SignedPrekey, verify_signed_prekey
from securechat.protocol import SecureChatProtocol
from securechat.server.directory import UserEntry
from securechat.wire.mailbox import MAILBOX_FROM_SERVER
from securechat.wire.messages import UserIdentity
from tests.test_client_core import RecordingView, verify_test_server
from tests.test_letters_endtoend import LetterHarness
from tests.test_pkcs11 import TokenCase, in_this_thread
from tests.token_fixture import KEY_TYPES, REMOVABLE, delete_token


def token_letter_client(h: LetterHarness, name: str, key: token.TokenKey) -> tuple[ChatClient, RecordingView]:
    """A client of C{h} whose key is C{key}, on the token, with its letters file; logged in."""
    view = RecordingView()
    store = h.stores.setdefault(name, LetterStore(None))
    pins = h.pins.setdefault(name, PinStore(None))
    client = ChatClient(name, key, view, verify_test_server, pins,
                        clock=lambda: 1_700_000_000 + h.clock.seconds(), letters=store)
    config = Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity(name), registry=MAILBOX_FROM_SERVER)
    proto = SecureChatProtocol(config, client, h.clock, handshake_timeout=1e9, sign_runner=in_this_thread)
    h.links[name] = h.network.connect(proto, h.factory.buildProtocol(None))
    h.pump()
    assert client.logged_in, view.seen
    return client, view


class TokenLetterTests(TokenCase):
    """
    A user whose key is on the token, and bob, whose key is in memory.
    """

    def harness(self, key: token.TokenKey) -> LetterHarness:
        h = LetterHarness()
        h.directory.add(UserEntry("tina", key.public_key()))
        return h

    def test_prekeyUploadedSignedByToken(self) -> None:
        """
        At login, a client whose key is on the token (Ed25519, P-256,
        RSA-PSS) uploads a signed prekey signed by the token: the relay
        accepted it, and its signature verifies with the token's key.
        """
        for label in KEY_TYPES:
            k = self.key(label)
            h = self.harness(k)
            tina, vt = token_letter_client(h, "tina", k)
            current = h.stores["tina"].current_signed()
            assert current is not None, label
            self.assertTrue(current[2], f"{label}: the relay did not confirm the upload: {vt.seen}")
            prekey = SignedPrekey.parse(current[3])
            self.assertEqual(prekey.scheme, k.scheme, label)
            verify_signed_prekey("tina", prekey, k.public_key())
            self.assertEqual(vt.of("notice"), [], label)

    def test_lettersAndReceiptsBothWays(self) -> None:
        """
        For each key type on the token: tina (token) sends bob a letter,
        which bob reads with Verification: ok, and tina gets bob's
        receipts verified; bob sends tina a letter (sealed to her
        token-signed prekey), tina reads it, and her delivery and read
        receipts, signed by the token, verify at bob's.
        """
        for label in KEY_TYPES:
            k = self.key(label)
            h = self.harness(k)
            bob, vb = h.client("bob")
            tina, vt = token_letter_client(h, "tina", k)
            assert tina.mailbox is not None and bob.mailbox is not None

            tina.mailbox.send_letter("bob", f"from the token ({label})")
            h.pump()
            [(_, to_bob, _, _)] = vt.of("letter_sent")
            self.assertEqual(h.stores["tina"].sent(to_bob).state, STORED)  # type: ignore[union-attr]
            bob.mailbox.list_letters(new_only=True)
            h.pump()
            bob.mailbox.read("1")
            h.pump()
            [opened] = vb.of("letter_opened")
            self.assertEqual((opened[0], opened[1], opened[4]), ("tina", to_bob, f"from the token ({label})"))
            self.assertEqual(vt.of("receipt"), [("bob", to_bob, 1, "ok"), ("bob", to_bob, 2, "ok")])

            bob.mailbox.send_letter("tina", "to the token")
            h.pump()
            [(_, to_tina, _, _)] = vb.of("letter_sent")
            tina.mailbox.list_letters(new_only=True)
            h.pump()
            tina.mailbox.read("1")
            h.pump()
            [opened] = vt.of("letter_opened")
            self.assertEqual((opened[0], opened[1], opened[4]), ("bob", to_tina, "to the token"))
            self.assertEqual(vb.of("receipt"), [("tina", to_tina, 1, "ok"), ("tina", to_tina, 2, "ok")],
                             label)
            self.assertEqual(vt.of("letter_failed") + vb.of("letter_failed"), [], label)
            self.assertEqual(vt.of("notice"), [], label)

    def test_tokenRemovedDuringLetter(self) -> None:
        """
        The token is removed while tina is logged in: her next letter fails
        in one line naming the token (signing-failed), nothing is posted or
        kept as sent, the client goes on (a /users still answers), and the
        next letter fails at once with the same line.
        """
        k = self.key("p256", REMOVABLE[2])
        h = self.harness(k)
        h.client("bob")
        tina, vt = token_letter_client(h, "tina", k)
        assert tina.mailbox is not None
        delete_token(self.hsm, REMOVABLE[2])
        tina.mailbox.send_letter("bob", "never signed")
        h.pump()
        [(recipient, code, line)] = vt.of("letter_not_sent")
        self.assertEqual((recipient, code), ("bob", "signing-failed"))
        self.assertTrue(line.startswith("the letter could not be signed and was not sent: "
                                        f"token {REMOVABLE[2]!r} was removed or lost its session"), line)
        self.assertNotIn("\n", line)
        self.assertEqual(vt.of("letter_sent"), [])
        self.assertEqual(h.stores["tina"].sent_letters(PENDING), [])
        self.assertEqual(h.stores["tina"].sent_letters(), [])
        tina.mailbox.list_users()
        h.pump()
        self.assertEqual(len(vt.of("users")), 1)
        tina.mailbox.send_letter("bob", "again")
        h.pump()
        self.assertEqual(vt.of("letter_not_sent")[1], ("bob", "signing-failed", line))
        self.assertTrue(tina.logged_in)
