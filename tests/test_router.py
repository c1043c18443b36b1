"""
Tests for the router (L{securechat.server.router}): several relays, each a
process of a cluster, joined by an in-memory fake of the Redis link, with
clients on the in-memory network of L{tests.memnet} and one
L{task.Clock}.  Users on different processes see exactly what users on one
relay see (tests.test_relay), including every awkward case of a chat
request; and what a process does when another dies or Redis is lost.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.errors import Alert
from securechat.server import clusterwire as wire
from securechat.crypto.groupstate import Action, apply_change
from securechat.server.limits import Limits
from securechat.server.mailbox import mailbox_limits
from securechat.server.store.groupmemory import MemoryGroupStore
from securechat.server.store.memory import MemoryMailboxStore
from securechat.wire.groups import ChangeGroup, GroupChanged, GroupMessage, GroupPost
from securechat.server.router import Router
from securechat.wire.mailbox import LetterArrived, ListUsers, PostLetter, UserList
from securechat.wire.relay import (
    ChatAccept, ChatCancel, ChatDeclined, ChatEnded, ChatRefuse, ChatRequest, ChatRequested,
    ChatStarted, ChatStop, CommandFailed, ListOnline, OnlineList, Reason, Relay, Relayed,
    RequestPending, RequestWithdrawn)
from tests.relay_harness import Harness, RecordingClient, user_key
from tests.test_groupstate import GID, Chain
from tests.test_relay import peer_alert

TTL = 9.0


class Bus:
    """What Redis is to the processes: presence, liveness, channels."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.presence: dict[str, str] = {}
        self.alive: set[str] = set()
        self.routers: dict[str, Router] = {}
        self.links: dict[str, FakeLink] = {}
        #: (from, to, data) of every message published.
        self.published: list[tuple[str, str, bytes]] = []


class FakeLink:
    """An L{ILink} on a L{Bus}: delivered at the next reactor turn, like Redis."""

    def __init__(self, bus: Bus, process_id: str) -> None:
        self.bus = bus
        self.process_id = process_id
        self.up = True

    def _check(self) -> None:
        if not self.up:
            raise ConnectionError("no link to Redis")

    def publish(self, process: str, data: bytes) -> None:
        if not self.up:
            return
        self.bus.published.append((self.process_id, process, data))
        target = self.bus.routers.get(process)
        if target is not None and process in self.bus.alive and self.bus.links[process].up:
            self.bus.clock.callLater(0, target.received, data)

    def _answer(self, value: Any) -> Deferred[Any]:
        return fail(ConnectionError("no link to Redis")) if not self.up else succeed(value)

    def locate(self, user: str) -> Deferred[str | None]:
        where = self.bus.presence.get(user)
        return self._answer(where if where in self.bus.alive else None)

    def online(self) -> Deferred[list[str]]:
        return self._answer([u for u, p in self.bus.presence.items() if p in self.bus.alive])

    def claim(self, user: str) -> Deferred[str | None]:
        old = self.bus.presence.get(user)
        if self.up:
            self.bus.presence[user] = self.process_id
        return self._answer(old if old in self.bus.alive and old != self.process_id else None)

    def release(self, user: str) -> None:
        if self.up and self.bus.presence.get(user) == self.process_id:
            del self.bus.presence[user]

    def alive(self, processes: list[str]) -> Deferred[set[str]]:
        return self._answer(set(processes) & self.bus.alive)

    def locate_many(self, users: list[str]) -> Deferred[dict[str, str]]:
        where = {u: self.bus.presence[u] for u in users
                 if self.bus.presence.get(u) in self.bus.alive}
        return self._answer(where)


