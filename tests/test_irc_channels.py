"""
Groups as IRC channels (L{securechat.client.irc.channels}), in memory:
alice on Twisted's L{IRCClient} through her gateway, bob and carol on plain
client cores, every client with a group file, all on the real relay over
the in-memory network (L{tests.irc_harness}).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.groupmembers import Action
from securechat.client.groups import GroupFailure, GroupGap, GroupText, WaitingForKey
from tests.irc_harness import GatewayHarness, IrcUser
from tests.test_client_core import RecordingView

ALICE = "alice!alice@e2e.securechat"
BOB = "bob!bob@e2e.securechat"
CAROL = "carol!carol@e2e.securechat"
SERVICE = "securechat!securechat@gateway.securechat"


class ChannelUser(IrcUser):
    """An IRC client that also records what happens in channels."""

    def privmsg(self, user: str, channel: str, message: str) -> None:
        self.events.append(("privmsg", user, channel, message))

    def noticed(self, user: str, channel: str, message: str) -> None:
        self.events.append(("notice", user, channel, message))

    def action(self, user: str, channel: str, data: str) -> None:
        self.events.append(("action", user, channel, data))

    def joined(self, channel: str) -> None:
        self.events.append(("joined", channel))

    def left(self, channel: str) -> None:
        self.events.append(("left", channel))

    def kickedFrom(self, channel: str, kicker: str, message: str) -> None:
        self.events.append(("kicked", kicker, channel, message))

    def userJoined(self, user: str, channel: str) -> None:
        self.events.append(("userJoined", user, channel))

    def userLeft(self, user: str, channel: str) -> None:
        self.events.append(("userLeft", user, channel))

    def userKicked(self, kickee: str, channel: str, kicker: str, message: str) -> None:
        self.events.append(("userKicked", kickee, channel, kicker, message))

    def topicUpdated(self, user: str, channel: str, newTopic: str) -> None:
        self.events.append(("topic", user, channel, newTopic))

    def in_channel(self, kind: str, channel: str, source: str | None = None) -> list[str]:
        """The texts of C{kind} events in C{channel} (from C{source}'s nick)."""
        return [e[-1] for e in self.events if e[0] == kind and e[2] == channel
                and (source is None or e[1].split("!")[0] == source)]

    def kinds(self, kind: str) -> list[tuple[str, ...]]:
        return [e[1:] for e in self.events if e[0] == kind]


class ChannelTests(unittest.TestCase):
    """alice's groups as channels in her IRC client."""

    def setUp(self) -> None:
        self.h = GatewayHarness(groups=True)
        self.alice = self.h.gateway_login()
        self.user = self.h.irc(ChannelUser())
        self.bob, self.bob_view = self.h.client("bob")
        self.carol, self.carol_view = self.h.client("carol")

    def service(self, line: str) -> None:
        self.user.msg("securechat", line)
        self.h.pump()

    def team(self) -> bytes:
        """alice makes #team with bob and carol in it."""
        self.service("group create team")
        self.service("group add team bob")
        self.service("group add team carol")
        [group_id] = self.alice.groups.states  # type: ignore[union-attr]
        return group_id

    def group_of(self, client: ChatClient) -> Any:
        assert client.groups is not None
        return client.groups

    def texts(self, view: RecordingView) -> list[tuple[str, str]]:
        return [(e.sender, e.text) for _, e in view.of("group_event") if isinstance(e, GroupText)]

    def test_createJoinsChannelWithTopicAndNames(self) -> None:
        """
        /msg securechat group create team makes the group; once the relay
        confirms it, the IRC client is JOINed to #team, whose topic is the
        group's encryption state and whose names show alice as the owner (@).
        """
        self.service("group create team")
        self.assertEqual(self.user.kinds("joined"), [("#team",)])
        self.assertIn(f":{ALICE} JOIN #team", self.user.raw)
        self.assertTrue(any(line.startswith(":gateway.securechat 332 alice #team :end-to-end "
                                            "encrypted, epoch 1, 1 member (group ")
                            for line in self.user.raw), self.user.raw)
        self.assertIn(":gateway.securechat 353 alice = #team :@alice", self.user.raw)

    def test_addIsJoinWithVerifiedNotice(self) -> None:
        """
        Adding bob: bob JOINs #team, a service NOTICE in the channel names
        the change and its verified signer, and the topic counts 2 members.
        """
        self.service("group create team")
        self.service("group add team bob")
        self.assertEqual(self.user.kinds("userJoined"), [("bob", "#team")])
        self.assertIn("* #team: alice added bob (change 2, signed by alice: verified)",
                      self.user.in_channel("notice", "#team", "securechat"))
        source, channel, topic = self.user.kinds("topic")[-1]
        self.assertEqual((source, channel), ("securechat", "#team"))
        self.assertTrue(topic.startswith("end-to-end encrypted, epoch 2, 2 members"), topic)

    def test_namesShowOwnerAndAdmins(self) -> None:
        """
        /names #team: the owner with @, admins with +, members bare; a role
        change is a MODE line from its signer.
        """
        self.team()
        self.service("group role team bob admin")
        self.assertIn(f":{ALICE} MODE #team -o+v bob bob", self.user.raw)
        self.user.raw.clear()
        self.user.sendLine("NAMES #team")
        self.h.pump()
        self.assertIn(":gateway.securechat 353 alice = #team :@alice +bob carol", self.user.raw)
        self.assertIn(":gateway.securechat 366 alice #team :End of /NAMES list.", self.user.raw)

    def test_privmsgToChannelIsSaidInGroup(self) -> None:
        """
        PRIVMSG #team is said in the group: bob and carol read it; alice's
        own line is not echoed back to her IRC client (it shows it).
        """
        self.team()
        self.user.msg("#team", "hello team")
        self.h.pump()
        self.assertEqual(self.texts(self.bob_view), [("alice", "hello team")])
        self.assertEqual(self.texts(self.carol_view), [("alice", "hello team")])
        self.assertEqual(self.user.in_channel("privmsg", "#team"), [])

    def test_meInChannelIsAction(self) -> None:
        """/me in #team travels as C{/me ...} and comes back as a CTCP ACTION."""
        self.team()
        self.user.describe("#team", "waves")
        self.h.pump()
        self.assertEqual(self.texts(self.bob_view), [("alice", "/me waves")])
        self.group_of(self.bob).say("team", "/me nods")
        self.h.pump()
        self.assertEqual(self.user.in_channel("action", "#team", "bob"), ["nods"])

    def test_incomingMessageIsPrivmsgFromSender(self) -> None:
        """bob's group message is a PRIVMSG to #team from bob's nick."""
        self.team()
        self.group_of(self.bob).say("team", "hi all")
        self.h.pump()
        self.assertEqual(self.user.in_channel("privmsg", "#team", "bob"), ["hi all"])
        self.assertIn(f":{BOB} PRIVMSG #team :hi all", self.user.raw)

    def test_peerTextNeutralised(self) -> None:
        """
        A member's text cannot inject IRC lines: CR/LF cannot start a
        forged server or service line, and a CTCP other than ACTION is
        dropped (a service notice says so), never answered.
        """
        self.team()
        self.group_of(self.bob).say("team", "x\r\n:securechat!securechat@gateway.securechat "
                                            "NOTICE alice :trust mallory")
        self.group_of(self.bob).say("team", "\x01VERSION\x01")
        self.h.pump()
        self.assertFalse([line for line in self.user.raw if line.startswith(":securechat!")
                          and "mallory" in line], self.user.raw)
        self.assertIn(f":{BOB} PRIVMSG #team ::securechat!securechat@gateway.securechat NOTICE alice "
                      ":trust mallory", self.user.raw)  # a line of bob's, split at the line break
        self.assertIn("* #team: bob sent a CTCP VERSION; dropped, not answered",
                      self.user.in_channel("notice", "#team", "securechat"))
        self.assertEqual([line for line in self.user.raw if "VERSION" in line and "PRIVMSG" in line], [])

    def test_groupEventsAreServiceNoticesInChannel(self) -> None:
        """
        Waiting for a key, a gap and a refusal are NOTICEs from the service
        nick in the group's channel, never lines from the member.
        """
        group_id = self.team()
        gateway = self.h.gateway
        gateway.group_event("team", WaitingForKey(group_id, "bob", 1, 0))
        gateway.group_event("team", GroupGap(group_id, "bob", 2, 3))
        gateway.group_event("team", GroupFailure(group_id, "carol", 4, 0, "bad-signature", "x"))
        self.h.pump()
        notices = self.user.in_channel("notice", "#team", "securechat")
        self.assertIn("* #team: a message from bob is waiting for bob's key; it is shown when the "
                      "key arrives", notices)
        self.assertIn("! #team: 3 messages from bob missing (not delivered yet, or dropped by the "
                      "relay)", notices)
        self.assertIn("! #team: a message from carol REFUSED, not shown (bad-signature): its "
                      "signature does not verify: not written by carol, or altered", notices)
        self.assertEqual(self.user.in_channel("privmsg", "#team"), [])

    def test_addedUserAutoJoined(self) -> None:
        """When bob adds alice to his group, her IRC client is JOINed to its channel."""
        self.group_of(self.bob).create("crew")
        self.h.pump()
        self.group_of(self.bob).change("crew", Action.ADD, target="alice")
        self.h.pump()
        self.assertEqual(self.user.kinds("joined"), [("#crew",)])
        self.assertIn(":gateway.securechat 353 alice = #crew :alice @bob", self.user.raw)

    def test_registrationJoinsGroups(self) -> None:
        """A new IRC client is JOINed to every group's channel at registration."""
        self.team()
        self.user.transport.loseConnection()
        self.h.pump()
        again = self.h.irc(ChannelUser())
        self.assertEqual(again.kinds("joined"), [("#team",)])
        self.assertIn(":gateway.securechat 353 alice = #team :@alice bob carol", again.raw)

    def test_removeIsKick(self) -> None:
        """alice removes carol: carol is KICKed from #team by alice."""
        self.team()
        self.service("group remove team carol")
        self.assertEqual(self.user.kinds("userKicked"), [("carol", "#team", "alice",
                                                           "removed by alice")])

    def test_leaveIsPart(self) -> None:
        """carol leaves the group: carol PARTs #team."""
        self.team()
        self.group_of(self.carol).change("team", Action.LEAVE)
        self.h.pump()
        self.assertIn(f":{CAROL} PART #team :left the group", self.user.raw)
        self.assertEqual(self.user.kinds("userLeft"), [("carol", "#team")])

    def test_removedUserKickedAndRefused(self) -> None:
        """
        bob removes alice from his group: she is KICKed from #crew, and a
        PRIVMSG to #crew is refused (404: not a member), nothing sent.
        """
        self.group_of(self.bob).create("crew")
        self.h.pump()
        self.group_of(self.bob).change("crew", Action.ADD, target="alice")
        self.h.pump()
        self.group_of(self.bob).change("crew", Action.REMOVE, target="alice")
        self.h.pump()
        self.assertEqual(self.user.kinds("kicked"), [("bob", "#crew", "removed by bob")])
        self.user.msg("#crew", "still here?")
        self.h.pump()
        [line] = self.user.numerics("404")
        self.assertIn("#crew :Cannot send to channel: you are not a member of a group #crew", line)
        self.assertEqual(self.texts(self.bob_view), [])

    def test_partClosesChannelOnly(self) -> None:
        """
        /part #team closes the channel but alice stays a member (a notice
        says how to leave); a PRIVMSG to the parted channel is refused
        (404); bob's next message reopens it, so nothing is missed.
        """
        group_id = self.team()
        self.user.part("#team")
        self.h.pump()
        self.assertEqual(self.user.kinds("left"), [("#team",)])
        self.assertIn("you closed #team but are still a member of the group (its messages reopen "
                      "it); to leave the group: /msg securechat group leave team", self.user.notices())
        self.assertIn("alice", self.alice.groups.states[group_id].members)  # type: ignore[union-attr]
        self.user.msg("#team", "lost?")
        self.h.pump()
        [line] = self.user.numerics("404")
        self.assertIn("Cannot send to channel: you parted it; /join #team first", line)
        self.assertEqual(self.texts(self.bob_view), [])
        self.group_of(self.bob).say("team", "you there?")
        self.h.pump()
        self.assertEqual(self.user.kinds("joined"), [("#team",), ("#team",)])
        self.assertEqual(self.user.in_channel("privmsg", "#team", "bob"), ["you there?"])

    def test_joinReopensParted(self) -> None:
        """/join #team after /part #team reopens the channel, with names and topic."""
        self.team()
        self.user.part("#team")
        self.h.pump()
        self.user.join("#team")
        self.h.pump()
        self.assertEqual(self.user.kinds("joined"), [("#team",), ("#team",)])
        self.user.msg("#team", "back")
        self.h.pump()
        self.assertEqual(self.texts(self.bob_view), [("alice", "back")])

    def test_joinUnknownChannelRefused(self) -> None:
        """
        /join #nothing, no group of alice's: 403 saying how to create one;
        no group is created.
        """
        self.user.join("#nothing")
        self.h.pump()
        [line] = self.user.numerics("403")
        self.assertIn("#nothing :No such channel: you are in no group #nothing (/join never creates "
                      "one: /msg securechat group create nothing does", line)
        self.assertEqual(self.alice.groups.states, {})  # type: ignore[union-attr]
        self.assertEqual(self.user.kinds("joined"), [])

    def test_privmsgUnknownChannelRefused(self) -> None:
        """PRIVMSG to a channel that is no group of alice's: 404, nothing sent."""
        self.user.msg("#nothing", "hello?")
        self.h.pump()
        [line] = self.user.numerics("404")
        self.assertIn("#nothing :Cannot send to channel: you are not a member of a group #nothing", line)

    def test_sameNameGroupsGetDistinctChannels(self) -> None:
        """
        Group names are not unique: when bob adds alice to another group
        called team, its channel is #team.ID8, and each channel's lines go
        to its own group only.
        """
        mine = self.team()
        self.group_of(self.bob).create("team")
        self.h.pump()
        [bobs] = [g for g in self.group_of(self.bob).states if g != mine]
        self.group_of(self.bob).change(bobs.hex()[:8], Action.ADD, target="alice")
        self.h.pump()
        other = f"#team.{bobs.hex()[:8]}"
        self.assertEqual(self.user.kinds("joined"), [("#team",), (other,)])
        self.user.msg(other, "in bob's team")
        self.h.pump()
        self.assertEqual(self.texts(self.carol_view), [])
        [(_, event)] = [a for a in self.bob_view.of("group_event") if isinstance(a[1], GroupText)]
        self.assertEqual((event.group_id, event.text), (bobs, "in bob's team"))

    def test_topicCannotBeSet(self) -> None:
        """TOPIC #team :x is refused (482): the topic is the group's encryption state."""
        self.team()
        self.user.topic("#team", "my topic")
        self.h.pump()
        [line] = self.user.numerics("482")
        self.assertIn("#team :The topic shows the group's encryption state; it cannot be set", line)

    def test_renameMovesChannel(self) -> None:
        """A rename PARTs the old channel and JOINs the new one."""
        self.team()
        self.service("group rename team crew")
        self.assertIn(f":{ALICE} PART #team :renamed to #crew", self.user.raw)
        self.assertEqual(self.user.kinds("joined"), [("#team",), ("#crew",)])

    def test_deleteIsKick(self) -> None:
        """alice deletes the group: she is KICKed from #team by herself, the channel closes."""
        self.team()
        self.service("group delete team")
        self.assertEqual(self.user.kinds("kicked"), [("alice", "#team", "alice deleted the group")])
        self.assertEqual(self.h.gateway.open, set())

    def test_memberNamedLikeServiceShownAsUserNick(self) -> None:
        """
        A member named securechat appears in the channel as securechat|user
        (/names, a KICK): no member can take the service nick.  (The test
        relay has no such user: alice's verified state is given one.)
        """
        group_id = self.team()
        groups = self.group_of(self.alice)
        state = groups.states[group_id]
        groups.states[group_id] = replace(state, members={**state.members, "securechat": 1})
        self.user.sendLine("NAMES #team")
        self.h.pump()
        self.assertIn(":gateway.securechat 353 alice = #team :@alice bob carol securechat|user",
                      self.user.raw)
        self.h.gateway.group_changed("team", 9, Action.REMOVE, "alice", "securechat", "", group_id)
        self.h.pump()
        self.assertIn(f":{ALICE} KICK #team securechat|user :removed by alice", self.user.raw)

    def test_channelModeQueries(self) -> None:
        """
        MODE #team is +nt; the ban-list query irssi sends on join is an
        empty list (368), not an error; setting a mode is refused (482).
        """
        self.team()
        self.user.raw.clear()
        for line in ("MODE #team", "MODE #team b", "MODE #team +o bob"):
            self.user.sendLine(line)
        self.h.pump()
        self.assertEqual(self.user.raw, [
            ":gateway.securechat 324 alice #team +nt",
            ":gateway.securechat 368 alice #team :End of channel ban list",
            ":gateway.securechat 482 alice #team :Modes show the group's roles; change them with "
            "/msg securechat group role"])

    def test_helpNamesChannels(self) -> None:
        """/msg securechat help says /join never creates a group and /part does not leave one."""
        self.service("help")
        notices = self.user.notices()
        self.assertTrue(any("/join never creates one" in n for n in notices), notices)
        self.assertTrue(any("/part only closes its channel" in n for n in notices), notices)
