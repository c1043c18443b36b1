# -*- test-case-name: tests.test_client_groupsession -*-
"""
The client's groups (docs/protocol.rst, sections 15 and 16): the part of
L{securechat.client.core.ChatClient} that speaks the relay's group
messages, keeps each group's change log and checks it itself, and carries
the group layer's effects (L{securechat.client.groups.GroupKeys}).

Rules it keeps:

  - every change (GROUP_CHANGED, GROUP_LOG_PAGE) is taken only in epoch
    order, each verified with its actor's key (our own, or the key the
    relay gives, checked against the pin store as for chats and letters:
    a new one is pinned, a changed one stops the group's log there until
    the user runs C{trust} and logs in again) and applied by the rules of
    15.3 (L{securechat.crypto.groupstate}); a change that does not verify
    or apply is shown as refused and nothing after it is taken.  The
    verified changes are kept (the client's group file) and fed to the
    group layer; a group first seen at a later epoch (we were added) is
    fetched from its creation with GROUP_LOG;
  - a membership change is shown by the client itself (L{ChatView.group_changed}),
    never from peer text;
  - a GROUP_LIST (at login, or asked for) brings any group whose epoch is
    ahead of ours up to date; a group we know that it no longer lists is
    forgotten (we were removed, or it was deleted, while away);
  - a group sender key goes in a letter of content type 2 (the mailbox);
    a letter that arrives from a user we share a group with is fetched at
    once (it is most likely a key), and when a message waits for a
    sender's key, at login, and when new letters are announced, every new
    letter from a fellow member is fetched: a key never sits unread while
    a message waits for it;
  - a GROUP_MESSAGE is acknowledged (GROUP_ACK) once the group layer has
    shown it or holds it in its file;
  - after each login, and before each message we send, every key still
    owed (a letter that could not be sealed: the member had no prekeys
    yet, the connection ended) is handed out again, once at a time.
"""

from __future__ import annotations

import os
from collections import deque
from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger

from securechat.client.groupmembers import Action, MembershipChange
from securechat.client.groups import GroupKeys, GroupOutput, GroupText, PostBody, SendKey, WaitingForKey
from securechat.client.groupstore import GroupKeyStore
from securechat.client.reasons import reason_name, reason_of
from securechat.crypto import keys
from securechat.crypto.groupstate import (
    NO_PREVIOUS,
    GroupChange,
    GroupError,
    GroupState,
    apply_change,
    check_group_name,
    parse_change,
    verify_change,
)
from securechat.crypto.senderkeys import GroupKeyError
from securechat.wire.groups import (
    ChangeGroup,
    GetGroupLog,
    GroupAck,
    GroupChanged,
    GroupList,
    GroupLogPage,
    GroupMessage,
    GroupPost,
    GroupPosted,
    GroupRefused,
    ListGroups,
)
from securechat.wire.mailbox import Which
from securechat.wire.messages import Message

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.letters import Mailbox
    from securechat.client.view import ChatView

#: What each refused command was, for the user.
_COMMANDS = {ChangeGroup.TYPE: "change", GroupPost.TYPE: "message", GroupAck.TYPE: "acknowledgement",
             ListGroups.TYPE: "list", GetGroupLog.TYPE: "log"}
ROLE_NAMES = {1: "member", 2: "admin", 3: "owner"}


