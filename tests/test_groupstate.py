"""
Group state and its signed changes (L{securechat.crypto.groupstate};
docs/protocol.rst 15.1, 15.3), and the group change vector (13.5).
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.groupstate import (
    MAX_CHANGE, NO_PREVIOUS, Action, GroupChange, GroupError, GroupState, Role, affected,
    apply_change, check_change, parse_change, replay_log, sign_change, verify_change)
from tests.change_vectors import COMPUTE, INPUT_FIELDS, OUTPUT_FIELDS
from tests.vectors import parse as parse_vectors

GID = bytes(range(16))


def key(name: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def public(name: str) -> Any:
    return key(name).public_key()


class Chain:
    """A group built change by change, each signed by its actor."""

    def __init__(self, owner: str = "alice", name: str = "team") -> None:
        self.changes: list[GroupChange] = []
        self.state: GroupState | None = None
        self.make(owner, Action.CREATE, name=name)

    def next(self, actor: str, action: int, target: str = "", role: int = 0,
             name: str = "", epoch: int | None = None, prev: bytes | None = None) -> GroupChange:
        """The next change, signed, not applied."""
        state = self.state
        if epoch is None:
            epoch = 1 if state is None else state.epoch + 1
        if prev is None:
            prev = NO_PREVIOUS if state is None else state.head
        return sign_change(GroupChange(GID, epoch, prev, actor, action, target, role, name,
                                       1_800_000_000 + epoch), key(actor))

    def make(self, actor: str, action: int, **kw: Any) -> GroupState:
        change = self.next(actor, action, **kw)
        self.state = apply_change(self.state, change)
        self.changes.append(change)
        return self.state


def members(*pairs: tuple[str, int]) -> dict[str, int]:
    return dict(pairs)


class ChangeEncodingTests(unittest.TestCase):
    """Encoding and exact parsing of one change (15.1)."""

    def test_roundTrip(self) -> None:
        """A signed change parses back to itself and its signature verifies."""
        change = Chain().changes[0]
        parsed = parse_change(change.encode())
        self.assertEqual(parsed, change)
        verify_change(parsed, public("alice"))

    def test_trailingBytes(self) -> None:
        """A change with a byte after the signature is bad-change."""
        e = self.assertRaises(GroupError, parse_change, Chain().changes[0].encode() + b"\x00")
        self.assertEqual(e.code, "bad-change")
        self.assertIn("trailing-bytes", str(e))

    def test_truncated(self) -> None:
        """A change cut short is bad-change."""
        e = self.assertRaises(GroupError, parse_change, Chain().changes[0].encode()[:-1])
        self.assertEqual(e.code, "bad-change")
        self.assertIn("truncated", str(e))

    def test_tooLarge(self) -> None:
        """A change over the largest possible encoding is refused before parsing."""
        e = self.assertRaises(GroupError, parse_change, b"\x01" * (MAX_CHANGE + 1))
        self.assertIn("the most is", str(e))

    def test_unknownVersion(self) -> None:
        """A version other than 1 is bad-change."""
        data = b"\x02" + Chain().changes[0].encode()[1:]
        e = self.assertRaises(GroupError, parse_change, data)
        self.assertIn("version 2", str(e))

    def test_unknownAction(self) -> None:
        """An action outside 1-8 is bad-change."""
        change = GroupChange(GID, 2, b"\x01" * 32, "alice", 9)
        e = self.assertRaises(GroupError, parse_change, change.encode())
        self.assertIn("unknown action 9", str(e))

    def test_badTargetName(self) -> None:
        """A target that is not a valid user name is bad-change."""
        change = GroupChange(GID, 2, b"\x01" * 32, "alice", Action.ADD, "Bob")
        e = self.assertRaises(GroupError, parse_change, change.encode())
        self.assertIn("target", str(e))

    def test_fieldsMustFitTheAction(self) -> None:
        """
        Each action carries exactly its fields: a remove without a target,
        a leave with a role, an add with a name, a set-role to owner, a
        rename without a name are all bad-change.
        """
        prev = b"\x01" * 32
        for change, words in [
            (GroupChange(GID, 2, prev, "alice", Action.REMOVE), "needs target"),
            (GroupChange(GID, 2, prev, "alice", Action.LEAVE, role=1), "takes no role"),
            (GroupChange(GID, 2, prev, "alice", Action.ADD, "bob", name="x"), "takes no name"),
            (GroupChange(GID, 2, prev, "alice", Action.SET_ROLE, "bob", Role.OWNER), "1 or 2"),
            (GroupChange(GID, 2, prev, "alice", Action.RENAME), "group name of 0 bytes"),
            (GroupChange(GID, 2, prev, "alice", Action.ADD, "alice"), "names the actor"),
        ]:
            e = self.assertRaises(GroupError, parse_change, change.encode())
            self.assertEqual(e.code, "bad-change")
            self.assertIn(words, str(e))

    def test_groupNameRules(self) -> None:
        """A name over 64 bytes, or with a control character, is bad-change."""
        for name, words in [("x" * 65, "65 bytes"), ("a\x1bb", "control character")]:
            change = GroupChange(GID, 1, NO_PREVIOUS, "alice", Action.CREATE, name=name)
            e = self.assertRaises(GroupError, parse_change, change.encode())
            self.assertIn(words, str(e))

    def test_creationShape(self) -> None:
        """A creation must have epoch 1 and a zero prev."""
        change = GroupChange(GID, 2, NO_PREVIOUS, "alice", Action.CREATE, name="t")
        e = self.assertRaises(GroupError, parse_change, change.encode())
        self.assertIn("epoch 1", str(e))

    def test_forgedSignature(self) -> None:
        """A change signed by someone other than its actor does not verify."""
        change = sign_change(GroupChange(GID, 1, NO_PREVIOUS, "alice", Action.CREATE, name="t"),
                             key("mallory"))
        e = self.assertRaises(GroupError, verify_change, change, public("alice"))
        self.assertEqual(e.code, "bad-change")
        self.assertIn("not signed by alice's key", str(e))

    def test_signatureCoversEveryField(self) -> None:
        """Changing the target after signing breaks the signature."""
        chain = Chain()
        change = chain.next("alice", Action.ADD, target="bob")
        altered = GroupChange(**{**_fields(change), "target": "eve"})
        self.assertRaises(GroupError, verify_change, altered, public("alice"))


    def test_largestChange(self) -> None:
        """
        MAX_CHANGE (714) is every field at its longest (names of 32 and 64
        bytes, a 512-byte signature): such an encoding is read through (and
        refused only because no action carries both a target and a name);
        one byte more is refused before parsing.  The longest real change,
        a rename, is 682 bytes and parses.
        """
        change = GroupChange(GID, 2, b"\x01" * 32, "a" * 32, Action.RENAME, "t" * 32,
                             name="n" * 64, scheme=0x0804, signature=b"s" * 512)
        data = change.encode()
        self.assertEqual((len(data), MAX_CHANGE), (714, 714))
        e = self.assertRaises(GroupError, parse_change, data)
        self.assertIn("rename takes no target", str(e))
        e = self.assertRaises(GroupError, parse_change, data + b"\x00")
        self.assertIn("a change of 715 bytes", str(e))
        rename = GroupChange(GID, 2, b"\x01" * 32, "a" * 32, Action.RENAME, name="n" * 64,
                             scheme=0x0804, signature=b"s" * 512)
        self.assertEqual(len(rename.encode()), 682)
        self.assertEqual(parse_change(rename.encode()), rename)

    def test_signatureLength(self) -> None:
        """A signature of 512 bytes parses; of 513 is bad-change."""
        ok = GroupChange(GID, 2, b"\x01" * 32, "alice", Action.LEAVE, signature=b"s" * 512)
        self.assertEqual(parse_change(ok.encode()).signature, b"s" * 512)
        long = GroupChange(GID, 2, b"\x01" * 32, "alice", Action.LEAVE, signature=b"s" * 513)
        e = self.assertRaises(GroupError, parse_change, long.encode())
        self.assertIn("a signature of 513 bytes", str(e))

    def test_longestName(self) -> None:
        """A group name of exactly 64 bytes is accepted (65 is not, above)."""
        change = GroupChange(GID, 1, NO_PREVIOUS, "alice", Action.CREATE, name="é" * 32)
        self.assertEqual(parse_change(change.encode()).name, "é" * 32)

    def test_versionZero(self) -> None:
        """Version 0 is refused too, by the parser and by check_change."""
        data = b"\x00" + Chain().changes[0].encode()[1:]
        self.assertIn("version 0", str(self.assertRaises(GroupError, parse_change, data)))
        for version in (0, 2):
            change = GroupChange(GID, 1, NO_PREVIOUS, "alice", Action.CREATE, name="t",
                                 version=version)
            e = self.assertRaises(GroupError, check_change, change)
            self.assertIn(f"version {version}", str(e))

    def test_idAndPrevLengths(self) -> None:
        """check_change wants a group id of exactly 16 bytes and a prev of exactly 32."""
        for group_id, prev in [(b"\x01" * 15, b"\x01" * 32), (b"\x01" * 17, b"\x01" * 32),
                               (b"\x01" * 16, b"\x01" * 31), (b"\x01" * 16, b"\x01" * 33)]:
            change = GroupChange(group_id, 2, prev, "alice", Action.LEAVE)
            e = self.assertRaises(GroupError, check_change, change)
            self.assertIn("16 bytes and a prev of 32", str(e))

    def test_targetWhereNone(self) -> None:
        """A leave (no target) naming a target is bad-change."""
        change = GroupChange(GID, 2, b"\x01" * 32, "alice", Action.LEAVE, "bob")
        e = self.assertRaises(GroupError, parse_change, change.encode())
        self.assertIn("leave takes no target", str(e))

    def test_creationPrevAndEpoch(self) -> None:
        """A creation with a prev other than zeros, or at epoch 0, is bad-change."""
        for epoch, prev in [(1, b"\x01" * 32), (0, NO_PREVIOUS)]:
            change = GroupChange(GID, epoch, prev, "alice", Action.CREATE, name="t")
            e = self.assertRaises(GroupError, parse_change, change.encode())
            self.assertIn("epoch 1 and a prev of 32 zero bytes", str(e))

    def test_changeAtEpochOne(self) -> None:
        """Only a creation is at epoch 1: an add at epoch 1 is bad-change."""
        change = GroupChange(GID, 1, NO_PREVIOUS, "alice", Action.ADD, "bob")
        e = self.assertRaises(GroupError, parse_change, change.encode())
        self.assertIn("add at epoch 1", str(e))

    def test_frozen(self) -> None:
        """A change and a state cannot be altered in place (they are chained by hash)."""
        import dataclasses
        change = Chain().changes[0]
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, change, "target", "eve")
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, Chain().state, "epoch", 9)


def _fields(change: GroupChange) -> dict[str, Any]:
    return {name: getattr(change, name) for name in change.__dataclass_fields__}


class ApplyChangeTests(unittest.TestCase):
    """The authorisation rules of 15.3, one test per rule."""

    def setUp(self) -> None:
        self.chain = Chain()
        self.chain.make("alice", Action.ADD, target="bob")
        self.chain.make("alice", Action.ADD, target="carol")
        self.chain.make("alice", Action.SET_ROLE, target="carol", role=Role.ADMIN)
        self.chain.make("carol", Action.ADD, target="dave")

    def refused(self, code: str, actor: str, action: int, **kw: Any) -> GroupError:
        change = self.chain.next(actor, action, **kw)
        e = self.assertRaises(GroupError, apply_change, self.chain.state, change)
        self.assertEqual(e.code, code, str(e))
        return e

    def test_creation(self) -> None:
        """The creation makes its actor the only member, as owner, at epoch 1."""
        state = Chain().state
        assert state is not None
        self.assertEqual((state.epoch, state.name, dict(state.members)),
                         (1, "team", {"alice": Role.OWNER}))

    def test_stateAfterChanges(self) -> None:
        """Adds, a role and an admin's add give the expected membership."""
        state = self.chain.state
        assert state is not None
        self.assertEqual(dict(state.members), members(
            ("alice", Role.OWNER), ("bob", Role.MEMBER), ("carol", Role.ADMIN),
            ("dave", Role.MEMBER)))
        self.assertEqual(state.epoch, 5)
        self.assertEqual(state.head, self.chain.changes[-1].digest)

    def test_staleEpoch(self) -> None:
        """A change for an epoch already taken is stale-change."""
        self.refused("stale-change", "alice", Action.ADD, target="eve", epoch=5)

    def test_prevAboveOrBelowHead(self) -> None:
        """Any prev other than the head is stale, whether it sorts above or below it."""
        for prev in (b"\x00" * 32, b"\xff" * 32):
            self.refused("stale-change", "alice", Action.ADD, target="eve", prev=prev)

    def test_staleMessage(self) -> None:
        """The stale-change message names the epoch the change extends and the group's."""
        e = self.refused("stale-change", "alice", Action.ADD, target="eve", epoch=7)
        self.assertIn("the change extends epoch 6, the group is at epoch 5", str(e))

    def test_demoteAdmin(self) -> None:
        """The owner sets an admin back to member."""
        state = self.chain.make("alice", Action.SET_ROLE, target="carol", role=Role.MEMBER)
        self.assertEqual(state.members["carol"], Role.MEMBER)

    def test_plainIntegerRoles(self) -> None:
        """
        The rules hold for a state whose roles are plain integers (as a
        store gives them back): the owner sets roles and transfers, an admin
        cannot remove an admin, and the owner is found.
        """
        assert self.chain.state is not None
        plain = GroupState(GID, "team", self.chain.state.epoch, self.chain.state.head,
                           {user: int(role) for user, role in self.chain.state.members.items()})
        self.chain.state = plain
        self.assertEqual(plain.owner, "alice")
        self.chain.make("alice", Action.SET_ROLE, target="bob", role=Role.ADMIN)
        self.refused("not-allowed", "carol", Action.REMOVE, target="bob")
        state = self.chain.make("alice", Action.TRANSFER_OWNER, target="bob")
        self.assertEqual(state.owner, "bob")

    def test_affected(self) -> None:
        """Only a remove (its target) and a leave (its actor) take someone out."""
        self.assertEqual(affected(self.chain.next("alice", Action.REMOVE, target="bob")), "bob")
        self.assertEqual(affected(self.chain.next("bob", Action.LEAVE)), "bob")
        for action, kw in [(Action.ADD, {"target": "eve"}), (Action.RENAME, {"name": "x"}),
                           (Action.DELETE, {}), (Action.TRANSFER_OWNER, {"target": "bob"}),
                           (Action.SET_ROLE, {"target": "bob", "role": Role.ADMIN})]:
            self.assertIsNone(affected(self.chain.next("alice", action, **kw)))
        self.assertIsNone(affected(Chain().changes[0]))

    def test_wrongPrev(self) -> None:
        """A change with the right epoch but another prev is stale-change."""
        self.refused("stale-change", "alice", Action.ADD, target="eve", prev=b"\x07" * 32)

    def test_futureEpoch(self) -> None:
        """A change skipping an epoch is stale-change."""
        self.refused("stale-change", "alice", Action.ADD, target="eve", epoch=7)

    def test_nonMemberActor(self) -> None:
        """A user who is not a member changes nothing: not-member."""
        self.refused("not-member", "eve", Action.ADD, target="frank")

    def test_memberCannotAdd(self) -> None:
        """A plain member cannot add: not-allowed."""
        self.refused("not-allowed", "bob", Action.ADD, target="eve")

    def test_memberCannotRemove(self) -> None:
        """A plain member cannot remove: not-allowed."""
        self.refused("not-allowed", "bob", Action.REMOVE, target="dave")

    def test_adminCannotRemoveOwner(self) -> None:
        """An admin cannot remove the owner."""
        self.refused("not-allowed", "carol", Action.REMOVE, target="alice")

    def test_adminCannotRemoveAdmin(self) -> None:
        """An admin cannot remove another admin."""
        self.chain.make("alice", Action.SET_ROLE, target="bob", role=Role.ADMIN)
        self.refused("not-allowed", "carol", Action.REMOVE, target="bob")

    def test_adminRemovesMember(self) -> None:
        """An admin removes a plain member."""
        state = self.chain.make("carol", Action.REMOVE, target="bob")
        self.assertNotIn("bob", state.members)

    def test_ownerRemovesAdmin(self) -> None:
        """The owner removes an admin."""
        state = self.chain.make("alice", Action.REMOVE, target="carol")
        self.assertNotIn("carol", state.members)

    def test_addExistingMember(self) -> None:
        """Adding a member twice is bad-change."""
        self.refused("bad-change", "alice", Action.ADD, target="bob")

    def test_removeNonMember(self) -> None:
        """Removing a non-member is bad-change."""
        self.refused("bad-change", "alice", Action.REMOVE, target="eve")

    def test_memberLeaves(self) -> None:
        """Anyone but the owner leaves; the leaver is the one affected."""
        change = self.chain.next("bob", Action.LEAVE)
        state = apply_change(self.chain.state, change)
        self.assertNotIn("bob", state.members)
        self.assertEqual(affected(change), "bob")

    def test_ownerCannotLeave(self) -> None:
        """The owner must transfer ownership before leaving."""
        e = self.refused("not-allowed", "alice", Action.LEAVE)
        self.assertIn("transfer", str(e))

    def test_onlyOwnerSetsRoles(self) -> None:
        """An admin cannot set roles."""
        self.refused("not-allowed", "carol", Action.SET_ROLE, target="bob", role=Role.ADMIN)

    def test_sameRole(self) -> None:
        """Setting the role a member has is bad-change."""
        self.refused("bad-change", "alice", Action.SET_ROLE, target="bob", role=Role.MEMBER)

    def test_setRoleOfOwner(self) -> None:
        """The owner cannot demote itself through set-role (it names itself)."""
        assert self.chain.state is not None
        change = GroupChange(GID, 6, self.chain.state.head, "alice", Action.SET_ROLE, "alice",
                             Role.MEMBER)
        change = change.signed(*keys.sign(key("alice"), change.signature_message))
        e = self.assertRaises(GroupError, apply_change, self.chain.state, change)
        self.assertEqual(e.code, "bad-change")
        self.assertIn("set-role names the actor", str(e))

    def test_transfer(self) -> None:
        """Transfer makes the target owner and the old owner admin: one owner."""
        state = self.chain.make("alice", Action.TRANSFER_OWNER, target="bob")
        self.assertEqual((state.members["bob"], state.members["alice"]), (Role.OWNER, Role.ADMIN))
        self.assertEqual([u for u, r in state.members.items() if r == Role.OWNER], ["bob"])
        self.assertEqual(state.owner, "bob")

    def test_onlyOwnerTransfers(self) -> None:
        """An admin cannot transfer ownership."""
        self.refused("not-allowed", "carol", Action.TRANSFER_OWNER, target="bob")

    def test_transferToNonMember(self) -> None:
        """Ownership goes only to a member."""
        self.refused("bad-change", "alice", Action.TRANSFER_OWNER, target="eve")

    def test_onlyOwnerRenames(self) -> None:
        """An admin cannot rename."""
        self.refused("not-allowed", "carol", Action.RENAME, name="new")

    def test_rename(self) -> None:
        """The owner renames."""
        self.assertEqual(self.chain.make("alice", Action.RENAME, name="new").name, "new")

    def test_onlyOwnerDeletes(self) -> None:
        """An admin cannot delete the group."""
        self.refused("not-allowed", "carol", Action.DELETE)

    def test_deletedAcceptsNothing(self) -> None:
        """After the delete, any change is unknown-group."""
        self.chain.make("alice", Action.DELETE)
        self.refused("unknown-group", "alice", Action.RENAME, name="back")

    def test_deletedIdNotReused(self) -> None:
        """A creation for the id of a deleted group is group-exists."""
        self.chain.make("alice", Action.DELETE)
        e = self.assertRaises(GroupError, apply_change, self.chain.state, Chain("bob").changes[0])
        self.assertEqual(e.code, "group-exists")

    def test_changeBeforeCreation(self) -> None:
        """A change to a group never created is unknown-group."""
        change = self.chain.next("alice", Action.ADD, target="eve")
        e = self.assertRaises(GroupError, apply_change, None, change)
        self.assertEqual(e.code, "unknown-group")

    def test_secondCreation(self) -> None:
        """A creation for a group that exists is group-exists."""
        change = Chain("bob").changes[0]
        e = self.assertRaises(GroupError, apply_change, self.chain.state, change)
        self.assertEqual(e.code, "group-exists")

    def test_otherGroup(self) -> None:
        """A change naming another group id is bad-change."""
        change = self.chain.next("alice", Action.ADD, target="eve")
        for group_id in (b"\x09" * 16, b"\x00" * 16):
            other = sign_change(GroupChange(**{**_fields(change), "group_id": group_id}),
                                key("alice"))
            e = self.assertRaises(GroupError, apply_change, self.chain.state, other)
            self.assertEqual(e.code, "bad-change")