class Cluster:
    """Relays "a", "b", "c", ... on one bus, one network and one clock."""

    def __init__(self, count: int = 2, limits: Limits = Limits(), shared: bool = False) -> None:
        self.clock = Clock()
        self.bus = Bus(self.clock)
        self.relays: dict[str, Harness] = {}
        network = None
        #: One store for all, as PostgreSQL would be (shared=True).
        stores: dict[str, Any] = {}
        if shared:
            stores["store"] = MemoryMailboxStore(self.clock, mailbox_limits(limits))
            stores["group_store"] = MemoryGroupStore(self.clock, 86400)
        for process in "abcdef"[:count]:
            h = Harness(limits, clock=self.clock, **stores)
            if network is None:
                network = h.network
            h.network = network
            link = FakeLink(self.bus, process)
            router = Router(h.relay, link, self.clock, TTL)
            self.bus.routers[process], self.bus.links[process] = router, link
            self.bus.alive.add(process)
            router.link_up([])
            self.relays[process] = h
        assert network is not None
        self.network = network

    def login(self, process: str, name: str) -> RecordingClient:
        client = self.relays[process].login(name)
        self.pump()
        client.take()
        return client

    def router(self, process: str) -> Router:
        router = self.relays[process].relay.router
        assert router is not None
        return router

    def pump(self) -> None:
        self.network.pump()

    def chatting(self, a: str = "alice", b: str = "bob") -> tuple[RecordingClient, RecordingClient]:
        ca, cb = self.login("a", a), self.login("b", b)
        ca.send(ChatRequest(b))
        self.pump()
        cb.send(ChatAccept(a))
        self.pump()
        ca.take()
        cb.take()
        return ca, cb

    def kill(self, process: str) -> None:
        """The process stops (SIGKILL): no more heartbeat, nothing published."""
        self.bus.alive.discard(process)
        self.bus.links[process].up = False
        for link in list(self.network.links):
            if link in self.relays[process].links.values():
                self.network.links.remove(link)


def der(name: str) -> bytes:
    return keys.public_key_der(user_key(name).public_key())


