"""
The IRC gateway's IRC side in memory (L{securechat.client.irc.connection}):
registration as IRC clients expect it, and every refusal, with Twisted's
own L{IRCClient} as the IRC client (L{tests.irc_harness}).
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.client.irc.text import (
    SERVICE,
    budget,
    lines,
    mask_of,
    nick_of,
    split,
    user_of,
)
from tests.irc_harness import GatewayHarness, IrcUser


class RegistrationTests(unittest.TestCase):
    """PASS, CAP, NICK and USER, 001-005 and the MOTD."""

    def setUp(self) -> None:
        self.h = GatewayHarness()
        self.h.gateway_login()

    def test_welcomeNumericsAndMotd(self) -> None:
        """
        A registered client gets 001 to 005 and the MOTD (375, 372, 376),
        addressed to the user's name, and the service nick's notice that
        the relay is connected.
        """
        user = self.h.irc()
        self.assertTrue(user.signed_on)
        for code in ("001", "002", "003", "004", "005", "375", "372", "376"):
            self.assertTrue(user.numerics(code), code)
            self.assertEqual(user.numerics(code)[0].split(" ")[2], "alice")
        self.assertIn("CASEMAPPING=ascii", user.numerics("005")[0])
        self.assertIn("connected to the relay as alice; /msg securechat help lists the commands",
                      user.notices())

    def test_capLs302(self) -> None:
        """
        CAP LS 302 is answered (no capabilities), and registration waits for
        CAP END, as irssi and WeeChat expect.
        """
        user = self.h.irc(IrcUser(login=False))
        for line in ("CAP LS 302", "PASS sesame", "NICK alice", "USER alice 0 * :Alice"):
            user.send_raw(line)
        self.h.pump()
        self.assertEqual([line for line in user.raw if " CAP " in line],
                         [":gateway.securechat CAP * LS :"])
        self.assertEqual(user.numerics("001"), [])
        user.send_raw("CAP REQ :sasl")
        user.send_raw("CAP END")
        self.h.pump()
        self.assertIn(":gateway.securechat CAP alice NAK :sasl", user.raw)
        self.assertEqual(len(user.numerics("001")), 1)

    def test_wrongPasswordRefused(self) -> None:
        """
        A wrong PASS is refused with 464 and ERROR, the connection closed,
        and the client is never attached to the gateway.
        """
        user = self.h.irc(IrcUser(password="guess"))
        self.assertEqual(len(user.numerics("464")), 1)
        self.assertIn("ERROR :Closing link: bad or missing password", user.raw)
        self.assertTrue(user.lost)
        self.assertIsNone(self.h.gateway.irc)
        self.assertEqual(user.numerics("001"), [])

    def test_nothingReadAfterRefusal(self) -> None:
        """
        After a refused password nothing more the client sent is handled: a
        second try in the same stream does not register.
        """
        attached: list[object] = []
        self.h.gateway.attach = attached.append  # type: ignore[assignment,method-assign]
        user = self.h.irc(IrcUser(login=False))
        user.transport.write(b"PASS guess\r\nNICK alice\r\nUSER a 0 * :a\r\n"
                             b"PASS sesame\r\nNICK alice\r\n")
        self.h.pump()
        self.assertEqual(len(user.numerics("464")), 1)
        self.assertEqual(attached, [])

    def test_missingPasswordRefused(self) -> None:
        """No PASS at all is refused the same way (464)."""
        user = self.h.irc(IrcUser(password=None))
        self.assertEqual(len(user.numerics("464")), 1)
        self.assertTrue(user.lost)
        self.assertIsNone(self.h.gateway.irc)

    def test_commandBeforeRegistrationRefused(self) -> None:
        """A PRIVMSG before registration is 451, and nothing is sent."""
        user = self.h.irc(IrcUser(login=False))
        user.send_raw("PRIVMSG bob :hello")
        self.h.pump()
        self.assertEqual(len(user.numerics("451")), 1)
        self.assertEqual(self.h.gateway.waiting, {})

    def test_nickSetToUserName(self) -> None:
        """
        A client registering with another nick is told (NICK) that its nick
        is the user's securechat name.
        """
        user = self.h.irc(IrcUser(nickname="ali"))
        self.assertIn(("nick", "alice"), user.events)
        self.assertEqual(user.nickname, "alice")

    def test_nickChangeRefused(self) -> None:
        """A NICK change after registration is refused politely (447)."""
        user = self.h.irc()
        user.setNick("mallory")
        self.h.pump()
        [refusal] = user.numerics("447")
        self.assertIn("mallory :Cannot change nickname: your nick is your securechat user name",
                      refusal)
        self.assertEqual(self.h.gateway.irc.nick, "alice")  # type: ignore[union-attr]

    def test_secondClientRefused(self) -> None:
        """One IRC client at a time: a second one is refused with ERROR."""
        self.h.irc()
        second = self.h.irc()
        self.assertIn("ERROR :Closing link: another IRC client is using this gateway", second.raw)
        self.assertTrue(second.lost)

    def test_reregistrationRefused(self) -> None:
        """PASS or USER after registration is 462."""
        user = self.h.irc()
        user.send_raw("USER x 0 * :x")
        self.h.pump()
        self.assertEqual(len(user.numerics("462")), 1)

    def test_pingAnswered(self) -> None:
        """PING gets PONG with its token."""
        user = self.h.irc()
        user.send_raw("PING :tok123")
        self.h.pump()
        self.assertIn(":gateway.securechat PONG gateway.securechat :tok123", user.raw)


class RefusalTests(unittest.TestCase):
    """What the gateway refuses, each with its numeric or notice."""

    def setUp(self) -> None:
        self.h = GatewayHarness()
        self.h.gateway_login()
        self.user = self.h.irc()

    def test_joinRefusedNoSuchGroup(self) -> None:
        """
        /join of a channel that is no group of the user's is refused with
        403 ERR_NOSUCHCHANNEL saying how a group is made (/join never
        makes one).
        """
        self.user.join("#team")
        self.h.pump()
        [line] = self.user.numerics("403")
        self.assertIn("#team :No such channel: you are in no group #team (/join never creates one: "
                      "/msg securechat group create team does", line)

    def test_privmsgToChannelRefused(self) -> None:
        """A PRIVMSG to a channel that is no group of the user's is 404, nothing sent."""
        self.user.msg("#team", "hello")
        self.h.pump()
        self.assertIn("#team :Cannot send to channel: you are not a member of a group #team",
                      self.user.numerics("404")[0])

    def test_unknownCommand(self) -> None:
        """An unknown command is 421."""
        self.user.send_raw("FROBNICATE x")
        self.h.pump()
        self.assertIn("FROBNICATE :Unknown command", self.user.numerics("421")[0])

    def test_noSuchNick(self) -> None:
        """A PRIVMSG to a nick that is no user name is 401, nothing sent."""
        self.user.msg("Bob[away]", "hello")
        self.h.pump()
        self.assertIn("Bob[away] :No such nick", self.user.numerics("401")[0])
        self.assertEqual(self.h.gateway.waiting, {})

    def test_messageToSelfRefused(self) -> None:
        """A message to oneself is refused by a notice."""
        self.user.msg("alice", "hello me")
        self.h.pump()
        self.assertIn("you cannot chat with yourself", self.user.notices())

    def test_notRelayConnected(self) -> None:
        """With the relay connection down, a line is refused at once, said."""
        self.h.gateway.client.logout()  # type: ignore[union-attr]
        self.h.pump()
        self.user.msg("bob", "hello")
        self.h.pump()
        self.assertIn("not connected to the relay; your line to bob was not sent",
                      self.user.notices())

    def test_noticeNotSent(self) -> None:
        """A NOTICE to a peer is not sent (a notice says so)."""
        self.user.notice("bob", "psst")
        self.h.pump()
        self.assertIn("NOTICE is not sent to anyone; /msg USER TEXT chats", self.user.notices())
        self.assertEqual(self.h.gateway.waiting, {})

    def test_overlongLineCloses(self) -> None:
        """An IRC line longer than 8192 bytes closes the connection with ERROR."""
        self.user.transport.write(b"PRIVMSG bob :" + b"x" * 9000 + b"\r\n")
        self.h.pump()
        self.assertIn("ERROR :line too long", self.user.raw)
        self.assertTrue(self.user.lost)

    def test_badUtf8Survives(self) -> None:
        """Bytes that are not UTF-8 are replaced, never fatal."""
        self.user.transport.write(b"PING :\xff\xfe\r\n")
        self.h.pump()
        self.assertIn(":gateway.securechat PONG gateway.securechat :\ufffd\ufffd", self.user.raw)
        self.assertFalse(self.user.lost)

    def test_characterSplitAcrossReads(self) -> None:
        """A character cut between two reads is decoded whole."""
        data = "PING :é\r\n".encode("utf-8")
        cut = data.index(b"\xc3") + 1
        self.h.gateway.irc.dataReceived(data[:cut])  # type: ignore[union-attr]
        self.h.gateway.irc.dataReceived(data[cut:])  # type: ignore[union-attr]
        self.h.pump()
        self.assertIn(":gateway.securechat PONG gateway.securechat :é", self.user.raw)

    def test_serviceUnknownCommand(self) -> None:
        """An unknown service command is answered, naming help."""
        self.user.msg("securechat", "frobnicate")
        self.h.pump()
        self.assertIn("unknown command 'frobnicate'; /msg securechat help lists the commands",
                      self.user.notices())

    def test_serviceHelp(self) -> None:
        """/msg securechat help lists the commands."""
        self.user.msg("SecureChat", "help")
        self.h.pump()
        self.assertTrue(any(n.startswith("trust USER") for n in self.user.notices()))


