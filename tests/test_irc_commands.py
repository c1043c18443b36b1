"""
The IRC gateway's smaller answers in memory: the service nick's commands,
the commands IRC clients send on their own, and the remaining refusals
(L{securechat.client.irc.service}, L{securechat.client.irc.connection}).
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.client.irc.gateway import BACKLOG, MAX_WAITING
from securechat.crypto import keys
from securechat.wire.e2e import MAX_TEXT
from tests.irc_harness import GatewayHarness
from tests.relay_harness import user_key


class ServiceCommandTests(unittest.TestCase):
    """/msg securechat COMMAND, each a core call answered by notices."""

    def setUp(self) -> None:
        self.h = GatewayHarness()
        self.alice = self.h.gateway_login()
        self.user = self.h.irc()
        self.bob, self.bob_view = self.h.client("bob")

    def ask(self, line: str) -> list[str]:
        before = len(self.user.notices())
        self.user.msg("securechat", line)
        self.h.pump()
        return self.user.notices()[before:]

    def chat(self) -> None:
        self.user.msg("bob", "hi")
        self.h.pump()
        self.bob.accept("alice")
        self.h.pump()

    def test_stop(self) -> None:
        """stop USER ends the chat with an authenticated END."""
        self.chat()
        self.ask("stop bob")
        self.assertEqual(self.bob_view.of("chat_ended"),
                         [("alice", "ended by alice (1 messages received)")])

    def test_cancel(self) -> None:
        """cancel USER withdraws the request; the relay's answer is shown."""
        self.user.msg("bob", "hi")
        self.h.pump()
        notices = self.ask("cancel bob")
        self.assertIn("you withdrew your chat request to bob", notices)
        self.assertIn("1 line to bob NOT sent: no chat", notices)

    def test_usageWithoutUser(self) -> None:
        """A command that needs a user says so; a bad name is refused, named."""
        self.assertEqual(self.ask("accept"), ["usage: /msg securechat accept USER"])
        self.assertIn("bad user name 'b@d'", self.ask("trust b@d")[0])

    def test_acceptWithoutRequest(self) -> None:
        """accept USER without a request from USER says so."""
        self.assertEqual(self.ask("accept bob"), ["there is no chat request from bob"])

    def test_trustWithoutChangedKey(self) -> None:
        """trust USER with no changed key says so."""
        self.assertEqual(self.ask("trust bob"), ["no changed key to trust for bob"])

    def test_fingerprintAndWhois(self) -> None:
        """fingerprint shows our key; whois USER the pin state, as /whois."""
        fp = keys.fingerprint(user_key("alice").public_key())
        self.assertEqual(self.ask("fingerprint"), [f"your key: {fp}"])
        self.assertEqual(self.ask("whois bob"),
                         ["bob: no key pinned yet (it is pinned at the first chat or letter)"])

    def test_letterCommand(self) -> None:
        """letter USER TEXT sends a letter; without text, the usage."""
        self.assertEqual(self.ask("letter bob"), ["usage: /msg securechat letter USER TEXT"])
        notices = self.ask("letter bob see you at eight")
        self.assertTrue(any(n.startswith("letter ") and "to bob stored by the relay" in n
                            for n in notices), notices)

    def test_usersAndReceipts(self) -> None:
        """users lists everyone; receipts on|off sets the read receipts."""
        self.assertIn("users: alice (online), bob (online)", self.ask("users")[0])
        self.assertEqual(self.ask("receipts maybe"), ["usage: /msg securechat receipts on|off"])
        self.assertEqual(self.ask("receipts off"),
                         ["read receipts are off (delivery receipts are still sent)"])

    def test_readDeleteSent(self) -> None:
        """read and delete take a letter from the last list; sent shows ours."""
        self.assertEqual(self.ask("read"), ["usage: /msg securechat read N|ID (a number or id "
                                            "from inbox)"])
        self.assertEqual(self.ask("delete 3"), ["no letter 3 in the last list (/letters all "
                                                "lists them)"])
        self.assertEqual(self.ask("sent"), ["no letters sent (or all expired)"])
        self.assertEqual(self.ask("inbox sideways"), ["usage: /msg securechat inbox [new|all]"])

    def test_whenDisconnected(self) -> None:
        """Commands that need the relay say it is not connected."""
        self.alice.logout()
        self.h.pump()
        self.assertEqual(self.ask("online"), ["not connected to the relay; try again once it is"])
        self.assertEqual(self.ask("status"), ["not connected to the relay"])


