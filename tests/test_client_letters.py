"""
Tests for the client's side of the mailbox (L{securechat.client.letters},
L{securechat.client.letterstore}, the letter events of the views): real
L{ChatClient}s against a relay scripted at the message level (what the
client posts is recorded; what the relay would answer is fed in).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.letters import GRACE, ONE_TIME_STOCK, ROTATE_AFTER
from securechat.client.letterstore import PENDING, STORED, LetterStore
from securechat.client.pins import PinStore
from securechat.crypto import keys
from securechat.crypto.letters import parse_letter, seal_letter
from securechat.crypto.prekeys import PrekeyBundle, SignedPrekey, generate_signed_prekey, parse_one_time_prekeys
from securechat.crypto.receipts import ReceiptKind, make_receipt, parse_receipt
from securechat.wire.mailbox import (
    Bundle,
    FetchBundle,
    FetchLetter,
    GetUserKey,
    Letter,
    LetterEntry,
    LetterList,
    LetterStored,
    ListLetters,
    NewLetters,
    PostLetter,
    PostReceipt,
    PrekeysLow,
    PrekeysStored,
    ReceiptMessage,
    SentStatus,
    StatusEntry,
    StatusList,
    UploadPrekeys,
    UserKey,
)
from securechat.wire.keyhistory import GetKeyHistory, KeyHistory
from securechat.wire.messages import Message
from securechat.wire.relay import CommandFailed, Reason, Welcome
from tests.relay_harness import user_key
from tests.test_client_core import RecordingView

NOW = 1_700_000_000


class Outbound:
    batch_bytes = 64 * 1024


class ScriptedProtocol:
    """What the client core needs of its protocol; records what it posts."""

    def __init__(self) -> None:
        self.established = True
        self.posted: list[Message] = []
        self.outbound = Outbound()

    def post(self, message: Message) -> None:
        self.posted.append(message)

    def close(self) -> None:
        self.established = False

    def take(self, kind: type | None = None) -> list[Any]:
        out = [m for m in self.posted if kind is None or isinstance(m, kind)]
        self.posted = [m for m in self.posted if m not in out]
        return out


def der(name: str) -> bytes:
    return keys.public_key_der(user_key(name).public_key())


class User:
    """One user's client, its view, its store and its scripted relay."""

    def __init__(self, name: str, store: LetterStore | None = None, pins: PinStore | None = None,
                 now: int = NOW, key: Any = None) -> None:
        self.name = name
        self.now = now
        self.view = RecordingView()
        self.store = store or LetterStore(None)
        self.client = ChatClient(name, key or user_key(name), self.view, lambda i: user_key("x").public_key(),
                                 pins or PinStore(None), clock=lambda: float(self.now), letters=self.store)
        self.relay = ScriptedProtocol()
        self.client.protocol = self.relay  # type: ignore[assignment]
        self.client.message_received(Welcome(name, 64 * 1024 - 128))
        self.upload = self.relay.take(UploadPrekeys)

    @property
    def box(self) -> Any:
        assert self.client.mailbox is not None
        return self.client.mailbox

    def feed(self, message: Message) -> None:
        self.client.message_received(message)

    def bundle(self, with_one_time: bool = True) -> Bundle:
        """Our prekeys as the relay would hand them out (a one-time one stocked first)."""
        signed = self.store.current_signed()
        assert signed is not None
        one_time = b""
        if with_one_time:
            self.box._upload(b"", 1)
            one_time = self.relay.take(UploadPrekeys)[-1].one_time_prekeys
        return Bundle(self.name, der(self.name), signed[3], one_time)


def post(sender: User, recipient: User, text: str, with_one_time: bool = True) -> PostLetter:
    """C{sender} sends C{recipient} a letter; the PostLetter it sent."""
    sender.box.send_letter(recipient.name, text)
    [fetch] = sender.relay.take(FetchBundle)
    assert fetch.user == recipient.name
    sender.feed(recipient.bundle(with_one_time))
    [posted] = sender.relay.take(PostLetter)
    return posted


