# -*- test-case-name: tests.test_irc_channels -*-
"""
Groups as IRC channels: the part of L{securechat.client.irc.gateway.IrcGateway}
that shows the client's groups (L{securechat.client.groupsession}) as
channels, and turns channel commands into group calls.

The mapping:

  - each group the user is a member of is a channel C{#NAME} (spaces,
    commas and colons in the name become C{_}); when two of the user's
    groups would get the same channel, each is C{#NAME.ID8} (the start of
    its id), so names that are not unique never mix two groups;
  - at registration, and when the user is added to a group (or creates
    one), the IRC client is JOINed to the group's channel, with its topic
    and its names; C{/join #team} reopens the channel of a group the user
    is in, and never creates a group (a typo must not make one):
    C{/msg securechat group create team} does, and the channel opens when
    the relay confirms it;
  - C{/part #team} closes the channel in the IRC client only: the user
    stays a member (a NOTICE says so, and how to leave:
    C{/msg securechat group leave team}); a message to the group reopens
    the channel, so nothing is missed;
  - C{/names}: the members, as this client verified them from the signed
    log, the owner with C{@} and admins with C{+};
  - PRIVMSG to the channel is said in the group (C{/me} as CTCP ACTION);
    members' messages are PRIVMSGs to the channel from the sender (late
    ones marked C{(late)}); waiting for a key, gaps and refusals are
    NOTICEs from the C{securechat} service nick in the channel;
  - verified membership changes: JOIN (added), KICK (removed, or the group
    deleted), PART (left), MODE (roles), a rename moves the channel (PART
    the old one, JOIN the new one); each also a service NOTICE naming the
    change and who signed it; the topic is the group's encryption state
    (C{end-to-end encrypted, epoch N, M members}), set by the service nick.

Refused: a channel that is no group of the user's (403 on JOIN, 404 on
PRIVMSG: not a member, never was, or removed), a PRIVMSG to a channel the
user parted (404: C{/join} it first), setting the topic (482).
"""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING, Any

from securechat.client.groupmembers import Action
from securechat.client.groups import Event, GroupText
from securechat.client.groupview import GroupLines
from securechat.client.irc.text import (
    ACTION_PREFIX,
    SERVICE,
    SERVICE_MASK,
    budget,
    ctcp,
    outgoing,
    lines,
    mask_of,
    nick_of,
    token,
)

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.groupsession import GroupSession
    from securechat.client.irc.connection import IrcConnection
    from securechat.crypto.groupstate import GroupState

#: Channel lines kept while no IRC client is connected.
CHANNEL_BACKLOG = 500
_UNSAFE = re.compile(r"[\s,:\x00-\x1f\x7f]")
_PREFIX = {3: "@", 2: "+"}


def channel_base(name: str) -> str:
    """The channel of a group called C{name} (before any id suffix)."""
    return "#" + _UNSAFE.sub("_", name)


