# -*- test-case-name: tests.test_irc_gateway -*-
"""
The C{securechat} service nick's commands: C{/msg securechat COMMAND}, for
everything the terminal interface can do that is not a chat line.  Each
answer is a NOTICE from the service nick (the core's, or the gateway's
words for it).

Commands::

    help                 this list
    status               the relay connection, your chats and requests
    online               who is online
    users                all registered users, online or not
    accept USER          accept USER's chat request
    refuse USER          refuse USER's chat request
    cancel USER          withdraw your chat request to USER
    stop USER            end the chat with USER
    whois USER           USER's key fingerprint and pin state (as /whois)
    fingerprint          your own key's fingerprint
    trust USER           accept USER's changed key (after comparing fingerprints)
    letter USER TEXT     send USER a letter (USER may be offline)
    inbox [new|all]      list your letters (new ones are opened as they come)
    read N|ID            show letter N of the last list again (or by the start of its id)
    delete N|ID          delete a letter from your mailbox
    sent                 the letters you sent: stored, delivered, read
    receipts on|off      send read receipts or not
    groups               the groups you are in (each is a channel, joined for you)
    members GROUP        a group's members as your gateway verified them, and their keys
    group create NAME    make a group; its channel #NAME opens (/join never creates one)
    group add|remove GROUP USER    add or remove a member (owner and admins)
    group leave GROUP    leave a group (/part only closes its channel; you stay a member)
    group role GROUP USER member|admin     set a member's role (owner)
    group owner GROUP USER         make USER the owner (you become an admin)
    group rename GROUP NAME / group delete GROUP   (owner)
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Callable

from securechat.client import groupcommands
from securechat.client.irc.text import SERVICE
from securechat.wire.names import BadUserName, check_user_name

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.irc.gateway import IrcGateway
    from securechat.client.letters import Mailbox

HELP = textwrap.dedent((__doc__ or "").split("Commands::", 1)[1]).strip("\n")


class ServiceCommands:
    """
    The service nick: one method per command, each a core call.
    """

    def __init__(self, gateway: IrcGateway) -> None:
        self.gateway = gateway
        self._commands: dict[str, Callable[[str], None]] = {
            "help": self.help, "status": self.status, "online": self.online,
            "users": self.users, "accept": self.accept, "refuse": self.refuse,
            "cancel": self.cancel, "stop": self.stop, "whois": self.whois,
            "fingerprint": self.fingerprint, "trust": self.trust, "letter": self.letter,
            "inbox": self.inbox, "letters": self.inbox, "read": self.read,
            "delete": self.delete, "sent": self.sent, "receipts": self.receipts,
            "group": self.group, "groups": self.groups, "members": self.members,
        }

    def say(self, text: str) -> None:
        self.gateway.service_notice(text)

    def run(self, line: str) -> None:
        """One line sent to the service nick."""
        word, _, rest = line.strip().partition(" ")
        command = self._commands.get(word.lower().lstrip("!/"))
        if command is None:
            self.say(f"unknown command {word!r}; /msg securechat help lists the commands")
            return
        if command not in (self.help, self.status, self.fingerprint) and not self._connected():
            return
        command(rest.strip())

    def _connected(self) -> bool:
        client = self.gateway.client
        if client is None or not client.logged_in:
            self.say("not connected to the relay; try again once it is")
            return False
        return True

    @property
    def client(self) -> ChatClient:
        client = self.gateway.client
        assert client is not None
        return client

    def _user(self, arg: str, usage: str) -> str | None:
        name = arg.split(" ", 1)[0].lower()
        if not name:
            self.say(f"usage: /msg securechat {usage} USER")
            return None
        try:
            return check_user_name(name)
        except BadUserName as e:
            self.say(str(e))
            return None

    def help(self, arg: str) -> None:
        self.say("/msg USER TEXT chats with USER (asking them first; as a letter if they are "
                 "offline); /me works; /whois USER shows their key. Commands, as /msg securechat "
                 "COMMAND:")
        for line in HELP.splitlines():
            self.say(line)

    def status(self, arg: str) -> None:
        client = self.gateway.client
        if client is None or not client.logged_in:
            self.say("not connected to the relay")
            return
        self.say(f"connected to the relay as {client.user}")
        chats = [f"{peer} ({'secured' if chat.secured else 'securing'})"
                 for peer, chat in sorted(client.chats.items())]
        self.say("chats: " + (", ".join(chats) or "none"))
        if client.incoming:
            self.say("asking you to chat: " + ", ".join(sorted(client.incoming)))
        if client.outgoing or client.asking:
            self.say("you asked: " + ", ".join(sorted(client.outgoing | client.asking)))
        if client.changed_keys:
            self.say("CHANGED keys (not trusted): " + ", ".join(sorted(client.changed_keys)))

    def online(self, arg: str) -> None:
        self.client.list_online()

    def users(self, arg: str) -> None:
        if (box := self._mailbox()) is not None:
            box.list_users()

    def accept(self, arg: str) -> None:
        if (peer := self._user(arg, "accept")) is not None:
            self.client.accept(peer)

    def refuse(self, arg: str) -> None:
        if (peer := self._user(arg, "refuse")) is not None and self.client.refuse(peer):
            self.say(f"you refused {peer}'s chat request")

    def cancel(self, arg: str) -> None:
        if (peer := self._user(arg, "cancel")) is not None:
            self.client.cancel(peer)

    def stop(self, arg: str) -> None:
        if (peer := self._user(arg, "stop")) is not None:
            self.client.stop(peer)

    def whois(self, arg: str) -> None:
        if (peer := self._user(arg, "whois")) is not None:
            for line in self.gateway._key_lines(peer):
                self.say(f"{peer}: {line}")

    def fingerprint(self, arg: str) -> None:
        client = self.gateway.client
        if client is not None:
            self.say(f"your key: {client.fingerprint(None)}")

    def trust(self, arg: str) -> None:
        if (peer := self._user(arg, "trust")) is not None:
            self.client.trust(peer)

    def _mailbox(self) -> Mailbox | None:
        box = self.client.mailbox
        if box is None:
            self.say("letters are not available: the gateway has no letters file")
        return box

    def letter(self, arg: str) -> None:
        peer = self._user(arg, "letter")
        text = arg.partition(" ")[2].strip()
        if peer is None:
            return
        if not text:
            self.say("usage: /msg securechat letter USER TEXT")
        elif peer in self.client.changed_keys:
            self.say(f"NOT sent: {peer}'s key changed; /msg securechat trust {peer} first")
        elif (box := self._mailbox()) is not None:
            box.send_letter(peer, text)

    def inbox(self, arg: str) -> None:
        which = arg.lower() or "all"
        if which not in ("new", "all"):
            self.say("usage: /msg securechat inbox [new|all]")
        elif self._mailbox() is not None:
            self.gateway.list_letters(which == "new")

    def read(self, arg: str) -> None:
        if not arg:
            self.say("usage: /msg securechat read N|ID (a number or id from inbox)")
        elif (box := self._mailbox()) is not None:
            box.read(arg.split()[0])

    def delete(self, arg: str) -> None:
        if not arg:
            self.say("usage: /msg securechat delete N|ID (a number or id from inbox)")
        elif (box := self._mailbox()) is not None:
            box.delete(arg.split()[0])

    def sent(self, arg: str) -> None:
        if (box := self._mailbox()) is not None:
            box.sent_status()

    def receipts(self, arg: str) -> None:
        if arg.lower() not in ("on", "off"):
            self.say("usage: /msg securechat receipts on|off")
        elif (box := self._mailbox()) is not None:
            box.set_read_receipts(arg.lower() == "on")

    def _group_command(self, command: str, arg: str) -> None:
        def say(line: str) -> None:
            self.say(line.removeprefix("! ").replace("!group", f"/msg {SERVICE} group")
                     .replace("!members", f"/msg {SERVICE} members"))
        groupcommands.run(self.client.groups, command, arg, say)

    def group(self, arg: str) -> None:
        self._group_command("group", arg)

    def groups(self, arg: str) -> None:
        self._group_command("groups", arg)

    def members(self, arg: str) -> None:
        self._group_command("members", arg)