class IrcCommandTests(unittest.TestCase):
    """What IRC clients send on their own, and the remaining refusals."""

    def setUp(self) -> None:
        self.h = GatewayHarness()
        self.alice = self.h.gateway_login()
        self.user = self.h.irc()

    def send(self, line: str) -> list[str]:
        before = len(self.user.raw)
        self.user.send_raw(line)
        self.h.pump()
        return self.user.raw[before:]

    def test_clientQueriesAnswered(self) -> None:
        """MODE, WHO, USERHOST, ISON, AWAY, NAMES and LIST get their short answers."""
        for line, code in (("MODE alice +i", " 221 "), ("WHO bob", " 315 "),
                           ("USERHOST alice", " 302 "), ("ISON securechat bob", " 303 "),
                           ("AWAY :lunch", " 306 "), ("AWAY", " 305 "), ("NAMES", " 366 "),
                           ("LIST", " 323 ")):
            [answer] = self.send(line)
            self.assertIn(code, answer, line)
        self.assertEqual(self.send("ISON securechat bob"),
                         [":gateway.securechat 303 alice :securechat"])

    def test_channelCommandsRefused(self) -> None:
        """
        For a channel that is no group of the user's: PART is 442, TOPIC and
        MODE are 403; JOIN 0 (no channel open) answers nothing.
        """
        [answer] = self.send("PART #team")
        self.assertIn(" 442 alice #team :You're not on that channel", answer)
        for line in ("TOPIC #team", "MODE #team"):
            [answer] = self.send(line)
            self.assertIn(" 403 alice #team :No such channel: no group of yours", answer)
        self.assertEqual(self.send("JOIN 0"), [])

    def test_missingParameters(self) -> None:
        """PRIVMSG without text or target, WHOIS and NICK without a nick are refused."""
        self.assertIn(" 412 ", self.send("PRIVMSG bob")[0])
        self.assertIn(" 411 ", self.send("PRIVMSG")[0])
        self.assertIn(" 431 ", self.send("WHOIS")[0])
        self.assertIn(" 431 ", self.send("NICK")[0])
        self.assertEqual(self.send("NICK Alice"), [])  # the same nick: nothing to refuse

    def test_capCommands(self) -> None:
        """CAP LIST is empty; an unknown CAP subcommand is 410."""
        self.assertEqual(self.send("CAP LIST"), [":gateway.securechat CAP alice LIST :"])
        self.assertIn(" 410 alice FOO :Invalid CAP command", self.send("CAP FOO")[0])

    def test_whoisService(self) -> None:
        """/whois securechat describes the service nick."""
        self.user.whois("securechat")
        self.h.pump()
        self.assertIn("securechat :/msg securechat help lists the commands",
                      self.user.numerics("320")[0])

    def test_tooLongForAChat(self) -> None:
        """A line longer than a chat line may be is refused before anything is sent."""
        self.alice.view.send_to("bob", "x" * (MAX_TEXT + 1))  # type: ignore[attr-defined]
        self.h.pump()
        self.assertIn(f"line too long for bob (at most {MAX_TEXT} bytes); not sent",
                      self.user.notices())
        self.assertEqual(self.h.gateway.waiting, {})

    def test_waitingLinesBounded(self) -> None:
        """At most MAX_WAITING lines wait for a chat; the next is refused, said."""
        for n in range(MAX_WAITING + 1):
            self.user.msg("bob", f"line {n}")
        self.h.pump()
        self.assertIn(f"{MAX_WAITING} lines already wait for the chat with bob; this one was "
                      "not sent", self.user.notices())

    def test_backlogBounded(self) -> None:
        """
        Without an IRC client at most BACKLOG lines are kept; the next
        client is told how many older ones were dropped.
        """
        self.user.quit("bye")
        self.h.pump()
        for n in range(BACKLOG + 7):
            self.h.gateway.service_notice(f"n{n}")
        user = self.h.irc()
        self.assertIn("(7 older lines from while no IRC client was connected were dropped)",
                      user.notices())
        self.assertEqual(user.notices()[-1], f"n{BACKLOG + 6}")
