"""
A connection that ended leaves nothing for the garbage collector: the
protocol lets go of its delegate (the relay's session, which refers back
to it) and the outbound queue of its seal function and drain callback
(issue 20: a mass reconnect after a restart otherwise left about 33
objects per handshake to the cyclic collector).
"""

from __future__ import annotations

import gc

from twisted.internet.error import ConnectionDone
from twisted.trial import unittest

from securechat.outbound import EndOfTurn, OutboundQueue
from securechat.protocol import SecureChatProtocol
from securechat.wire.relay import ListOnline
from tests.relay_harness import Harness


class NoCyclesTests(unittest.TestCase):

    def setUp(self) -> None:
        self.h = Harness()

    def login_and_out(self) -> tuple[SecureChatProtocol, SecureChatProtocol]:
        client, link = self.h.connect("alice")
        self.assertTrue(client.logged_in, client.error)
        client.send(ListOnline())
        self.h.pump()
        link.close(ConnectionDone())
        self.h.pump()
        self.h.network.links.remove(link)
        for transport in (link.server_transport, link.client_transport):
            # What Twisted's TCP transport lets go of when the connection
            # is lost (memnet's transports keep theirs).
            transport.protocol = None
            transport.producer = None
        return link.client, link.server  # type: ignore[return-value]

    def test_loginsLeaveNoCycles(self) -> None:
        """
        Ten logins, each with a command answered, then logged out: nothing
        of them is left for C{gc.collect} (it finds 44 objects a login,
        client and relay side, with the protocol keeping its delegate).
        """
        self.login_and_out()  # warm-up
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        for _ in range(10):
            self.login_and_out()
        self.assertEqual(gc.collect(), 0)

    def test_endedProtocolDelegatesNothing(self) -> None:
        """
        Once its connection is lost, a protocol holds no delegate, and what
        may still be asked of it (close, terminate, post) does nothing.
        """
        client, server = self.login_and_out()
        for proto in (client, server):
            self.assertEqual(repr(proto.delegate), "<connection ended>")
            proto.close()
            proto.terminate("timeout")
            proto.post(ListOnline())
            self.assertEqual(len(proto.outbound), 0)

    def test_clearedQueueLetsGo(self) -> None:
        """
        A cleared queue no longer refers to its seal function or its drain
        callback, and a flush after it seals nothing.
        """
        sealed: list[bytes] = []
        drained: list[bool] = []
        queue = OutboundQueue(EndOfTurn(self.h.clock), sealed.append, 1000)
        queue.on_drained = lambda: drained.append(True)
        queue.push(ListOnline())
        queue.clear()
        self.assertIsNone(queue.on_drained)
        self.assertIsNot(queue._seal, sealed.append)
        queue.push(ListOnline())
        queue.flush()
        self.assertEqual((sealed, drained, len(queue)), ([], [], 0))
