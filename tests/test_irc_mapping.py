"""
The IRC gateway's mapping in memory (L{securechat.client.irc.gateway}):
alice on Twisted's L{IRCClient} through her gateway, bob on a plain client
core, both logged in to the real relay over the in-memory network.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.crypto import keys
from securechat.client.letterview import when
from tests.irc_harness import GatewayHarness
from tests.relay_harness import user_key

BOB = "bob!bob@e2e.securechat"


class ChatMappingTests(unittest.TestCase):
    """/msg, chat requests, incoming lines, /me, CTCP, /quit."""

    def setUp(self) -> None:
        self.h = GatewayHarness()
        self.alice = self.h.gateway_login()
        self.user = self.h.irc()
        self.bob, self.bob_view = self.h.client("bob")

    def chat(self) -> None:
        """alice's first line opens the chat; bob accepts."""
        self.user.msg("bob", "hello bob")
        self.h.pump()
        self.bob.accept("alice")
        self.h.pump()

    def test_msgOpensChatAndSendsOnceSecured(self) -> None:
        """
        /msg bob TEXT with no chat asks bob to chat (a notice says so); the
        line waits, and goes once bob accepted and the chat is secured.
        """
        self.user.msg("bob", "hello bob")
        self.h.pump()
        self.assertEqual(self.bob_view.of("chat_requested"), [("alice",)])
        self.assertTrue(any(n.startswith("bob has been asked to chat") for n in self.user.notices()))
        self.assertEqual(self.bob_view.of("message"), [])
        self.bob.accept("alice")
        self.h.pump()
        [(peer, _, text)] = self.bob_view.of("message")
        self.assertEqual((peer, text), ("alice", "hello bob"))
        self.assertIn("the chat with bob is end-to-end encrypted", self.user.notices())

    def test_incomingLineIsPrivmsgFromPeer(self) -> None:
        """A chat line from bob is a PRIVMSG from bob's nick, to alice."""
        self.chat()
        self.bob.say("alice", "hi alice")
        self.h.pump()
        self.assertEqual(self.user.of("privmsg", "bob"), ["hi alice"])
        self.assertIn(f":{BOB} PRIVMSG alice :hi alice", self.user.raw)

    def test_chatRequestNoticeFromService(self) -> None:
        """
        bob's chat request is a NOTICE from the service nick saying how to
        accept; /msg securechat accept bob accepts it.
        """
        self.bob.request_chat("alice")
        self.h.pump()
        self.assertIn("bob wants to chat: /msg securechat accept bob (or /msg securechat refuse "
                      "bob); replying to bob accepts too", self.user.notices())
        self.assertEqual(self.alice.chats, {})
        self.user.msg("securechat", "accept bob")
        self.h.pump()
        self.assertTrue(self.alice.chats["bob"].secured)

    def test_replyAcceptsRequest(self) -> None:
        """A /msg to a user who asked to chat accepts, and the line follows."""
        self.bob.request_chat("alice")
        self.h.pump()
        self.user.msg("bob", "sure")
        self.h.pump()
        self.assertEqual([m[2] for m in self.bob_view.of("message")], ["sure"])

    def test_refuseViaService(self) -> None:
        """/msg securechat refuse bob refuses bob's request."""
        self.bob.request_chat("alice")
        self.h.pump()
        self.user.msg("securechat", "refuse bob")
        self.h.pump()
        self.assertIn("you refused bob's chat request", self.user.notices())
        self.assertTrue(self.bob_view.of("chat_declined"))

    def test_declinedDropsWaitingLines(self) -> None:
        """bob refusing drops the waiting line, with a notice counting it."""
        self.user.msg("bob", "hello?")
        self.h.pump()
        self.bob.refuse("alice")
        self.h.pump()
        self.assertIn("bob refused your chat request", self.user.notices())
        self.assertIn("1 line to bob NOT sent: no chat", self.user.notices())

    def test_meIsCtcpActionBothWays(self) -> None:
        """
        /me (CTCP ACTION) goes to the peer as a line starting "/me "; such
        a line from the peer is a CTCP ACTION.
        """
        self.chat()
        self.user.describe("bob", "waves")
        self.h.pump()
        self.assertEqual(self.bob_view.of("message")[-1][2], "/me waves")
        self.bob.say("alice", "/me waves back")
        self.h.pump()
        self.assertEqual(self.user.of("action", "bob"), ["waves back"])
        self.assertIn(f":{BOB} PRIVMSG alice :\x01ACTION waves back\x01", self.user.raw)

    def test_otherCtcpFromPeerDropped(self) -> None:
        """
        A CTCP query from a peer (VERSION) is dropped, never answered: the
        IRC client never sees it, so it sends no reply, and bob gets nothing.
        """
        self.chat()
        seen = len(self.bob_view.of("message"))
        self.bob.say("alice", "\x01VERSION\x01")
        self.h.pump()
        self.assertIn("bob sent a CTCP VERSION; dropped, not answered", self.user.notices())
        self.assertEqual(self.user.of("privmsg", "bob"), [])
        self.assertFalse(any("VERSION" in line for line in self.user.raw if "PRIVMSG" in line))
        self.assertEqual(len(self.bob_view.of("message")), seen)

    def test_ctcpToPeerNotSent(self) -> None:
        """A CTCP query the IRC client sends to a peer is not sent."""
        self.chat()
        seen = len(self.bob_view.of("message"))
        self.user.ctcpMakeQuery("bob", [("VERSION", None)])
        self.h.pump()
        self.assertIn("CTCP VERSION not sent to bob: only text and /me travel", self.user.notices())
        self.assertEqual(len(self.bob_view.of("message")), seen)

    def test_peerTextCannotForgeLines(self) -> None:
        """
        CR, LF and NUL in a peer's line cannot end our IRC line and forge
        another: each line of the text is a PRIVMSG from bob, controls and
        colour codes escaped.
        """
        self.chat()
        self.bob.say("alice", "hi\r\n:securechat!securechat@gateway.securechat NOTICE alice "
                              ":trust eve\x00\x03")
        self.h.pump()
        from_bob = [line for line in self.user.raw if line.startswith(f":{BOB} ")]
        self.assertEqual(from_bob, [
            f":{BOB} PRIVMSG alice :hi",
            f":{BOB} PRIVMSG alice ::securechat!securechat@gateway.securechat NOTICE alice "
            ":trust eve\\x00\\x03"])
        self.assertNotIn("trust eve", " ".join(self.user.notices()))

    def test_longLineSplit(self) -> None:
        """
        A peer's line too long for one IRC message arrives as several, each
        within 512 bytes, together the whole text.
        """
        self.chat()
        text = "ünïcödé " * 1000
        self.bob.say("alice", text)
        self.h.pump()
        pieces = self.user.of("privmsg", "bob")
        self.assertGreater(len(pieces), 10)
        self.assertEqual("".join(pieces), text)
        self.assertTrue(all(len(line.encode("utf-8")) <= 510 for line in self.user.raw))

    def test_quitEndsChatsCleanly(self) -> None:
        """
        /quit ends every chat with an authenticated END: bob sees it ended
        by alice with the count confirmed; the gateway stays logged in.
        """
        self.chat()
        self.user.quit("bye")
        self.h.pump()
        [(peer, outcome)] = self.bob_view.of("chat_ended")
        self.assertEqual((peer, outcome), ("alice", "ended by alice (1 messages received)"))
        self.assertTrue(self.alice.logged_in)
        self.assertIsNone(self.h.gateway.irc)

    def test_gatewayStopEndsChatsCleanly(self) -> None:
        """
        The gateway stopping (SIGTERM) ends every chat with an authenticated
        END before it closes the relay connection.
        """
        self.chat()
        d = self.h.gateway.shutdown(self.h.clock)
        self.h.pump()
        [(peer, outcome)] = self.bob_view.of("chat_ended")
        self.assertEqual((peer, outcome), ("alice", "ended by alice (1 messages received)"))
        self.assertFalse(self.alice.logged_in)
        self.assertIsNone(self.successResultOf(d))  # type: ignore[arg-type]

    def test_backlogReplayed(self) -> None:
        """What happens while no IRC client is connected is shown to the next one."""
        self.user.quit("bye")
        self.h.pump()
        self.bob.request_chat("alice")
        self.h.pump()
        user = self.h.irc()
        self.assertTrue(any(n.startswith("bob wants to chat") for n in user.notices()))

    def test_statusAndOnline(self) -> None:
        """/msg securechat status and online answer from the core."""
        self.chat()
        self.user.msg("securechat", "status")
        self.user.msg("securechat", "online")
        self.h.pump()
        notices = self.user.notices()
        self.assertIn("chats: bob (secured)", notices)
        self.assertIn("online: alice, bob", notices)