class IrcChannels(GroupLines):
    """
    Groups as channels (see the module docstring).  Mixed into the gateway,
    which provides C{client}, C{irc}, C{user} and L{service_notice}.
    """

    client: ChatClient | None
    irc: IrcConnection | None
    user: str

    def service_notice(self, text: str) -> None:
        raise NotImplementedError

    def init_channels(self) -> None:
        #: The channel each group is shown as, once given (kept stable).
        self.channel_names: dict[bytes, str] = {}
        #: The groups whose channel the IRC client is in.
        self.open: set[bytes] = set()
        self.channel_backlog: deque[tuple[str, str, tuple[str, ...], str | None, bool]] = deque(
            maxlen=CHANNEL_BACKLOG)
        self._group_target: bytes | None = None

    # -- groups and their channels -------------------------------------------------

    @property
    def _groups(self) -> GroupSession | None:
        return self.client.groups if self.client is not None else None

    def _state(self, group_id: bytes) -> GroupState | None:
        groups = self._groups
        return groups.states.get(group_id) if groups is not None else None

    def _mine(self) -> list[bytes]:
        groups = self._groups
        if groups is None:
            return []
        return [g for g, s in groups.states.items() if self.user in s.members and not s.deleted]

    def channel_of(self, group_id: bytes) -> str:
        known = self.channel_names.get(group_id)
        if known is not None:
            return known
        state = self._state(group_id)
        base = channel_base(state.name if state is not None else group_id[:4].hex())
        groups = self._groups
        others = [g for g, s in (groups.states.items() if groups is not None else ())
                  if g != group_id and channel_base(s.name).lower() == base.lower()]
        taken = {c.lower() for g, c in self.channel_names.items() if g != group_id}
        channel = f"{base}.{group_id.hex()[:8]}" if others or base.lower() in taken else base
        self.channel_names[group_id] = channel
        return channel

    def group_of(self, channel: str) -> bytes | None:
        """The group of the user's shown as C{channel}, or None."""
        for group_id in self._mine():
            if self.channel_of(group_id).lower() == channel.lower():
                return group_id
        return None

    def group_ref(self, group_id: bytes) -> str:
        """How the group commands name the group: its name if that is unambiguous, else its id."""
        state = self._state(group_id)
        groups = self._groups
        if state is None or groups is None or not state.name.split() or state.name.split()[0] != state.name:
            return group_id.hex()[:8]
        same = [g for g, s in groups.states.items() if s.name == state.name]
        return state.name if len(same) == 1 else group_id.hex()[:8]

    def topic(self, group_id: bytes) -> str:
        state = self._state(group_id)
        if state is None:
            return "end-to-end encrypted"
        n = len(state.members)
        return (f"end-to-end encrypted, epoch {state.epoch}, {n} member{'s' if n != 1 else ''} "
                f"(group {group_id.hex()[:8]}; changes verified by this client)")

    # -- output --------------------------------------------------------------------

    def _emit(self, prefix: str, command: str, params: tuple[str, ...], text: str | None,
              action: bool = False) -> None:
        irc = self.irc
        if irc is None or not irc.registered:
            self.channel_backlog.append((prefix, command, params, text, action))
            return
        if not action or text is None:
            irc.emit(prefix, command, params, text)
            return
        # A CTCP ACTION: the text neutralised and split, then framed.
        middle = " ".join(token(p) for p in params)
        for piece in lines(text, budget(prefix, command, middle, extra=len("\x01ACTION \x01"))):
            irc.sendLine(f":{prefix} {command} {middle} :\x01ACTION {piece}\x01")

    def replay_channels(self) -> None:
        """After registration: JOIN every group's channel, then what came while none was connected."""
        self.open.clear()
        for group_id in self._mine():
            self.join_channel(group_id)
        backlog, self.channel_backlog = list(self.channel_backlog), deque(maxlen=CHANNEL_BACKLOG)
        for prefix, command, params, text, action in backlog:
            if command in ("PRIVMSG", "NOTICE") and (gid := self.group_of(params[0])) is not None:
                self.join_channel(gid)
            self._emit(prefix, command, params, text, action)

    def join_channel(self, group_id: bytes) -> None:
        """The IRC client JOINs the group's channel: JOIN, topic, names."""
        if group_id in self.open:
            return
        irc = self.irc
        if irc is None or not irc.registered:
            return  # joined at registration
        self.open.add(group_id)
        channel = self.channel_of(group_id)
        irc.emit(mask_of(self.user), "JOIN", (channel,), None)
        irc.numeric("332", channel, text=self.topic(group_id))
        self.send_names(irc, group_id)

    def send_names(self, irc: IrcConnection, group_id: bytes) -> None:
        state = self._state(group_id)
        channel = self.channel_of(group_id)
        if state is not None:
            names = [_PREFIX.get(role, "") + nick_of(user)
                     for user, role in sorted(state.members.items())]
            irc.numeric("353", "=", channel, text=" ".join(names))
        irc.numeric("366", channel, text="End of /NAMES list.")

    def _to_channel(self, group_id: bytes, source: str, command: str, text: str,
                    action: bool = False) -> None:
        if group_id not in self.open:
            self.join_channel(group_id)  # a message reopens a parted channel
        self._emit(source, command, (self.channel_of(group_id),), text, action)

    # -- the IRC client's channel commands ---------------------------------------------

    def join(self, irc: IrcConnection, channel: str) -> None:
        group_id = self.group_of(channel)
        if group_id is None:
            name = channel.lstrip("#&")
            irc.numeric("403", channel, text=(
                f"No such channel: you are in no group {channel} (/join never creates one: "
                f"/msg {SERVICE} group create {name} does; /msg {SERVICE} groups lists yours)"))
            return
        self.join_channel(group_id)

    def part(self, irc: IrcConnection, channel: str) -> None:
        group_id = self.group_of(channel)
        if group_id is None or group_id not in self.open:
            irc.numeric("442", channel, text="You're not on that channel")
            return
        self.open.discard(group_id)
        shown = self.channel_of(group_id)
        irc.emit(mask_of(self.user), "PART", (shown,), None)
        self.service_notice(f"you closed {shown} but are still a member of the group (its messages "
                            f"reopen it); to leave the group: /msg {SERVICE} group leave "
                            f"{self.group_ref(group_id)}")

    def names(self, irc: IrcConnection, channel: str) -> None:
        group_id = self.group_of(channel)
        if group_id is None:
            irc.numeric("366", channel, text="End of /NAMES list.")
            return
        self.send_names(irc, group_id)

    def channel_topic(self, irc: IrcConnection, channel: str, setting: bool) -> None:
        group_id = self.group_of(channel)
        if group_id is None:
            irc.numeric("403", channel, text="No such channel: no group of yours")
        elif setting:
            irc.numeric("482", self.channel_of(group_id), text=(
                "The topic shows the group's encryption state; it cannot be set"))
        else:
            irc.numeric("332", self.channel_of(group_id), text=self.topic(group_id))

    def list_channels(self, irc: IrcConnection) -> None:
        for group_id in self._mine():
            state = self._state(group_id)
            count = str(len(state.members)) if state is not None else "0"
            irc.numeric("322", self.channel_of(group_id), count, text=self.topic(group_id))
        irc.numeric("323", text="End of /LIST")

    def channel_privmsg(self, irc: IrcConnection, channel: str, text: str) -> None:
        group_id = self.group_of(channel)
        groups = self._groups
        if group_id is None or groups is None:
            irc.numeric("404", channel, text=(
                f"Cannot send to channel: you are not a member of a group {channel} (never "
                f"added, removed, or you left it); /msg {SERVICE} groups lists yours"))
            return
        if group_id not in self.open:
            irc.numeric("404", channel, text=f"Cannot send to channel: you parted it; /join "
                        f"{self.channel_of(group_id)} first (you are still a member)")
            return
        client = self.client
        if client is None or not client.logged_in:
            self.service_notice(f"not connected to the relay; your line to {channel} was not sent")
            return
        text, refused = outgoing(text)
        if refused is not None:
            self.service_notice(f"CTCP {refused} not sent to {channel}: only text and /me travel")
            return
        groups.send(group_id, text)

    # -- GroupView, as channel lines ----------------------------------------------------

    def group_line(self, text: str, alert: bool = False) -> None:
        group_id = self._group_target
        if group_id is not None and group_id in self.open:
            self._emit(SERVICE_MASK, "NOTICE", (self.channel_of(group_id),), text)
        else:
            self.service_notice(text)

    def _in_channel(self, group_id: bytes, show: Any, *args: Any) -> None:
        self._group_target = group_id or None
        try:
            show(self, *args)
        finally:
            self._group_target = None

    def group_event(self, group: str, event: Event) -> None:
        group_id = event.group_id
        if not isinstance(event, GroupText) or not group_id:
            if group_id and group_id not in self.open:
                self.join_channel(group_id)
            self._in_channel(group_id, GroupLines.group_event, group, event)
            return
        if event.sender == self.user and event.seq == 0:
            return  # our own line: the IRC client shows it already
        text, late = event.text, "(late) " if event.late else ""
        query = ctcp(text)
        if query is not None and query[0] != "ACTION":
            self._in_channel(group_id, GroupLines.group_notice, group,
                             f"{event.sender} sent a CTCP {query[0]}; dropped, not answered")
        elif query is not None:
            self._to_channel(group_id, mask_of(event.sender), "PRIVMSG", late + query[1], True)
        elif text.startswith(ACTION_PREFIX):
            self._to_channel(group_id, mask_of(event.sender), "PRIVMSG",
                             late + text[len(ACTION_PREFIX):], True)
        else:
            self._to_channel(group_id, mask_of(event.sender), "PRIVMSG", late + text)

    def group_notice(self, group: str, text: str, alert: bool = False, group_id: bytes = b"") -> None:
        self._in_channel(group_id, GroupLines.group_notice, group, text, alert)

    def group_changed(self, group: str, epoch: int, action: Action, actor: str, target: str = "",
                      new_name: str = "", group_id: bytes = b"") -> None:
        if not group_id:
            GroupLines.group_changed(self, group, epoch, action, actor, target, new_name)
            return
        me, was_open = self.user, group_id in self.open
        if action is Action.CREATE or (action is Action.ADD and target == me):
            self.join_channel(group_id)
            was_open = False  # the JOIN showed the names and topic
        self._in_channel(group_id, GroupLines.group_changed, group, epoch, action, actor, target,
                         new_name)
        if not was_open:
            return
        channel = self.channel_of(group_id)
        if action is Action.ADD:
            self._emit(mask_of(target), "JOIN", (channel,), None)
        elif action is Action.REMOVE:
            self._emit(mask_of(actor), "KICK", (channel, nick_of(target)), f"removed by {actor}")
        elif action is Action.LEAVE:
            self._emit(mask_of(actor), "PART", (channel,), "left the group")
        elif action is Action.DELETE:
            self._emit(mask_of(actor), "KICK", (channel, nick_of(me)), f"{actor} deleted the group")
        elif action in (Action.SET_ROLE, Action.TRANSFER_OWNER):
            self._modes(group_id, channel, actor, target, action)
        elif action is Action.RENAME:
            self._emit(mask_of(me), "PART", (channel,), f"renamed to #{new_name}")
            self.open.discard(group_id)
            self.channel_names.pop(group_id, None)
            self.join_channel(group_id)
            return
        if action is Action.DELETE or me in (target if action is Action.REMOVE else "",
                                             actor if action is Action.LEAVE else ""):
            self.open.discard(group_id)
        else:
            self._emit(SERVICE_MASK, "TOPIC", (channel,), self.topic(group_id))

    def _modes(self, group_id: bytes, channel: str, actor: str, target: str, action: Action) -> None:
        state = self._state(group_id)
        if state is None:
            return
        for user in ((target, actor) if action is Action.TRANSFER_OWNER else (target,)):
            role = state.role_of(user)
            mode = {3: "-v+o", 2: "-o+v"}.get(role, "-o-v")
            self._emit(mask_of(actor), "MODE", (channel, mode, nick_of(user), nick_of(user)), None)
