"""
Tests for the relay (L{securechat.server.relay}) over the in-memory network
of L{tests.memnet}: every command, every awkward case, every limit, and the
backpressure policy.  No sockets; time is a L{task.Clock}.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.crypto import keys
from securechat.server import relay as relay_module
from securechat.errors import Alert, PeerAlert
from securechat.server.directory import UserEntry
from securechat.server.limits import ConnectionGate, Limits, TokenBucket
from securechat.wire.framing import encode_frame
from securechat.wire.messages import encode_inner
from securechat.wire.relay import (
    ChatAccept,
    ChatCancel,
    ChatDeclined,
    ChatEnded,
    ChatRefuse,
    ChatRequest,
    ChatRequested,
    ChatStarted,
    ChatStop,
    CommandFailed,
    ListOnline,
    OnlineList,
    Reason,
    Relay,
    Relayed,
    RequestPending,
    RequestWithdrawn,
    Welcome,
)
from tests.relay_harness import USERS, Harness, RecordingClient, user_key


def chatting(h: Harness, a: str = "alice", b: str = "bob") -> tuple[RecordingClient, RecordingClient]:
    ca, cb = h.login(a), h.login(b)
    ca.send(ChatRequest(b))
    h.pump()
    cb.send(ChatAccept(a))
    h.pump()
    ca.take()
    cb.take()
    return ca, cb


def peer_alert(client: RecordingClient) -> int | None:
    error = client.error
    return error.peer_alert if isinstance(error, PeerAlert) else None


class SessionTests(unittest.TestCase):
    """
    Logging in and out, presence, second logins, revocation.
    """

    def test_welcome(self) -> None:
        """
        After the handshake the relay greets the user by name and says the
        largest payload it carries.
        """
        h = Harness()
        client, _ = h.connect("alice")
        self.assertEqual(client.take(), [Welcome("alice", Limits().max_payload)])
        self.assertIn("alice", h.relay.sessions)

    def test_idleUserHoldsNoCipherContexts(self) -> None:
        """
        A user who logged in and sits idle costs the relay no AEAD context
        (about 2 KiB each); one who chats keeps them while busy.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        conn = h.links["alice"].server.connection
        self.assertEqual((conn._sealer.warm, conn._opener.warm), (False, False))
        a.send(ChatRequest("bob"))
        h.pump()
        b.send(ChatAccept("alice"))
        h.pump()
        for i in range(4):
            a.send(Relay("bob", b"%d" % i))
            b.send(Relay("alice", b"%d" % i))
            h.pump()
        self.assertEqual(b.take()[-1], Relayed("alice", b"3"))
        self.assertEqual((conn._sealer.warm, conn._opener.warm), (True, True))

    def test_idleUsersShareEmptySets(self) -> None:
        """
        Idle users have no request, chat or pause sets of their own (they
        share one read-only empty set) and no RELAYED header packer; a chat
        gives its two users sets of their own, and the shared one stays
        empty.
        """
        h = Harness()
        h.login("carol")
        carol = h.relay.sessions["carol"]
        a, b = chatting(h)
        alice, bob = h.relay.sessions["alice"], h.relay.sessions["bob"]
        sets = [(s.chats, s.outgoing, s.incoming, s.blocked_senders, s._pause_reasons)
                for s in (carol, alice, bob)]
        self.assertTrue(all(d is relay_module._EMPTY for d in sets[0]))
        self.assertIsNone(carol._relayed_head)
        self.assertEqual((alice.chats, bob.chats), ({"bob": None}, {"alice": None}))
        self.assertIsNot(alice.chats, bob.chats)
        a.send(Relay("bob", b"hi"))
        h.pump()
        self.assertEqual(b.take(), [Relayed("alice", b"hi")])
        self.assertIsNotNone(alice._relayed_head)
        self.assertEqual(len(relay_module._EMPTY), 0)
        with self.assertRaises(TypeError):
            relay_module._EMPTY["mallory"] = None
        with self.assertRaises(TypeError):
            relay_module._EMPTY.update({"mallory": None})
        with self.assertRaises(TypeError):
            relay_module._EMPTY.setdefault("mallory")
        with self.assertRaises(TypeError):
            relay_module._EMPTY |= {"mallory": None}
        self.assertEqual(len(relay_module._EMPTY), 0)

    def test_onlineList(self) -> None:
        """
        LIST_ONLINE answers with the sorted names of everyone logged in.
        """
        h = Harness()
        a = h.login("carol")
        h.login("alice")
        h.login("bob")
        a.send(ListOnline())
        h.pump()
        self.assertEqual(a.take(), [OnlineList(("alice", "bob", "carol"), 3)])

    def test_onlineListCutToFit(self) -> None:
        """
        A list too long for max_payload is cut (protocol 11.2: the longest
        sorted prefix whose body fits; here 52 - 10 = 42 bytes, and heidi
        would make 43), and C{total} says how many are online.
        """
        h = Harness(Limits(max_frame=180))
        for name in ("alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi"):
            h.login(name)
        client = h.login("ivan")
        client.send(ListOnline())
        h.pump()
        [answer] = client.take()
        self.assertEqual(answer.total, 9)
        self.assertEqual(answer.users, ("alice", "bob", "carol", "dave", "eve", "frank", "grace"))

    def test_onlineListCutToFitManyNames(self) -> None:
        """
        Section 11.2: ONLINE_LIST holds the online users, sorted, cut to fit
        one record, and C{total} counts all.  With 20 users of 32-character
        names online and records of at most 512 bytes (not all 20 names
        fit), the answer is a sorted prefix of the online users, shorter
        than 20 but not empty, its record within 512 bytes, and total 20.
        """
        h = Harness(Limits(max_frame=512))
        names = [f"user{i:02d}" + "x" * 26 for i in range(20)]
        for name in names:
            h.directory.add(UserEntry(name, user_key(name).public_key()))
        clients = {name: h.login(name) for name in reversed(names)}
        client = clients[names[0]]
        client.take()
        client.send(ListOnline())
        h.pump()
        [answer] = client.take()
        self.assertEqual(answer.total, 20)
        self.assertLess(len(answer.users), 20)
        self.assertGreater(len(answer.users), 0)
        self.assertEqual(list(answer.users), sorted(names)[:len(answer.users)])
        # The record it travelled in: header, type, counter, plaintext, tag.
        self.assertLessEqual(1 + 8 + len(encode_inner([answer])) + 16, 512)

    def test_logoutIsClean(self) -> None:
        """
        A client closing with CLOSE_NOTIFY leaves the relay with no error
        and is no longer online.
        """
        h = Harness()
        a = h.login("alice")
        a.protocol.close()
        h.pump()
        self.assertTrue(a.ended)
        self.assertIsNone(a.error)
        self.assertNotIn("alice", h.relay.sessions)

    def test_unknownUserRefused(self) -> None:
        """
        A user not in the directory is refused with HANDSHAKE_FAILED.
        """
        h = Harness()
        client, _ = h.connect("mallory", key=user_key("mallory"))
        self.assertFalse(client.logged_in)
        self.assertEqual(peer_alert(client), Alert.HANDSHAKE_FAILED)
        self.assertEqual(h.relay.sessions, {})

    def test_wrongKeyRefused(self) -> None:
        """
        A registered name with someone else's key is refused with the same
        HANDSHAKE_FAILED.
        """
        h = Harness()
        client, _ = h.connect("alice", key=user_key("bob"))
        self.assertEqual(peer_alert(client), Alert.HANDSHAKE_FAILED)

    def test_revokedUserRefusedAtLogin(self) -> None:
        """
        A revoked user cannot log in.
        """
        h = Harness()
        h.directory.revoke("alice")
        client, _ = h.connect("alice")
        self.assertFalse(client.logged_in)
        self.assertEqual(peer_alert(client), Alert.HANDSHAKE_FAILED)

    def test_revokedUserDisconnectedWhenOnline(self) -> None:
        """
        Revoking an online user and revalidating disconnects it with
        ACCESS_REVOKED, and its chat peer is told the chat ended.
        """
        h = Harness()
        a, b = chatting(h)
        h.directory.revoke("alice")
        h.relay.revalidate()
        h.pump()
        self.assertEqual(peer_alert(a), Alert.ACCESS_REVOKED)
        self.assertNotIn("alice", h.relay.sessions)
        self.assertEqual(b.take(), [ChatEnded("alice", Reason.REVOKED)])

    def test_secondLoginReplacesFirst(self) -> None:
        """
        A second login of the same user closes the first session with
        SESSION_REPLACED; the new one is the one online, and the old one's
        chat partner is told the chat ended.
        """
        h = Harness()
        first, bob = chatting(h)
        second = h.login("alice")
        h.pump()
        self.assertEqual(peer_alert(first), Alert.SESSION_REPLACED)
        self.assertIs(h.relay.sessions["alice"].protocol.delegate, h.relay.sessions["alice"])
        self.assertEqual(bob.take(), [ChatEnded("alice", Reason.REPLACED)])
        second.send(ListOnline())
        h.pump()
        self.assertEqual(second.take(), [OnlineList(("alice", "bob"), 2)])


