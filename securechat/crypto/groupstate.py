# -*- test-case-name: tests.test_groupstate -*-
"""
Group state and its signed changes (docs/protocol.rst, 15.1 and 15.3).

A group is a hash chain of L{GroupChange}s, each signed by the member who
made it with its registered key: the creation (epoch 1), then one change
per epoch, each naming the SHA-256 of the previous change's full encoding.
L{apply_change} is the one place the membership rules live; the relay runs
it before it accepts a change, and every member runs it again, through
L{replay_log}, over the log the relay hands out, verifying every signature
itself (the relay is trusted to route changes, not with membership).

Every refusal is a L{GroupError} whose C{code} is one of L{GROUP_ERRORS}
(the relay answers with the L{securechat.wire.relay.Reason} of the same
name).  Pure: no IO, no clock.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping

from securechat.crypto import keys
from securechat.crypto.prekeys import MAX_SIGNATURE
from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes16, text8, u8, u16, u64
from securechat.wire.names import BadUserName, check_user_name, read_user_name

CHANGE_VERSION = 1
GROUP_ID_LENGTH = 16
HASH_LENGTH = 32
#: The creation's C{prev}.
NO_PREVIOUS = bytes(HASH_LENGTH)
#: Every change's signature is over this label, then the change's body.
CHANGE_SIGNATURE_LABEL = b"securechat group change v1\x00"
#: A group's display name: 1 to 64 bytes of UTF-8.
MAX_GROUP_NAME = 64
#: The largest encoded change: every field at its longest.
MAX_CHANGE = 1 + 16 + 8 + 32 + 33 + 1 + 33 + 1 + 65 + 8 + 2 + 2 + MAX_SIGNATURE

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class Role(enum.IntEnum):
    """A member's role."""

    MEMBER = 1
    ADMIN = 2
    OWNER = 3


class Action(enum.IntEnum):
    """What a change does."""

    CREATE = 1
    ADD = 2
    REMOVE = 3
    LEAVE = 4
    SET_ROLE = 5
    TRANSFER_OWNER = 6
    RENAME = 7
    DELETE = 8


#: Error codes, each the name of a relay Reason (11.3).
GROUP_ERRORS = ("bad-change", "stale-change", "not-member", "not-allowed", "unknown-group",
                "group-exists")


class GroupError(ValueError):
    """
    A change was refused.  C{code} is one of L{GROUP_ERRORS}; the message
    is one line naming the rule, without key material.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


#: Which of C{target}, C{role}, C{name} each action carries (15.1).
_SHAPE: dict[Action, tuple[bool, bool, bool]] = {
    Action.CREATE: (False, False, True),
    Action.ADD: (True, False, False),
    Action.REMOVE: (True, False, False),
    Action.LEAVE: (False, False, False),
    Action.SET_ROLE: (True, True, False),
    Action.TRANSFER_OWNER: (True, False, False),
    Action.RENAME: (False, False, True),
    Action.DELETE: (False, False, False),
}


def check_group_name(name: str) -> str:
    """
    Return C{name} if it is a valid group name (1-64 bytes of UTF-8, no
    control characters), else raise L{GroupError} C{bad-change}.
    """
    size = len(name.encode("utf-8"))
    if not 1 <= size <= MAX_GROUP_NAME:
        raise GroupError("bad-change", f"a group name of {size} bytes (1 to {MAX_GROUP_NAME})")
    if _CONTROL.search(name):
        raise GroupError("bad-change", "a group name with a control character")
    return name


@dataclass(frozen=True, slots=True)
class GroupChange:
    """
    One change, as signed.  C{target} is C{""} and C{role} 0 when the
    action has none; C{name} is C{""} except for create and rename.
    C{scheme} and C{signature} are 0 and C{b""} until signed.
    """

    group_id: bytes
    epoch: int
    prev: bytes
    actor: str
    action: int
    target: str = ""
    role: int = 0
    name: str = ""
    made_at: int = 0
    scheme: int = 0
    signature: bytes = b""
    version: int = CHANGE_VERSION

    @property
    def body(self) -> bytes:
        """Everything before C{scheme}: what the signature covers."""
        return (u8(self.version) + self.group_id + u64(self.epoch) + self.prev
                + text8(self.actor) + u8(self.action) + text8(self.target) + u8(self.role)
                + text8(self.name) + u64(self.made_at))

    def encode(self) -> bytes:
        """The full encoding (15.1)."""
        return self.body + u16(self.scheme) + bytes16(self.signature)

    @property
    def digest(self) -> bytes:
        """SHA-256 of the full encoding: the next change's C{prev}."""
        return hashlib.sha256(self.encode()).digest()

    @property
    def signature_message(self) -> bytes:
        """The exact bytes the actor's key signs."""
        return CHANGE_SIGNATURE_LABEL + self.body

    def signed(self, scheme: int, signature: bytes) -> GroupChange:
        """This change with its signature."""
        return replace(self, scheme=scheme, signature=signature)