def deliver(recipient: User, posted: PostLetter, sender: str = "alice", stored_at: int = NOW + 5,
            letter: bytes | None = None, letter_id: bytes | None = None) -> None:
    """The relay lists the letter for C{recipient}, who reads it."""
    letter_id = letter_id or posted.letter_id
    recipient.box.list_letters(False)
    recipient.relay.take(ListLetters)
    recipient.feed(LetterList((LetterEntry(sender, letter_id, stored_at, len(posted.letter), 0),), 1))
    recipient.box.read("1")
    [fetch] = recipient.relay.take(FetchLetter)
    recipient.feed(Letter(sender, letter_id, stored_at, stored_at + 30 * 86400,
                          letter if letter is not None else posted.letter))
    for ask in recipient.relay.take(GetUserKey):
        recipient.feed(UserKey(ask.user, der(ask.user), 0))
    for ask in recipient.relay.take(GetKeyHistory):  # the sender had no other key
        recipient.feed(KeyHistory(ask.user, ()))


class PrekeyTests(unittest.TestCase):
    """Our prekeys on the relay."""

    def test_uploadAfterLogin(self) -> None:
        """
        After WELCOME the client uploads a signed prekey that verifies for
        it, whose private half is already in its store.
        """
        bob = User("bob")
        [upload] = bob.upload
        prekey = SignedPrekey.parse(upload.signed_prekey)
        from securechat.crypto.prekeys import verify_signed_prekey
        verify_signed_prekey("bob", prekey, user_key("bob").public_key())
        self.assertIsNotNone(bob.store.signed_prekey(prekey.prekey_id))

    def test_noUploadAgainOnceStored(self) -> None:
        """
        Once the relay confirmed the signed prekey, a later login does not
        upload it again (until it is due for rotation).
        """
        store = LetterStore(None)
        bob = User("bob", store)
        bob.feed(PrekeysStored(SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id, 0))
        again = User("bob", store)
        self.assertEqual(again.upload, [])

    def test_refillWhenLow(self) -> None:
        """
        PREKEYS_LOW makes the client upload enough one-time prekeys to bring
        the stock back to ONE_TIME_STOCK, their private halves kept first;
        a second PREKEYS_LOW while that upload is unanswered adds nothing.
        """
        bob = User("bob")
        bob.feed(PrekeysStored(SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id, 0))
        bob.feed(PrekeysLow(3, 1))
        bob.feed(PrekeysLow(3, 1))
        [upload] = bob.relay.take(UploadPrekeys)
        fresh = parse_one_time_prekeys(upload.one_time_prekeys)
        self.assertEqual(len(fresh), ONE_TIME_STOCK - 3)
        self.assertTrue(all(bob.store.one_time_prekey(p.prekey_id) is not None for p in fresh))
        self.assertEqual(upload.signed_prekey, b"")

    def test_rotationKeepsPreviousForGrace(self) -> None:
        """
        A signed prekey older than ROTATE_AFTER is replaced at login; the
        previous private half stays (a letter sealed to it still opens)
        until GRACE after the replacement, then is forgotten.
        """
        store = LetterStore(None)
        alice = User("alice")
        bob = User("bob", store)
        old = SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id
        in_flight = post(alice, bob, "sealed before the rotation", with_one_time=False)
        bob = User("bob", store, now=NOW + ROTATE_AFTER - 1)
        self.assertEqual(SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id, old)
        bob = User("bob", store, now=NOW + ROTATE_AFTER)
        new = SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id
        self.assertNotEqual(new, old)
        self.assertEqual(store.signed_ids(), [old, new])
        deliver(bob, in_flight)
        self.assertEqual(bob.view.of("letter_opened")[0][4], "sealed before the rotation")
        # After the grace period the old key is gone.
        store.drop_replaced(NOW + ROTATE_AFTER + GRACE + 1)
        self.assertEqual(store.signed_ids(), [new])


