# -*- test-case-name: tests.test_irc_gateway -*-
"""
L{IrcGateway}: the gateway's L{securechat.client.view.ChatView}.  The
client core reports what happened; the gateway says it on IRC, and turns
the IRC client's messages into core calls.  It decides nothing about the
protocol: chats, pins, letters and their checks are the core's.

The mapping:

  - C{/msg bob text} (PRIVMSG bob): said in the chat with bob; with no chat
    yet, the line waits (at most L{MAX_WAITING} lines) while the gateway
    asks bob to chat (or accepts bob's own request), and goes once the chat
    is secured; bob offline: the waiting lines go as letters, with a NOTICE
    saying so; any other refusal drops them, with a NOTICE counting them.
  - a changed key for bob: a NOTICE from the service nick, and nothing is
    sent to or shown from bob (the core refuses the chat and bob's
    letters) until C{/msg securechat trust bob};
  - chat lines from bob: PRIVMSG from bob; a line starting C{/me } is a
    CTCP ACTION both ways; any other CTCP from a peer is dropped, never
    answered (a NOTICE says it was);
  - letters: opened as they arrive, shown as PRIVMSGs from the sender
    marked as letters with their time (L{securechat.client.irc.mail});
  - groups: channels (L{securechat.client.irc.channels});
  - chat requests, chat ends, trust and security events, and every answer
    to a command: NOTICEs from the C{securechat} service nick, which no
    peer can take (L{securechat.client.irc.text});
  - C{/whois bob}: bob's pinned fingerprint and pin state, and the chat;
  - C{/quit} (or the IRC client leaving): every chat is ended cleanly (an
    authenticated END each); the gateway stays connected to the relay for
    the next IRC connection.  When the gateway itself stops (SIGTERM,
    Ctrl-C), its chats end the same way before it closes the relay
    connection (L{IrcGateway.shutdown}).

One IRC client at a time: a second one is refused.  What happens while
none is connected (letters, notices) is kept, the last L{BACKLOG} lines,
and replayed to the next one after its MOTD.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed

from securechat.client.core import ChatClient
from securechat.client.irc.channels import IrcChannels
from securechat.client.irc.connection import IrcConnection
from securechat.client.irc.mail import IrcLetters, Line
from securechat.client.irc.service import ServiceCommands
from securechat.client.irc.text import (
    ACTION_PREFIX,
    PEER_HOST,
    SERVER_NAME,
    SERVICE,
    SERVICE_MASK,
    budget,
    ctcp,
    outgoing,
    lines,
    mask_of,
    nick_of,
    user_of,
)
from securechat.client.letterview import key_changed_words
from securechat.client.reasons import reason_name
from securechat.client.session import RelayConnection
from securechat.client.terminal import _DECLINED, _WITHDRAWN, ended_text, failure_template
from securechat.wire.e2e import MAX_TEXT
from securechat.wire.relay import Reason

#: Lines kept for the next IRC client while none is connected.
BACKLOG = 500
#: Lines that may wait for a chat with one peer to be secured.
MAX_WAITING = 50
#: How long a stopping gateway waits for its relay connection to close.
SHUTDOWN_WAIT = 3.0


def irc_words(template: str) -> str:
    """A line-mode hint (C{!accept bob}) in the gateway's words."""
    return template.replace("!letter {peer} TEXT", "/msg {peer} TEXT").replace(
        "!", f"/msg {SERVICE} ")