def sign_change(change: GroupChange, private_key: keys.PrivateKey) -> GroupChange:
    """C{change} signed with a key in memory (the actor's registered key)."""
    check_change(change)
    scheme, signature = keys.sign(private_key, change.signature_message)
    return change.signed(scheme, signature)


def verify_change(change: GroupChange, actor_key: keys.PublicKey) -> None:
    """
    Check the actor's signature.

    @raise GroupError: C{bad-change} (the signature does not verify).
    """
    try:
        keys.verify(actor_key, change.scheme, change.signature, change.signature_message)
    except keys.SignatureError as e:
        raise GroupError("bad-change", f"the change is not signed by {change.actor}'s key "
                                       f"({e.reason})") from None


def check_change(change: GroupChange) -> None:
    """
    The rules of 15.1 on one change alone: version, action, and the fields
    the action carries.

    @raise GroupError: C{bad-change}.
    """
    if change.version != CHANGE_VERSION:
        raise GroupError("bad-change", f"change version {change.version}, only 1 is known")
    if len(change.group_id) != GROUP_ID_LENGTH or len(change.prev) != HASH_LENGTH:
        raise GroupError("bad-change", "a group id of 16 bytes and a prev of 32 are required")
    try:
        action = Action(change.action)
    except ValueError:
        raise GroupError("bad-change", f"unknown action {change.action}") from None
    has_target, has_role, has_name = _SHAPE[action]
    if bool(change.target) != has_target:
        raise GroupError("bad-change", f"{_word(action)} {'needs' if has_target else 'takes no'}"
                                       " target")
    if has_role:
        if change.role not in (Role.MEMBER, Role.ADMIN):
            raise GroupError("bad-change", f"set-role to role {change.role} (1 or 2 only)")
    elif change.role != 0:
        raise GroupError("bad-change", f"{_word(action)} takes no role")
    if has_name:
        check_group_name(change.name)
    elif change.name:
        raise GroupError("bad-change", f"{_word(action)} takes no name")
    if action is Action.CREATE and (change.epoch != 1 or change.prev != NO_PREVIOUS):
        raise GroupError("bad-change", "a creation has epoch 1 and a prev of 32 zero bytes")
    if action is not Action.CREATE and change.epoch < 2:
        raise GroupError("bad-change", f"{_word(action)} at epoch {change.epoch}")
    if change.target and change.target == change.actor:
        raise GroupError("bad-change", f"{_word(action)} names the actor as its target")


def parse_change(data: bytes) -> GroupChange:
    """
    Parse one change exactly and check it alone (L{check_change}).

    @raise GroupError: C{bad-change} (too large, cut short, trailing
        bytes, a bad name, a field the action does not allow, a signature
        over 512 bytes).
    """
    if len(data) > MAX_CHANGE:
        raise GroupError("bad-change", f"a change of {len(data)} bytes, the most is {MAX_CHANGE}")
    r = Reader(data, "group change")
    try:
        version = r.u8("version")
        if version != CHANGE_VERSION:
            raise GroupError("bad-change", f"change version {version}, only 1 is known")
        change = GroupChange(
            group_id=r.fixed(GROUP_ID_LENGTH, "group_id"), epoch=r.u64("epoch"),
            prev=r.fixed(HASH_LENGTH, "prev"), actor=read_user_name(r, "actor"),
            action=r.u8("action"), target=_optional_name(r), role=r.u8("role"),
            name=r.text8("name"), made_at=r.u64("made_at"), scheme=r.u16("scheme"),
            signature=r.bytes16("signature"), version=version)
        r.finish()
    except RemoteProtocolError as e:
        raise GroupError("bad-change", f"{e.code}: {e.detail}") from None
    if len(change.signature) > MAX_SIGNATURE:
        raise GroupError("bad-change", f"a signature of {len(change.signature)} bytes")
    check_change(change)
    return change


def _optional_name(r: Reader) -> str:
    """A C{text8} target: empty, or a user name (else C{bad-value})."""
    target = r.text8("target")
    if target:
        try:
            check_user_name(target)
        except BadUserName as e:
            raise RemoteProtocolError("bad-value", f"target: {e}") from None
    return target


@dataclass(frozen=True)
class GroupState:
    """
    A group after the changes up to C{epoch}: C{head} is the last change's
    digest, C{members} each member's role.  A deleted group keeps its last
    state with C{deleted} true and accepts nothing more.
    """

    group_id: bytes
    name: str
    epoch: int
    head: bytes
    members: Mapping[str, int] = field(default_factory=dict)
    deleted: bool = False

    @property
    def owner(self) -> str:
        """The one member whose role is owner."""
        return next(user for user, role in self.members.items() if role == Role.OWNER)

    def role_of(self, user: str) -> int:
        """C{user}'s role, 0 when not a member."""
        return self.members.get(user, 0)