class SendTests(unittest.TestCase):
    """Sealing, posting and resending."""

    def test_sealAndPostResendSameId(self) -> None:
        """
        A letter is kept (pending) before it is posted; after a reconnection
        the same bytes are posted under the same id; LETTER_STORED marks it
        stored and the view is told.
        """
        store = LetterStore(None)
        alice = User("alice", store)
        bob = User("bob")
        posted = post(alice, bob, "hello")
        self.assertEqual(parse_letter(posted.letter).header.letter_id, posted.letter_id)
        self.assertEqual(store.sent(posted.letter_id).state, PENDING)  # type: ignore[union-attr]
        again = User("alice", store)
        [resent] = again.relay.take(PostLetter)
        self.assertEqual((resent.letter_id, resent.letter), (posted.letter_id, posted.letter))
        again.feed(LetterStored("bob", posted.letter_id, NOW + 1, NOW + 2))
        self.assertEqual(store.sent(posted.letter_id).state, STORED)  # type: ignore[union-attr]
        self.assertEqual(again.view.of("letter_sent"), [("bob", posted.letter_id, NOW + 1, NOW + 2)])
        self.assertEqual(User("alice", store).relay.take(PostLetter), [])

    def test_substitutedPrekeyRefused(self) -> None:
        """
        A bundle whose signed prekey is not signed by the recipient (a relay
        substituted its own) refuses the letter: bad-prekey-signature, and
        nothing is posted or kept.
        """
        alice, bob = User("alice"), User("bob")
        forged, _ = generate_signed_prekey("bob", user_key("mallory"), 99, NOW)
        alice.box.send_letter("bob", "hello")
        alice.feed(Bundle("bob", der("bob"), forged.encode(), b""))
        self.assertEqual(alice.relay.take(PostLetter), [])
        [(recipient, code, detail)] = alice.view.of("letter_not_sent")
        self.assertEqual((recipient, code), ("bob", "bad-prekey-signature"))
        self.assertEqual(alice.store.sent_letters(), [])

    def test_changedRecipientKeyRefusedUntilTrust(self) -> None:
        """
        A recipient whose key differs from the pinned one gets no letter
        (key_changed shown, key-changed refusal) until the user trusts the
        new key; then the same letter goes.
        """
        pins = PinStore(None)
        pins.pin("bob", user_key("old-bob").public_key())
        alice, bob = User("alice", pins=pins), User("bob")
        alice.box.send_letter("bob", "hello")
        alice.feed(bob.bundle())
        self.assertEqual(alice.relay.take(PostLetter), [])
        self.assertEqual([c for _, c, _ in alice.view.of("letter_not_sent")], ["key-changed"])
        self.assertEqual(len(alice.view.of("key_changed")), 1)
        alice.relay.take()
        alice.client.trust("bob")
        post(alice, bob, "hello")

    def test_bundleRefusalShown(self) -> None:
        """
        FETCH_BUNDLE answered with COMMAND_FAILED(NO_PREKEYS) shows the
        letter refused with that reason.
        """
        alice = User("alice")
        alice.box.send_letter("bob", "hello")
        alice.feed(CommandFailed(FetchBundle.TYPE, "bob", Reason.NO_PREKEYS))
        self.assertEqual(alice.view.of("letter_refused"), [("bob", None, Reason.NO_PREKEYS)])