class IrcGateway(IrcChannels, IrcLetters):
    """
    The view of one user's gateway (see the module docstring), and the
    front end L{securechat.client.session.RelaySession} reports to.
    """

    def __init__(self, user: str, accept_pinned: bool = False,
                 log_line: Callable[[str], None] | None = None) -> None:
        self.user = user
        self.accept_pinned = accept_pinned
        self.log_line = log_line
        self.client: ChatClient | None = None
        self.irc: IrcConnection | None = None
        self.exiting = False
        self.was_logged_in = False
        self.input_ended = False
        self.backlog: deque[Line] = deque(maxlen=BACKLOG)
        self.dropped = 0
        #: Lines for peers with no secured chat yet, by peer.
        self.waiting: dict[str, list[str]] = {}
        #: One entry per letter list asked for, in order: True when the
        #: gateway asked (to open new letters), False for the user's.
        self.lists: deque[bool] = deque()
        self.fetching: set[bytes] = set()
        self.service = ServiceCommands(self)
        self.init_channels()

    # -- output ----------------------------------------------------------------------

    def _out(self, line: Line) -> None:
        irc = self.irc
        if irc is None or not irc.registered:
            if len(self.backlog) == self.backlog.maxlen:
                self.dropped += 1
            self.backlog.append(line)
            return
        source, command, text, action = line
        target = irc.nick
        room = budget(source, command, target, extra=len("\x01ACTION \x01") if action else 0)
        for piece in lines(text, room):
            if action:
                piece = f"\x01ACTION {piece}\x01"
            irc.sendLine(f":{source} {command} {target} :{piece}")

    def service_notice(self, text: str) -> None:
        """A NOTICE from the service nick."""
        self._out((SERVICE_MASK, "NOTICE", text, False))

    def say(self, text: str) -> None:
        """
        A status line (the session's "reconnecting", an unreachable relay):
        to the gateway's own output and as a service NOTICE.
        """
        if self.log_line is not None:
            self.log_line(text)
        self.service_notice(text)

    def login_abandoned(self) -> None:
        pass  # nothing was typed that waits for a login

    # -- the IRC client ---------------------------------------------------------------

    def attach(self, irc: IrcConnection) -> str | None:
        """An IRC client registers: None, or why it is refused."""
        if self.irc is not None and self.irc is not irc:
            return "another IRC client is using this gateway"
        self.irc = irc
        return None

    def registered(self, irc: IrcConnection) -> None:
        client = self.client
        if client is not None and client.logged_in:
            self.service_notice(f"connected to the relay as {self.user}; /msg {SERVICE} help "
                                "lists the commands")
        else:
            self.service_notice("not connected to the relay yet; chats and letters wait for it")
        if self.dropped:
            self.service_notice(f"({self.dropped} older lines from while no IRC client was "
                                "connected were dropped)")
            self.dropped = 0
        backlog, self.backlog = list(self.backlog), deque(maxlen=BACKLOG)
        for line in backlog:
            self._out(line)
        self.replay_channels()
        self.fetch_new()

    def quit(self, irc: IrcConnection) -> None:
        """C{/quit}: end every chat cleanly; the relay connection stays."""
        self.detach(irc)

    def detach(self, irc: IrcConnection) -> None:
        if self.irc is not irc:
            return
        self.irc = None
        self._drop_all_waiting("the IRC client left")
        client = self.client
        if client is not None and client.logged_in:
            for peer in list(client.chats):
                client.stop(peer)

    def shutdown(self, reactor: Any) -> Deferred[None] | None:
        """
        The gateway stops (SIGTERM, Ctrl-C): end every chat cleanly and
        close the relay connection, waiting (at most L{SHUTDOWN_WAIT}
        seconds) until its last bytes are written.
        """
        self.exiting = True
        client = self.client
        if client is None or not client.logged_in:
            return None
        protocol = client.protocol
        lost = protocol.when_lost() if isinstance(protocol, RelayConnection) else succeed(None)
        client.logout()
        lost.addTimeout(SHUTDOWN_WAIT, reactor)
        return lost.addErrback(lambda failure: None)

    def privmsg(self, irc: IrcConnection, target: str, text: str) -> None:
        """PRIVMSG from the IRC client."""
        if target.startswith(("#", "&")):
            self.channel_privmsg(irc, target, text)
            return
        if target.lower() == SERVICE:
            self.service.run(text)
            return
        peer = user_of(target)
        if peer is None:
            irc.numeric("401", target, text="No such nick: not a securechat user name")
            return
        text, refused = outgoing(text)
        if refused is not None:
            self.service_notice(f"CTCP {refused} not sent to {peer}: only text and /me travel")
            return
        self.send_to(peer, text)

    def send_to(self, peer: str, text: str) -> None:
        client = self.client
        if client is None or not client.logged_in:
            self.service_notice(f"not connected to the relay; your line to {peer} was not sent")
            return
        if peer == self.user:
            self.service_notice("you cannot chat with yourself")
            return
        if peer in client.changed_keys:
            self.service_notice(f"NOT sent: {peer}'s key changed; nothing goes to or comes from "
                                f"{peer} until you compare fingerprints and /msg {SERVICE} trust "
                                f"{peer}")
            return
        if len(text.encode("utf-8")) > MAX_TEXT:
            self.service_notice(f"line too long for {peer} (at most {MAX_TEXT} bytes); not sent")
            return
        if peer in client.chats:
            client.say(peer, text)
            return
        queue = self.waiting.setdefault(peer, [])
        if len(queue) >= MAX_WAITING:
            self.service_notice(f"{MAX_WAITING} lines already wait for the chat with {peer}; "
                                "this one was not sent")
            return
        queue.append(text)
        if peer in client.incoming:
            self.service_notice(f"accepting {peer}'s chat request; your line goes once the chat "
                                "is secured")
            client.accept(peer)
        elif len(queue) == 1 and peer not in client.asking and peer not in client.outgoing:
            client.request_chat(peer)

    def _drop_waiting(self, peer: str, why: str) -> None:
        waiting = self.waiting.pop(peer, [])
        if waiting:
            n = len(waiting)
            self.service_notice(f"{n} line{'s' if n != 1 else ''} to {peer} NOT sent: {why}")

    def _drop_all_waiting(self, why: str) -> None:
        for peer in list(self.waiting):
            self._drop_waiting(peer, why)

    def whois(self, irc: IrcConnection, nick: str) -> None:
        peer = user_of(nick)
        if nick.lower() == SERVICE:
            irc.numeric("311", SERVICE, SERVICE, SERVER_NAME, "*", text="the gateway's service")
            irc.numeric("320", SERVICE, text=f"/msg {SERVICE} help lists the commands")
        elif peer is None:
            irc.numeric("401", nick, text="No such nick: not a securechat user name")
        else:
            shown = nick_of(peer)
            irc.numeric("311", shown, shown, PEER_HOST, "*", text=f"securechat user {peer}")
            irc.numeric("312", shown, SERVER_NAME, text="end-to-end encrypted through the relay")
            for line in self._key_lines(peer):
                irc.numeric("320", shown, text=line)
        irc.numeric("318", nick, text="End of /WHOIS list.")

    def _key_lines(self, peer: str) -> list[str]:
        client = self.client
        if client is None:
            return ["not connected to the relay"]
        if peer == self.user:
            return [f"your key {client.fingerprint(None)}"]
        pinned = client.fingerprint(peer)
        changed = client.changed_keys.get(peer)
        out = []
        if changed is not None:
            from securechat.crypto import keys
            out.append(f"KEY CHANGED: pinned {pinned}, the relay now offers "
                       f"{keys.fingerprint(changed)}; nothing is sent to or shown from {peer} "
                       f"until /msg {SERVICE} trust {peer}")
        elif pinned is None:
            out.append("no key pinned yet (it is pinned at the first chat or letter)")
        else:
            out.append(f"key {pinned}, pinned (compare it with {peer} out of band)")
        chat = client.chats.get(peer)
        if chat is not None:
            out.append("in an end-to-end encrypted chat with you" if chat.secured
                       else "chat being secured")
        elif peer in client.incoming:
            out.append(f"asks you to chat: /msg {SERVICE} accept {peer}")
        elif peer in client.outgoing or peer in client.asking:
            out.append("you asked to chat; waiting for an answer")
        return out

    # -- ChatView: the relay connection -------------------------------------------------

    def logged_in(self, user: str) -> None:
        self.was_logged_in = True
        if self.log_line is not None:
            self.log_line(f"* logged in to the relay as {user}")
        if self.irc is not None:  # an IRC client registering later is told then
            self.service_notice(f"connected to the relay as {user}; /msg {SERVICE} help lists "
                                "the commands")
        if self.irc is not None and self.irc.registered:
            for group_id in self._mine():
                self.join_channel(group_id)

    def disconnected(self, reason: str | None) -> None:
        self.lists.clear()
        self.fetching.clear()
        self._drop_all_waiting("disconnected from the relay")
        text = f"disconnected from the relay: {reason}" if reason else "disconnected from the relay"
        if self.log_line is not None:
            self.log_line("! " + text)
        self.service_notice(text)

    def notice(self, text: str) -> None:
        self.service_notice(text)

    def online(self, users: tuple[str, ...], total: int) -> None:
        more = f" (and {total - len(users)} more)" if total > len(users) else ""
        self.service_notice(f"online: {', '.join(users)}{more}")

    def command_failed(self, command: str, subject: str, reason: Reason | int) -> None:
        if command == "letters" and self.lists:
            self.lists.popleft()
        template = irc_words(failure_template(self.client, command, subject, reason))
        line = template.format(peer=subject, command=command, why=reason_name(reason))
        if command in ("chat", "accept"):
            self._drop_waiting(subject, line)
        else:
            self.service_notice(line)

    # -- ChatView: chats ----------------------------------------------------------------

    def chat_requested(self, requester: str) -> None:
        client = self.client
        if (self.accept_pinned and client is not None and client.fingerprint(requester) is not None
                and requester not in client.changed_keys):
            self.service_notice(f"{requester} asks to chat; accepted at once (their key is pinned: "
                                f"{client.fingerprint(requester)})")
            client.accept(requester)
            return
        self.service_notice(f"{requester} wants to chat: /msg {SERVICE} accept {requester} (or "
                            f"/msg {SERVICE} refuse {requester}); replying to {requester} "
                            "accepts too")

    def request_pending(self, peer: str) -> None:
        self.service_notice(f"{peer} has been asked to chat; your lines go once they accept "
                            f"(/msg {SERVICE} cancel {peer} withdraws)")

    def chat_declined(self, peer: str, reason: Reason | int) -> None:
        client = self.client
        waiting = self.waiting.pop(peer, [])
        if reason is Reason.OFFLINE and waiting and client is not None and client.mailbox:
            n = len(waiting)
            what = "1 line goes as a letter" if n == 1 else f"{n} lines go as letters"
            self.service_notice(f"{peer} is not online: your {what}, for them to read later")
            for text in waiting:
                client.mailbox.send_letter(peer, text)
            return
        template = irc_words(_DECLINED.get(reason, "your chat request to {peer} ended: {why}"))
        self.service_notice(template.format(peer=peer, why=reason_name(reason)))
        if waiting:
            self.waiting[peer] = waiting
            self._drop_waiting(peer, "no chat")

    def request_withdrawn(self, requester: str, reason: Reason | int) -> None:
        template = _WITHDRAWN.get(reason, "the chat request from {peer} is gone: {why}")
        self.service_notice(template.format(peer=requester, why=reason_name(reason)))
        self._drop_waiting(requester, "no chat")

    def chat_opened(self, peer: str, fingerprint: str, first_use: bool) -> None:
        note = (f" (first chat: key pinned; compare it with {peer} out of band)" if first_use
                else " (the pinned key)")
        self.service_notice(f"securing the chat with {peer}, key {fingerprint}{note}")
        client = self.client
        for text in self.waiting.pop(peer, []):
            if client is not None:
                client.say(peer, text)  # the core holds it until the chat is secured

    def chat_secured(self, peer: str) -> None:
        self.service_notice(f"the chat with {peer} is end-to-end encrypted")

    def key_changed(self, peer: str, pinned: str, offered: str, letter: bool = False) -> None:
        refused, retry = key_changed_words(peer, letter)
        self.service_notice(
            f"WARNING: {peer}'s key CHANGED: pinned {pinned}, the relay now offers {offered}. "
            f"{refused} Nothing is sent to or shown from {peer} until you trust it: if {peer} "
            f"confirms the new fingerprint out of band, /msg {SERVICE} trust {peer}{retry}")
        self._drop_waiting(peer, f"{peer}'s key changed")

    def message(self, peer: str, sent_at: float, text: str) -> None:
        query = ctcp(text)
        if query is not None and query[0] != "ACTION":
            self.service_notice(f"{peer} sent a CTCP {query[0]}; dropped, not answered")
            return
        if query is not None:
            self._out((mask_of(peer), "PRIVMSG", query[1], True))
        elif text.startswith(ACTION_PREFIX):
            self._out((mask_of(peer), "PRIVMSG", text[len(ACTION_PREFIX):], True))
        else:
            self._out((mask_of(peer), "PRIVMSG", text, False))

    def chat_ended(self, peer: str, outcome: str) -> None:
        self._drop_waiting(peer, "the chat ended")
        self.service_notice(ended_text(peer, outcome))

    def security_error(self, peer: str, detail: str) -> None:
        self.service_notice(f"SECURITY: chat with {peer}: {detail}")