class GroupSession:
    """
    One client's groups (see the module docstring).
    """

    log = Logger()

    def __init__(self, client: ChatClient, mailbox: Mailbox, store: GroupKeyStore,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self.client = client
        self.mailbox = mailbox
        self.store = store
        self.random = random
        self.keys = GroupKeys(client.user, store)
        #: Each group's verified state, from the kept log.
        self.states: dict[bytes, GroupState] = {}
        broken: set[bytes] = set()
        for group_id, raw in store.changes():
            try:
                if group_id not in broken:
                    self.states[group_id] = apply_change(self.states.get(group_id), parse_change(raw))
            except GroupError as e:  # the file was changed under us: fetched again from the relay
                self.log.warn("a kept group log does not replay ({code}); it is fetched again", code=e.code)
                broken.add(group_id)
                self.states.pop(group_id, None)
                store.forget_log(group_id)
        #: Changes not taken yet, by group and epoch.
        self._incoming: dict[bytes, dict[int, GroupChange]] = {}
        #: Groups whose next change waits for its actor's key.
        self._busy: set[bytes] = set()
        #: Actors' keys this run, checked against the pins.
        self._keys: dict[str, keys.PublicKey] = {}
        self._logs_asked: set[bytes] = set()
        #: One entry per LIST_GROUPS sent: whether the user asked.
        self._lists: deque[bool] = deque()
        #: Our changes sent and not answered yet, in order.
        self._changes: deque[GroupChange] = deque()
        #: The owed keys (their owed ids) on their way to a letter.
        self._sealing: set[int] = set()
        mailbox.groups = self
        self._handlers: dict[type, Callable[..., None]] = {
            GroupChanged: self._changed, GroupRefused: self._refused, GroupPosted: self._posted,
            GroupMessage: self._message, GroupList: self._list, GroupLogPage: self._log_page,
        }

    @property
    def view(self) -> ChatView:
        return self.client.view

    def handle(self, message: Message) -> bool:
        """Handle a group message from the relay; False if it is not one."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return False
        handler(message)
        return True

    def connection_ended(self) -> None:
        self._incoming.clear()
        self._busy.clear()
        self._logs_asked.clear()
        self._lists.clear()
        self._changes.clear()
        self._sealing.clear()

    def logged_in(self) -> None:
        """After WELCOME: our groups brought up to date, owed keys handed out, keys fetched."""
        if self.states and self.client._send(ListGroups(), quiet=True):
            self._lists.append(False)
        self._carry(b"", self.keys.owed_keys())
        self.letters_waiting()

    # -- names -----------------------------------------------------------------

    def name(self, group_id: bytes) -> str:
        state = self.states.get(group_id)
        return state.name if state is not None else group_id[:4].hex()

    def find(self, ref: str) -> bytes | None:
        """The group C{ref} names (its name, or the start of its id in hex); None and a notice if none."""
        found = [g for g, s in self.states.items() if s.name == ref]
        if not found and len(ref) >= 4:
            found = [g for g in self.states if g.hex().startswith(ref.lower())]
        if len(found) != 1:
            self.view.notice(f"no group {ref} (/groups lists yours)" if not found else
                             f"several groups are named {ref}; name one by the start of its id (/groups)")
            return None
        return found[0]

    def shares_group(self, user: str) -> bool:
        """Whether C{user} is in a group with us."""
        return any(user in s.members for s in self.states.values() if user != self.client.user)

    # -- what the user can do -----------------------------------------------------

    def create(self, name: str) -> None:
        try:
            check_group_name(name)
        except GroupError as e:
            self.view.notice(f"cannot create the group: {e}")
            return
        change = GroupChange(self.random(16), 1, NO_PREVIOUS, self.client.user, Action.CREATE, name=name,
                             made_at=self._now())
        self._submit(None, change)

    def change(self, ref: str, action: Action, target: str = "", role: int = 0, name: str = "") -> None:
        """Add, remove, leave, set a role, transfer, rename or delete (15.1)."""
        group_id = self.find(ref)
        if group_id is None:
            return
        state = self.states[group_id]
        change = GroupChange(group_id, state.epoch + 1, state.head, self.client.user, action,
                             target=target, role=role, name=name, made_at=self._now())
        self._submit(state, change)

    def _submit(self, state: GroupState | None, change: GroupChange) -> None:
        try:
            apply_change(state, change)  # the rules first, so that a refusal needs no round trip
        except GroupError as e:
            self.view.notice(f"cannot {Action(change.action).name.lower().replace('_', '-')}: {e}")
            return
        mailbox = self.mailbox

        def signed(signature: bytes) -> None:
            done = change.signed(mailbox.signer.scheme, signature)
            if self.client._send(ChangeGroup(done.encode())):
                self._changes.append(done)

        def failed(line: str) -> None:
            self.view.notice(f"the group change could not be signed and was not sent: {line}")
        mailbox.signing.submit(change.signature_message, signed, failed)

    def say(self, ref: str, text: str) -> None:
        """Send C{text} to a group."""
        group_id = self.find(ref)
        if group_id is not None:
            self.send(group_id, text)

    def send(self, group_id: bytes, text: str) -> None:
        """Send C{text} to the group C{group_id} (one of ours)."""
        if group_id not in self.states:
            self.view.notice(f"no group {group_id[:4].hex()} (/groups lists yours)")
            return
        if not text:
            self.view.notice("a group message needs some text")
            return
        self._carry(b"", self.keys.owed_keys())  # a key not handed out yet goes first
        now = self._now()
        try:
            out = self.keys.send(group_id, text.encode("utf-8"), now)
        except GroupKeyError as e:
            self.view.notice(f"not sent to #{self.name(group_id)} ({e.code}): {e}")
            return
        self._carry(group_id, out)
        self.view.group_event(self.name(group_id), GroupText(group_id, self.client.user, 0, now, now, text))

    def list_groups(self) -> None:
        if self.client._send(ListGroups()):
            self._lists.append(True)

    def members(self, ref: str) -> None:
        """Show a group's members (as this client verified them) with their pins."""
        group_id = self.find(ref)
        if group_id is None:
            return
        rows = []
        for user, role in sorted(self.states[group_id].members.items()):
            if user == self.client.user:
                pin = f"you, {self.client.fingerprint(None)}"
            elif user in self.client.changed_keys:
                pin = f"KEY CHANGED (pinned {self.client.pins.fingerprint(user)}; /trust {user})"
            else:
                fingerprint = self.client.pins.fingerprint(user)
                pin = f"pinned {fingerprint}" if fingerprint else "not pinned yet"
            rows.append((user, ROLE_NAMES.get(role, str(role)), pin))
        self.view.group_members(self.name(group_id), tuple(rows))

    # -- changes ---------------------------------------------------------------------

    def _changed(self, message: GroupChanged) -> None:
        if self._changes and self._changes[0].encode() == message.change:
            self._changes.popleft()
        try:
            change = parse_change(message.change)
        except GroupError as e:
            self.view.notice(f"the relay sent a group change that does not parse ({e.code}): {e}")
            return
        self._take(change)
        self._advance(change.group_id)

    def _take(self, change: GroupChange) -> None:
        group_id = change.group_id
        state = self.states.get(group_id)
        head = state.epoch if state is not None else 0
        if change.epoch <= head:
            return  # taken already
        self._incoming.setdefault(group_id, {}).setdefault(change.epoch, change)
        if change.epoch > head + 1:
            self._ask_log(group_id, head)

    def _ask_log(self, group_id: bytes, after: int) -> None:
        if group_id not in self._logs_asked and self.client._send(GetGroupLog(group_id, after), quiet=True):
            self._logs_asked.add(group_id)

    def _log_page(self, message: GroupLogPage) -> None:
        group_id = message.group_id
        last = 0
        for entry in message.changes:
            try:
                change = parse_change(entry.change)
            except GroupError as e:
                self.view.group_notice(self.name(group_id), f"the relay's log holds a change that does not "
                                       f"parse ({e.code}): {e}", True, group_id)
                break
            last = change.epoch
            if change.group_id == group_id:
                self._take(change)
        self._logs_asked.discard(group_id)
        if message.more and last:
            self._ask_log(group_id, last)
        self._advance(group_id)

    def _key_for(self, user: str) -> keys.PublicKey | None:
        if user == self.client.user:
            return self.client.private_key.public_key()
        return self._keys.get(user)

    def _advance(self, group_id: bytes) -> None:
        """Take the group's waiting changes that extend its head, in order."""
        while group_id not in self._busy:
            state = self.states.get(group_id)
            waiting = self._incoming.get(group_id, {})
            change = waiting.pop((state.epoch if state is not None else 0) + 1, None)
            if change is None:
                break
            key = self._key_for(change.actor)
            if key is None:
                waiting[change.epoch] = change
                self._busy.add(group_id)
                actor = change.actor

                def came(key: keys.PublicKey | None, code: str, detail: str) -> None:
                    self._busy.discard(group_id)
                    if key is None:
                        self._stuck(group_id, f"change {change.epoch} by {actor} cannot be verified "
                                    f"({code}): {detail}")
                        return
                    self._keys[actor] = key
                    self._advance(group_id)
                self.mailbox._with_key(actor, came)
                return
            try:
                verify_change(change, key)
                after = apply_change(state, change)
            except GroupError as e:
                self._stuck(group_id, f"change {change.epoch} by {change.actor} REFUSED ({e.code}): {e}")
                return
            self.store.add_change(group_id, change.epoch, change.encode())
            self.states[group_id] = after
            self._feed(state, after, change)
        if not self._incoming.get(group_id):
            self._incoming.pop(group_id, None)

    def _stuck(self, group_id: bytes, why: str) -> None:
        self._incoming.pop(group_id, None)
        self.view.group_notice(self.name(group_id), f"{why}; nothing after it is taken", True, group_id)

    def _feed(self, before: GroupState | None, after: GroupState, change: GroupChange) -> None:
        """A verified change: to the group layer, and shown once we are in the group."""
        group_id, me = change.group_id, self.client.user
        action = Action(change.action)
        mc = MembershipChange(change.epoch, action, change.actor, change.target)
        known = self.store.membership(group_id) is not None
        try:
            if known:
                out = self.keys.changed(group_id, mc)
            elif me in after.members and not after.deleted:
                out = (self.keys.created(group_id, mc) if action is Action.CREATE else
                       self.keys.joined(group_id, change.epoch, sorted(after.members)))
            else:
                return  # history from before we joined: checked, not shown
        except (GroupKeyError, ValueError) as e:
            self.log.warn("the group layer refused a verified change: {error}", error=str(e))
            return
        name = before.name if before is not None else after.name
        self.view.group_changed(name, change.epoch, action, change.actor, change.target,
                                change.name if action is Action.RENAME else "", group_id)
        self._carry(group_id, out)
        if (me not in after.members or after.deleted) and not self._incoming.get(group_id):
            self._forget(group_id)
        elif not known:
            self.letters_waiting()  # keys may have come before the group

    def _forget(self, group_id: bytes) -> None:
        """A group we are no longer in: its state, log and keys."""
        self.states.pop(group_id, None)
        self.store.forget_group(group_id)
        self.store.forget_log(group_id)

    # -- the relay's other answers -----------------------------------------------------

    def _list(self, message: GroupList) -> None:
        listed = {e.group_id: e for e in message.groups}
        for group_id, entry in listed.items():
            state = self.states.get(group_id)
            if state is None or entry.epoch > state.epoch:
                self._ask_log(group_id, 0 if state is None else state.epoch)
        for group_id in [g for g in self.states if g not in listed]:
            self.view.group_notice(self.name(group_id), "the relay no longer lists you as a member "
                                   "(removed, or the group deleted, while you were away)", True, group_id)
            self._forget(group_id)
        if self._lists and self._lists.popleft():
            rows = tuple((self.name(e.group_id) if e.group_id in self.states else e.name, e.group_id.hex()[:8],
                          ROLE_NAMES.get(e.role, str(e.role)), e.members) for e in message.groups)
            self.view.group_list(rows)

    def _refused(self, message: GroupRefused) -> None:
        reason = reason_of(message.reason)
        what = _COMMANDS.get(message.command, f"0x{message.command:02x}")
        group_id = message.group_id
        if message.command == ChangeGroup.TYPE and self._changes:
            change = self._changes.popleft()
            group_id = change.group_id
            what = Action(change.action).name.lower().replace("_", "-")
        elif message.command == GetGroupLog.TYPE:
            self._logs_asked.discard(group_id)
        elif message.command == GroupAck.TYPE:
            return
        self.view.group_notice(self.name(group_id), f"the relay refused your {what}: {reason_name(reason)}",
                               True, group_id)

    def _posted(self, message: GroupPosted) -> None:
        pass  # stored; our line was shown when it was sent

    def _message(self, message: GroupMessage) -> None:
        group_id = message.group_id
        if message.sender == self.client.user:
            self.view.group_notice(self.name(group_id), f"the relay delivered your own message {message.seq} "
                                   "back; not shown", True, group_id)
        else:
            self._carry(group_id, self.keys.message_arrived(group_id, message.seq, message.sender,
                                                           message.stored_at, message.body))
        # Shown, or held in the group file: the relay may forget it.
        self.client._send(GroupAck(group_id, message.seq), quiet=True)

    # -- effects and keys ----------------------------------------------------------------

    def _carry(self, group_id: bytes, out: GroupOutput) -> None:
        for effect in out.effects:
            if isinstance(effect, SendKey):
                if effect.owed_id in self._sealing:
                    continue  # on its way already
                self._sealing.add(effect.owed_id)
                self.mailbox.send_group_key(effect.recipient, effect.content,
                                            self._handed_over(effect.owed_id), self._lost(effect.owed_id))
            elif isinstance(effect, PostBody):
                self.client._send(GroupPost(effect.group_id, effect.body))
        for event in out.events:
            self.view.group_event(self.name(event.group_id or group_id), event)
            if isinstance(event, WaitingForKey):
                self.letters_waiting()

    def _handed_over(self, owed_id: int) -> Callable[[], None]:
        def kept() -> None:
            self._sealing.discard(owed_id)
            self.keys.key_handed_over(owed_id)
        return kept

    def _lost(self, owed_id: int) -> Callable[[], None]:
        return lambda: self._sealing.discard(owed_id)

    def key_arrived(self, sender: str, content: bytes) -> None:
        """A group key letter from C{sender} opened (the mailbox)."""
        self._carry(b"", self.keys.key_arrived(sender, content))

    def letters_waiting(self) -> None:
        """Fetch every letter we have not opened from a user we share a group with."""
        if not self.states:
            return
        # all letters, not only new ones: another client of this user (the
        # browser page) may have fetched a key letter it could not open (16.2)
        self.mailbox.list_quietly(Which.ALL, self._sweep)

    def _sweep(self, entries: list[tuple[str, bytes]]) -> None:
        for sender, letter_id in entries:
            if self.shares_group(sender) and self.mailbox.store.received(sender, letter_id) is None:
                self.mailbox.fetch(sender, letter_id)

    def _now(self) -> int:
        return int(self.client.clock())


__all__ = ["GroupSession", "ROLE_NAMES"]