class TrustTests(unittest.TestCase):
    """/whois, pinning, changed keys, auto-accept."""

    def setUp(self) -> None:
        self.h = GatewayHarness()

    def test_whoisFingerprintAndPinState(self) -> None:
        """
        /whois bob says no key is pinned before any chat, and bob's pinned
        fingerprint after one.
        """
        self.h.gateway_login()
        user = self.h.irc()
        bob, _ = self.h.client("bob")
        user.whois("bob")
        self.h.pump()
        self.assertIn("no key pinned yet", user.numerics("320")[0])
        user.msg("bob", "hi")
        self.h.pump()
        bob.accept("alice")
        self.h.pump()
        user.whois("bob")
        self.h.pump()
        fp = keys.fingerprint(user_key("bob").public_key())
        self.assertIn(f"bob :key {fp}, pinned", user.numerics("320")[-2])
        self.assertIn("in an end-to-end encrypted chat with you", user.numerics("320")[-1])
        self.assertEqual(len(user.numerics("318")), 2)

    def test_changedKeyNoticeNothingSentUntilTrust(self) -> None:
        """
        bob's key differs from the pinned one: a NOTICE from the service nick
        warns; the chat is refused and further lines to bob are not sent
        until /msg securechat trust bob; after it, a line opens a chat again.
        """
        self.h.pins["alice"].pin("bob", user_key("eve").public_key())
        alice = self.h.gateway_login()
        user = self.h.irc()
        bob, bob_view = self.h.client("bob")
        user.msg("bob", "secret plans")
        self.h.pump()
        bob.accept("alice")
        self.h.pump()
        warning = [n for n in user.notices() if n.startswith("WARNING: bob's key CHANGED")]
        self.assertEqual(len(warning), 1)
        self.assertIn("/msg securechat trust bob", warning[0])
        self.assertIn("1 line to bob NOT sent: bob's key changed", user.notices())
        self.assertEqual(bob_view.of("message"), [])
        bob_view.take()
        user.msg("bob", "again")
        self.h.pump()
        self.assertTrue(any(n.startswith("NOT sent: bob's key changed") for n in user.notices()))
        self.assertEqual(bob_view.of("chat_requested"), [])
        user.whois("bob")
        self.h.pump()
        self.assertIn("KEY CHANGED", user.numerics("320")[0])
        user.msg("securechat", "trust bob")
        self.h.pump()
        user.msg("bob", "again")
        self.h.pump()
        bob.accept("alice")
        self.h.pump()
        self.assertEqual([m[2] for m in bob_view.of("message")], ["again"])
        self.assertIn("bob", alice.chats)

    def test_autoAcceptPinned(self) -> None:
        """
        With auto-accept configured, a request from a user whose key is
        pinned is accepted at once; from one never pinned, it is a notice.
        """
        self.h.gateway.accept_pinned = True
        self.h.pins["alice"].pin("bob", user_key("bob").public_key())
        alice = self.h.gateway_login()
        user = self.h.irc()
        bob, _ = self.h.client("bob")
        carol, _ = self.h.client("carol")
        bob.request_chat("alice")
        carol.request_chat("alice")
        self.h.pump()
        self.assertIn("bob", alice.chats)
        self.assertNotIn("carol", alice.chats)
        self.assertTrue(any(n.startswith("bob asks to chat; accepted at once") for n in user.notices()))
        self.assertTrue(any(n.startswith("carol wants to chat") for n in user.notices()))

    def test_noAutoAcceptByDefault(self) -> None:
        """Without the setting, even a pinned user's request waits."""
        self.h.pins["alice"].pin("bob", user_key("bob").public_key())
        alice = self.h.gateway_login()
        self.h.irc()
        bob, _ = self.h.client("bob")
        bob.request_chat("alice")
        self.h.pump()
        self.assertEqual(alice.chats, {})


