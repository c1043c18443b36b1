"""
Several real relay processes (C{twistd securechat --cluster}) on one
throwaway Redis (L{tests.redisservice}), with real C{securechat-client}
processes on loopback: users on different processes chat end to end; a
process is SIGKILLed mid-chat and its users carry on through another;
Redis is restarted under them.  Every wait is bounded (L{Process.expect}).

The processes share one data directory (its user directory and
certificates; each process re-reads them on change), as on one host.
"""

from __future__ import annotations

import os
import signal

from twisted.trial import unittest

from tests.processes import Process
from tests.redisservice import RedisServer
from tests.test_endtoend import Deployment, listening_port

TTL = "3"


def relay(test: unittest.TestCase, d: Deployment, redis: RedisServer, process_id: str,
          port: int = 0, ttl: str = TTL) -> tuple[Process, int]:
    """A relay process in the cluster, once it is linked; and its port."""
    p = d.relay("--listen", f"tcp:{port}:interface=127.0.0.1", "--cluster", redis.url,
                "--process-id", process_id, "--presence-ttl", ttl)
    p.name = f"relay {process_id}"
    bound = listening_port(p)
    p.expect(rf"cluster: linked to Redis as process {process_id}")
    return p, bound


def chat(alice: Process, bob: Process, line: str, answer: str) -> None:
    """alice asks bob, bob accepts, they exchange one line each."""
    alice.send("!chat bob")
    bob.expect(r"\* alice wants to chat")
    bob.send("!accept alice")
    alice.expect(r"chat with bob is end-to-end encrypted")
    bob.expect(r"chat with alice is end-to-end encrypted")
    alice.send(line)
    bob.expect(rf"\] alice: {line}")
    bob.send(answer)
    alice.expect(rf"\] bob: {answer}")


class ClusterEndToEndTests(unittest.TestCase):

    def setUp(self) -> None:
        self.redis = RedisServer(self)
        self.d = Deployment(self)

    def test_chatAcrossTwoProcesses(self) -> None:
        """
        alice on one process, bob on another: each sees the other online,
        they chat end to end, and stop.
        """
        one, port1 = relay(self, self.d, self.redis, "one")
        two, port2 = relay(self, self.d, self.redis, "two")
        alice = self.d.client("alice", f"tcp:127.0.0.1:{port1}")
        bob = self.d.client("bob", f"tcp:127.0.0.1:{port2}")
        alice.expect(r"\* logged in as alice")
        bob.expect(r"\* logged in as bob")
        alice.send("!online")
        alice.expect(r"\* online: alice, bob")
        chat(alice, bob, "hello bob across processes", "hi alice, also secret")
        alice.send("!stop")
        bob.expect(r"chat with alice ended by alice")
        alice.send("!exit")
        bob.send("!exit")
        self.assertEqual(alice.wait(), 0, alice.output())
        self.assertEqual(bob.wait(), 0, bob.output())
        one.expect(r"chat started: alice and bob \(process two\)")
        two.expect(r"chat request alice \(process one\) -> bob")
        for p in (one, two):
            self.assertNotIn("Traceback", p.output())

    def test_processKilledMidChat(self) -> None:
        """
        Three processes.  alice's process is SIGKILLed mid-chat: bob (on
        another) is told the chat ended within the presence TTL; alice's
        client reconnects by itself to a process now listening at her
        address (a third one), where she logs in and chats with bob again.
        A second login of bob on yet another process replaces his first.
        """
        one, port1 = relay(self, self.d, self.redis, "one")
        two, port2 = relay(self, self.d, self.redis, "two")
        alice = self.d.client("alice", f"tcp:127.0.0.1:{port1}")
        bob = self.d.client("bob", f"tcp:127.0.0.1:{port2}")
        alice.expect(r"\* logged in as alice")
        bob.expect(r"\* logged in as bob")
        chat(alice, bob, "before the crash", "noted")
        os.kill(one.proc.pid, signal.SIGKILL)
        one.wait()
        bob.expect(r"chat with alice ended")  # within the TTL and a heartbeat, load permitting
        two.expect(r"cluster: process one is gone")
        alice.expect(r"\* reconnecting")
        three, _ = relay(self, self.d, self.redis, "three", port=port1)
        alice.expect(r"\* logged in as alice")
        chat(alice, bob, "after the crash", "still here")
        # bob logs in again on process three: his session on two is replaced.
        again = self.d.client("bob", f"tcp:127.0.0.1:{port1}")
        again.expect(r"\* logged in as bob")
        bob.expect(r"logged in (again )?elsewhere|SESSION_REPLACED")
        two.expect(r"user bob logged in again on process three")
        alice.expect(r"chat with bob ended")
        for p in (two, three):
            self.assertNotIn("Traceback", p.output())

    def test_redisRestart(self) -> None:
        """
        Redis is killed under two processes: both say they lost it and end
        the cross-process chat; a login meanwhile is refused as UNAVAILABLE;
        Redis comes back within the presence TTL (30 s here, so a loaded
        machine does not reach it; being cut off longer is
        tests.test_router's): both link again, alice and bob stay logged
        in, see each other online and chat again.
        """
        one, port1 = relay(self, self.d, self.redis, "one", ttl="30")
        two, port2 = relay(self, self.d, self.redis, "two", ttl="30")
        alice = self.d.client("alice", f"tcp:127.0.0.1:{port1}")
        bob = self.d.client("bob", f"tcp:127.0.0.1:{port2}")
        alice.expect(r"\* logged in as alice")
        bob.expect(r"\* logged in as bob")
        chat(alice, bob, "before the restart", "ok")
        self.redis.stop()
        one.expect(r"cluster: lost the link to Redis")
        two.expect(r"cluster: lost the link to Redis")
        alice.expect(r"chat with bob ended")
        bob.expect(r"chat with alice ended")
        late = self.d.client("alice", f"tcp:127.0.0.1:{port2}")
        late.expect(r"cannot serve users now")
        late.proc.kill()
        self.redis.start()
        one.expect(r"cluster: linked to Redis as process one")
        two.expect(r"cluster: linked to Redis as process two")
        alice.send("!online")
        alice.expect(r"\* online: alice, bob")
        chat(alice, bob, "after the restart", "welcome back")
        self.assertNotIn("disconnected", alice.output())
        self.assertNotIn("disconnected", bob.output())
        for p in (one, two):
            self.assertNotIn("Traceback", p.output())