class ChatRequestTests(unittest.TestCase):
    """
    Chat requests: every outcome answered.
    """

    def test_requestAcceptRelayStop(self) -> None:
        """
        Request, accept: both get CHAT_STARTED with the other's registered
        key (the requester is the end-to-end initiator); frames are relayed
        both ways; stop ends the chat for both.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(b.take(), [ChatRequested("alice")])
        self.assertEqual(a.take(), [RequestPending("bob")])
        b.send(ChatAccept("alice"))
        h.pump()
        bob_der = keys.public_key_der(user_key("bob").public_key())
        alice_der = keys.public_key_der(user_key("alice").public_key())
        self.assertEqual(a.take(), [ChatStarted("bob", bob_der, 1)])
        self.assertEqual(b.take(), [ChatStarted("alice", alice_der, 0)])
        a.send(Relay("bob", b"e2e bytes 1"))
        b.send(Relay("alice", b"e2e bytes 2"))
        h.pump()
        self.assertEqual(b.take(), [Relayed("alice", b"e2e bytes 1")])
        self.assertEqual(a.take(), [Relayed("bob", b"e2e bytes 2")])
        a.send(ChatStop("bob"))
        h.pump()
        self.assertEqual(a.take(), [ChatEnded("bob", Reason.STOPPED)])
        self.assertEqual(b.take(), [ChatEnded("alice", Reason.STOPPED)])
        a.send(Relay("bob", b"after stop"))
        h.pump()
        self.assertEqual(a.take(), [CommandFailed(Relay.TYPE, "bob", Reason.NO_CHAT)])
        self.assertEqual(b.take(), [])

    def test_refuse(self) -> None:
        """
        A refused request tells the requester REFUSED.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        b.send(ChatRefuse("alice"))
        h.pump()
        self.assertEqual(a.take(), [RequestPending("bob"), ChatDeclined("bob", Reason.REFUSED)])

    def test_cancel(self) -> None:
        """
        A cancelled request tells the target it was withdrawn and the
        requester that it ended (CHAT_DECLINED with CANCELLED); accepting it
        afterwards fails with NO_REQUEST.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        b.take()
        a.take()
        a.send(ChatCancel("bob"))
        h.pump()
        self.assertEqual(b.take(), [RequestWithdrawn("alice", Reason.CANCELLED)])
        self.assertEqual(a.take(), [ChatDeclined("bob", Reason.CANCELLED)])
        b.send(ChatAccept("alice"))
        h.pump()
        self.assertEqual(b.take(), [CommandFailed(ChatAccept.TYPE, "alice", Reason.NO_REQUEST)])
        self.assertEqual(a.take(), [])

    def test_targetOffline(self) -> None:
        """
        A request to a registered user who is not online is declined OFFLINE.
        """
        h = Harness()
        a = h.login("alice")
        a.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(a.take(), [ChatDeclined("bob", Reason.OFFLINE)])

    def test_targetUnknown(self) -> None:
        """
        A request to a name nobody registered is declined UNKNOWN_USER.
        """
        h = Harness()
        a = h.login("alice")
        a.send(ChatRequest("nobody"))
        h.pump()
        self.assertEqual(a.take(), [ChatDeclined("nobody", Reason.UNKNOWN_USER)])

    def test_requestToSelf(self) -> None:
        """
        A request to oneself fails with SELF.
        """
        h = Harness()
        a = h.login("alice")
        a.send(ChatRequest("alice"))
        h.pump()
        self.assertEqual(a.take(), [CommandFailed(ChatRequest.TYPE, "alice", Reason.SELF)])

    def test_duplicateRequest(self) -> None:
        """
        A second request to the same user, or a request to a chat partner,
        fails with ALREADY.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        a.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(a.take(), [RequestPending("bob"),
                                    CommandFailed(ChatRequest.TYPE, "bob", Reason.ALREADY)])
        b.send(ChatRequest("alice"))
        h.pump()
        self.assertIn(CommandFailed(ChatRequest.TYPE, "alice", Reason.ALREADY), b.take())

    def test_targetBusy(self) -> None:
        """
        A request to a user with as many chats as allowed is declined BUSY.
        """
        h = Harness(Limits(max_chats=1))
        chatting(h, "alice", "bob")
        c = h.login("carol")
        c.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(c.take(), [ChatDeclined("bob", Reason.BUSY)])

    def test_severalChatsAtOnce(self) -> None:
        """
        Below the limit a user may chat with several users at once, and
        frames go to the right one.
        """
        h = Harness()
        a, b = chatting(h, "alice", "bob")
        c = h.login("carol")
        c.send(ChatRequest("alice"))
        h.pump()
        a.send(ChatAccept("carol"))
        h.pump()
        a.take()
        c.take()
        a.send(Relay("carol", b"to carol"), Relay("bob", b"to bob"))
        h.pump()
        self.assertEqual(c.take(), [Relayed("alice", b"to carol")])
        self.assertEqual(b.take(), [Relayed("alice", b"to bob")])

    def test_requestTimeout(self) -> None:
        """
        An unanswered request expires: the requester is told TIMEOUT and the
        target that the request was withdrawn.
        """
        h = Harness(Limits(request_timeout=60))
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        b.take()
        self.assertEqual(a.take(), [RequestPending("bob")])
        h.network.advance(59)
        self.assertEqual(a.take(), [])
        h.network.advance(1)
        self.assertEqual(a.take(), [ChatDeclined("bob", Reason.TIMEOUT)])
        self.assertEqual(b.take(), [RequestWithdrawn("alice", Reason.TIMEOUT)])

    def test_requesterGone(self) -> None:
        """
        If the requester disconnects, the target is told the request is gone.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        b.take()
        a.protocol.close()
        h.pump()
        self.assertEqual(b.take(), [RequestWithdrawn("alice", Reason.GONE)])
        self.assertEqual(h.relay._requests, {})

    def test_targetLoggedOutMidRequest(self) -> None:
        """
        If the target disconnects before answering, the requester is told
        GONE.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        b.protocol.close()
        h.pump()
        self.assertEqual(a.take(), [RequestPending("bob"), ChatDeclined("bob", Reason.GONE)])

    def test_chatPartnerGone(self) -> None:
        """
        If a chat partner's connection drops, the other is told GONE.
        """
        h = Harness()
        a, b = chatting(h)
        h.links["bob"].close(ConnectionError("network gone"))
        h.pump()
        self.assertEqual(a.take(), [ChatEnded("bob", Reason.GONE)])

    def test_acceptRequestAddressedToSomeoneElse(self) -> None:
        """
        Carol cannot accept alice's request to bob.
        """
        h = Harness()
        a, _, c = h.login("alice"), h.login("bob"), h.login("carol")
        a.send(ChatRequest("bob"))
        h.pump()
        c.send(ChatAccept("alice"))
        h.pump()
        self.assertEqual(c.take(), [CommandFailed(ChatAccept.TYPE, "alice", Reason.NO_REQUEST)])
        self.assertEqual(a.take(), [RequestPending("bob")])

    def test_replayedAccept(self) -> None:
        """
        An accept sent again after the chat started fails with NO_REQUEST
        and changes nothing.
        """
        h = Harness()
        a, b = chatting(h)
        b.send(ChatAccept("alice"))
        h.pump()
        self.assertEqual(b.take(), [CommandFailed(ChatAccept.TYPE, "alice", Reason.NO_REQUEST)])
        self.assertEqual(a.take(), [])

    def test_relayBeforeAccept(self) -> None:
        """
        End-to-end frames to a user who has not accepted are refused.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        a.send(Relay("bob", b"too early"))
        h.pump()
        self.assertEqual(a.take(), [RequestPending("bob"),
                                    CommandFailed(Relay.TYPE, "bob", Reason.NO_CHAT)])
        self.assertEqual(b.take(), [ChatRequested("alice")])

    def test_refuseWithoutRequest(self) -> None:
        """
        Refusing a request that does not exist fails with NO_REQUEST.
        """
        h = Harness()
        b = h.login("bob")
        b.send(ChatRefuse("alice"))
        h.pump()
        self.assertEqual(b.take(), [CommandFailed(ChatRefuse.TYPE, "alice", Reason.NO_REQUEST)])

    def test_stopWithoutChat(self) -> None:
        """
        Stopping a chat that does not exist fails with NO_CHAT.
        """
        h = Harness()
        b = h.login("bob")
        b.send(ChatStop("alice"))
        h.pump()
        self.assertEqual(b.take(), [CommandFailed(ChatStop.TYPE, "alice", Reason.NO_CHAT)])

    def test_tooManyOutgoingRequests(self) -> None:
        """
        A user may have at most C{max_outgoing_requests} open requests; one
        more is the requester's own limit, so it fails (COMMAND_FAILED with
        TOO_MANY_PENDING, 11.4) and the target is not asked.
        """
        h = Harness(Limits(max_outgoing_requests=2))
        a = h.login("alice")
        for name in ("bob", "carol", "dave"):
            h.login(name)
            a.send(ChatRequest(name))
        h.pump()
        self.assertEqual(a.take(), [RequestPending("bob"), RequestPending("carol"),
                                    CommandFailed(ChatRequest.TYPE, "dave", Reason.TOO_MANY_PENDING)])
        self.assertEqual(h.relay.sessions["dave"].incoming, {})

    def test_tooManyIncomingRequests(self) -> None:
        """
        A user may receive at most C{max_incoming_requests} open requests.
        """
        h = Harness(Limits(max_incoming_requests=2))
        target = h.login("alice")
        senders = [h.login(n) for n in ("bob", "carol", "dave")]
        for s in senders:
            s.send(ChatRequest("alice"))
            h.pump()
        self.assertEqual(senders[2].take(), [ChatDeclined("alice", Reason.TOO_MANY_PENDING)])
        self.assertEqual(len(target.of_type(ChatRequested)), 2)

    def test_serverMessageFromClient(self) -> None:
        """
        A client sending a message only the relay may send is cut off.
        """
        h = Harness()
        a = h.login("alice")
        a.send(Welcome("alice", 1))
        h.pump()
        self.assertEqual(peer_alert(a), Alert.DECODE_ERROR)


class RelayHotPathTests(unittest.TestCase):
    """
    RELAY is forwarded from its undecoded bytes (C{Relay.relay_raw}); these
    check that the fast path keeps every rule of the full parser.
    """

    def test_recordOfRelaysArrivesAsOneRecord(self) -> None:
        """
        Five RELAYs in one record reach bob in order, as RELAYEDs sealed
        into one record.
        """
        h = Harness()
        a, b = chatting(h)
        opener = b.protocol.connection._opener
        before = opener.counter
        a.send(*[Relay("bob", f"part {i}".encode()) for i in range(5)])
        h.pump()
        self.assertEqual(b.take(), [Relayed("alice", f"part {i}".encode()) for i in range(5)])
        self.assertEqual(opener.counter, before + 1)

    def test_orderAcrossMessageTypes(self) -> None:
        """
        A record mixing RELAYs and a command is handled in record order: the
        RELAY after CHAT_STOP finds no chat.
        """
        h = Harness()
        a, b = chatting(h)
        a.send(Relay("bob", b"1"), ChatStop("bob"), Relay("bob", b"2"))
        h.pump()
        self.assertEqual(b.take(), [Relayed("alice", b"1"), ChatEnded("alice", Reason.STOPPED)])
        self.assertEqual(a.take(), [ChatEnded("bob", Reason.STOPPED),
                                    CommandFailed(Relay.TYPE, "bob", Reason.NO_CHAT)])

    def test_largestPayloadRelayed(self) -> None:
        """
        A payload of exactly C{max_payload} (announced in WELCOME) is
        relayed whole.
        """
        h = Harness()
        a, b = chatting(h)
        payload = bytes(range(256)) * (h.relay.limits.max_payload // 256) + b"x" * (
            h.relay.limits.max_payload % 256)
        a.send(Relay("bob", payload))
        h.pump()
        self.assertEqual(b.take(), [Relayed("alice", payload)])

    def test_payloadOverMaximumRefused(self) -> None:
        """
        One byte more than C{max_payload} is C{limit-exceeded}: the sender
        is disconnected, nothing reaches bob, and bob's session carries on.
        """
        h = Harness()
        a, b = chatting(h)
        a.send(Relay("bob", b"x" * (h.relay.limits.max_payload + 1)))
        h.pump()
        self.assertEqual(peer_alert(a), Alert.LIMIT_EXCEEDED)
        self.assertEqual(b.of_type(Relayed), [])
        self.assertIn("bob", h.relay.sessions)

    def test_nameNotText(self) -> None:
        """
        A RELAY whose name bytes are not UTF-8 is C{bad-value}
        (DECODE_ERROR), as the full parser says.
        """
        h = Harness()
        a, b = chatting(h)
        body = b"\x01\xff" + (3).to_bytes(4, "big") + b"abc"
        a.protocol.connection.send_inner(bytes([Relay.TYPE]) + len(body).to_bytes(4, "big") + body)
        a.protocol._flush()
        h.pump()
        self.assertEqual(peer_alert(a), Alert.DECODE_ERROR)
        self.assertEqual(b.of_type(Relayed), [])

    def test_payloadLengthDisagrees(self) -> None:
        """
        A RELAY to a chat peer whose payload length field is one more, or
        one less, than the bytes present is DECODE_ERROR (truncated or
        trailing bytes): the fast path never forwards it.
        """
        for delta in (1, -1):
            h = Harness()
            a, b = chatting(h)
            body = b"\x03bob" + (3 + delta).to_bytes(4, "big") + b"abc"
            a.protocol.connection.send_inner(bytes([Relay.TYPE]) + len(body).to_bytes(4, "big") + body)
            a.protocol._flush()
            h.pump()
            self.assertEqual(peer_alert(a), Alert.DECODE_ERROR, delta)
            self.assertEqual(b.of_type(Relayed), [])


class LimitTests(unittest.TestCase):
    """
    Each limit, hit.
    """

    def test_handshakeDeadline(self) -> None:
        """
        A connection that has not completed the handshake within
        C{handshake_timeout} is closed with TIMEOUT, and trickling bytes does
        not extend the deadline.
        """
        h = Harness(Limits(handshake_timeout=10))
        server = h.factory.buildProtocol(None)
        from tests.memnet import MemoryTransport
        from twisted.internet.address import IPv4Address
        addr = IPv4Address("TCP", "10.0.0.9", 1)
        transport = MemoryTransport(server, addr, addr, 65536)
        server.makeConnection(transport)
        hello_start = encode_frame(0x01, b"\x00" * 70)
        for i in range(9):
            h.clock.advance(1)
            server.dataReceived(hello_start[i:i + 1])
        self.assertFalse(transport.disconnecting)
        h.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertIn(bytes([0x15, Alert.TIMEOUT]), b"".join(transport.outgoing))

    def test_unauthenticatedCapGlobal(self) -> None:
        """
        Past C{max_unauthenticated} connections in the handshake, new ones
        get LIMIT_EXCEEDED at once; the count drops as handshakes complete.
        """
        h = Harness(Limits(max_unauthenticated=2, max_unauthenticated_per_host=10))
        protos = [h.factory.buildProtocol(None) for _ in range(2)]
        refused = h.factory.buildProtocol(None)
        self.assertNotIn("SecureChatProtocol", type(refused).__name__)
        from tests.memnet import MemoryTransport
        from twisted.internet.address import IPv4Address
        addr = IPv4Address("TCP", "10.0.0.9", 1)
        t = MemoryTransport(refused, addr, addr, 65536)
        refused.makeConnection(t)
        self.assertIn(bytes([0x15, Alert.LIMIT_EXCEEDED]), b"".join(t.outgoing))
        self.assertTrue(t.disconnecting)
        self.assertEqual(h.relay.gate.total, 2)
        self.assertEqual([type(p).__name__ for p in protos], ["SecureChatProtocol"] * 2)

    def test_unauthenticatedCapPerHost(self) -> None:
        """
        One address may hold at most C{max_unauthenticated_per_host}
        connections in the handshake; another address still gets in.
        """
        h = Harness(Limits(max_unauthenticated_per_host=2))
        for _ in range(2):
            client, _ = h.connect("alice", host="10.9.9.9", key=None)
        self.assertEqual(h.relay.gate.total, 0)  # both completed and left the gate
        from tests.relay_harness import _Addr
        h.factory.buildProtocol(_Addr("10.9.9.9"))
        h.factory.buildProtocol(_Addr("10.9.9.9"))
        refused = h.factory.buildProtocol(_Addr("10.9.9.9"))
        self.assertEqual(type(refused).__name__, "_Refusal")
        self.assertEqual(type(h.factory.buildProtocol(_Addr("10.1.1.1"))).__name__, "SecureChatProtocol")

    def test_smallerFrameBeforeAuthentication(self) -> None:
        """
        Before authentication a frame above C{max_handshake_frame} is refused
        from its length alone; after, C{max_frame} applies.
        """
        h = Harness(Limits(max_handshake_frame=4096, max_frame=65536))
        server = h.factory.buildProtocol(None)
        from tests.memnet import MemoryTransport
        from twisted.internet.address import IPv4Address
        addr = IPv4Address("TCP", "10.0.0.9", 1)
        t = MemoryTransport(server, addr, addr, 65536)
        server.makeConnection(t)
        server.dataReceived((4097).to_bytes(4, "big"))
        self.assertEqual(server.error.code, "frame-too-large")
        a = h.login("alice")
        session = h.relay.sessions["alice"]
        self.assertEqual(session.protocol.connection._decoder.max_length, 65536)
        a.protocol.transport.write((65537).to_bytes(4, "big"))
        h.pump()
        self.assertEqual(session.protocol.error.code, "frame-too-large")
        self.assertEqual(peer_alert(a), Alert.FRAME_TOO_LARGE)

    def test_idleKeepalive(self) -> None:
        """
        A quiet session is PINGed at half the idle timeout; a client that
        answers stays connected.
        """
        h = Harness(Limits(idle_timeout=100))
        a = h.login("alice")
        h.network.advance(400)
        self.assertFalse(a.ended)
        self.assertIn("alice", h.relay.sessions)

    def test_sessionsShareOneKeepaliveTimer(self) -> None:
        """
        All sessions are kept alive by the relay's one sweep (not a delayed
        call each); a session leaves it when it ends.
        """
        h = Harness(Limits(idle_timeout=100))
        clients = [h.login(name) for name in USERS[:6]]
        sweep = h.relay.keepalive
        assert sweep is not None
        self.assertEqual(len(sweep), 6)
        self.assertEqual(sweep.period, 10)
        self.assertEqual(len([c for c in h.clock.getDelayedCalls() if c.func == sweep._sweep]), 1)
        for client in clients[:4]:
            client.protocol.close()
        h.pump()
        self.assertEqual(len(sweep), 2)
        h.network.advance(400)
        self.assertEqual(sorted(h.relay.sessions), sorted(USERS[4:6]))

    def test_idleTimeout(self) -> None:
        """
        A client that stops reading (so never answers the keepalive) is
        closed with TIMEOUT after the idle timeout.
        """
        h = Harness(Limits(idle_timeout=100))
        h.login("alice")
        h.links["alice"].client_transport.reading = False
        h.network.advance(99)
        self.assertIn("alice", h.relay.sessions)
        h.network.advance(2)
        self.assertNotIn("alice", h.relay.sessions)

    def test_rateThrottles(self) -> None:
        """
        A user above its message rate has its reading paused until the
        bucket refills; nothing is lost.
        """
        h = Harness(Limits(rate=10, burst=5))
        a = h.login("alice")
        for _ in range(8):
            a.send(ListOnline())
        h.pump()
        session = h.relay.sessions["alice"]
        self.assertTrue(session.reading_paused)
        self.assertEqual(len(a.take()), 8)
        h.network.advance(1)
        self.assertFalse(session.reading_paused)
        self.assertGreater(h.relay.metrics.rate_limited._value.get(), 0)

    def test_rateFloodDisconnects(self) -> None:
        """
        A user more than C{burst} in debt in one read is disconnected with
        LIMIT_EXCEEDED.
        """
        h = Harness(Limits(rate=10, burst=5))
        a = h.login("alice")
        a.send(*[ListOnline() for _ in range(20)])
        h.pump()
        self.assertEqual(peer_alert(a), Alert.LIMIT_EXCEEDED)
        self.assertNotIn("alice", h.relay.sessions)

    def test_relayFloodInOneRecordCountsEachMessage(self) -> None:
        """
        RELAYs in one record are charged one by one like any message: with
        a burst of 5, ten are relayed (the last five in debt) and the
        eleventh, more than C{burst} in debt, disconnects the sender.
        """
        h = Harness(Limits(rate=1, burst=5))
        a, b = chatting(h)
        h.network.advance(10)  # refill after the chat setup
        a.send(*[Relay("bob", bytes([i])) for i in range(12)])
        h.pump()
        self.assertEqual(b.of_type(Relayed), [Relayed("alice", bytes([i])) for i in range(10)])
        self.assertEqual(peer_alert(a), Alert.LIMIT_EXCEEDED)

    def test_relayRunWithinRateNotThrottled(self) -> None:
        """
        A record of RELAYs within the balance is relayed whole and leaves
        the sender reading.
        """
        h = Harness(Limits(rate=1, burst=5))
        a, b = chatting(h)
        h.network.advance(10)
        a.send(*[Relay("bob", bytes([i])) for i in range(5)])
        h.pump()
        self.assertEqual(len(b.of_type(Relayed)), 5)
        self.assertFalse(h.relay.sessions["alice"].reading_paused)


class BackpressureTests(unittest.TestCase):
    """
    A recipient that does not read while its peer floods.
    """

    LIMITS = Limits(queue_soft_limit=64 * 1024, queue_hard_limit=256 * 1024,
                    stall_timeout=30, rate=1e6, burst=10**6)

    def flood(self, h: Harness, sender: RecordingClient, to: str, count: int) -> None:
        for _ in range(count):
            if sender.protocol.transport.reading is False:
                break
            sender.send(Relay(to, b"x" * 1000))
            h.pump()

    def test_senderPausedMemoryBounded(self) -> None:
        """
        While bob does not read, alice's flood fills bob's queue to the soft
        limit, then alice is paused: the relay's memory for bob stays within
        the soft limit plus one read, and a canary chat flows meanwhile.
        """
        h = Harness(self.LIMITS)
        a, b = chatting(h)
        c, d = chatting(h, "carol", "dave")
        h.links["bob"].client_transport.reading = False
        alice_session = h.relay.sessions["alice"]
        for _ in range(1000):
            a.send(Relay("bob", b"x" * 1000))
            h.pump()
        bob_queue = h.relay.sessions["bob"].queue
        self.assertTrue(alice_session.reading_paused)
        self.assertLessEqual(bob_queue.bytes, self.LIMITS.queue_soft_limit + 70 * 1024)
        # the canary pair is unaffected
        c.send(Relay("dave", b"canary"))
        h.pump()
        self.assertEqual(d.take(), [Relayed("carol", b"canary")])
        self.assertGreater(h.relay.metrics.senders_paused._value.get(), 0)

    def test_senderResumesWhenRecipientReads(self) -> None:
        """
        When bob reads again his queue drains, alice resumes, and every
        message alice sent arrives, in order.
        """
        h = Harness(self.LIMITS)
        a, b = chatting(h)
        h.links["bob"].client_transport.reading = False
        sent = 0
        for i in range(400):
            a.send(Relay("bob", i.to_bytes(4, "big") + b"x" * 1000))
            sent += 1
            h.pump()
        self.assertTrue(h.relay.sessions["alice"].reading_paused)
        h.links["bob"].client_transport.reading = True
        h.pump()
        self.assertFalse(h.relay.sessions["alice"].reading_paused)
        got = [int.from_bytes(m.payload[:4], "big") for m in b.take()]
        self.assertEqual(got, list(range(sent)))

    def test_stalledRecipientDropped(self) -> None:
        """
        A recipient whose queue stays above the soft limit for
        C{stall_timeout} is disconnected; its sender resumes and is told the
        chat ended.
        """
        h = Harness(self.LIMITS)
        a, b = chatting(h)
        h.links["bob"].client_transport.reading = False
        for _ in range(200):
            a.send(Relay("bob", b"x" * 1000))
            h.pump()
        self.assertTrue(h.relay.sessions["alice"].reading_paused)
        h.network.advance(31)
        self.assertNotIn("bob", h.relay.sessions)
        self.assertFalse(h.relay.sessions["alice"].reading_paused)
        self.assertIn(ChatEnded("bob", Reason.GONE), a.take())
        self.assertEqual(h.relay.metrics.queue_drops._value.get(), 1)

    def test_hardLimitDropsRecipient(self) -> None:
        """
        A queue pushed past the hard limit in one go (here by several
        senders at once) disconnects its user at once.
        """
        limits = Limits(queue_soft_limit=4 * 1024, queue_hard_limit=16 * 1024,
                        rate=1e6, burst=10**6)
        h = Harness(limits)
        bob = h.login("bob")
        senders = []
        for name in ("alice", "carol", "dave", "eve"):
            s = h.login(name)
            s.send(ChatRequest("bob"))
            h.pump()
            bob.send(ChatAccept(name))
            h.pump()
            senders.append(s)
        h.links["bob"].client_transport.reading = False
        h.relay.sessions["bob"].queue.pauseProducing()  # bob's socket buffer is full
        for s in senders:
            s.send(*[Relay("bob", b"y" * 1000) for _ in range(8)])
        h.pump()
        self.assertNotIn("bob", h.relay.sessions)
        self.assertEqual(h.relay.metrics.queue_drops._value.get(), 1)


class LimitMechanismTests(unittest.TestCase):
    """
    The token bucket and the gate on their own.
    """

    def test_bucketRefills(self) -> None:
        """
        The bucket allows C{burst} at once, then C{rate} per second.
        """
        from twisted.internet.task import Clock
        clock = Clock()
        bucket = TokenBucket(clock, rate=2, burst=3)
        self.assertEqual([bucket.take() for _ in range(4)], [2, 1, 0, -1])
        self.assertEqual(bucket.seconds_until_positive(), 1.0)
        clock.advance(1)
        self.assertEqual(bucket.take(), 0)

    def test_bucketRefillSpendsNothing(self) -> None:
        """
        C{refill} adds what was earned, capped at C{burst}, and spends none.
        """
        from twisted.internet.task import Clock
        clock = Clock()
        bucket = TokenBucket(clock, rate=2, burst=3)
        bucket.take()
        bucket.take()
        self.assertEqual(bucket.refill(), 1)
        clock.advance(0.5)
        self.assertEqual(bucket.refill(), 2)
        clock.advance(10)
        self.assertEqual((bucket.refill(), bucket.refill()), (3, 3))

    def test_gateCounts(self) -> None:
        """
        The gate admits up to its limits and counts releases.
        """
        gate = ConnectionGate(limit=3, per_host=2)
        self.assertIsNone(gate.admit("a"))
        self.assertIsNone(gate.admit("a"))
        self.assertIsNotNone(gate.admit("a"))
        self.assertIsNone(gate.admit("b"))
        self.assertIsNotNone(gate.admit("c"))
        gate.release("a")
        self.assertIsNone(gate.admit("c"))


class MetricsAccountingTests(unittest.TestCase):
    """
    The queued-bytes gauge follows the queues.
    """

    def test_queuedBytesReturnToZero(self) -> None:
        """
        Bytes queued are counted while waiting and uncounted when sent or
        when their user is dropped.
        """
        h = Harness(BackpressureTests.LIMITS)
        a, b = chatting(h)
        metrics = h.relay.metrics
        a.send(Relay("bob", b"z" * 500))
        h.pump()
        self.assertEqual(metrics.queued_bytes, 0)
        h.links["bob"].client_transport.reading = False
        for _ in range(150):
            a.send(Relay("bob", b"z" * 1000))
            h.pump()
        self.assertGreater(metrics.queued_bytes, 0)
        self.assertIn(f"securechat_queued_bytes {float(metrics.queued_bytes)}", metrics.render().decode())
        h.network.advance(31)
        self.assertNotIn("bob", h.relay.sessions)
        self.assertEqual(metrics.queued_bytes, 0)


class ChatRequestRuleTests(unittest.TestCase):
    """
    docs/protocol.rst 11.4, one test per rule: a CHAT_REQUEST is answered at
    once by exactly one COMMAND_FAILED (the requester cannot make it),
    CHAT_DECLINED (the target cannot take it) or REQUEST_PENDING (the target
    was asked); a pending request then ends in exactly one CHAT_STARTED or
    CHAT_DECLINED for the requester.
    """

    def test_pendingAcknowledged(self) -> None:
        """
        A request the relay passes on is answered with REQUEST_PENDING naming
        the target, after the target was sent CHAT_REQUESTED, and nothing
        else.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(b.take(), [ChatRequested("alice")])
        self.assertEqual(a.take(), [RequestPending("bob")])

    def test_toSelfFails(self) -> None:
        """
        A request to oneself is COMMAND_FAILED(SELF), its subject the name as
        sent, and creates no request.
        """
        h = Harness()
        a = h.login("alice")
        a.send(ChatRequest("alice"))
        h.pump()
        self.assertEqual(a.take(), [CommandFailed(ChatRequest.TYPE, "alice", Reason.SELF)])
        self.assertEqual(h.relay._requests, {})

    def test_repeatedRequestFails(self) -> None:
        """
        Repeating a request that is still pending is COMMAND_FAILED(ALREADY);
        the first request stays pending, and the target is asked once.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        a.take()
        a.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(a.take(), [CommandFailed(ChatRequest.TYPE, "bob", Reason.ALREADY)])
        self.assertEqual(b.take(), [ChatRequested("alice")])
        self.assertIn(("alice", "bob"), h.relay._requests)

    def test_crossingRequestFails(self) -> None:
        """
        A request to a user whose own request to us is pending is
        COMMAND_FAILED(ALREADY): the answer is to accept theirs.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        b.send(ChatRequest("alice"))
        h.pump()
        a.take()
        a.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(a.take(), [CommandFailed(ChatRequest.TYPE, "bob", Reason.ALREADY)])

    def test_requestToChatPartnerFails(self) -> None:
        """
        A request to a user we already chat with is COMMAND_FAILED(ALREADY).
        """
        h = Harness()
        a, b = chatting(h)
        a.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(a.take(), [CommandFailed(ChatRequest.TYPE, "bob", Reason.ALREADY)])
        self.assertEqual(b.take(), [])

    def test_requesterAtChatLimitFails(self) -> None:
        """
        A requester who already has C{max_chats} chats gets
        COMMAND_FAILED(BUSY) (its own limit), not a CHAT_DECLINED blaming
        the target; the target is not asked.
        """
        h = Harness(Limits(max_chats=1))
        a, _ = chatting(h, "alice", "bob")
        c = h.login("carol")
        a.send(ChatRequest("carol"))
        h.pump()
        self.assertEqual(a.take(), [CommandFailed(ChatRequest.TYPE, "carol", Reason.BUSY)])
        self.assertEqual(c.take(), [])

    def test_requesterLimitsCheckedBeforeTarget(self) -> None:
        """
        The requester's own limits are checked before anything about the
        target: at its request limit, a request to an unknown name is
        COMMAND_FAILED(TOO_MANY_PENDING), not UNKNOWN_USER.
        """
        h = Harness(Limits(max_outgoing_requests=1))
        a = h.login("alice")
        h.login("bob")
        a.send(ChatRequest("bob"))
        a.send(ChatRequest("nobody"))
        h.pump()
        self.assertEqual(a.take(), [RequestPending("bob"), CommandFailed(
            ChatRequest.TYPE, "nobody", Reason.TOO_MANY_PENDING)])

    def test_targetStateDeclines(self) -> None:
        """
        What is about the target answers CHAT_DECLINED: unknown or revoked
        (UNKNOWN_USER), offline (OFFLINE), too many requests to it
        (TOO_MANY_PENDING), at its chat limit (BUSY).
        """
        h = Harness(Limits(max_chats=1, max_incoming_requests=1))
        h.directory.revoke("judy")
        a = h.login("alice")
        chatting(h, "bob", "carol")
        h.login("dave")
        h.login("eve").send(ChatRequest("dave"))
        h.pump()
        for target, reason in [("nobody", Reason.UNKNOWN_USER), ("judy", Reason.UNKNOWN_USER),
                               ("frank", Reason.OFFLINE), ("dave", Reason.TOO_MANY_PENDING),
                               ("bob", Reason.BUSY)]:
            a.send(ChatRequest(target))
            h.pump()
            self.assertEqual(a.take(), [ChatDeclined(target, reason)], target)

    def test_cancelEndsRequestForRequester(self) -> None:
        """
        CHAT_CANCEL ends a pending request with CHAT_DECLINED(CANCELLED) to
        the requester (its one outcome) and REQUEST_WITHDRAWN(CANCELLED) to
        the target.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        a.take()
        b.take()
        a.send(ChatCancel("bob"))
        h.pump()
        self.assertEqual(a.take(), [ChatDeclined("bob", Reason.CANCELLED)])
        self.assertEqual(b.take(), [RequestWithdrawn("alice", Reason.CANCELLED)])

    def test_cancelAfterAnswerFails(self) -> None:
        """
        Cancelling a request that was already answered (or never made) is
        COMMAND_FAILED(NO_REQUEST) with the target as subject.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        b.send(ChatRefuse("alice"))
        h.pump()
        a.take()
        a.send(ChatCancel("bob"))
        h.pump()
        self.assertEqual(a.take(), [CommandFailed(ChatCancel.TYPE, "bob", Reason.NO_REQUEST)])

    def test_newRequestAfterOutcome(self) -> None:
        """
        Once a request has ended (here refused), the same request may be
        made again and is passed on.
        """
        h = Harness()
        a, b = h.login("alice"), h.login("bob")
        a.send(ChatRequest("bob"))
        h.pump()
        b.send(ChatRefuse("alice"))
        h.pump()
        a.take()
        b.take()
        a.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(a.take(), [RequestPending("bob")])
        self.assertEqual(b.take(), [ChatRequested("alice")])

    def test_acceptAtChatLimit(self) -> None:
        """
        Accepting while either side has C{max_chats} chats drops the
        request: the acceptor gets COMMAND_FAILED(accept, BUSY), the
        requester CHAT_DECLINED(BUSY).
        """
        h = Harness(Limits(max_chats=1))
        a, b, c = h.login("alice"), h.login("bob"), h.login("carol")
        a.send(ChatRequest("bob"))
        c.send(ChatRequest("bob"))
        h.pump()
        b.send(ChatAccept("carol"))
        h.pump()
        a.take()
        b.take()
        b.send(ChatAccept("alice"))
        h.pump()
        self.assertEqual(b.take(), [CommandFailed(ChatAccept.TYPE, "alice", Reason.BUSY)])
        self.assertEqual(a.take(), [ChatDeclined("bob", Reason.BUSY)])
        self.assertEqual(h.relay._requests, {})

    def test_targetReplacedDeclines(self) -> None:
        """
        A target who logs in again elsewhere ends the pending request with
        CHAT_DECLINED(REPLACED), and a chat partner's chat with CHAT_ENDED
        (REPLACED): the user is still online, not gone.
        """
        h = Harness()
        a = h.login("alice")
        c, _ = chatting(h, "carol", "bob")
        a.send(ChatRequest("bob"))
        h.pump()
        a.take()
        h.login("bob")
        h.pump()
        self.assertEqual(a.take(), [ChatDeclined("bob", Reason.REPLACED)])
        self.assertEqual(c.take(), [ChatEnded("bob", Reason.REPLACED)])
