"""
The mailbox with a key held elsewhere (a token) whose signatures come
later, under the test's control (issue 19): order and idempotence while a
signature is pending, and a failing token told in one line
(L{securechat.client.signqueue}, L{securechat.client.letters},
L{securechat.client.prekeyupload}).  The relay is scripted
(L{tests.test_client_letters}); no threads, no real time.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.letters import ROTATE_AFTER
from securechat.client.letterstore import PENDING, LetterStore
from securechat.client.pins import PinStore
from securechat.crypto import keys
from securechat.crypto.letters import parse_letter
from securechat.crypto.prekeys import SignedPrekey, verify_signed_prekey
from securechat.crypto.receipts import parse_receipt, verify_receipt
from securechat.crypto.signer import ExternalKey, SigningError
from securechat.wire.mailbox import PostLetter, PostReceipt, PrekeysLow, PrekeysStored, UploadPrekeys
from securechat.wire.relay import Welcome
from tests.relay_harness import user_key
from tests.test_client_core import RecordingView
from tests.test_client_letters import NOW, ScriptedProtocol, User, deliver, post

REMOVED = "token 'card' was removed or lost its session; no more signing with it; reinsert it and restart"


class FakeToken(ExternalKey):
    """A key 'on a token': the user's test key, signing only when the test says."""

    def __init__(self, name: str) -> None:
        self.key = user_key(name)
        self.scheme = keys.scheme_for(self.key.public_key())

    def public_key(self) -> keys.PublicKey:
        return self.key.public_key()

    def sign_blocking(self, message: bytes) -> bytes:
        return keys.sign(self.key, message)[1]


