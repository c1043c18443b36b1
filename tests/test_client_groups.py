"""
Tests for L{securechat.client.groups} (with its membership history and its
store): the client's end-to-end group layer, sans IO, driven by a fake
relay that carries out its effects (docs/protocol.rst, 16.4-16.5).
"""

from __future__ import annotations

import os
import stat

from twisted.trial import unittest

from securechat.client.groupmembers import Action, MembershipChange
from securechat.client.groups import (
    Event,
    GroupFailure,
    GroupGap,
    GroupKeys,
    GroupOutput,
    GroupText,
    PostBody,
    SendKey,
    WaitingForKey,
)
from securechat.client.display import untrusted
from securechat.client.groupstore import GroupKeyStore
from securechat.client.groupview import GroupLines
from securechat.crypto.senderkeys import MAX_COUNTER, GroupKeyError, SenderChain, parse_distribution

GROUP = b"G" * 16


class FakeRelay:
    """
    Carries out effects: keys go into a letter queue (delivered on
    L{deliver_keys}), bodies get the next seq and go to every other member
    (or are kept, with C{hold_bodies}).
    """

    def __init__(self, users: list[str]) -> None:
        self.clients = {u: GroupKeys(u, GroupKeyStore(None)) for u in users}
        self.members = [users[0]]
        self.seq = 0
        self.letters: list[SendKey] = []
        self.bodies: list[tuple[int, str, bytes]] = []
        self.events: dict[str, list[Event]] = {u: [] for u in users}
        #: Whether key letters are kept by the mailbox as soon as they are asked for.
        self.hand_over = True
        out = self.clients[users[0]].created(GROUP, MembershipChange(1, Action.CREATE, users[0]))
        self.events[users[0]].extend(out.events)
        self.epoch = 1

    def change(self, action: Action, actor: str, target: str = "") -> None:
        self.epoch += 1
        change = MembershipChange(self.epoch, action, actor, target)
        before = list(self.members)
        if action == Action.ADD:
            self.members.append(target)
        elif action in (Action.REMOVE, Action.LEAVE):
            self.members.remove(target or actor)
        for user in before:
            self.run(user, self.clients[user].changed(GROUP, change))
        if action == Action.ADD:
            self.run(target, self.clients[target].joined(GROUP, self.epoch, list(self.members)))

    def run(self, user: str, out: GroupOutput) -> None:
        self.events[user].extend(out.events)
        for effect in out.effects:
            if isinstance(effect, SendKey):
                self.letters.append(effect)
                if self.hand_over:
                    self.clients[user].key_handed_over(effect.owed_id)
            else:
                assert isinstance(effect, PostBody)
                self.seq += 1
                self.bodies.append((self.seq, user, effect.body))

    def send(self, user: str, text: str) -> GroupOutput:
        out = self.clients[user].send(GROUP, text.encode(), 1000 + self.seq)
        self.run(user, out)
        return out

    def deliver_keys(self) -> None:
        letters, self.letters = self.letters, []
        for letter in letters:
            sender = self.sender_of(letter)
            self.run(letter.recipient, self.clients[letter.recipient].key_arrived(sender, letter.content))

    def sender_of(self, letter: SendKey) -> str:
        dist = parse_distribution(letter.content)
        for user, client in self.clients.items():
            own = client.store.own_chain(GROUP)
            if own is not None and own["chain_id"] == dist.chain_id:
                return user
        raise AssertionError("no sender")

    def deliver_bodies(self, to: list[str] | None = None, order: list[int] | None = None) -> None:
        bodies, self.bodies = self.bodies, []
        picked = bodies if order is None else [bodies[i] for i in order]
        for seq, sender, body in picked:
            for user in (to if to is not None else self.members):
                if user != sender:
                    self.run(user, self.clients[user].message_arrived(GROUP, seq, sender, 5, body))

    def texts(self, user: str) -> list[tuple[str, str]]:
        return [(e.sender, e.text) for e in self.events[user] if isinstance(e, GroupText)]

    def kinds(self, user: str) -> list[str]:
        return [e.kind for e in self.events[user]]

    def failures(self, user: str) -> list[str]:
        return [e.code for e in self.events[user] if isinstance(e, GroupFailure)]


