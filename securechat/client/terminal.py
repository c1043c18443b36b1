# -*- test-case-name: tests.test_terminal -*-
"""
The terminal front end: reads command lines, shows what happens, one line
each.  It works the same on a terminal and with piped standard input, so it
can be scripted.

Commands::

    !help                 this list
    !online               who is online
    !chat USER            ask USER to chat
    !accept [USER]        accept a request (the only pending one if no USER)
    !refuse [USER]        refuse a request
    !cancel USER          withdraw your request to USER
    !stop [USER]          end the chat (the current one if no USER)
    !fingerprint [USER]   your key's fingerprint, or the one pinned for USER
    !trust USER           accept USER's changed key (after comparing fingerprints)
    !letter USER TEXT     send USER a letter (end-to-end encrypted and signed; USER may be offline)
    !letters [new|all] [PAGE]
                          list your letters (new: never fetched), 50 a page, newest first
                          (page 1); the last line names the next page (more: /letters all 2)
    !read N|ID            read letter N of the last list (or by the start of its id)
    !delete N|ID          delete a letter from your mailbox
    !sent [PAGE]          the letters you sent: stored, delivered, read, receipts verified
                          (50 a page, newest first)
    !users                all registered users, online or not (every one, however many)
    !receipts on|off      send read receipts or not (delivery receipts are always sent)
GROUPS
    !exit                 end all chats and quit
    TEXT                  send TEXT to the current chat
    USER: TEXT            send TEXT to your chat with USER
    /COMMAND              the same as !COMMAND (/quit is !exit); //TEXT sends /TEXT
"""

from __future__ import annotations

import time
from typing import Callable

from twisted.protocols.basic import LineReceiver

from securechat.client import groupcommands
from securechat.client.core import ChatClient
from securechat.client.letters import Mailbox
from securechat.client.listpages import page_arguments
from securechat.client.display import untrusted
from securechat.client.groupview import GroupLines
from securechat.client.letterview import LetterLines, key_changed_words
from securechat.client.reasons import reason_name
from securechat.wire.names import BadUserName, check_user_name
from securechat.wire.relay import Reason

HELP = (__doc__ or "").split("Commands::", 1)[1].strip("\n").replace("GROUPS", groupcommands.HELP)

_DECLINED: dict[int, str] = {
    Reason.REFUSED: "{peer} refused your chat request",
    Reason.OFFLINE: "{peer} is not online; !letter {peer} TEXT sends them a letter to read later",
    Reason.UNKNOWN_USER: "there is no user {peer}",
    Reason.BUSY: "{peer} is busy in other chats",
    Reason.TIMEOUT: "{peer} did not answer your chat request",
    Reason.TOO_MANY_PENDING: "{peer} has too many chat requests waiting; try again later",
    Reason.GONE: "{peer} went offline before answering",
    Reason.REPLACED: "{peer} logged in elsewhere before answering; ask again",
    Reason.REVOKED: "{peer}'s access was revoked",
    Reason.CANCELLED: "you withdrew your chat request to {peer}",
}
_WITHDRAWN: dict[int, str] = {
    Reason.CANCELLED: "{peer} withdrew the chat request",
    Reason.TIMEOUT: "the chat request from {peer} expired",
    Reason.GONE: "{peer} went offline; the chat request is gone",
    Reason.REPLACED: "{peer} logged in elsewhere; the chat request is gone",
    Reason.REVOKED: "{peer}'s access was revoked; the chat request is gone",
}
#: COMMAND_FAILED by (command, reason), then by reason alone.
_FAILED: dict[tuple[str, Reason | int] | Reason | int, str] = {
    ("chat", Reason.SELF): "you cannot chat with yourself",
    ("chat", Reason.TOO_MANY_PENDING): "you have too many chat requests waiting for an answer; "
                                       "!cancel one, or wait",
    ("chat", Reason.BUSY): "you have as many chats as allowed; !stop one first",
    ("accept", Reason.BUSY): "cannot accept {peer}: you or {peer} already have as many chats "
                             "as allowed",
    ("cancel", Reason.NO_REQUEST): "you have no chat request to {peer}",
    Reason.ALREADY: "you already have a chat or request with {peer}",
    Reason.NO_REQUEST: "there is no chat request from {peer}",
    Reason.NO_CHAT: "there is no chat with {peer}",
}