class ReadTests(unittest.TestCase):
    """Opening letters, and the receipts that go back."""

    def test_readVerifiedWithReceipts(self) -> None:
        """
        A letter that verifies and decrypts is shown as text; a delivery and
        a read receipt, signed by the reader, are posted; the one-time
        prekey it used is forgotten.
        """
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "hello bob")
        one_time = parse_letter(posted.letter).header.one_time_prekey_id
        deliver(bob, posted)
        [opened] = bob.view.of("letter_opened")
        self.assertEqual(opened[0], "alice")
        self.assertEqual(opened[4], "hello bob")
        receipts = bob.relay.take(PostReceipt)
        self.assertEqual([parse_receipt(r.receipt).kind for r in receipts],
                         [ReceiptKind.DELIVERY, ReceiptKind.READ])
        self.assertIsNone(bob.store.one_time_prekey(one_time))

    def test_readReceiptsOff(self) -> None:
        """
        With read receipts off, reading posts only the delivery receipt.
        """
        alice, bob = User("alice"), User("bob")
        bob.box.set_read_receipts(False)
        deliver(bob, post(alice, bob, "hi"))
        self.assertEqual([parse_receipt(r.receipt).kind for r in bob.relay.take(PostReceipt)],
                         [ReceiptKind.DELIVERY])

    def _refused(self, bob: User) -> tuple[str, ...]:
        self.assertEqual(bob.view.of("letter_opened"), [])
        [failed] = bob.view.of("letter_failed")
        return failed

    def test_forgedSignatureNeverText(self) -> None:
        """
        A letter signed by someone else than its sender is shown as
        bad-signature, never as text, and gets no receipt.
        """
        alice, bob = User("alice"), User("bob")
        bundle = PrekeyBundle.parse("bob", bob.bundle(False).signed_prekey, b"")
        forged = seal_letter(sender="alice", sender_private=user_key("mallory"), recipient="bob",
                             recipient_key=user_key("bob").public_key(), bundle=bundle,
                             content=b"secret plan", sent_at=NOW)
        deliver(bob, PostLetter("bob", forged.header.letter_id, forged.raw))
        failed = self._refused(bob)
        self.assertEqual(failed[3], "bad-signature")
        self.assertNotIn("secret plan", repr(bob.view.seen))
        self.assertEqual(bob.relay.take(PostReceipt), [])

    def test_missingSignatureNeverText(self) -> None:
        """
        A letter whose signature field is empty is bad-signature, never text.
        """
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "unsigned", with_one_time=False)
        letter = parse_letter(posted.letter)
        raw = letter.signed_part + letter.raw[len(letter.signed_part):len(letter.signed_part) + 2] + b"\x00\x00"
        deliver(bob, posted, letter=raw)
        self.assertEqual(self._refused(bob)[3], "bad-signature")
        self.assertNotIn("unsigned", repr(bob.view.of("letter_failed")))

    def test_tamperedCiphertext(self) -> None:
        """
        A letter whose ciphertext was changed fails its signature check
        (which comes first): shown as refused, never as text.
        """
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "tamper me")
        raw = bytearray(posted.letter)
        letter = parse_letter(posted.letter)
        raw[len(letter.signed_part) - 1] ^= 1  # the last ciphertext byte
        deliver(bob, posted, letter=bytes(raw))
        self.assertEqual(self._refused(bob)[3], "bad-signature")

    def test_replayedLetterDetectedById(self) -> None:
        """
        A second letter from the same sender under an id already opened (a
        relay replaying the id with other bytes) is refused as replayed;
        the same bytes again are shown from our copy, marked read before,
        and no new receipt goes.
        """
        alice, bob = User("alice"), User("bob")
        first = post(alice, bob, "first")
        deliver(bob, first)
        bob.relay.take(PostReceipt)
        deliver(bob, first)
        self.assertEqual(bob.view.of("letter_opened")[-1][5], True)
        other = post(alice, bob, "other")
        deliver(bob, other, letter_id=first.letter_id, letter=other.letter)
        self.assertEqual(bob.view.of("letter_failed")[-1][3], "replayed")
        self.assertEqual(bob.relay.take(PostReceipt), [])

    def test_envelopeMismatch(self) -> None:
        """
        A letter served under another id than its own is wrong-envelope.
        """
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "x")
        deliver(bob, posted, letter_id=b"\x01" * 16)
        self.assertEqual(self._refused(bob)[3], "wrong-envelope")

    def test_noticeAtLogin(self) -> None:
        """NEW_LETTERS after WELCOME is shown as a count."""
        bob = User("bob")
        bob.feed(NewLetters(2))
        self.assertEqual(bob.view.of("new_letters"), [(2,)])