def copy_of(client: GroupKeys, path: str | None = None) -> GroupKeys:
    """Another client of the same user, from a copy of its file."""
    store = GroupKeyStore(path)
    client.store.db.backup(store.db)
    return GroupKeys(client.user, store)


def three() -> FakeRelay:
    relay = FakeRelay(["alice", "bob", "carol", "dave", "mallory"])
    relay.change(Action.ADD, "alice", "bob")
    relay.change(Action.ADD, "alice", "carol")
    return relay


class SendingTests(unittest.TestCase):
    """
    Sending: a chain first, its keys to the others, then the body.
    """

    def test_firstMessage(self) -> None:
        """
        alice's first message makes a chain: a key letter to each other
        member, then the body; both open it.
        """
        relay = three()
        out = relay.send("alice", "hello")
        self.assertEqual([(type(e).__name__, getattr(e, "recipient", "")) for e in out.effects],
                         [("SendKey", "bob"), ("SendKey", "carol"), ("PostBody", "")])
        relay.deliver_keys()
        relay.deliver_bodies()
        self.assertEqual(relay.texts("bob"), [("alice", "hello")])
        self.assertEqual(relay.texts("carol"), [("alice", "hello")])

    def test_secondMessageNoKeys(self) -> None:
        """
        The next message uses the same chain: no key letters.
        """
        relay = three()
        relay.send("alice", "one")
        out = relay.send("alice", "two")
        self.assertEqual([type(e) for e in out.effects], [PostBody])

    def test_chainStoredBeforePost(self) -> None:
        """
        When the body is handed out, the chain on disk is already at the
        next counter (a crash cannot reuse the message key).
        """
        relay = three()
        relay.send("alice", "one")
        own = relay.clients["alice"].store.own_chain(GROUP)
        assert own is not None
        self.assertEqual(own["counter"], 1)

    def test_exhaustedChainReplaced(self) -> None:
        """
        A chain with no counter left is replaced before the next message,
        and the new one is handed to every other member.
        """
        relay = three()
        relay.send("alice", "one")
        store = relay.clients["alice"].store
        record = store.own_chain(GROUP)
        assert record is not None
        store.save_own_chain(GROUP, dict(record, counter=MAX_COUNTER + 1))
        out = relay.send("alice", "two")
        self.assertEqual([getattr(e, "recipient", "") for e in out.effects], ["bob", "carol", ""])
        self.assertNotEqual(parse_distribution(out.effects[0].content).chain_id, record["chain_id"])

    def test_keyInRealLetter(self) -> None:
        """
        The key effect sealed in a real letter of content type 2 and
        opened by the recipient (14.3, 14.4) gives the group layer what it
        needs: bob opens alice's message.
        """
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from securechat.crypto.letters import CONTENT_GROUP_KEY, open_letter, seal_letter
        from securechat.crypto.prekeys import PrekeyBundle, PrekeyRing, generate_signed_prekey

        alice_key, bob_key = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
        spk, spk_private = generate_signed_prekey("bob", bob_key, 1, 1000)
        ring = PrekeyRing()
        ring.signed[1] = spk_private
        relay = three()
        relay.send("alice", "sealed for real")
        key = next(e for e in relay.letters if e.recipient == "bob")
        letter = seal_letter(sender="alice", sender_private=alice_key, recipient="bob",
                             recipient_key=bob_key.public_key(), bundle=PrekeyBundle("bob", spk, None),
                             content=key.content, content_type=CONTENT_GROUP_KEY, sent_at=1)
        opened = open_letter(letter.raw, recipient="bob", recipient_key=bob_key.public_key(),
                             sender_key=alice_key.public_key(), prekeys=ring)
        relay.run("bob", relay.clients["bob"].key_arrived(opened.header.sender, opened.content))
        relay.deliver_bodies(to=["bob"])
        self.assertEqual(relay.texts("bob"), [("alice", "sealed for real")])

    def test_owedUntilHandedOver(self) -> None:
        """
        A key letter not yet kept by the mailbox is owed: after a restart
        the layer hands it out again (the same bytes), until it is handed
        over; bob, given it twice, opens alice's message once, with no
        refusal.
        """
        relay = three()
        relay.hand_over = False
        out = relay.send("alice", "one")
        again = copy_of(relay.clients["alice"]).owed_keys().effects  # a restart
        self.assertEqual(again, [e for e in out.effects if isinstance(e, SendKey)])
        first = again[0]
        assert isinstance(first, SendKey)
        relay.clients["alice"].key_handed_over(first.owed_id)
        self.assertEqual([e.recipient for e in relay.clients["alice"].owed_keys().effects
                          if isinstance(e, SendKey)], ["carol"])
        relay.letters += [e for e in again if isinstance(e, SendKey)]
        relay.deliver_keys()
        relay.deliver_bodies()
        self.assertEqual((relay.texts("bob"), relay.failures("bob")), ([("alice", "one")], []))

    def test_notMember(self) -> None:
        """
        Sending in a group we are not in is C{not-member}; in one we do not
        know, C{unknown-group}.
        """
        relay = three()
        relay.change(Action.REMOVE, "alice", "carol")
        e = self.assertRaises(GroupKeyError, relay.clients["carol"].send, GROUP, b"x", 1)
        self.assertEqual(e.code, "unknown-group")  # carol forgot the group
        relay.clients["dave"].joined(GROUP, relay.epoch, ["alice", "bob"])
        e = self.assertRaises(GroupKeyError, relay.clients["dave"].send, GROUP, b"x", 1)
        self.assertEqual(e.code, "not-member")


