# -*- test-case-name: tests.test_tui -*-
"""
What a line typed in the full-screen interface does.

  - C{/command ARGS} (or C{!command ARGS}, the line mode's form, kept as a
    synonym) runs a command here, in the client: it is never sent to
    anyone.  A line starting with C{/} or C{!} that is not a command is
    refused with one line, never sent; C{//text} sends C{/text} and
    C{!!text} sends C{!text}.
  - Any other line goes to the current window's chat, and nowhere else.
    In the status window, or in a window whose chat is not open (asked,
    refused, ended), it is refused with one line saying why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from securechat.client import groupcommands
from securechat.client.listpages import page_arguments
from securechat.client.tui.windows import PeerState
from securechat.wire.names import BadUserName, check_user_name

if TYPE_CHECKING:
    from securechat.client.letters import Mailbox
    from securechat.client.tui.view import FullScreen

#: (name, arguments, what it does), in the order /help lists them.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("help", "", "this list"),
    ("chat", "USER", "ask USER to chat (opens USER's window)"),
    ("accept", "[USER]", "accept a chat request (this window's, or the only one)"),
    ("refuse", "[USER]", "refuse a chat request"),
    ("cancel", "[USER]", "withdraw your chat request (this window's by default)"),
    ("stop", "[USER]", "end the chat (this window's by default)"),
    ("msg", "USER TEXT", "send TEXT to your open chat with USER"),
    ("letter", "USER [TEXT]", "send USER a letter, to read when they like (they may be offline)"),
    ("letters", "[new|all] [PAGE]", "list your letters in the mailbox window, 50 a page, newest "
                                    "first; the last line names the next page"),
    ("read", "N|ID", "read letter N of the last list (or by the start of its id)"),
    ("delete", "N|ID", "delete a letter from your mailbox"),
    ("sent", "[PAGE]", "your letters: stored, delivered, read, receipts verified (50 a page)"),
    ("users", "", "all registered users, online or not (every one)"),
    ("receipts", "on|off", "send read receipts or not (delivery receipts always go)"),
    ("g", "GROUP TEXT", "send TEXT to a group (or type in its window); also /groups, /members GROUP, "
                        "/group create|add|remove|leave|role|owner|rename|delete"),
    ("window", "N", "go to window N (also Alt-N, Ctrl-N / Ctrl-P)"),
    ("close", "", "close this window (once its chat has ended)"),
    ("online", "", "who is online"),
    ("fingerprint", "[USER]", "your key's fingerprint, or the one pinned for USER"),
    ("trust", "USER", "accept USER's changed key (after comparing fingerprints)"),
    ("quit", "", "end every chat cleanly and quit (also /exit, Ctrl-C)"),
)
ALIASES = {"exit": "quit"}
#: Commands that need no relay connection.
OFFLINE = frozenset({"help", "quit", "window", "close"})
NAMES = tuple(sorted({name for name, _, _ in COMMANDS} | set(ALIASES) | {"group", "groups", "members"}))


def help_lines() -> list[str]:
    lines = [f"/{name} {args}".ljust(19) + " " + what for name, args, what in COMMANDS]
    lines += ["TEXT".ljust(20) + "send TEXT to this window's chat",
              "//TEXT".ljust(20) + "send /TEXT (and !!TEXT sends !TEXT)",
              "keys: Alt-1..9 window, Ctrl-N/Ctrl-P next/previous, Up/Down history, "
              "Tab completes, PgUp/PgDn scroll, Ctrl-C quits"]
    return lines


def is_name(text: str) -> bool:
    try:
        check_user_name(text)
        return True
    except BadUserName:
        return False


class Commands:
    """
    What lines typed into a L{FullScreen} do.
    """

    def __init__(self, view: FullScreen) -> None:
        self.view = view
        #: The last line refused in a peer's window (no chat): /letter USER
        #: without text sends it as a letter.
        self.offer: dict[str, str] = {}

    def submit(self, line: str) -> None:
        """
        Handle one line typed (Enter).
        """
        if not line.strip():
            return
        self.view.windows.current.remember(line)
        if line[:2] in ("//", "!!"):
            self.send_plain(line[1:])
        elif line[0] in "/!":
            self.run_command(line)
        else:
            self.send_plain(line)

    def run_command(self, line: str) -> None:
        word, _, rest = line[1:].partition(" ")
        name = ALIASES.get(word.lower(), word.lower())
        command: Callable[[str], None] | None = getattr(self, "cmd_" + name, None)
        if command is None or not name.isalpha():
            self.view.reply(f"unknown command {line[0]}{word}, not sent; /help lists the commands "
                       f"(//text sends a line starting with /)", error=True)
            return
        client = self.view.client
        if name not in OFFLINE and (client is None or not client.logged_in):
            self.view.reply(f"not connected to the relay; /{name} not run", error=True)
            return
        command(rest.strip())

    def send_plain(self, text: str) -> None:
        """
        Send C{text} to the current window's chat, or refuse it.
        """
        window = self.view.windows.current
        peer = window.peer
        client = self.view.client
        if window.group is not None:
            if client is None or not client.logged_in:
                self.view.reply("not connected to the relay; not sent", error=True)
            else:
                groupcommands.run(client.groups, "g", f"{window.group} {text}", self._group_reply)
        elif peer is None and window.mailbox:
            self.view.reply("this is the mailbox window: nothing typed here is sent. /letter USER "
                            "TEXT sends a letter", error=True)
        elif peer is None:
            self.view.reply("this is the status window: nothing typed here is sent. Go to a chat's "
                       "window (Alt-2, Ctrl-N) or /chat USER", error=True)
        elif client is None or not client.logged_in:
            self.view.reply("not connected to the relay; not sent", error=True)
        elif peer not in client.chats:
            if peer in client.incoming:
                why = f"{peer} asked to chat: /accept first"
            elif peer in client.outgoing or peer in client.asking:
                why = f"{peer} has not accepted yet"
            else:
                why = f"the chat with {peer} has ended (/chat {peer} asks again)"
                self.offer[peer] = text
                if client.mailbox is not None:
                    why += f", or /letter {peer} sends it as a letter"
            self.view.reply(f"{why}; not sent", error=True)
        else:
            self._say(peer, text)

    def _say(self, peer: str, text: str) -> None:
        client = self.view.client
        assert client is not None
        before = self.view.notices
        client.say(peer, text)
        if self.view.notices == before:  # the core refused it with a notice otherwise
            self.view.echo(peer, text)

    def _peer_arg(self, arg: str, command: str, choices: set[str],
                  default_current: bool = True) -> str | None:
        """
        The user a command is about: its argument, else the current
        window's peer if it is one of C{choices}, else the only choice.
        """
        user = arg.split()[0] if arg else None
        if user is not None:
            if not is_name(user):
                self.view.reply(f"{user!r} is not a user name", error=True)
                return None
            return user
        current = self.view.windows.current.peer
        if default_current and current is not None and current in choices:
            return current
        if len(choices) == 1:
            return next(iter(choices))
        self.view.reply(f"say which: /{command} USER" if choices else f"nothing to {command}",
                   error=True)
        return None

    def _need(self, arg: str, command: str) -> str | None:
        user = arg.split()[0] if arg else None
        if user is None:
            self.view.reply(f"usage: /{command} USER", error=True)
            return None
        if not is_name(user):
            self.view.reply(f"{user!r} is not a user name", error=True)
            return None
        return user

    def cmd_help(self, arg: str) -> None:
        for line in help_lines():
            self.view.reply(line)

    def cmd_quit(self, arg: str) -> None:
        self.view.exit()

    def cmd_window(self, arg: str) -> None:
        if not arg.isdigit() or not self.view.windows.switch_to(int(arg)):
            self.view.reply(f"usage: /window N, N from 1 to {len(self.view.windows.windows)}", error=True)

    def cmd_close(self, arg: str) -> None:
        window = self.view.windows.current
        client = self.view.client
        if window.peer is None:
            self.view.reply(f"the {window.title} window stays open", error=True)
        elif client is not None and (window.peer in client.chats or window.peer in client.incoming
                                     or window.peer in client.outgoing):
            self.view.reply(f"the chat or request with {window.peer} is still open: /stop, "
                       f"/refuse or /cancel it first", error=True)
        else:
            self.view.windows.close(window)

    def cmd_online(self, arg: str) -> None:
        assert self.view.client is not None
        self.view.client.list_online()

    def cmd_chat(self, arg: str) -> None:
        assert self.view.client is not None
        peer = self._need(arg, "chat")
        if peer is None:
            return
        window = self.view.window_for(peer)
        if window.state is PeerState.ENDED:
            window.state = None  # until the relay answers the new request
        self.view.windows.switch(window)
        self.view.client.request_chat(peer)

    def cmd_accept(self, arg: str) -> None:
        client = self.view.client
        assert client is not None
        peer = self._peer_arg(arg, "accept", client.incoming)
        if peer is not None and client.accept(peer):
            self.view.windows.switch(self.view.window_for(peer))

    def cmd_refuse(self, arg: str) -> None:
        client = self.view.client
        assert client is not None
        peer = self._peer_arg(arg, "refuse", client.incoming)
        if peer is not None and client.refuse(peer):
            self.view.mark_ended(peer, f"you refused {peer}'s chat request")

    def cmd_cancel(self, arg: str) -> None:
        client = self.view.client
        assert client is not None
        peer = self._peer_arg(arg, "cancel", client.outgoing | client.asking)
        if peer is not None:
            client.cancel(peer)

    def cmd_stop(self, arg: str) -> None:
        client = self.view.client
        assert client is not None
        peer = self._peer_arg(arg, "stop", set(client.chats))
        if peer is None:
            return
        if peer not in client.chats:
            self.view.reply(f"no chat with {peer}", error=True)
            return
        client.stop(peer)

    def cmd_msg(self, arg: str) -> None:
        client = self.view.client
        assert client is not None
        user, _, text = arg.partition(" ")
        if not user or not text:
            self.view.reply("usage: /msg USER TEXT", error=True)
        elif user not in client.chats:
            offer = ""
            if client.mailbox is not None and is_name(user):
                self.offer[user] = text
                offer = f", or /letter {user} sends it as a letter"
            self.view.reply(f"no open chat with {user}; not sent (/chat {user} first{offer})", error=True)
        else:
            self._say(user, text)

    def cmd_fingerprint(self, arg: str) -> None:
        client = self.view.client
        assert client is not None
        user = arg.split()[0] if arg else None
        fp = client.fingerprint(user)
        if user is None:
            self.view.reply(f"your key: {fp}")
        elif fp is None:
            self.view.reply(f"no key pinned for {user} yet (chat with them first)")
        else:
            self.view.reply(f"{user}: {fp}")

    def _mailbox(self) -> Mailbox | None:
        client = self.view.client
        assert client is not None
        if client.mailbox is None:
            self.view.reply("letters are not available in this client: it has no letters file", error=True)
        else:
            self.view.windows.switch(self.view.mailbox_window())
        return client.mailbox

    def cmd_letter(self, arg: str) -> None:
        user, _, text = arg.partition(" ")
        text = text.strip() or self.offer.get(user, "")
        if not user or not text:
            self.view.reply("usage: /letter USER TEXT", error=True)
        elif (peer := self._need(user, "letter")) is not None and (box := self._mailbox()):
            self.offer.pop(peer, None)
            box.send_letter(peer, text)

    def cmd_letters(self, arg: str) -> None:
        if (parsed := page_arguments(arg.split(), ("new", "all"))) is None:
            self.view.reply("usage: /letters [new|all] [PAGE]", error=True)
        elif box := self._mailbox():
            box.list_letters(parsed[0] == "new", parsed[1])

    def cmd_read(self, arg: str) -> None:
        if not arg:
            self.view.reply("usage: /read N|ID (a number or id from /letters)", error=True)
        elif box := self._mailbox():
            box.read(arg)

    def cmd_delete(self, arg: str) -> None:
        if not arg:
            self.view.reply("usage: /delete N|ID (a number or id from /letters)", error=True)
        elif box := self._mailbox():
            box.delete(arg)

    def cmd_sent(self, arg: str) -> None:
        if (parsed := page_arguments(arg.split())) is None:
            self.view.reply("usage: /sent [PAGE]", error=True)
        elif box := self._mailbox():
            box.sent_status(parsed[1])

    def cmd_users(self, arg: str) -> None:
        if box := self._mailbox():
            box.list_users()

    def cmd_receipts(self, arg: str) -> None:
        if arg not in ("on", "off"):
            self.view.reply("usage: /receipts on|off", error=True)
        elif box := self._mailbox():
            box.set_read_receipts(arg == "on")

    def _group_reply(self, line: str) -> None:
        self.view.reply(line[2:] if line.startswith("! ") else line, error=line.startswith("!"))

    def _groups(self, command: str, arg: str) -> None:
        client = self.view.client
        assert client is not None
        groupcommands.run(client.groups, command, arg, self._group_reply)

    def cmd_group(self, arg: str) -> None:
        self._groups("group", arg)

    def cmd_groups(self, arg: str) -> None:
        self._groups("groups", arg)

    def cmd_members(self, arg: str) -> None:
        self._groups("members", arg)

    def cmd_g(self, arg: str) -> None:
        self._groups("g", arg)

    def cmd_trust(self, arg: str) -> None:
        assert self.view.client is not None
        peer = self._need(arg, "trust")
        if peer is not None:
            self.view.client.trust(peer)