class StatusTests(unittest.TestCase):
    """The sender's view of its letters and their receipts."""

    def _sent(self) -> tuple[User, User, PostLetter]:
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "status")
        alice.feed(LetterStored("bob", posted.letter_id, NOW + 1, NOW + 100))
        return alice, bob, posted

    def test_statusVerifiesReceipts(self) -> None:
        """
        SENT_STATUS's receipts are verified against the recipient's pinned
        key: a good receipt is "ok", one signed by someone else is
        bad-signature.
        """
        alice, bob, posted = self._sent()
        letter = parse_letter(posted.letter)
        good = make_receipt(letter, ReceiptKind.DELIVERY, user_key("bob"), NOW + 3).encode()
        bad = make_receipt(letter, ReceiptKind.READ, user_key("mallory"), NOW + 4).encode()
        alice.box.sent_status()
        [ask] = alice.relay.take(SentStatus)
        alice.feed(StatusList((StatusEntry("bob", posted.letter_id, NOW + 1, NOW + 100, NOW + 3, NOW + 4,
                                           good, bad),), 1))
        [get] = alice.relay.take(GetUserKey)
        alice.feed(UserKey("bob", der("bob"), 0))
        [history] = alice.relay.take(GetKeyHistory)  # for the receipt that did not verify
        alice.feed(KeyHistory("bob", ()))
        [(rows, total, more)] = alice.view.of("sent_status")
        self.assertEqual((rows[0].delivery, rows[0].read, total), ("ok", "bad-signature", 1))

    def test_pushedReceiptVerified(self) -> None:
        """A RECEIPT pushed while online is verified and shown with its kind."""
        alice, bob, posted = self._sent()
        letter = parse_letter(posted.letter)
        receipt = make_receipt(letter, ReceiptKind.READ, user_key("bob"), NOW + 3).encode()
        alice.feed(ReceiptMessage("bob", posted.letter_id, receipt))
        alice.feed(UserKey("bob", der("bob"), 0))
        self.assertEqual(alice.view.of("receipt"), [("bob", posted.letter_id, 2, "ok")])


class StoreTests(unittest.TestCase):
    """The client's file."""

    def test_fileMode0600AndDurable(self) -> None:
        """
        The letters file is created mode 0600, and a prekey private half
        and a pending letter survive reopening it.
        """
        path = os.path.join(self.mktemp(), "letters.sqlite3")
        store = LetterStore(path)
        bob = User("bob", store)
        prekey_id = SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id
        store.add_sent(b"\x02" * 16, "carol", b"sealed", NOW)
        store.close()
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        again = LetterStore(path)
        self.assertIsNotNone(again.signed_prekey(prekey_id))
        self.assertEqual([s.letter_id for s in again.sent_letters(PENDING)], [b"\x02" * 16])
        again.close()