class ReceivingTests(unittest.TestCase):
    """
    Receiving: held until the key, gaps, late, replays, wrong senders.
    """

    def test_waitingThenShown(self) -> None:
        """
        A body that comes before alice's key letter is shown as waiting for
        her key, then as text when the letter comes (with its seq).
        """
        relay = three()
        relay.send("alice", "early")
        relay.deliver_bodies()
        self.assertEqual(relay.kinds("bob"), ["waiting"])
        relay.deliver_keys()
        self.assertEqual(relay.kinds("bob"), ["waiting", "message"])
        shown = relay.events["bob"][-1]
        assert isinstance(shown, GroupText)
        self.assertEqual((shown.seq, shown.text), (1, "early"))

    def test_gapAndLate(self) -> None:
        """
        0, 2, 1 from the relay: a gap of one is shown before 2, and 1 is
        shown as late.
        """
        relay = three()
        for i in range(3):
            relay.send("alice", f"m{i}")
        relay.deliver_keys()
        relay.deliver_bodies(to=["bob"], order=[0, 2, 1])
        self.assertEqual(relay.kinds("bob"), ["message", "gap", "message", "message"])
        gap, late = relay.events["bob"][1], relay.events["bob"][3]
        assert isinstance(gap, GroupGap) and isinstance(late, GroupText)
        self.assertEqual((gap.first, gap.count, late.text, late.late), (1, 1, "m1", True))

    def test_relayReplay(self) -> None:
        """
        The relay delivering a body twice: the second is C{replayed}.
        """
        relay = three()
        relay.send("alice", "once")
        relay.deliver_keys()
        body = relay.bodies[0]
        relay.deliver_bodies(to=["bob"])
        relay.bodies = [body]
        relay.deliver_bodies(to=["bob"])
        self.assertEqual(relay.failures("bob"), ["replayed"])

    def test_wrongSender(self) -> None:
        """
        alice's body delivered as carol's is C{wrong-sender}, not shown.
        """
        relay = three()
        relay.send("alice", "mine")
        relay.deliver_keys()
        seq, _, body = relay.bodies[0]
        relay.run("bob", relay.clients["bob"].message_arrived(GROUP, seq, "carol", 5, body))
        self.assertEqual((relay.failures("bob"), relay.texts("bob")), (["wrong-sender"], []))

    def test_senderNotMember(self) -> None:
        """
        A body from someone who is not a member at its epoch (a relay
        letting mallory post) is C{not-member}.
        """
        relay = three()
        chain = SenderChain.create(GROUP, "mallory", relay.epoch)
        body = chain.seal(b"hi", epoch=relay.epoch, sent_at=1).encode()
        relay.run("bob", relay.clients["bob"].message_arrived(GROUP, 9, "mallory", 5, body))
        self.assertEqual(relay.failures("bob"), ["not-member"])

    def test_keyFromNonMember(self) -> None:
        """
        A key letter from someone who is not a member is C{not-member}.
        """
        relay = three()
        dist = SenderChain.create(GROUP, "mallory", relay.epoch).distribution().encode()
        relay.run("bob", relay.clients["bob"].key_arrived("mallory", dist))
        self.assertEqual(relay.failures("bob"), ["not-member"])

    def test_pendingUntilLog(self) -> None:
        """
        A body of an epoch the log has not reached waits, silently, and
        is opened once the change comes.
        """
        relay = three()
        relay.send("alice", "first")
        relay.deliver_keys()
        relay.deliver_bodies()
        # carol learns of dave's addition after alice's next message.
        relay.clients["alice"].changed(GROUP, MembershipChange(4, Action.ADD, "alice", "dave"))
        relay.send("alice", "after")
        relay.deliver_bodies(to=["carol"])
        self.assertEqual(relay.texts("carol"), [("alice", "first")])
        relay.run("carol", relay.clients["carol"].changed(GROUP, MembershipChange(4, Action.ADD, "alice", "dave")))
        self.assertEqual(relay.texts("carol"), [("alice", "first"), ("alice", "after")])

    def test_pendingBounded(self) -> None:
        """
        Past max_pending, the oldest waiting body is given up and shown as
        C{held-overflow}.
        """
        bob = GroupKeys("bob", GroupKeyStore(None), max_pending=1)
        chain = SenderChain.create(GROUP, "alice", 1)
        for seq in (1, 2):
            out = bob.message_arrived(GROUP, seq, "alice", 5, chain.seal(b"x", epoch=1, sent_at=1).encode())
        self.assertEqual([(e.code, e.seq) for e in out.events if isinstance(e, GroupFailure)],
                         [("held-overflow", 1)])