class TextTests(unittest.TestCase):
    """Peer text and names on their way into IRC (securechat.client.irc.text)."""

    def test_serviceNickNoPeerCanTake(self) -> None:
        """
        The user called securechat appears as securechat|user, so no peer
        ever sends as the service nick; the service nick names no user.
        """
        self.assertEqual(nick_of("securechat"), "securechat|user")
        self.assertEqual(user_of("SecureChat"), None)
        self.assertEqual(user_of("securechat|user"), "securechat")
        self.assertEqual(user_of("Bob"), "bob")
        self.assertTrue(mask_of("securechat").startswith("securechat|user!"))
        self.assertNotEqual(nick_of("securechat"), SERVICE)

    def test_badNameNeverShownRaw(self) -> None:
        """A name breaking the rule never becomes a nick as it is."""
        self.assertEqual(nick_of("x\r\nQUIT"), "securechat|bad-name")

    def test_controlsEscaped(self) -> None:
        """
        CR, LF and NUL split or escape, CTCP and colour codes are escaped:
        nothing raw reaches the IRC stream.
        """
        self.assertEqual(lines("a\r\nb\x00c\x01VERSION\x01\x03", 400),
                         ["a", "b\\x00c\\x01VERSION\\x01\\x03"])

    def test_splitAtCharacters(self) -> None:
        """Long text splits into pieces of at most the budget, never inside a character."""
        text = "é" * 300
        pieces = split(text, 101)
        self.assertEqual("".join(pieces), text)
        self.assertTrue(all(len(p.encode("utf-8")) <= 101 for p in pieces))

    def test_budget(self) -> None:
        """The budget leaves room for the prefix, command, target and CRLF."""
        self.assertEqual(budget("a!b@c", "PRIVMSG", "x"), 512 - 2 - len(":a!b@c PRIVMSG x :"))