class ChatTerminal(LetterLines, GroupLines, LineReceiver):
    """
    The terminal: a L{ChatView} for the core, and a line protocol for
    standard input.

    @ivar client: the L{ChatClient} of the current relay connection (it is
        replaced when the client reconnects).
    """

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024

    def __init__(self, write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 on_exit: Callable[[], None] | None = None) -> None:
        self._write = write
        self.clock = clock
        self.on_exit = on_exit
        self.client: ChatClient | None = None
        self.current: str | None = None
        #: The last line refused for want of a chat, by user: !letter USER
        #: without text sends it as a letter.
        self.offer: dict[str, str] = {}
        self._pending: list[str] = []
        self.exiting = False
        #: Logged in at least once: lines typed while disconnected after
        #: that are refused at once, not kept for later.
        self.was_logged_in = False
        #: Standard input ended (a script): the client leaves once the relay
        #: has answered what was read, after the first login if that has
        #: not happened yet.
        self.input_ended = False

    # -- output -------------------------------------------------------------

    def say(self, text: str) -> None:
        """
        Show C{text} as one line.  This is the terminal's only way to the
        screen, and it passes the whole line through L{untrusted}: names,
        chat lines, reasons and notices that a peer or the relay chose
        cannot bypass it, whichever view method built the line.
        """
        line = untrusted(text) + "\n"
        if self._write is not None:
            self._write(line)
        elif self.transport is not None:
            self.transport.write(line.encode("utf-8", "replace"))

    def _stamp(self, at: float | None = None) -> str:
        return time.strftime("%H:%M", time.localtime(self.clock() if at is None else at))

    # -- input --------------------------------------------------------------

    def lineReceived(self, raw: bytes) -> None:
        line = slash_command(raw.decode("utf-8", "replace").rstrip("\r"))
        if not line.strip():
            return
        if self.client is None or not self.client.logged_in:
            word = line.strip().lower()
            if word in ("!exit", "!quit"):
                self.exit()
            elif word == "!help":
                self.cmd_help()
            elif self.was_logged_in:
                self._refuse_offline(line)
            else:
                self._pending.append(line)
            return
        self.handle(line)

    def _refuse_offline(self, line: str) -> None:
        # One line per line typed, quoting it, now: nothing is replayed
        # later into chats that have ended since.
        if line.startswith("!"):
            self.say(f"! not connected to the relay; {line.split()[0]} not run")
        else:
            self.say(f"! not connected to the relay; not sent: {line}")

    def lineLengthExceeded(self, line: bytes) -> None:
        self.say("! line too long, ignored")

    def connectionLost(self, reason: object = None) -> None:
        # Standard input closed (end of a script, or ^D): leave cleanly once
        # the relay has answered what was typed; a script piped in before
        # the login first runs after it.
        self.input_ended = True
        if self.client is not None and self.client.logged_in:
            self.client.when_answered(self.exit)
        elif self.was_logged_in:
            self.exit()  # disconnected: nothing is waiting for an answer

    def login_abandoned(self) -> None:
        """
        The client gives up before its first login (the relay is
        unreachable or refused us, or the connection ended after standard
        input did): say how many lines read were not run.
        """
        if self._pending:
            self.say(f"! never logged in; {len(self._pending)} lines not run")
            self._pending = []

    def handle(self, line: str) -> None:
        client = self.client
        assert client is not None
        if line.startswith("//"):
            line = line[1:]  # text starting with /, sent as it is
        elif line.startswith("!"):
            word, _, rest = line[1:].partition(" ")
            args = rest.split()
            command = getattr(self, "cmd_" + word.lower(), None)
            if command is None:
                self.say(f"! unknown command !{word}; !help lists the commands")
                return
            if word.lower() in ("group", "groups", "members", "g"):
                groupcommands.run(client.groups, word.lower(), rest, self.say)
                return
            if word.lower() == "letter":
                self.cmd_letter(*rest.lstrip().partition(" ")[::2])
                return
            if word.lower() in ("letters", "sent"):
                command(*args)
                return
            command(*args[:1]) if args else command()
            return
        peer, sep, text = line.partition(": ")
        if sep and _is_name(peer) and peer in client.chats:
            client.say(peer, text)
            self.current = peer
            return
        if sep and _is_name(peer):
            # Addressed to someone we have no chat with: never sent to the
            # current chat instead (to write "word: ..." to the current
            # chat, address it: "bob: word: ...").
            if client.mailbox is not None:
                self.offer[peer] = text
                self.say(f"! no chat with {peer}; not sent. !letter {peer} sends it as a letter "
                         f"(they may be offline), !chat {peer} asks to chat")
            else:
                self.say(f"! no chat with {peer}; not sent. !chat {peer} asks to chat")
            return
        if self.current is None or self.current not in client.chats:
            self.say("! no current chat: use !chat USER, or USER: TEXT")
            return
        client.say(self.current, line)

    def _need(self, user: str | None, what: str) -> str | None:
        if user is None:
            self.say(f"! usage: !{what} USER")
            return None
        if not _is_name(user):
            self.say(f"! {user!r} is not a user name")
            return None
        return user

    def _only(self, choices: set[str], what: str) -> str | None:
        if len(choices) == 1:
            return next(iter(choices))
        self.say(f"! say which: !{what} USER" if choices else f"! nothing to {what}")
        return None

    def cmd_help(self, *args: str) -> None:
        for line in HELP.splitlines():
            self.say(line)

    def cmd_online(self, *args: str) -> None:
        assert self.client is not None
        self.client.list_online()

    def cmd_chat(self, user: str | None = None) -> None:
        assert self.client is not None
        if (peer := self._need(user, "chat")) is not None:
            self.client.request_chat(peer)

    def cmd_accept(self, user: str | None = None) -> None:
        assert self.client is not None
        peer = self._need(user, "accept") if user else self._only(self.client.incoming, "accept")
        if peer is not None:
            self.client.accept(peer)

    def cmd_refuse(self, user: str | None = None) -> None:
        assert self.client is not None
        peer = self._need(user, "refuse") if user else self._only(self.client.incoming, "refuse")
        if peer is not None and self.client.refuse(peer):
            self.say(f"* you refused {peer}'s chat request")

    def cmd_cancel(self, user: str | None = None) -> None:
        assert self.client is not None
        if (peer := self._need(user, "cancel")) is not None:
            self.client.cancel(peer)  # the relay's answer is the one line shown

    def cmd_stop(self, user: str | None = None) -> None:
        assert self.client is not None
        peer = user or self.current
        if peer is None or peer not in self.client.chats:
            self.say("! no such chat" if user else "! no current chat")
            return
        self.client.stop(peer)

    def cmd_fingerprint(self, user: str | None = None) -> None:
        assert self.client is not None
        fp = self.client.fingerprint(user)
        if user is None:
            self.say(f"* your key: {fp}")
        elif fp is None:
            self.say(f"* no key pinned for {user} yet (chat with them first)")
        else:
            self.say(f"* {user}: {fp}")

    def cmd_trust(self, user: str | None = None) -> None:
        assert self.client is not None
        if (peer := self._need(user, "trust")) is not None:
            self.client.trust(peer)

    def _mailbox(self) -> Mailbox | None:
        assert self.client is not None
        if self.client.mailbox is None:
            self.say("! letters are not available in this client: it has no letters file")
        return self.client.mailbox

    def cmd_letter(self, user: str | None = None, text: str = "") -> None:
        if (peer := self._need(user or None, "letter")) is not None and (box := self._mailbox()):
            text = text.strip() or self.offer.get(peer, "")
            if not text:
                self.say("! usage: !letter USER TEXT")
                return
            self.offer.pop(peer, None)
            box.send_letter(peer, text)

    def cmd_letters(self, *words: str) -> None:
        if (parsed := page_arguments(words, ("new", "all"))) is None:
            self.say("! usage: !letters [new|all] [PAGE]")
        elif box := self._mailbox():
            box.list_letters(parsed[0] == "new", parsed[1])

    def cmd_read(self, ref: str | None = None) -> None:
        if ref is None:
            self.say("! usage: !read N|ID (a number or id from !letters)")
        elif box := self._mailbox():
            box.read(ref)

    def cmd_delete(self, ref: str | None = None) -> None:
        if ref is None:
            self.say("! usage: !delete N|ID (a number or id from !letters)")
        elif box := self._mailbox():
            box.delete(ref)

    def cmd_sent(self, *words: str) -> None:
        if (parsed := page_arguments(words)) is None:
            self.say("! usage: !sent [PAGE]")
        elif box := self._mailbox():
            box.sent_status(parsed[1])

    def cmd_users(self, *args: str) -> None:
        if box := self._mailbox():
            box.list_users()

    def cmd_receipts(self, setting: str | None = None) -> None:
        if setting not in ("on", "off"):
            self.say("! usage: !receipts on|off")
        elif box := self._mailbox():
            box.set_read_receipts(setting == "on")

    def cmd_group(self, *args: str) -> None:
        pass  # handled in handle (it takes the whole line)

    cmd_groups = cmd_members = cmd_g = cmd_group

    def cmd_exit(self, *args: str) -> None:
        self.exit()

    cmd_quit = cmd_exit

    def exit(self) -> None:
        if self.exiting:
            return
        self.exiting = True
        if self.client is not None and self.client.logged_in:
            self.client.logout()
        if self.on_exit is not None:
            self.on_exit()

    # -- ChatView -----------------------------------------------------------

    def logged_in(self, user: str) -> None:
        self.say(f"* logged in as {user}; !help lists the commands")
        self.was_logged_in = True
        pending, self._pending = self._pending, []
        for line in pending:
            if self.exiting:
                return
            self.handle(line)
        if self.input_ended and self.client is not None:
            self.client.when_answered(self.exit)

    def online(self, users: tuple[str, ...], total: int) -> None:
        more = f" (and {total - len(users)} more)" if total > len(users) else ""
        self.say(f"* online: {', '.join(users)}{more}")

    def chat_requested(self, requester: str) -> None:
        self.say(f"* {requester} wants to chat: !accept {requester} or !refuse {requester}")

    def request_pending(self, peer: str) -> None:
        self.say(f"* {peer} has been asked to chat; waiting for an answer (!cancel {peer} withdraws)")

    def chat_declined(self, peer: str, reason: Reason | int) -> None:
        # Templates are ours; names and reasons go in as values, never as
        # templates (a "{" from the relay is just a character).
        template = _DECLINED.get(reason, "your chat request to {peer} ended: {why}")
        self.say("* " + template.format(peer=peer, why=reason_name(reason)))

    def request_withdrawn(self, requester: str, reason: Reason | int) -> None:
        template = _WITHDRAWN.get(reason, "the chat request from {peer} is gone: {why}")
        self.say("* " + template.format(peer=requester, why=reason_name(reason)))

    def chat_opened(self, peer: str, fingerprint: str, first_use: bool) -> None:
        note = " (first chat: key pinned; compare it with them)" if first_use else ""
        self.say(f"* securing the chat with {peer}, key {fingerprint}{note}")

    def chat_secured(self, peer: str) -> None:
        self.current = peer
        self.say(f"* chat with {peer} is end-to-end encrypted; type to talk, !stop to end")

    def key_changed(self, peer: str, pinned: str, offered: str, letter: bool = False) -> None:
        refused, retry = key_changed_words(peer, letter)
        self.say(f"!!! WARNING: {peer}'s key CHANGED: pinned {pinned}, the relay now offers "
                 f"{offered}. {refused} If {peer} confirms the new fingerprint "
                 f"out of band, run !trust {peer}{retry}")

    def message(self, peer: str, sent_at: float, text: str) -> None:
        self.say(f"[{self._stamp(sent_at)}] {peer}: {text}")

    def chat_ended(self, peer: str, outcome: str) -> None:
        if self.current == peer:
            self.current = None
        self.say("* " + ended_text(peer, outcome))

    def security_error(self, peer: str, detail: str) -> None:
        self.say(f"!!! chat with {peer}: {detail}")

    def command_failed(self, command: str, subject: str, reason: Reason | int) -> None:
        template = failure_template(self.client, command, subject, reason)
        self.say("! " + template.format(peer=subject, command=command, why=reason_name(reason)))

    def notice(self, text: str) -> None:
        self.say(f"! {text}")

    def letter_line(self, text: str, alert: bool = False) -> None:
        self.say(("! " if alert else "* ") + text)

    def group_line(self, text: str, alert: bool = False) -> None:
        self.say(text)  # say neutralises the whole line

    def disconnected(self, reason: str | None) -> None:
        self.current = None
        if reason is not None:
            self.say(f"! disconnected: {reason}")
        elif not self.exiting:
            self.say("! disconnected")