class ChatAcrossProcessesTests(unittest.TestCase):
    """A chat between users on two processes, as on one relay."""

    def test_requestAcceptRelayStop(self) -> None:
        """
        alice (process a) asks bob (process b): bob is asked, alice told the
        request is pending; bob accepts: both get CHAT_STARTED with the
        other's key, alice as initiator; RELAYs go both ways as RELAYED;
        alice stops: both are told.
        """
        c = Cluster()
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        alice.send(ChatRequest("bob"))
        c.pump()
        self.assertEqual(bob.take(), [ChatRequested("alice")])
        self.assertEqual(alice.take(), [RequestPending("bob")])
        bob.send(ChatAccept("alice"))
        c.pump()
        self.assertEqual(alice.take(), [ChatStarted("bob", der("bob"), 1)])
        self.assertEqual(bob.take(), [ChatStarted("alice", der("alice"), 0)])
        alice.send(Relay("bob", b"ciphertext 1"), Relay("bob", b"ciphertext 2"))
        bob.send(Relay("alice", b"ciphertext 3"))
        c.pump()
        self.assertEqual(bob.take(), [Relayed("alice", b"ciphertext 1"),
                                      Relayed("alice", b"ciphertext 2")])
        self.assertEqual(alice.take(), [Relayed("bob", b"ciphertext 3")])
        alice.send(ChatStop("bob"))
        c.pump()
        self.assertEqual(alice.take(), [ChatEnded("bob", Reason.STOPPED)])
        self.assertEqual(bob.take(), [ChatEnded("alice", Reason.STOPPED)])
        self.assertEqual(c.router("a").peers, {})
        self.assertEqual(c.router("b").peers, {})

    def test_relayBatchedPerTurn(self) -> None:
        """
        RELAYs to users on one process in one reactor turn are published as
        one message to that process.
        """
        c = Cluster()
        alice, bob = c.chatting()
        before = len(c.bus.published)
        alice.send(*[Relay("bob", b"m%d" % i) for i in range(5)])
        c.pump()
        self.assertEqual(len(c.bus.published) - before, 1)
        self.assertEqual(len(bob.take()), 5)

    def test_relayNoChat(self) -> None:
        """A RELAY to a user elsewhere without a chat fails NO_CHAT, as on one relay."""
        c = Cluster()
        alice, _ = c.login("a", "alice"), c.login("b", "bob")
        alice.send(Relay("bob", b"x"))
        c.pump()
        self.assertEqual(alice.take(), [CommandFailed(Relay.TYPE, "bob", Reason.NO_CHAT)])

    def test_offline(self) -> None:
        """A request to a registered user online nowhere: CHAT_DECLINED(OFFLINE)."""
        c = Cluster()
        alice = c.login("a", "alice")
        alice.send(ChatRequest("bob"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.OFFLINE)])
        alice.send(ChatRequest("nobody"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("nobody", Reason.UNKNOWN_USER)])

    def test_busy(self) -> None:
        """A target elsewhere with as many chats as allowed: CHAT_DECLINED(BUSY)."""
        c = Cluster(limits=Limits(max_chats=1))
        c.chatting("carol", "bob")
        alice = c.login("a", "alice")
        alice.send(ChatRequest("bob"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.BUSY)])

    def test_tooManyPending(self) -> None:
        """A target elsewhere with as many requests as allowed: TOO_MANY_PENDING."""
        c = Cluster(limits=Limits(max_incoming_requests=1))
        carol, alice = c.login("a", "carol"), c.login("a", "alice")
        c.login("b", "bob")
        carol.send(ChatRequest("bob"))
        c.pump()
        alice.send(ChatRequest("bob"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.TOO_MANY_PENDING)])

    def test_timeout(self) -> None:
        """Nobody answers: the requester is declined and the target withdrawn, TIMEOUT."""
        c = Cluster()
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        alice.send(ChatRequest("bob"))
        c.pump()
        alice.take()
        bob.take()
        c.network.advance(Limits().request_timeout + 1)
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.TIMEOUT)])
        self.assertEqual(bob.take(), [RequestWithdrawn("alice", Reason.TIMEOUT)])
        self.assertEqual(c.router("a").peers, {})

    def test_cancel(self) -> None:
        """The requester cancels: both told CANCELLED; accepting then fails NO_REQUEST."""
        c = Cluster()
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        alice.send(ChatRequest("bob"))
        c.pump()
        alice.take()
        bob.take()
        alice.send(ChatCancel("bob"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.CANCELLED)])
        self.assertEqual(bob.take(), [RequestWithdrawn("alice", Reason.CANCELLED)])
        bob.send(ChatAccept("alice"))
        c.pump()
        self.assertEqual(bob.take(), [CommandFailed(ChatAccept.TYPE, "alice", Reason.NO_REQUEST)])

    def test_cancelCrossesAccept(self) -> None:
        """
        alice cancels while bob's accept is on its way: no chat starts on
        either side; alice's cancel is answered, bob's accept fails NO_REQUEST.
        """
        c = Cluster()
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        alice.send(ChatRequest("bob"))
        c.pump()
        alice.take()
        bob.take()
        alice.send(ChatCancel("bob"))
        bob.send(ChatAccept("alice"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.CANCELLED)])
        self.assertEqual(bob.take(), [CommandFailed(ChatAccept.TYPE, "alice", Reason.NO_REQUEST)])
        self.assertEqual(dict(c.relays["a"].relay.sessions["alice"].chats), {})
        self.assertEqual(dict(c.relays["b"].relay.sessions["bob"].chats), {})

    def test_refuse(self) -> None:
        c = Cluster()
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        alice.send(ChatRequest("bob"))
        c.pump()
        bob.take()
        alice.take()
        bob.send(ChatRefuse("alice"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.REFUSED)])
        self.assertEqual(bob.take(), [])

    def test_requesterBusyAtAccept(self) -> None:
        """
        alice reached her chat limit before bob accepted: alice is told
        BUSY (declined), bob's accept fails BUSY, and no chat starts.
        """
        c = Cluster(limits=Limits(max_chats=1))
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        carol = c.login("a", "carol")
        alice.send(ChatRequest("bob"))
        c.pump()
        carol.send(ChatRequest("alice"))
        c.pump()
        alice.send(ChatAccept("carol"))
        c.pump()
        alice.take()
        bob.take()
        bob.send(ChatAccept("alice"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.BUSY)])
        self.assertEqual(bob.take(), [CommandFailed(ChatAccept.TYPE, "alice", Reason.BUSY)])
        self.assertNotIn("alice", c.relays["b"].relay.sessions["bob"].chats)

    def test_crossingRequests(self) -> None:
        """
        Both ask each other at once: as on one relay when alice's came
        first, alice's request stands (bob is asked, alice told it is
        pending) and bob's fails ALREADY; bob can accept, and they chat.
        """
        for first, second in (("alice", "bob"), ("bob", "alice")):
            c = Cluster()
            alice, bob = c.login("a", "alice"), c.login("b", "bob")
            clients = {"alice": alice, "bob": bob}
            clients[first].send(ChatRequest(second))
            clients[second].send(ChatRequest(first))
            c.pump()
            self.assertEqual(alice.take(), [RequestPending("bob")])
            self.assertEqual(sorted(bob.take(), key=repr), sorted(
                [ChatRequested("alice"), CommandFailed(ChatRequest.TYPE, "alice", Reason.ALREADY)],
                key=repr))
            bob.send(ChatAccept("alice"))
            c.pump()
            self.assertEqual(alice.take(), [ChatStarted("bob", der("bob"), 1)])
            self.assertEqual(bob.take(), [ChatStarted("alice", der("alice"), 0)])

    def test_requesterLeavesMidRequest(self) -> None:
        c = Cluster()
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        alice.send(ChatRequest("bob"))
        c.pump()
        bob.take()
        c.relays["a"].links["alice"].close(ConnectionError("gone"))
        c.pump()
        self.assertEqual(bob.take(), [RequestWithdrawn("alice", Reason.GONE)])

    def test_targetLeavesMidRequest(self) -> None:
        c = Cluster()
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        alice.send(ChatRequest("bob"))
        c.pump()
        alice.take()
        c.relays["b"].links["bob"].close(ConnectionError("gone"))
        c.pump()
        self.assertEqual(alice.take(), [ChatDeclined("bob", Reason.GONE)])

    def test_peerLeavesMidChat(self) -> None:
        c = Cluster()
        alice, bob = c.chatting()
        c.relays["b"].links["bob"].close(ConnectionError("gone"))
        c.pump()
        self.assertEqual(alice.take(), [ChatEnded("bob", Reason.GONE)])
        alice.send(Relay("bob", b"x"))
        c.pump()
        self.assertEqual(alice.take(), [CommandFailed(Relay.TYPE, "bob", Reason.NO_CHAT)])