class RotationTests(unittest.TestCase):
    """
    Rotation (16.5): on removal or leave, and for a new member.
    """

    def test_removedMemberGetsNoNewKey(self) -> None:
        """
        After mallory's removal alice's next message comes with a new chain,
        given to bob and carol only.  A mallory client that ignores her
        removal (the relay still giving her bodies) only ever shows it as
        waiting for alice's key: she never gets the new chain.
        """
        relay = three()
        relay.change(Action.ADD, "alice", "mallory")
        relay.send("alice", "before")
        relay.deliver_keys()
        relay.deliver_bodies()
        self.assertEqual(relay.texts("mallory"), [("alice", "before")])
        mallory_view = copy_of(relay.clients["mallory"])  # will not forget
        relay.change(Action.REMOVE, "alice", "mallory")
        out = relay.send("alice", "after")
        self.assertEqual([e.recipient for e in out.effects if isinstance(e, SendKey)], ["bob", "carol"])
        relay.deliver_keys()
        seq, sender, body = relay.bodies[0]
        relay.deliver_bodies()
        self.assertEqual(relay.texts("bob")[-1], ("alice", "after"))
        # Her copy waits for the log to reach the message's epoch ...
        self.assertEqual(mallory_view.message_arrived(GROUP, seq, sender, 5, body).events, [])
        # ... and even told of an epoch 5 without her removal, cannot read it.
        events = mallory_view.changed(GROUP, MembershipChange(5, Action.RENAME, "alice")).events
        self.assertEqual([e.kind for e in events], ["waiting"])

    def test_leaveRotates(self) -> None:
        """
        When carol leaves, bob's next message uses a new chain id, given to
        alice only.
        """
        relay = three()
        relay.send("bob", "one")
        first = parse_distribution(relay.letters[0].content).chain_id
        relay.change(Action.LEAVE, "carol")
        relay.send("bob", "two")
        keys = [e for e in relay.letters if isinstance(e, SendKey)]
        self.assertEqual([k.recipient for k in keys[-1:]], ["alice"])
        self.assertNotEqual(parse_distribution(keys[-1].content).chain_id, first)

    def test_newMemberCurrentChainOnly(self) -> None:
        """
        When dave is added, alice sends him her chain at its current
        counter (2, after two messages); dave cannot read those two and
        reads the next.
        """
        relay = three()
        relay.send("alice", "one")
        relay.send("alice", "two")
        relay.deliver_keys()
        relay.deliver_bodies()
        old = relay.clients["alice"]
        relay.change(Action.ADD, "alice", "dave")
        [key] = relay.letters
        self.assertEqual((key.recipient, parse_distribution(key.content).counter), ("dave", 2))
        relay.send("alice", "three")
        relay.deliver_keys()
        relay.deliver_bodies()
        self.assertIs(relay.clients["alice"], old)
        self.assertEqual(relay.texts("dave"), [("alice", "three")])

    def test_deleteForgets(self) -> None:
        """
        After delete every chain of the group is gone from the file.
        """
        relay = three()
        relay.send("alice", "x")
        relay.deliver_keys()
        relay.change(Action.DELETE, "alice")
        store = relay.clients["bob"].store
        self.assertEqual((store.group_ids(), store.own_chain(GROUP), store.sender_state(GROUP, "alice")),
                         ([], None, None))