def ended_text(peer: str, outcome: str) -> str:
    """
    The line saying how the chat with C{peer} ended (every view's wording).
    """
    return (f"chat with {peer} {outcome}" if outcome.startswith(("ended", "TRUNC"))
            else f"chat with {peer} ended: {outcome}")


def failure_template(client: ChatClient | None, command: str, subject: str,
                     reason: Reason | int) -> str:
    """
    The line-mode template (C{!command} hints; fields C{peer}, C{command},
    C{why}) for a failed command; a chat request that already exists is
    told apart by what the client knows of C{subject}.
    """
    if command == "chat" and reason is Reason.ALREADY and client is not None:
        if subject in client.chats:
            return "you are already chatting with {peer}"
        if subject in client.incoming:
            return "{peer} has already asked you: !accept {peer} or !refuse {peer}"
        return "you already asked {peer}; waiting for an answer (!cancel {peer} withdraws)"
    return _FAILED.get((command, reason)) or _FAILED.get(reason, "!{command} {peer} failed: {why}")


def slash_command(line: str) -> str:
    """
    C{line} with a C{/command} (as irssi and WeeChat users type it) in the
    line mode's C{!command} form, so that no command is sent to a peer as
    text; C{//text} is left for L{ChatTerminal.handle} to send as C{/text}.
    """
    if line.startswith("/") and not line.startswith("//"):
        return "!" + line[1:]
    return line


def _is_name(text: str) -> bool:
    try:
        check_user_name(text)
        return True
    except BadUserName:
        return False