class ReplayLogTests(unittest.TestCase):
    """What a member checks of the log the relay gives it (15.3)."""

    def setUp(self) -> None:
        self.chain = Chain()
        self.chain.make("alice", Action.ADD, target="bob")
        self.chain.make("alice", Action.ADD, target="carol")
        self.chain.make("bob", Action.LEAVE)
        self.log = [c.encode() for c in self.chain.changes]

    def test_replay(self) -> None:
        """Replaying the encoded log gives the relay's state."""
        state = replay_log(self.log, public, group_id=GID)
        self.assertEqual(state, self.chain.state)

    def test_replayFromState(self) -> None:
        """A member that knows epoch 2 replays only the rest."""
        known = replay_log(self.log[:2], public)
        self.assertEqual(replay_log(self.log[2:], public, state=known), self.chain.state)

    def test_forgedChangeInLog(self) -> None:
        """
        A relay that adds a member with a change alice did not sign (signed
        by the relay's own key) is caught.
        """
        forged = sign_change(GroupChange(GID, 5, self.chain.changes[-1].digest, "alice",
                                         Action.ADD, "mallory"), key("relay"))
        e = self.assertRaises(GroupError, replay_log, self.log + [forged.encode()], public)
        self.assertEqual(e.code, "bad-change")
        self.assertIn("not signed by alice", str(e))

    def test_droppedChange(self) -> None:
        """A log with a change left out breaks the chain: stale-change."""
        e = self.assertRaises(GroupError, replay_log, self.log[:2] + self.log[3:], public)
        self.assertEqual(e.code, "stale-change")

    def test_reorderedChanges(self) -> None:
        """Two changes swapped break the chain."""
        log = self.log[:2] + [self.log[3], self.log[2]]
        e = self.assertRaises(GroupError, replay_log, log, public)
        self.assertEqual(e.code, "stale-change")

    def test_unknownActor(self) -> None:
        """A change by a user the member has no key for is bad-change."""
        e = self.assertRaises(GroupError, replay_log, self.log,
                              lambda name: None if name == "bob" else public(name))
        self.assertIn("no key for bob", str(e))

    def test_logOfAnotherGroup(self) -> None:
        """A log for another group id is refused."""
        for group_id in (b"\x05" * 16, b"\x00" * 16):
            e = self.assertRaises(GroupError, replay_log, self.log, public, None, group_id)
            self.assertIn("another group", str(e))

    def test_emptyLog(self) -> None:
        """An empty log with no known state is unknown-group."""
        e = self.assertRaises(GroupError, replay_log, [], public)
        self.assertEqual(e.code, "unknown-group")


DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"


class GroupChangeVectorTests(unittest.TestCase):
    """The vector of 13.5, byte for byte."""

    def test_vector(self) -> None:
        """
        docs/protocol.rst 13.5 "Group change": the body, signed message,
        signature, encoding and digest are what the implementation makes,
        and the change verifies with the actor's key.
        """
        vector = parse_vectors(DOC.read_text())["group-change"]
        self.assertEqual(set(vector), set(INPUT_FIELDS) | set(OUTPUT_FIELDS))
        computed = COMPUTE({k: v for k, v in vector.items() if k in INPUT_FIELDS})
        for name in OUTPUT_FIELDS:
            self.assertEqual(computed[name].hex(), vector[name].hex(), f"{name} differs")
        change = parse_change(vector["change"])
        seed = ed25519.Ed25519PrivateKey.from_private_bytes(vector["actor.seed"])
        verify_change(change, seed.public_key())