def apply_change(state: GroupState | None, change: GroupChange) -> GroupState:
    """
    The state after C{change}, by the rules of 15.3 (the signature is not
    checked here: see L{verify_change}); C{state} is C{None} before the
    creation.  Checks, in order: the change alone (L{check_change}); the
    group (C{unknown-group}, C{group-exists}); the chain (C{stale-change});
    the actor (C{not-member}); the rule of its action (C{not-allowed},
    C{bad-change}).

    @raise GroupError: see above.
    """
    check_change(change)
    action = Action(change.action)
    if state is None:
        if action is not Action.CREATE:
            raise GroupError("unknown-group", f"{_word(action)} for a group never created")
        return GroupState(change.group_id, change.name, 1, change.digest,
                          {change.actor: Role.OWNER})
    if change.group_id != state.group_id:
        raise GroupError("bad-change", "a change for another group")
    if action is Action.CREATE:
        raise GroupError("group-exists", "a creation for a group id already taken")
    if state.deleted:
        raise GroupError("unknown-group", "the group was deleted")
    if change.epoch != state.epoch + 1 or change.prev != state.head:
        raise GroupError("stale-change", f"the change extends epoch {change.epoch - 1}, "
                                         f"the group is at epoch {state.epoch}")
    actor_role = state.role_of(change.actor)
    if not actor_role:
        raise GroupError("not-member", f"{change.actor} is not a member")
    members = dict(state.members)
    name, deleted = state.name, False
    target, target_role = change.target, state.role_of(change.target)
    if action in (Action.SET_ROLE, Action.TRANSFER_OWNER, Action.RENAME, Action.DELETE):
        if actor_role != Role.OWNER:
            raise GroupError("not-allowed", f"only the owner may {_verb(action)}")
    if action is Action.ADD:
        if actor_role < Role.ADMIN:
            raise GroupError("not-allowed", "only the owner and admins add members")
        if target_role:
            raise GroupError("bad-change", f"{target} is already a member")
        members[target] = Role.MEMBER
    elif action is Action.REMOVE:
        if actor_role < Role.ADMIN:
            raise GroupError("not-allowed", "only the owner and admins remove members")
        if not target_role:
            raise GroupError("bad-change", f"{target} is not a member")
        if actor_role == Role.ADMIN and target_role >= Role.ADMIN:
            raise GroupError("not-allowed", "an admin cannot remove the owner or another admin")
        del members[target]
    elif action is Action.LEAVE:
        if actor_role == Role.OWNER:
            raise GroupError("not-allowed", "the owner must transfer ownership before leaving")
        del members[change.actor]
    elif action is Action.SET_ROLE:
        if not target_role:
            raise GroupError("bad-change", f"{target} is not a member")
        if target_role == change.role:
            raise GroupError("bad-change", f"{target} already has role {change.role}")
        members[target] = change.role
    elif action is Action.TRANSFER_OWNER:
        if not target_role:
            raise GroupError("bad-change", f"{target} is not a member")
        members[target] = Role.OWNER
        members[change.actor] = Role.ADMIN
    elif action is Action.RENAME:
        name = change.name
    else:
        deleted = True
    return GroupState(state.group_id, name, change.epoch, change.digest, members, deleted)


def _word(action: Action) -> str:
    return action.name.lower().replace("_", "-")


def _verb(action: Action) -> str:
    return {Action.SET_ROLE: "set roles", Action.TRANSFER_OWNER: "transfer ownership",
            Action.RENAME: "rename the group", Action.DELETE: "delete the group"}[action]


def affected(change: GroupChange) -> str | None:
    """
    The user a change takes out of the group (a removed target, or the
    actor who leaves), who is told of it though no longer a member.
    """
    if change.action == Action.REMOVE:
        return change.target
    if change.action == Action.LEAVE:
        return change.actor
    return None


KeyLookup = Callable[[str], "keys.PublicKey | None"]


def replay_log(changes: Iterable[bytes | GroupChange], key_for: KeyLookup,
               state: GroupState | None = None, group_id: bytes | None = None) -> GroupState:
    """
    Check a group's log as a member does (15.3): parse each change,
    verify its signature with C{key_for(actor)} (the key the member
    trusts for that user: pinned, or as the relay gave it), and apply it,
    starting from C{state} (C{None}: the log starts with the creation).
    C{group_id}, when given, is the group the log must be of.

    @raise GroupError: the first change refused, by L{parse_change},
        L{verify_change} (C{bad-change}, also for an actor with no key)
        or L{apply_change}; or C{unknown-group} for an empty log with no
        C{state}.
    """
    for item in changes:
        change = item if isinstance(item, GroupChange) else parse_change(item)
        if group_id is not None and change.group_id != group_id:
            raise GroupError("bad-change", "a change for another group in the log")
        key = key_for(change.actor)
        if key is None:
            raise GroupError("bad-change", f"no key for {change.actor}, who signed epoch "
                                           f"{change.epoch}")
        verify_change(change, key)
        state = apply_change(state, change)
    if state is None:
        raise GroupError("unknown-group", "an empty log")
    return state