def _letter_events(hostile: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Every letter event of the ChatView, with C{hostile} in each text field."""
    from securechat.client.letterview import LetterSummary, StatusRow
    lid = b"\x07" * 16
    return [
        ("letter_sent", (hostile, lid, NOW, NOW)),
        ("letter_refused", (hostile, lid, Reason.MAILBOX_FULL)),
        ("letter_refused", (hostile, None, 99)),
        ("letter_not_sent", (hostile, hostile, hostile)),
        ("new_letters", (3,)),
        ("letter_arrived", (hostile, NOW, 10)),
        ("letter_list", ((LetterSummary(1, hostile, lid, NOW, 10, 0),), 2, "/letters all 2")),
        ("letter_opened", (hostile, lid, NOW, NOW, hostile, False, 0)),
        ("letter_opened", (hostile, lid, NOW, NOW, hostile, False, NOW)),
        ("letter_failed", (hostile, lid, NOW, hostile, hostile)),
        ("letter_deleted", (hostile, lid)),
        ("receipt", (hostile, lid, 1, "ok")),
        ("receipt", (hostile, lid, 2, hostile)),
        ("sent_status", ((StatusRow(hostile, lid, STORED, NOW, NOW, NOW, NOW, "ok", hostile),
                          StatusRow(hostile, lid, "refused", 0, 0, 0, 0, "", "", hostile)), 3, "/sent 2")),
        ("users", (((hostile, True), (hostile, False)), 2)),
    ]


class DisplayTests(unittest.TestCase):
    """Hostile strings through every letter path of both views."""

    def test_lineModeNeutralisesEveryLetterEvent(self) -> None:
        """
        DESIGN.md 9: every field of a letter event a peer or the relay chose
        (names, letter text, codes) reaches the line terminal only through
        untrusted(): every line written holds no control, format or
        separator character, and starts with the terminal's own marker.
        """
        from twisted.internet.testing import StringTransport

        from securechat.client.display import is_safe
        from securechat.client.terminal import ChatTerminal
        from tests.test_display import HOSTILE
        for label, hostile in HOSTILE:
            for event, args in _letter_events(hostile):
                terminal = ChatTerminal(clock=lambda: 0.0)
                transport = StringTransport()
                terminal.makeConnection(transport)
                getattr(terminal, event)(*args)
                written = transport.value().decode("utf-8")
                where = f"{event} / {label}: {written!r}"
                lines = written.split("\n")
                self.assertEqual(lines[-1], "", where)
                for line in lines[:-1]:
                    self.assertTrue(is_safe(line), where)
                    self.assertTrue(line.startswith(("* ", "! ")), where)

    def test_fullScreenNeutralisesEveryLetterEvent(self) -> None:
        """
        The same for the full screen: every letter event is a line in the
        mailbox window whose prefix and body hold nothing unsafe.
        """
        from securechat.client.display import is_safe
        from securechat.client.tui.view import FullScreen
        from tests.test_display import HOSTILE
        for label, hostile in HOSTILE:
            for event, args in _letter_events(hostile):
                view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
                getattr(view, event)(*args)
                window = view.windows.find_mailbox()
                assert window is not None
                self.assertEqual(window.title, "mailbox")
                for line in window.lines:
                    where = f"{event} / {label}: {line!r}"
                    self.assertTrue(is_safe(line.prefix) and is_safe(line.body), where)

    def test_letterTextLinesMarked(self) -> None:
        """
        A letter's text that holds a newline and a forged status line is
        shown on lines marked as the letter's ("  | "), never as a line of
        the client's own.
        """
        from twisted.internet.testing import StringTransport

        from securechat.client.terminal import ChatTerminal
        terminal = ChatTerminal(clock=lambda: 0.0)
        transport = StringTransport()
        terminal.makeConnection(transport)
        terminal.letter_opened("alice", b"\x01" * 16, NOW, NOW, "hi\n* letter from carol: ok", False, 0)
        lines = transport.value().decode("utf-8").splitlines()
        self.assertEqual(lines[1:], ["*   | hi", "*   | * letter from carol: ok"])


class CommandTests(unittest.TestCase):
    """The letter commands of the line terminal."""

    def setUp(self) -> None:
        from securechat.client.terminal import ChatTerminal
        self.out: list[str] = []
        self.terminal = ChatTerminal(write=self.out.append, clock=lambda: 0.0)
        self.alice = User("alice")
        self.terminal.client = self.alice.client

    def test_letterTakesTheWholeText(self) -> None:
        """/letter USER TEXT sends every word of TEXT (not only the first)."""
        self.terminal.lineReceived(b"/letter bob see you at eight")
        self.assertEqual(self.alice.relay.take(FetchBundle), [FetchBundle("bob")])
        self.assertEqual(list(self.alice.box._bundles), [("bob", "see you at eight")])

    def test_plainMessageToNoChatOffersALetter(self) -> None:
        """
        "bob: TEXT" with no chat with bob is not sent; the terminal offers
        to send it as a letter, and "!letter bob" then sends that text.
        """
        self.terminal.lineReceived(b"bob: are you there?")
        self.assertIn("!letter bob sends it as a letter", self.out[-1])
        self.assertEqual(self.alice.relay.take(FetchBundle), [])
        self.terminal.lineReceived(b"!letter bob")
        self.assertEqual(list(self.alice.box._bundles), [("bob", "are you there?")])

    def test_readUnknownNumber(self) -> None:
        """/read of a number not in the last list says so, sends nothing."""
        self.terminal.lineReceived(b"/read 3")
        [(notice,)] = self.alice.view.of("notice")
        self.assertIn("no letter 3 in the last list", notice)
        self.assertEqual(self.alice.relay.take(FetchLetter), [])

    def test_receiptsUsage(self) -> None:
        """/receipts takes on or off."""
        self.terminal.lineReceived(b"/receipts maybe")
        self.assertEqual(self.out[-1], "! usage: !receipts on|off\n")


class FirstUploadTests(unittest.TestCase):
    """Prekeys for a client the relay has none of."""

    def test_firstLoginUploadsOneTimeStock(self) -> None:
        """
        The relay tells no PREKEYS_LOW to a user with no prekeys (14.7): the
        client's first upload carries ONE_TIME_STOCK one-time prekeys with
        its signed prekey.
        """
        bob = User("bob")
        [upload] = bob.upload
        self.assertEqual(len(parse_one_time_prekeys(upload.one_time_prekeys)), ONE_TIME_STOCK)

    def test_emptyStockAfterSignedOnlyUpload(self) -> None:
        """
        A PREKEYS_STORED that answers a signed-prekey-only upload with no
        one-time prekeys on the relay makes the client upload a stock.
        """
        store = LetterStore(None)
        bob = User("bob", store)
        bob.feed(PrekeysStored(SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id, 100))
        bob = User("bob", store, now=NOW + ROTATE_AFTER)
        bob.feed(PrekeysStored(SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id, 0))
        [refill] = bob.relay.take(UploadPrekeys)
        self.assertEqual(len(parse_one_time_prekeys(refill.one_time_prekeys)), ONE_TIME_STOCK)


class FullScreenCommandTests(unittest.TestCase):
    """The letter commands of the full screen."""

    def setUp(self) -> None:
        from securechat.client.tui.view import FullScreen
        self.view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
        self.alice = User("alice")
        self.view.client = self.alice.client

    def test_letterOpensTheMailboxWindow(self) -> None:
        """
        /letter USER TEXT sends every word of TEXT and switches to the
        mailbox window, where typed text is refused (it is no chat).
        """
        self.view.commands.submit("/letter bob see you at eight")
        self.assertEqual(self.alice.relay.take(FetchBundle), [FetchBundle("bob")])
        self.assertEqual(list(self.alice.box._bundles), [("bob", "see you at eight")])
        self.assertTrue(self.view.windows.current.mailbox)
        self.view.commands.submit("hello?")
        self.assertIn("this is the mailbox window", self.view.windows.current.lines[-1].body)

    def test_endedChatOffersALetter(self) -> None:
        """
        A line typed in bob's window with no chat is not sent; the reply
        offers /letter bob, which then sends that line as a letter.
        """
        self.view.windows.switch(self.view.window_for("bob"))
        self.view.commands.submit("are you there?")
        self.assertIn("/letter bob sends it as a letter", self.view.windows.current.lines[-1].body)
        self.view.commands.submit("/letter bob")
        self.assertEqual(list(self.alice.box._bundles), [("bob", "are you there?")])


    def test_msgWithoutChatOffersALetter(self) -> None:
        """
        /msg USER TEXT with no chat with USER offers /letter USER, which
        then sends TEXT as a letter.
        """
        self.view.commands.submit("/msg bob lunch?")
        self.assertIn("/letter bob sends it as a letter", self.view.windows.current.lines[-1].body)
        self.view.commands.submit("/letter bob")
        self.assertEqual(list(self.alice.box._bundles), [("bob", "lunch?")])


class SenderKeyTests(unittest.TestCase):
    """The sender's key when a letter is read."""

    def test_changedSenderKeyNotShown(self) -> None:
        """
        A letter whose sender's key (USER_KEY) differs from the pinned one
        is refused as key-changed: no text, no receipt, the change shown.
        """
        pins = PinStore(None)
        pins.pin("alice", user_key("old-alice").public_key())
        alice, bob = User("alice"), User("bob", pins=pins)
        deliver(bob, post(alice, bob, "trust me"))
        [failed] = bob.view.of("letter_failed")
        self.assertEqual(failed[3], "key-changed")
        self.assertEqual(len(bob.view.of("key_changed")), 1)
        self.assertEqual(bob.view.of("letter_opened"), [])
        self.assertEqual(bob.relay.take(PostReceipt), [])

    def test_decryptFailedDeliveryReceiptOnly(self) -> None:
        """
        A letter that is signed by its sender but does not open with our
        prekeys (a one-time prekey we no longer hold) is shown as
        unknown-prekey, never as text; its signature verified, so a
        delivery receipt goes, and no read receipt.
        """
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "lost key")
        bob.store.forget_one_time(parse_letter(posted.letter).header.one_time_prekey_id)  # type: ignore[arg-type]
        deliver(bob, posted)
        self.assertEqual(bob.view.of("letter_failed")[0][3], "unknown-prekey")
        self.assertEqual([parse_receipt(r.receipt).kind for r in bob.relay.take(PostReceipt)],
                         [ReceiptKind.DELIVERY])