class BackpressureAcrossProcessesTests(unittest.TestCase):
    """A recipient on another process that does not read while its peer floods."""

    LIMITS = Limits(queue_soft_limit=64 * 1024, queue_hard_limit=256 * 1024,
                    stall_timeout=30, rate=1e6, burst=10**6)

    def test_senderPausedThenResumed(self) -> None:
        """
        bob (process b) stops reading: alice (process a) is paused once his
        queue passes the soft limit, his queue stays well under the hard
        limit; when he reads again alice resumes and every message arrives,
        in order.
        """
        c = Cluster(limits=self.LIMITS)
        alice, bob = c.chatting()
        c.relays["b"].links["bob"].client_transport.reading = False
        alice_session = c.relays["a"].relay.sessions["alice"]
        sent = 0
        for i in range(400):
            if alice_session.reading_paused:
                break
            alice.send(Relay("bob", i.to_bytes(4, "big") + b"x" * 1000))
            sent += 1
            c.pump()
        self.assertTrue(alice_session.reading_paused)
        bob_queue = c.relays["b"].relay.sessions["bob"].queue
        assert bob_queue is not None
        self.assertLess(bob_queue.bytes, self.LIMITS.queue_hard_limit // 2)
        self.assertLess(sent, 400)
        c.relays["b"].links["bob"].client_transport.reading = True
        c.pump()
        self.assertFalse(alice_session.reading_paused)
        self.assertEqual(c.router("b").paused_by, {})
        got = [int.from_bytes(m.payload[:4], "big") for m in bob.take()]
        self.assertEqual(got, list(range(sent)))

    def test_stalledRecipientDropped(self) -> None:
        """
        bob never reads again: after the stall timeout he is dropped as not
        reading, and alice is told the chat ended and reads again.
        """
        c = Cluster(limits=self.LIMITS)
        alice, bob = c.chatting()
        c.relays["b"].links["bob"].client_transport.reading = False
        alice_session = c.relays["a"].relay.sessions["alice"]
        while not alice_session.reading_paused:
            alice.send(Relay("bob", b"x" * 1000))
            c.pump()
        alice.take()
        c.network.advance(self.LIMITS.stall_timeout + 1)
        self.assertEqual(alice.of_type(ChatEnded), [ChatEnded("bob", Reason.GONE)])
        self.assertFalse(alice_session.reading_paused)


class PresenceTests(unittest.TestCase):
    """Who is online, second logins, notices."""

    def test_onlineEverywhere(self) -> None:
        """ONLINE_LIST names the users of every process, in order."""
        c = Cluster(3)
        alice = c.login("a", "alice")
        c.login("b", "bob")
        c.login("c", "carol")
        alice.send(ListOnline())
        c.pump()
        self.assertEqual(alice.take(), [OnlineList(("alice", "bob", "carol"), 3)])

    def test_userListOnlineFlags(self) -> None:
        """The mailbox's USER_LIST marks users online on any process."""
        c = Cluster()
        alice = c.login("a", "alice")
        c.login("b", "bob")
        alice.send(ListUsers(0))
        c.pump()
        [answer] = alice.take()
        assert isinstance(answer, UserList)
        online = {u.user for u in answer.users if u.online}
        self.assertEqual(online, {"alice", "bob"})

    def test_secondLoginElsewhere(self) -> None:
        """
        alice logs in again on process b: her session on a ends with
        SESSION_REPLACED, and her chat peer (on c) is told REPLACED.
        """
        c = Cluster(3)
        carol = c.login("c", "carol")
        alice = c.login("a", "alice")
        alice.send(ChatRequest("carol"))
        c.pump()
        carol.send(ChatAccept("alice"))
        c.pump()
        carol.take()
        again = c.login("b", "alice")
        c.pump()
        self.assertEqual(peer_alert(alice), Alert.SESSION_REPLACED)
        self.assertEqual(carol.take(), [ChatEnded("alice", Reason.REPLACED)])
        self.assertEqual(c.bus.presence["alice"], "b")
        self.assertIn("alice", c.relays["b"].relay.sessions)
        self.assertNotIn("alice", c.relays["a"].relay.sessions)
        self.assertFalse(again.ended)

    def test_letterNoticeElsewhere(self) -> None:
        """A letter stored for bob, online on another process, is announced to him there."""
        c = Cluster()
        alice, bob = c.login("a", "alice"), c.login("b", "bob")
        alice.send(PostLetter("bob", b"\x01" * 16, b"sealed letter"))
        c.pump()
        arrived = bob.of_type(LetterArrived)
        self.assertEqual([(m.sender, m.letter_id, m.size) for m in arrived],
                         [("alice", b"\x01" * 16, len(b"sealed letter"))])


class GroupAcrossProcessesTests(unittest.TestCase):
    """
    Groups on a store the processes share (PostgreSQL; here one in-memory
    store for all): changes announced and messages fanned out once per
    process that has members online.
    """

    def setUp(self) -> None:
        self.c = Cluster(3, shared=True)
        c = self.c
        self.alice = c.login("a", "alice")
        self.bob, self.carol = c.login("b", "bob"), c.login("b", "carol")
        self.dave = c.login("c", "dave")
        chain = Chain()
        self.alice.send(ChangeGroup(chain.changes[0].encode()))
        c.pump()
        for member in ("bob", "carol", "dave"):
            change = chain.next("alice", Action.ADD, target=member)
            self.alice.send(ChangeGroup(change.encode()))
            c.pump()
            chain.state = apply_change(chain.state, change)
            chain.changes.append(change)
        self.chain = chain

    def test_changesAnnounced(self) -> None:
        """Each member elsewhere is told of the changes committed on another process."""
        added = [GroupChanged(ch.encode()) for ch in self.chain.changes[1:]]
        self.assertEqual(self.bob.of_type(GroupChanged), added)
        self.assertEqual(self.dave.of_type(GroupChanged), added[2:])

    def test_fanOutOncePerProcess(self) -> None:
        """
        One GROUP_POST on a: one GROUP record to b (naming bob and carol)
        and one to c (dave); each member gets the message once.
        """
        for client in (self.alice, self.bob, self.carol, self.dave):
            client.take()
        before = len(self.c.bus.published)
        self.alice.send(GroupPost(GID, b"sealed group body"))
        self.c.pump()
        groups = [(to, r.members) for _, to, data in self.c.bus.published[before:]
                  for r in wire.decode(data)[1] if isinstance(r, wire.GroupRecord)]
        self.assertEqual(sorted(groups), [("b", ("bob", "carol")), ("c", ("dave",))])
        for client in (self.bob, self.carol, self.dave):
            [message] = client.of_type(GroupMessage)
            self.assertEqual((message.sender, message.body), ("alice", b"sealed group body"))
        self.assertEqual(self.alice.of_type(GroupMessage), [])

    def test_removedMemberSentNothing(self) -> None:
        """A member removed on a is sent nothing more by b's fan-out."""
        change = self.chain.next("alice", Action.REMOVE, target="carol")
        self.alice.send(ChangeGroup(change.encode()))
        self.c.pump()
        self.carol.take()
        self.bob.take()
        self.bob.send(GroupPost(GID, b"after carol left"))
        self.c.pump()
        self.assertEqual(self.carol.of_type(GroupMessage), [])
        self.assertEqual([m.body for m in self.dave.of_type(GroupMessage)], [b"after carol left"])
        self.assertEqual([m.body for m in self.alice.of_type(GroupMessage)], [b"after carol left"])

    def test_forgedGroupRecordDropped(self) -> None:
        """
        A GROUP record naming a user here who is not a member is not
        delivered to that user (the membership is checked here); one for
        a group that does not exist is dropped.
        """
        c = self.c
        eve = c.login("b", "eve")
        body = GroupMessage(GID, 1, "alice", 0, b"forged").encode_body()
        c.router("b").received(wire.header("a") + wire.group(["eve", "bob"], body))
        c.pump()
        self.assertEqual(eve.of_type(GroupMessage), [])
        self.assertEqual([m.body for m in self.bob.of_type(GroupMessage)], [b"forged"])
        other = GroupMessage(bytes(16), 1, "alice", 0, b"no group").encode_body()
        c.router("b").received(wire.header("a") + wire.group(["bob"], other))
        c.pump()
        self.assertEqual(self.bob.of_type(GroupMessage), [GroupMessage(GID, 1, "alice", 0,
                                                                       b"forged")])


class FailureTests(unittest.TestCase):
    """Another process dies; Redis is lost and comes back."""

    def test_deadProcess(self) -> None:
        """
        Process b dies mid-chat: at the next heartbeat a finds it gone and
        tells alice the chat ended (GONE); requests with its users end too.
        """
        c = Cluster(3)
        alice, _ = c.chatting()
        carol = c.login("c", "carol")
        c.login("b", "dave")
        carol.send(ChatRequest("dave"))
        c.pump()
        carol.take()
        c.kill("b")
        for process in ("a", "c"):
            c.router(process).check_peers()
        c.pump()
        self.assertEqual(alice.take(), [ChatEnded("bob", Reason.GONE)])
        self.assertEqual(carol.take(), [ChatDeclined("dave", Reason.GONE)])
        self.assertEqual(c.router("a").metrics.processes_gone._value.get(), 1)
        # bob reconnects to another process, and they chat again
        bob = c.login("c", "bob")
        alice.send(ChatRequest("bob"))
        c.pump()
        bob.send(ChatAccept("alice"))
        c.pump()
        self.assertEqual(alice.take()[-1], ChatStarted("bob", der("bob"), 1))

    def test_linkLostRefusesLogins(self) -> None:
        """
        Without Redis a process refuses logins with UNAVAILABLE, ends chats
        with users elsewhere at once (GONE), keeps its own sessions, and
        accepts logins again once linked.
        """
        c = Cluster()
        alice, bob = c.chatting()
        carol = c.login("a", "carol")
        c.bus.links["a"].up = False
        c.router("a").link_down("connection lost")
        c.pump()
        self.assertEqual(alice.take(), [ChatEnded("bob", Reason.GONE)])
        refused, _ = c.relays["a"].connect("dave")
        c.pump()
        self.assertEqual(peer_alert(refused), Alert.UNAVAILABLE)
        self.assertFalse(carol.ended)
        c.bus.links["a"].up = True
        c.router("a").link_up([])
        dave = c.login("a", "dave")
        self.assertFalse(dave.ended)
        self.assertEqual(c.relays["a"].relay.metrics.refusals.labels("unavailable")._value.get(),
                         1)

    def test_othersToldWhenLinkBack(self) -> None:
        """
        Process a lost Redis for less than the TTL (so b never saw it die):
        when linked again, a tells b of the chats and requests it ended, so
        bob and dave are not left with half of them.
        """
        c = Cluster()
        alice, bob = c.chatting()
        carol, dave = c.login("a", "carol"), c.login("b", "dave")
        carol.send(ChatRequest("dave"))
        c.pump()
        dave.take()
        c.bus.links["a"].up = False
        c.router("a").link_down("connection lost")
        c.pump()
        self.assertEqual(bob.take(), [])
        c.bus.links["a"].up = True
        c.router("a").link_up([])
        c.pump()
        self.assertEqual(bob.take(), [ChatEnded("alice", Reason.GONE)])
        self.assertEqual(dave.take(), [RequestWithdrawn("carol", Reason.GONE)])
        self.assertEqual((c.router("a").peers, c.router("b").peers), ({}, {}))

    def test_cutOffAfterTTL(self) -> None:
        """Without Redis for the TTL, every session here ends with UNAVAILABLE."""
        c = Cluster()
        carol = c.login("a", "carol")
        c.bus.links["a"].up = False
        c.router("a").link_down("connection lost")
        c.network.advance(TTL - 1)
        self.assertFalse(carol.ended)
        c.network.advance(2)
        self.assertEqual(peer_alert(carol), Alert.UNAVAILABLE)

    def test_backBeforeTTL(self) -> None:
        """Redis back within the TTL: nothing here is cut off."""
        c = Cluster()
        carol = c.login("a", "carol")
        c.router("a").link_down("connection lost")
        c.network.advance(TTL / 2)
        c.router("a").link_up([])
        c.network.advance(TTL)
        self.assertFalse(carol.ended)

    def test_replacedWhileCutOff(self) -> None:
        """A user who logged in elsewhere while this process was cut off is ended here."""
        c = Cluster()
        carol = c.login("a", "carol")
        c.router("a").link_down("connection lost")
        c.router("a").link_up(["carol"])
        c.pump()
        self.assertEqual(peer_alert(carol), Alert.SESSION_REPLACED)


class UntrustedInputTests(unittest.TestCase):
    """What arrives from Redis is checked; nothing from it crashes the relay."""

    def test_garbageDropped(self) -> None:
        c = Cluster()
        router = c.router("a")
        logged: list[dict[str, Any]] = []
        router.log = Logger(observer=logged.append)  # type: ignore[misc]
        for junk in (b"", b"\x02\x01b", b"\x01\x01b\x09\x00\x00\x00\x00", b"\x01\x01b\x01\xff"):
            router.received(junk)
            router.received(junk)
        self.assertEqual(router.metrics.bad._value.get(), 8)
        self.assertEqual(len(logged), 4)  # each problem logged once

    def test_relayWithoutChatDropped(self) -> None:
        """A RELAY record for a user here without that chat is dropped."""
        c = Cluster()
        bob = c.login("b", "bob")
        c.router("b").received(wire.header("a") + wire.relay("alice", "bob", b"forged"))
        c.pump()
        self.assertEqual(bob.take(), [])
        self.assertEqual(c.router("b").metrics.dropped.labels("no-chat")._value.get(), 1)

    def test_relayFromWrongProcessDropped(self) -> None:
        """A RELAY claiming a chat peer who is on another process is dropped."""
        c = Cluster(3)
        alice, bob = c.chatting()
        c.router("b").received(wire.header("c") + wire.relay("alice", "bob", b"forged"))
        c.pump()
        self.assertEqual(bob.take(), [])

    def test_noticeTypeNotAllowed(self) -> None:
        """A NOTICE record may carry only the notice messages; a RELAYED is dropped."""
        c = Cluster()
        bob = c.login("b", "bob")
        body = Relayed("alice", b"forged").encode_body()
        c.router("b").received(wire.header("a") + wire.notice("bob", Relayed.TYPE, body))
        c.pump()
        self.assertEqual(bob.take(), [])
        self.assertEqual(c.router("b").metrics.bad._value.get(), 1)

    def test_oversizedRelayDropped(self) -> None:
        c = Cluster(limits=Limits(max_frame=1024))
        alice, bob = c.chatting()
        big = b"x" * (Limits(max_frame=1024).max_payload + 1)
        c.router("b").received(wire.header("a") + wire.relay("alice", "bob", big))
        c.pump()
        self.assertEqual(bob.take(), [])
        self.assertEqual(c.router("b").metrics.dropped.labels("too-large")._value.get(), 1)