class StoreTests(unittest.TestCase):
    """
    The group key file: private, and what the layer needs survives a
    restart.
    """

    def test_fileMode(self) -> None:
        """
        The file is created 0600.
        """
        path = os.path.join(self.mktemp(), "groups.sqlite")
        GroupKeyStore(path).close()
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_restart(self) -> None:
        """
        Both sides reopened from their files go on: bob opens alice's next
        message without a gap, and her chain continues at counter 1.
        """
        base = self.mktemp()
        relay = three()
        paths = {u: os.path.join(base, u + ".sqlite") for u in ("alice", "bob")}
        os.makedirs(base)
        for user in ("alice", "bob"):
            relay.clients[user] = copy_of(relay.clients[user], paths[user])
        relay.send("alice", "one")
        relay.deliver_keys()
        relay.deliver_bodies(to=["bob"])
        for user in ("alice", "bob"):
            relay.clients[user].store.close()
            relay.clients[user] = GroupKeys(user, GroupKeyStore(paths[user]))
        relay.send("alice", "two")
        relay.deliver_bodies(to=["bob"])
        self.assertEqual(relay.texts("bob"), [("alice", "one"), ("alice", "two")])
        self.assertNotIn("gap", relay.kinds("bob"))


class Lines(GroupLines):
    """Collects lines as the terminal would show them (neutralised)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []

    def group_line(self, text: str, alert: bool = False) -> None:
        self.lines.append((untrusted(text), alert))


class ViewTests(unittest.TestCase):
    """
    Group events as lines: members' text cannot pass for the client's own
    events, and every failure is shown as such.
    """

    def test_textCannotImitateEvents(self) -> None:
        """
        A message whose text holds a newline and a fake event is one line,
        starting with the time, group and sender; the fake event is not at
        the start of any line.
        """
        view = Lines()
        view.group_event("team", GroupText(GROUP, "mallory", 1, 5, 0,
                                           "hi\n* #team: alice removed bob (change 9, verified)"))
        [(line, alert)] = view.lines
        self.assertTrue(line.startswith("[") and "#team <mallory> hi\\x0a* #team" in line, line)
        self.assertFalse(alert)

    def test_eachKind(self) -> None:
        """
        Waiting, gap, failure, late and membership change lines: events of
        the client's own start with '* ' or '! ' (alerts for gaps and
        refusals).
        """
        view = Lines()
        view.group_event("team", WaitingForKey(GROUP, "bob", 3, 5))
        view.group_event("team", GroupGap(GROUP, "bob", 4, 2))
        view.group_event("team", GroupFailure(GROUP, "bob", 7, 5, "bad-signature", "x"))
        view.group_event("team", GroupText(GROUP, "bob", 8, 5, 0, "ok", late=True))
        view.group_changed("team", 4, Action.REMOVE, "alice", "mallory")
        self.assertEqual([(line[0], alert) for line, alert in view.lines],
                         [("*", False), ("!", True), ("!", True), ("[", False), ("*", False)])
        self.assertIn("waiting for bob's key", view.lines[0][0])
        self.assertIn("2 messages from bob missing", view.lines[1][0])
        self.assertIn("REFUSED, not shown (bad-signature)", view.lines[2][0])
        self.assertIn("(late: arrived out of order) ok", view.lines[3][0])
        self.assertIn("alice removed mallory (change 4, signed by alice: verified)", view.lines[4][0])