class LetterMappingTests(unittest.TestCase):
    """Letters both ways."""

    def setUp(self) -> None:
        self.h = GatewayHarness()

    def test_offlinePeerGetsLetterWithNotice(self) -> None:
        """
        /msg bob TEXT while bob is offline: a NOTICE says it goes as a
        letter, and the relay's LETTER_STORED is a notice too.
        """
        bob, _ = self.h.client("bob")
        self.h.leave(bob)
        self.h.gateway_login()
        user = self.h.irc()
        user.msg("bob", "dinner at eight?")
        self.h.pump()
        notices = user.notices()
        self.assertIn("bob is not online: your 1 line goes as a letter, for them to read later",
                      notices)
        self.assertTrue(any(n.startswith("letter ") and " to bob stored by the relay" in n
                            for n in notices))
        bob, bob_view = self.h.client("bob")
        assert bob.mailbox is not None
        bob.mailbox.list_letters(True)
        self.h.pump()
        [(listed, _, _)] = bob_view.of("letter_list")
        bob.mailbox.read("1")
        self.h.pump()
        self.assertEqual(bob_view.of("letter_opened")[0][4], "dinner at eight?")

    def test_letterArrivesAsMarkedPrivmsg(self) -> None:
        """
        A letter for alice while her gateway is online is opened at once
        and shown as a PRIVMSG from the sender marked as a letter, with the
        time it was written.
        """
        alice = self.h.gateway_login()
        user = self.h.irc()
        bob, _ = self.h.client("bob")
        assert bob.mailbox is not None
        bob.mailbox.send_letter("alice", "see you\nat eight")
        self.h.pump()
        written = when(1_700_000_000)
        [first, second] = user.of("privmsg", "bob")
        self.assertRegex(first, rf"^\[letter [0-9a-f]{{8}}, written {written}\] see you$")
        self.assertTrue(second.endswith("] at eight"))
        self.assertEqual(alice.mailbox.listed[0].sender, "bob")  # type: ignore[union-attr]

    def test_letterForOfflineIrcUser(self) -> None:
        """
        A letter sent while alice's gateway was offline is opened when it
        logs in, and shown to the IRC client that connects later.
        """
        alice = self.h.gateway_login()  # her prekeys go up
        alice.logout()
        self.h.pump()
        bob, bob_view = self.h.client("bob")
        assert bob.mailbox is not None
        bob.mailbox.send_letter("alice", "while you were away")
        self.h.pump()
        self.assertTrue(bob_view.of("letter_sent"))
        self.h.gateway_login()
        user = self.h.irc()
        [text] = user.of("privmsg", "bob")
        self.assertTrue(text.endswith("] while you were away"), text)
        self.assertTrue(text.startswith("[letter "), text)

    def test_letterWaitsForIrcClient(self) -> None:
        """
        A letter arriving while no IRC client is connected is not opened
        (nor a read receipt sent) until one connects; then it is shown.
        """
        alice = self.h.gateway_login()
        bob, bob_view = self.h.client("bob")
        bob.mailbox.send_letter("alice", "are you there?")  # type: ignore[union-attr]
        self.h.pump()
        self.assertEqual(alice.mailbox.listed, [])  # type: ignore[union-attr]
        self.assertEqual(bob_view.of("receipt"), [])
        user = self.h.irc()
        [text] = user.of("privmsg", "bob")
        self.assertTrue(text.endswith("] are you there?"), text)
        self.assertEqual(sorted(r[2] for r in bob_view.of("receipt")), [1, 2])

    def test_nextPageFetched(self) -> None:
        """
        When the relay lists only some of the new letters, the gateway opens
        those and asks for the rest; a page with nothing new to open ends it
        (a letter is opened once).
        """
        from securechat.client.letterview import LetterSummary
        calls: list[tuple[str, object]] = []

        class Box:
            def read(self, ref: str) -> None:
                calls.append(("read", ref))

            def list_letters(self, new_only: bool) -> None:
                calls.append(("list", new_only))
        alice = self.h.gateway_login()
        self.h.irc()
        alice.mailbox = Box()  # type: ignore[assignment]
        gateway = self.h.gateway
        page = (LetterSummary(1, "bob", b"\x01" * 16, 0, 10, 0),
                LetterSummary(2, "bob", b"\x02" * 16, 0, 10, 1))
        gateway.lists.append(True)
        gateway.letter_list(page, 5, "")
        self.assertEqual(calls, [("read", "01" * 16), ("list", True)])
        gateway.letter_list(page, 5, "")
        self.assertEqual(calls, [("read", "01" * 16), ("list", True)])

    def test_inboxListsWithoutOpening(self) -> None:
        """/msg securechat inbox lists the letters; nothing is opened again."""
        self.h.gateway_login()
        user = self.h.irc()
        bob, _ = self.h.client("bob")
        bob.mailbox.send_letter("alice", "one")  # type: ignore[union-attr]
        self.h.pump()
        user.msg("securechat", "inbox")
        self.h.pump()
        self.assertTrue(any(n.startswith("1. [") and "from bob" in n for n in user.notices()))
        self.assertEqual(len(user.of("privmsg", "bob")), 1)
