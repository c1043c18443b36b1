# -*- test-case-name: tests.test_client_groups -*-
"""
The events of the group layer (L{securechat.client.groups}) as lines, for
the line terminal and the full-screen view alike.  A view that inherits
L{GroupLines} provides L{GroupLines.group_line}, which must neutralise the
whole line (L{securechat.client.display.untrusted}: the terminal's C{say}
does) because the group's name, the senders' text and the failure details
are untrusted.

What a member writes is always one line that starts with the time, the
group and the sender in brackets (C{[12:00] #team <alice> hello}); every
event of the client's own (waiting for a key, a gap, a refusal, a
membership change) starts with C{* } or C{! } and the group.  A newline in
a message is escaped by the neutralisation, so no text a member sends can
begin a line that looks like an event of the client's.
"""

from __future__ import annotations

import time

from securechat.client.groupmembers import Action
from securechat.client.groups import Event, GroupFailure, GroupGap, GroupText, WaitingForKey

#: How a refusal's code reads for a user.
_FAILURES = {
    "bad-signature": "its signature does not verify: not written by {sender}, or altered",
    "wrong-sender": "the relay delivered it under another sender than the one who signed it",
    "wrong-group": "it was written for another group",
    "not-member": "{sender} was not a member when it was sent",
    "replayed": "the relay delivered it again (a replay)",
    "stale-chain": "{sender} used a key from before a member left",
    "before-key": "it was sent before you could read {sender}'s messages",
    "held-overflow": "given up: too many messages were waiting for keys",
}

_ACTIONS = {
    Action.CREATE: "{actor} created the group",
    Action.ADD: "{actor} added {target}",
    Action.REMOVE: "{actor} removed {target}",
    Action.LEAVE: "{actor} left",
    Action.SET_ROLE: "{actor} changed {target}'s role",
    Action.TRANSFER_OWNER: "{actor} made {target} the owner",
    Action.RENAME: "{actor} renamed the group",
    Action.DELETE: "{actor} deleted the group",
}


def _stamp(at: int) -> str:
    return time.strftime("%H:%M", time.localtime(at))


class GroupLines:
    """
    Group events as lines (see the module docstring).
    """

    def group_line(self, text: str, alert: bool = False) -> None:
        raise NotImplementedError

    def group_event(self, group: str, event: Event) -> None:
        """Show one event of the group layer; C{group} is the group's name."""
        tag = f"#{group}"
        if isinstance(event, GroupText):
            late = " (late: arrived out of order)" if event.late else ""
            self.group_line(f"[{_stamp(event.sent_at)}] {tag} <{event.sender}>{late} {event.text}")
        elif isinstance(event, WaitingForKey):
            self.group_line(f"* {tag}: a message from {event.sender} is waiting for {event.sender}'s key; "
                            "it is shown when the key arrives")
        elif isinstance(event, GroupGap):
            many = "message" if event.count == 1 else "messages"
            self.group_line(f"! {tag}: {event.count} {many} from {event.sender} missing (not delivered "
                            "yet, or dropped by the relay)", alert=True)
        elif isinstance(event, GroupFailure):
            what = f"a message from {event.sender}" if event.seq else f"a group key from {event.sender}"
            why = _FAILURES.get(event.code, "{code}: {detail}").format(
                sender=event.sender, code=event.code, detail=event.detail)
            self.group_line(f"! {tag}: {what} REFUSED, not shown ({event.code}): {why}", alert=True)

    def group_changed(self, group: str, epoch: int, action: Action, actor: str, target: str = "",
                      new_name: str = "", group_id: bytes = b"") -> None:
        """Show a verified membership change (signed by C{actor}); C{group_id} names the group."""
        what = _ACTIONS.get(action, "{actor} changed the group").format(actor=actor, target=target)
        if new_name:
            what += f" to #{new_name}"
        self.group_line(f"* #{group}: {what} (change {epoch}, signed by {actor}: verified)")

    def group_notice(self, group: str, text: str, alert: bool = False, group_id: bytes = b"") -> None:
        """Something the client says about a group (a refusal, a log that stopped)."""
        self.group_line(f"{'!' if alert else '*'} #{group}: {text}", alert=alert)

    def group_list(self, rows: tuple[tuple[str, str, str, int], ...]) -> None:
        """The groups we are in: C{(name, id prefix, role, members)}."""
        if not rows:
            self.group_line("* you are in no group (/group create NAME makes one)")
            return
        self.group_line(f"* your groups ({len(rows)}):")
        for name, short, role, count in rows:
            self.group_line(f"*   #{name} [{short}] {role}, {count} members")

    def group_members(self, group: str, rows: tuple[tuple[str, str, str], ...]) -> None:
        """A group's members as this client verified them: C{(user, role, pin state)}."""
        self.group_line(f"* #{group}: {len(rows)} members (from the signed log this client checked):")
        for user, role, pin in rows:
            self.group_line(f"*   {user} ({role}): {pin}")
