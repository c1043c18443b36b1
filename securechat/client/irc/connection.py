# -*- test-case-name: tests.test_irc_gateway -*-
"""
The IRC side of the gateway: one IRC client's connection, on
L{twisted.words.protocols.irc.IRC}.

Registration as IRC clients expect it: C{CAP LS 302} is answered (no
capabilities are offered) and registration waits for C{CAP END}; C{PASS}
must match the gateway's password (read from a file) or the connection is
refused with 464 before anything else happens; then 001-005 and the MOTD.
The nick is the user's securechat name: a different nick at registration
is changed to it (a NICK line), and a later NICK change is refused (447).

Each IRC command maps to one call on the L{IrcGateway}
(L{securechat.client.irc.gateway}); commands IRC clients send on their own
(PING, MODE, WHO, USERHOST, ISON, AWAY) get the short answers they wait
for; channels are the user's groups (L{securechat.client.irc.channels});
anything else is 421.  Every line written goes through L{IrcConnection.emit}, which
neutralises and splits its text (L{securechat.client.irc.text}).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger
from twisted.words.protocols import irc

from securechat import __version__
from securechat.client.display import untrusted
from securechat.client.irc.text import SERVER_NAME, SERVICE, budget, lines, token

if TYPE_CHECKING:
    from securechat.client.irc.gateway import IrcGateway

#: The longest line read from the IRC client (IRCv3 tags included).
MAX_IN_LINE = 8192
#: Commands an unregistered client may send.
_BEFORE_REGISTRATION = frozenset({"PASS", "NICK", "USER", "CAP", "PING", "PONG", "QUIT"})
#: The answers to a channel's list queries (MODE #c b/e/I): all empty.
_LIST_ENDS = {"b": ("368", "ban"), "e": ("349", "exception"), "I": ("347", "invite")}

MOTD = (
    "This is your securechat gateway: it runs on your machine, and every chat",
    "and letter is end-to-end encrypted here before it goes to the relay.",
    "/msg USER TEXT      chat with USER (their request is accepted the same way)",
    f"/msg {SERVICE} help  all the other commands",
    "/whois USER         USER's key fingerprint and whether it is pinned",
    "#GROUP              each group you are in is a channel, joined for you",
)


class IrcConnection(irc.IRC):
    """
    One IRC client of the gateway.

    @ivar nick: the nick the client uses (the user's name once registered).
    """

    log = Logger()
    hostname = SERVER_NAME  # type: ignore[assignment]

    def __init__(self, gateway: IrcGateway, password: bytes) -> None:
        self.gateway = gateway
        self.password = password
        self.given_password: bytes | None = None
        self.nick = "*"
        self.nick_given = False
        self.user_given = False
        self.negotiating = False
        self.registered = False
        self.quitting = False
        self._in = b""
        self._commands: dict[str, Callable[[list[str]], None]] = {
            "PASS": self.irc_PASS, "CAP": self.irc_CAP, "NICK": self.irc_NICK,
            "USER": self.irc_USER, "PING": self.irc_PING, "PONG": lambda params: None,
            "QUIT": self.irc_QUIT, "PRIVMSG": self.irc_PRIVMSG, "NOTICE": self.irc_NOTICE,
            "WHOIS": self.irc_WHOIS, "JOIN": self.irc_JOIN, "PART": self.irc_PART,
            "TOPIC": self.irc_TOPIC, "NAMES": self.irc_NAMES, "LIST": self.irc_LIST,
            "MODE": self.irc_MODE, "WHO": self.irc_WHO, "USERHOST": self.irc_USERHOST,
            "ISON": self.irc_ISON, "AWAY": self.irc_AWAY,
        }

    # -- output ------------------------------------------------------------------

    def emit(self, prefix: str, command: str, params: tuple[str, ...], text: str | None) -> None:
        """
        Send C{:prefix COMMAND params... :text}: every middle parameter made
        a safe token, the text neutralised and split over several messages
        when it is long (L{securechat.client.irc.text.lines}).
        """
        middle = " ".join(token(p) for p in params)
        if text is None:
            self.sendLine(f":{prefix} {command} {middle}")
            return
        room = budget(prefix, command, middle)
        for piece in lines(text, room):
            self.sendLine(f":{prefix} {command} {middle} :{piece}")

    def numeric(self, code: str, *params: str, text: str | None = None) -> None:
        self.emit(SERVER_NAME, code, (self.nick,) + params, text)

    def error(self, text: str) -> None:
        """ERROR and close: the connection is refused, nothing more is read."""
        self.quitting = True
        self.sendLine(f"ERROR :{untrusted(text)}")
        if self.transport is not None:
            self.transport.loseConnection()

    # -- input -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # Bytes are split into lines before decoding (a character may be cut
        # between two reads), and bad UTF-8 is replaced, never fatal.
        self._in += data
        while b"\n" in self._in:
            raw, self._in = self._in.split(b"\n", 1)
            if len(raw) > MAX_IN_LINE:
                self.error("line too long")
                return
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if line.startswith("@"):  # IRCv3 tags (none were offered): ignored
                line = line.partition(" ")[2]
            if not line.strip():
                continue
            try:
                prefix, command, params = irc.parsemsg(line)
            except (ValueError, IndexError):
                continue  # not an IRC message; nothing to answer
            self.handleCommand(command.upper(), prefix, params)
            if self.quitting:
                return
        if len(self._in) > MAX_IN_LINE:
            self.error("line too long")

    def handleCommand(self, command: str, prefix: str, params: list[str]) -> None:
        handler = self._commands.get(command)
        if not self.registered and command not in _BEFORE_REGISTRATION:
            self.numeric("451", text="You have not registered")
            return
        if handler is None:
            self.numeric("421", command, text="Unknown command")
            return
        try:
            handler(params)
        except Exception:
            self.log.failure("the IRC command {command} failed", command=command)
            self.gateway.service_notice(f"the gateway failed on {command}; see its log")

    def connectionLost(self, reason: object = None) -> None:
        if self.registered:
            self.gateway.detach(self)

    # -- registration ------------------------------------------------------------

    def irc_PASS(self, params: list[str]) -> None:
        if self.registered:
            self.numeric("462", text="You may not reregister")
        elif not params:
            self.numeric("461", "PASS", text="Not enough parameters")
        else:
            self.given_password = params[0].encode("utf-8")

    def irc_CAP(self, params: list[str]) -> None:
        sub = params[0].upper() if params else ""
        if sub == "LS":
            if not self.registered:
                self.negotiating = True
            self.emit(SERVER_NAME, "CAP", (self.nick, "LS"), "")
        elif sub == "LIST":
            self.emit(SERVER_NAME, "CAP", (self.nick, "LIST"), "")
        elif sub == "REQ":
            self.emit(SERVER_NAME, "CAP", (self.nick, "NAK"), params[1] if len(params) > 1 else "")
        elif sub == "END":
            self.negotiating = False
            self._register()
        else:
            self.numeric("410", sub or "*", text="Invalid CAP command")

    def irc_NICK(self, params: list[str]) -> None:
        if not params:
            self.numeric("431", text="No nickname given")
            return
        if not self.registered:
            self.nick = token(params[0])
            self.nick_given = True
            self._register()
        elif params[0].lower() != self.nick.lower():
            self.numeric("447", token(params[0]), text=(
                "Cannot change nickname: your nick is your securechat user name"))

    def irc_USER(self, params: list[str]) -> None:
        if self.registered:
            self.numeric("462", text="You may not reregister")
        elif len(params) < 4:
            self.numeric("461", "USER", text="Not enough parameters")
        else:
            self.user_given = True
            self._register()

    def _register(self) -> None:
        if self.registered or self.negotiating or not (self.nick_given and self.user_given):
            return
        given = self.given_password
        if given is None or not hmac.compare_digest(given, self.password):
            self.numeric("464", text="Password incorrect: PASS must be the gateway's password "
                                     "(from its --irc-password-file)")
            self.error("Closing link: bad or missing password")
            return
        refusal = self.gateway.attach(self)
        if refusal is not None:
            self.error(f"Closing link: {refusal}")
            return
        self.registered = True
        self._welcome()
        user = self.gateway.user
        if self.nick != user:
            # After the welcome, which named the client by the nick it
            # chose, as bouncers do: every client follows a NICK then.
            self.sendLine(f":{self.nick}!{self.nick}@{SERVER_NAME} NICK :{user}")
            self.nick = user
        self.gateway.registered(self)

    def _welcome(self) -> None:
        self.numeric("001", text=f"Welcome to the securechat gateway, {self.nick}")
        self.numeric("002", text=f"Your host is {SERVER_NAME}, running securechat {__version__}")
        self.numeric("003", text="This gateway encrypts end to end on your machine")
        self.numeric("004", SERVER_NAME, f"securechat-{__version__}", "i", "n", text=None)
        self.numeric("005", "CASEMAPPING=ascii", "CHANTYPES=#", "NICKLEN=32", "NETWORK=securechat",
                     text="are supported by this server")
        self.numeric("375", text=f"- {SERVER_NAME} Message of the day -")
        for line in MOTD:
            self.numeric("372", text=f"- {line}")
        self.numeric("376", text="End of /MOTD command.")

    def irc_PING(self, params: list[str]) -> None:
        self.emit(SERVER_NAME, "PONG", (SERVER_NAME,), params[0] if params else "")

    def irc_QUIT(self, params: list[str]) -> None:
        self.quitting = True
        if self.registered:
            self.gateway.quit(self)
            self.registered = False
        self.error("Closing link: chats ended")

    # -- messages ----------------------------------------------------------------

    def irc_PRIVMSG(self, params: list[str]) -> None:
        if len(params) < 2 or not params[1]:
            self.numeric("412" if len(params) == 1 else "411", text="No text to send")
            return
        for target in params[0].split(","):
            self.gateway.privmsg(self, target, params[1])

    def irc_NOTICE(self, params: list[str]) -> None:
        # Nothing goes to a peer as a NOTICE (IRC clients send them for
        # CTCP replies, and this gateway never passes a CTCP query on).
        if len(params) >= 2 and not params[1].startswith("\x01"):
            self.gateway.service_notice("NOTICE is not sent to anyone; /msg USER TEXT chats")

    def irc_WHOIS(self, params: list[str]) -> None:
        if not params:
            self.numeric("431", text="No nickname given")
            return
        for nick in params[-1].split(","):
            self.gateway.whois(self, nick)

    # -- channels: the user's groups ---------------------------------------------

    def irc_JOIN(self, params: list[str]) -> None:
        if not params:
            self.numeric("461", "JOIN", text="Not enough parameters")
        elif params[0] == "0":
            for channel in [self.gateway.channel_of(g) for g in sorted(self.gateway.open)]:
                self.gateway.part(self, channel)
        else:
            for channel in params[0].split(","):
                self.gateway.join(self, channel)

    def irc_PART(self, params: list[str]) -> None:
        if not params:
            self.numeric("461", "PART", text="Not enough parameters")
        for channel in (params[0].split(",") if params else []):
            self.gateway.part(self, channel)

    def irc_TOPIC(self, params: list[str]) -> None:
        if not params:
            self.numeric("461", "TOPIC", text="Not enough parameters")
        else:
            self.gateway.channel_topic(self, params[0], setting=len(params) > 1)

    def irc_NAMES(self, params: list[str]) -> None:
        if not params:
            self.numeric("366", "*", text="End of /NAMES list.")
        for channel in (params[0].split(",") if params else []):
            self.gateway.names(self, channel)

    def irc_LIST(self, params: list[str]) -> None:
        self.gateway.list_channels(self)

    # -- what IRC clients ask on their own -----------------------------------------

    def irc_MODE(self, params: list[str]) -> None:
        if params and params[0].startswith(("#", "&")):
            if self.gateway.group_of(params[0]) is None:
                self.numeric("403", params[0], text="No such channel: no group of yours")
            elif len(params) == 1:
                self.numeric("324", params[0], "+nt", text=None)
            elif len(params) == 2 and params[1].lstrip("+") in _LIST_ENDS:
                # irssi asks for the ban list on join: there is none.
                code, what = _LIST_ENDS[params[1].lstrip("+")]
                self.numeric(code, params[0], text=f"End of channel {what} list")
            else:
                self.numeric("482", params[0], text="Modes show the group's roles; change them "
                             "with /msg securechat group role")
        elif params and params[0].lower() == self.nick.lower():
            self.numeric("221", "+", text=None)
        elif params:
            self.numeric("502", text="Cannot change mode for other users")

    def irc_WHO(self, params: list[str]) -> None:
        self.numeric("315", params[0] if params else "*", text="End of /WHO list.")

    def irc_USERHOST(self, params: list[str]) -> None:
        me = f"{self.nick}=+{self.nick}@{SERVER_NAME}"
        found = [me for nick in params if nick.lower() == self.nick.lower()]
        self.numeric("302", text=" ".join(found))

    def irc_ISON(self, params: list[str]) -> None:
        self.numeric("303", text=SERVICE if any(p.lower() == SERVICE for p in params) else "")

    def irc_AWAY(self, params: list[str]) -> None:
        if params and params[0]:
            self.numeric("306", text="You have been marked as being away")
        else:
            self.numeric("305", text="You are no longer marked as being away")