class SessionTests(unittest.TestCase):
    """Letters across a long session and a lost connection."""

    def test_rotationInALongSession(self) -> None:
        """
        A client online past ROTATE_AFTER replaces its signed prekey at the
        next mailbox message from the relay, keeping the old one.
        """
        bob = User("bob")
        old = SignedPrekey.parse(bob.upload[0].signed_prekey).prekey_id
        bob.feed(PrekeysStored(old, 100))
        bob.now = NOW + ROTATE_AFTER
        bob.feed(NewLetters(1))
        [upload] = bob.relay.take(UploadPrekeys)
        new = SignedPrekey.parse(upload.signed_prekey).prekey_id
        self.assertNotEqual(new, old)
        self.assertEqual(bob.store.signed_ids(), [old, new])

    def test_unsealedLetterReportedOnDisconnect(self) -> None:
        """
        A letter still waiting for its bundle when the connection ends is
        reported not sent (disconnected), not silently dropped.
        """
        alice = User("alice")
        alice.box.send_letter("bob", "hello")
        alice.client.connection_ended(None)
        [(recipient, code, detail)] = alice.view.of("letter_not_sent")
        self.assertEqual((recipient, code), ("bob", "disconnected"))

    def test_unaskedLetterAndKeyDropped(self) -> None:
        """
        A LETTER nobody asked for (a relay replaying one, or pushing one) is
        neither opened nor answered with a receipt, and a USER_KEY nobody
        asked for pins nothing.
        """
        pins = PinStore(None)
        alice, bob = User("alice"), User("bob", pins=pins)
        posted = post(alice, bob, "pushed")
        bob.feed(Letter("alice", posted.letter_id, NOW, NOW + 100, posted.letter))
        bob.feed(UserKey("alice", der("alice"), 0))
        self.assertEqual(bob.relay.take(), [])
        self.assertEqual(bob.view.of("letter_opened") + bob.view.of("letter_failed"), [])
        self.assertIsNone(pins.fingerprint("alice"))

    def test_graceFollowsALongerRelayExpiry(self) -> None:
        """
        A relay that keeps letters longer than 30 days (seen in
        LETTER_STORED) makes the client keep a replaced signed prekey for
        that expiry and a day, not only GRACE.
        """
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "long-lived")
        alice.feed(LetterStored("bob", posted.letter_id, NOW, NOW + 90 * 86400))
        self.assertEqual(alice.box.grace, 91 * 86400)
        self.assertEqual(bob.box.grace, GRACE)