class TokenProtocol(ScriptedProtocol):
    """The scripted relay connection, whose sign_later waits for the test."""

    def __init__(self, token: FakeToken) -> None:
        super().__init__()
        self.token = token
        self.asked: list[tuple[bytes, Deferred[bytes]]] = []

    def sign_later(self, message: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.asked.append((message, d))
        return d

    def sign_next(self) -> None:
        """The token answers the oldest request."""
        message, d = self.asked.pop(0)
        d.callback(self.token.sign_blocking(message))

    def fail_next(self, line: str = REMOVED) -> None:
        _, d = self.asked.pop(0)
        d.errback(SigningError(line))


class TokenUser(User):
    """A L{User} whose key is a L{FakeToken}."""

    def __init__(self, name: str, store: LetterStore | None = None, now: int = NOW) -> None:
        self.name = name
        self.now = now
        self.view = RecordingView()
        self.store = store or LetterStore(None)
        self.token = FakeToken(name)
        self.client = ChatClient(name, self.token, self.view, lambda i: user_key("x").public_key(),
                                 PinStore(None), clock=lambda: float(self.now), letters=self.store)
        self.relay: TokenProtocol = TokenProtocol(self.token)
        self.client.protocol = self.relay  # type: ignore[assignment]
        self.client.message_received(Welcome(name, 64 * 1024 - 128))
        self.upload = self.relay.take(UploadPrekeys)


def signed_up(user: TokenUser) -> TokenUser:
    """The login's signed prekey signed and confirmed."""
    user.relay.sign_next()
    [upload] = user.relay.take(UploadPrekeys)
    user.feed(PrekeysStored(SignedPrekey.parse(upload.signed_prekey).prekey_id, 100))
    return user


class PrekeySigningTests(unittest.TestCase):
    """The signed prekey, signed by the token."""

    def test_prekeyUploadedOnceSigned(self) -> None:
        """
        At login a token user's signed prekey is uploaded only once the
        token signed it (with the one-time stock), kept on disk first; it
        verifies for the user.
        """
        tina = TokenUser("tina")
        self.assertEqual(tina.upload, [])
        self.assertIsNone(tina.store.current_signed())
        [(message, _)] = tina.relay.asked
        tina.relay.sign_next()
        [upload] = tina.relay.take(UploadPrekeys)
        prekey = SignedPrekey.parse(upload.signed_prekey)
        verify_signed_prekey("tina", prekey, user_key("tina").public_key())
        self.assertEqual(tina.store.current_signed()[3], upload.signed_prekey)  # type: ignore[index]
        self.assertNotEqual(upload.one_time_prekeys, b"")

    def test_oneSignatureAtATimeForPrekeys(self) -> None:
        """
        While the new signed prekey's signature is pending, relay messages
        (rotation checks) and PREKEYS_LOW ask for no second one: the
        one-time prekeys go up alone, the signed one once signed.
        """
        store = LetterStore(None)
        signed_up(TokenUser("tina", store))
        tina = TokenUser("tina", store, now=NOW + ROTATE_AFTER)
        self.assertEqual(len(tina.relay.asked), 1)
        tina.feed(PrekeysLow(2, 1))
        tina.feed(PrekeysStored(0, 2))
        self.assertEqual(len(tina.relay.asked), 1)
        [refill] = tina.relay.take(UploadPrekeys)
        self.assertEqual(refill.signed_prekey, b"")
        tina.relay.sign_next()
        [upload] = tina.relay.take(UploadPrekeys)
        self.assertNotEqual(upload.signed_prekey, b"")

    def test_prekeyFailureToldOnceNoRetry(self) -> None:
        """
        A token that fails to sign the rotated prekey: one notice line, no
        upload, and no new attempt on every later relay message.
        """
        store = LetterStore(None)
        signed_up(TokenUser("tina", store))
        tina = TokenUser("tina", store, now=NOW + ROTATE_AFTER)
        tina.relay.fail_next()
        self.assertEqual(tina.view.of("notice"), [(
            "our new signed prekey was not signed, so letters to us may fail: " + REMOVED,)])
        tina.feed(PrekeysStored(0, 50))
        tina.feed(PrekeysStored(0, 50))
        self.assertEqual(tina.relay.asked, [])
        self.assertEqual(tina.relay.take(UploadPrekeys), [])


class LetterSigningTests(unittest.TestCase):
    """Letters and receipts, signed by the token."""

    def test_letterNotPostedBeforeSigned(self) -> None:
        """
        A letter whose signature is pending is neither posted nor kept as
        sent; once the token signs, it is kept, then posted, and bob's
        client verifies and opens it.
        """
        tina, bob = signed_up(TokenUser("tina")), User("bob")
        tina.box.send_letter("bob", "signed on the token")
        tina.feed(bob.bundle())
        self.assertEqual(tina.relay.take(PostLetter), [])
        self.assertEqual(tina.store.sent_letters(), [])
        tina.relay.sign_next()
        [posted] = tina.relay.take(PostLetter)
        self.assertEqual(tina.store.sent(posted.letter_id).sealed, posted.letter)  # type: ignore[union-attr]
        deliver(bob, posted, sender="tina")
        self.assertEqual(bob.view.of("letter_opened")[0][4], "signed on the token")

    def test_inOrderOneAtATime(self) -> None:
        """
        Two letters and a receipt while the token is slow: one signature is
        asked for at a time, and they go out in the order they were made
        (the letter to bob before the letter to carol, the delivery
        receipt before the read receipt).
        """
        tina, bob, carol = signed_up(TokenUser("tina")), User("bob"), User("carol")
        tina.box.send_letter("bob", "first")
        tina.box.send_letter("carol", "second")
        tina.feed(bob.bundle())
        tina.feed(carol.bundle())
        self.assertEqual(len(tina.relay.asked), 1)
        tina.relay.sign_next()
        self.assertEqual([p.recipient for p in tina.relay.take(PostLetter)], ["bob"])
        self.assertEqual(len(tina.relay.asked), 1)
        tina.relay.sign_next()
        self.assertEqual([p.recipient for p in tina.relay.take(PostLetter)], ["carol"])

        posted = post(bob, tina, "to the token")
        deliver(tina, posted, sender="bob")
        self.assertEqual(tina.view.of("letter_opened")[0][4], "to the token")
        self.assertEqual(tina.relay.take(PostReceipt), [])
        tina.relay.sign_next()
        tina.relay.sign_next()
        receipts = [parse_receipt(p.receipt) for p in tina.relay.take(PostReceipt)]
        self.assertEqual([r.kind for r in receipts], [1, 2])
        for r in receipts:
            verify_receipt(r, parse_letter(posted.letter), user_key("tina").public_key())

    def test_resendKeepsIdAndBytes(self) -> None:
        """
        A letter signed but not answered is posted again after the next
        login with the same id and bytes, and the token is not asked again.
        """
        store = LetterStore(None)
        tina, bob = signed_up(TokenUser("tina", store)), User("bob")
        first = post_signed(tina, bob, "once")
        again = TokenUser("tina", store)
        self.assertEqual(again.relay.asked, [])
        [resent] = again.relay.take(PostLetter)
        self.assertEqual((resent.letter_id, resent.letter), (first.letter_id, first.letter))

    def test_tokenFailsLetterInOneLine(self) -> None:
        """
        The token fails while a letter is being signed: the letter is
        reported not sent (signing-failed, the token's line), nothing is
        posted or kept, and the next letter is signed as usual.
        """
        tina, bob = signed_up(TokenUser("tina")), User("bob")
        tina.box.send_letter("bob", "lost")
        tina.feed(bob.bundle())
        tina.relay.fail_next()
        self.assertEqual(tina.view.of("letter_not_sent"), [
            ("bob", "signing-failed", "the letter could not be signed and was not sent: " + REMOVED)])
        self.assertEqual(tina.relay.take(PostLetter), [])
        self.assertEqual(tina.store.sent_letters(PENDING), [])
        post_signed(tina, bob, "next")

    def test_tokenFailsReceiptInOneLine(self) -> None:
        """
        The token fails while a receipt is being signed: one notice line,
        no receipt posted; the letter stays opened.
        """
        tina, bob = signed_up(TokenUser("tina")), User("bob")
        posted = post(bob, tina, "hello")
        deliver(tina, posted, sender="bob")
        tina.relay.fail_next()
        tina.relay.fail_next()
        lid = posted.letter_id[:4].hex()
        self.assertEqual(tina.view.of("notice"), [
            (f"the delivery receipt for bob's letter [{lid}] could not be signed and was not sent: {REMOVED}",),
            (f"the read receipt for bob's letter [{lid}] could not be signed and was not sent: {REMOVED}",)])
        self.assertEqual(tina.relay.take(PostReceipt), [])
        self.assertEqual(len(tina.view.of("letter_opened")), 1)

    def test_badTokenSignatureRefused(self) -> None:
        """
        A token that answers with a signature that does not verify under its
        public key: the letter is not sent, and the line says so.
        """
        tina, bob = signed_up(TokenUser("tina")), User("bob")
        tina.box.send_letter("bob", "mangled")
        tina.feed(bob.bundle())
        message, d = tina.relay.asked.pop(0)
        d.callback(keys.sign(user_key("mallory"), message)[1])
        [(recipient, code, line)] = tina.view.of("letter_not_sent")
        self.assertEqual((recipient, code), ("bob", "signing-failed"))
        self.assertIn("the token's signature does not verify with its public key", line)
        self.assertEqual(tina.relay.take(PostLetter), [])


def post_signed(sender: TokenUser, recipient: User, text: str) -> PostLetter:
    """C{sender} (token) sends a letter, the token signing it at once when asked."""
    sender.box.send_letter(recipient.name, text)
    sender.relay.take()
    sender.feed(recipient.bundle())
    sender.relay.sign_next()
    [posted] = sender.relay.take(PostLetter)
    return posted
