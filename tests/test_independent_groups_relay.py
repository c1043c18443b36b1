"""
The clean-room group member (L{tests.independent_changes} for the log,
L{tests.independent_groups} for sender keys and messages,
L{tests.independent_mailbox} for the letters that carry keys, all written
from docs/protocol.rst alone) in a group with the real client, through the
real relay on the in-memory network.  The clean-room member's connection
to the relay is the test harness's (the relay messages are its transport);
everything of the group it makes and checks itself.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import load_der_public_key
from twisted.trial import unittest

from securechat.client.groupmembers import Action
from securechat.wire.groups import GetGroupLog, GroupChanged, GroupLogPage, GroupMessage, GroupPost
from securechat.wire.mailbox import (
    Bundle,
    FetchBundle,
    FetchLetter,
    GetUserKey,
    Letter,
    LetterArrived,
    PostLetter,
    UploadPrekeys,
    UserKey,
)
from tests import independent_changes as changes
from tests import independent_groups as groups
from tests import independent_mailbox as mailbox
from tests.relay_harness import Harness, user_key
from tests.test_client_groupsession import Member

NOW = 1_700_000_000


class CleanRoomMemberTests(unittest.TestCase):
    """dave, the clean-room member, joins alice's group, reads and writes."""

    def setUp(self) -> None:
        self.h = Harness()
        self.h.clock.advance(NOW)
        self.alice = Member(self.h, "alice")
        self.alice.login()
        self.dave = self.h.login("dave")
        self.dave_key = user_key("dave")
        spk, self.spk_private = mailbox.signed_prekey("dave", self.dave_key, 1, b"\x11" * 32, NOW)
        self.dave.send(UploadPrekeys(spk, b""))
        self.h.pump()
        self.alice.session.create("team")
        self.h.pump()
        self.alice.session.change("team", Action.ADD, target="dave")
        self.h.pump()

    def key_of(self, user: str) -> object:
        """A user's registered key, as the relay gives it (GET_USER_KEY)."""
        self.dave.send(GetUserKey(user))
        self.h.pump()
        [answer] = [m for m in self.dave.take() if isinstance(m, UserKey)]
        return load_der_public_key(answer.user_key)

    def join(self) -> tuple[bytes, dict, list[bytes]]:
        """GROUP_CHANGED for dave's addition, then the log from the creation, replayed (15.3)."""
        [changed] = [m for m in self.dave.take() if isinstance(m, GroupChanged)]
        group_id = changes.parse_change(changed.change)["group_id"]
        self.dave.send(GetGroupLog(group_id, 0))
        self.h.pump()
        [page] = [m for m in self.dave.take() if isinstance(m, GroupLogPage)]
        log = [entry.change for entry in page.changes]
        alice = self.key_of("alice")
        state = changes.replay(log, lambda user: alice, group_id)
        return group_id, state, log

    def test_joinsAndVerifiesTheLog(self) -> None:
        """
        The log the real client's changes made replays in the clean room:
        alice owner, dave member, at epoch 2; one flipped signature byte
        is bad-change.
        """
        group_id, state, log = self.join()
        self.assertEqual((state["name"], state["epoch"], state["members"]),
                         ("team", 2, {"alice": changes.OWNER, "dave": changes.MEMBER}))
        forged = log[1][:-1] + bytes([log[1][-1] ^ 1])
        alice = user_key("alice").public_key()
        e = self.assertRaises(mailbox.Refused, changes.replay, [log[0], forged], lambda user: alice, group_id)
        self.assertEqual(e.code, "bad-change")

    def test_readsTheRealClientsMessage(self) -> None:
        """
        alice's client sends her chain to dave in a letter of content type
        2; the clean room opens it (14.4), takes the distribution (16.2)
        and opens alice's group message (16.4).
        """
        group_id, state, log = self.join()
        self.alice.session.say("team", "hello dave")
        self.h.pump()
        arrived = self.dave.take()
        [message] = [m for m in arrived if isinstance(m, GroupMessage)]
        [notice] = [m for m in arrived if isinstance(m, LetterArrived)]
        receiver = groups.Receiver(group_id)
        self.assertEqual(receiver.open(message.body, group_id, message.sender, changes.rekey_epoch(log)),
                         ("held",))
        self.dave.send(FetchLetter(notice.sender, notice.letter_id))
        self.h.pump()
        [letter] = [m for m in self.dave.take() if isinstance(m, Letter)]
        content_type, content = mailbox.open_letter(
            letter.letter, ("alice", notice.letter_id), "dave", self.dave_key.public_key(),
            user_key("alice").public_key(), {1: self.spk_private}, {})
        self.assertEqual(content_type, 2)
        [result] = receiver.add("alice", groups.parse_distribution(content))
        self.assertEqual(result, ("opened", 1, b"hello dave", None, False))

    def test_realClientReadsTheCleanRoomsMessage(self) -> None:
        """
        dave makes a chain, seals it to alice in a letter of content type 2
        and posts a group message sealed with it: alice's client fetches
        the letter by itself and shows the message as dave's.
        """
        group_id, state, log = self.join()
        self.dave.send(FetchBundle("alice"))
        self.h.pump()
        [bundle] = [m for m in self.dave.take() if isinstance(m, Bundle)]
        chain_key, seed = b"\x33" * 32, b"\x44" * 32
        dist = groups.distribution(group_id, state["epoch"], 7, 0, chain_key, seed)
        letter = mailbox.seal("dave", self.dave_key, "alice", user_key("alice").public_key(),
                              bundle.signed_prekey, bundle.one_time_prekey, dist, NOW, b"L" * 16,
                              b"\x22" * 32, content_type=2)
        body, _ = groups.seal(group_id, "dave", state["epoch"], 7, 0, chain_key, seed, NOW,
                              "hi alice, from the spec".encode())
        self.dave.send(GroupPost(group_id, body))
        self.h.pump()
        self.assertIn(("dave", group_id), [(e.sender, e.group_id) for _, e in self.alice.view.of("group_event")])
        self.dave.send(PostLetter("alice", b"L" * 16, letter))
        self.h.pump()
        self.assertEqual(self.alice.texts(), [("dave", "hi alice, from the spec")])
        self.assertEqual(self.alice.view.of("letter_opened"), [])
