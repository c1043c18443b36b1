"""
Tests for the Redis side of the router (L{securechat.server.cluster}) on a
real, throwaway redis-server (L{tests.redisservice}): presence, liveness,
publishing, and what the link does when Redis dies and comes back.  The
real reactor; every wait is a bounded poll.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable, Generator

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from securechat.server.cluster import (ClusterConfigError, RedisCluster, check_process_id,
                                       default_process_id, parse_url)
from tests.redisservice import RedisServer

TTL = 1.5
WAIT = 15.0


class StubRouter:
    """Records what the link tells the router."""

    def __init__(self, users: tuple[str, ...] = ()) -> None:
        self.available = False
        self.relay = self
        self.sessions = {u: None for u in users}
        self.received_data: list[bytes] = []
        self.downs: list[str] = []
        self.ups: list[list[str]] = []
        self.checks = 0

    def received(self, data: bytes) -> None:
        self.received_data.append(data)

    def link_down(self, why: str) -> None:
        self.available = False
        self.downs.append(why)

    def link_up(self, replaced: list[str]) -> None:
        self.available = True
        self.ups.append(replaced)

    def check_peers(self) -> None:
        self.checks += 1


@inlineCallbacks
def until(condition: Callable[[], bool], what: str) -> Generator[Deferred[Any], Any, None]:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        yield deferLater(reactor, 0.02, lambda: None)


class LinkTests(unittest.TestCase):

    def setUp(self) -> None:
        self.redis = RedisServer(self)

    def link(self, process: str, users: tuple[str, ...] = ()) -> tuple[RedisCluster, StubRouter]:
        link = RedisCluster(self.redis.url, process, TTL, reactor)
        router = StubRouter(users)
        link.router = router
        link.startService()
        self.addCleanup(link.stopService)
        return link, router

    @inlineCallbacks
    def test_presence(self) -> Generator[Deferred[Any], Any, None]:
        """
        A claim records where a user is; a second claim elsewhere names the
        first process; a release there does not undo the newer claim.
        """
        one, r1 = self.link("p1")
        two, r2 = self.link("p2")
        yield until(lambda: r1.available and r2.available, "both linked")
        self.assertIsNone((yield one.claim("alice")))
        self.assertEqual((yield two.locate("alice")), "p1")
        self.assertEqual((yield two.online()), ["alice"])
        self.assertEqual((yield two.claim("alice")), "p1")
        one.release("alice")
        self.assertEqual((yield one.locate("alice")), "p2")
        self.assertIsNone((yield one.locate("bob")))
        self.assertEqual((yield one.alive(["p1", "p2", "p3"])), {"p1", "p2"})

    @inlineCallbacks
    def test_publish(self) -> Generator[Deferred[Any], Any, None]:
        """What one process publishes to another's channel reaches its router, bytes intact."""
        one, r1 = self.link("p1")
        two, r2 = self.link("p2")
        yield until(lambda: r1.available and r2.available, "both linked")
        data = bytes(range(256)) * 3
        one.publish("p2", data)
        yield until(lambda: r2.received_data == [data], "the message arrived")

    @inlineCallbacks
    def test_heartbeat(self) -> Generator[Deferred[Any], Any, None]:
        """The heartbeat keeps a process alive past its TTL and asks the router to check."""
        one, r1 = self.link("p1")
        yield until(lambda: r1.checks >= 4, "four heartbeats")
        self.assertEqual((yield one.alive(["p1"])), {"p1"})

    @inlineCallbacks
    def test_deadProcess(self) -> Generator[Deferred[Any], Any, None]:
        """A process that stops beating (killed) is gone, with its users, within the TTL."""
        one, r1 = self.link("p1")
        two, r2 = self.link("p2")
        yield until(lambda: r1.available and r2.available, "both linked")
        yield two.claim("bob")
        # As SIGKILL would: no heartbeat, no goodbye.
        two._beat.cancel()  # type: ignore[union-attr]
        two.linked = False
        started = time.monotonic()
        while (yield one.alive(["p2"])):
            self.assertLess(time.monotonic() - started, TTL + 1.0)
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertIsNone((yield one.locate("bob")))
        self.assertEqual((yield one.online()), [])

    @inlineCallbacks
    def test_redisRestart(self) -> Generator[Deferred[Any], Any, None]:
        """
        Redis dies: the router is told the link is down; Redis comes back
        (empty): the link registers again and publishes the presence of
        the users here.
        """
        one, r1 = self.link("p1", users=("alice",))
        yield until(lambda: r1.available, "linked")
        self.assertEqual(self.redis.command("GET", "securechat:user:alice"), b"p1")
        self.redis.stop()
        yield until(lambda: not r1.available and r1.downs, "the link is down")
        self.redis.start()
        yield until(lambda: r1.available, "linked again")
        self.assertEqual(self.redis.command("GET", "securechat:user:alice"), b"p1")
        self.assertEqual(self.redis.command("EXISTS", "securechat:process:p1"), 1)

    @inlineCallbacks
    def test_partition(self) -> Generator[Deferred[Any], Any, None]:
        """
        Redis stops answering but the connections stay open (a partition;
        here redis-server is SIGSTOPped): the heartbeat's answer does not
        come within a third of the TTL, the link is declared down; when
        Redis answers again, the link comes back by itself.
        """
        one, r1 = self.link("p1", users=("alice",))
        yield until(lambda: r1.available, "linked")
        proc = self.redis.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        resumed = False

        def resume() -> None:
            nonlocal resumed
            if not resumed:
                resumed = True
                os.kill(proc.pid, signal.SIGCONT)
        self.addCleanup(resume)
        started = time.monotonic()
        yield until(lambda: not r1.available, "the link is down")
        self.assertLess(time.monotonic() - started, TTL * 2)
        resume()
        yield until(lambda: r1.available, "linked again")
        self.assertEqual(self.redis.command("GET", "securechat:user:alice"), b"p1")

    @inlineCallbacks
    def test_restoreFindsNewerLogin(self) -> Generator[Deferred[Any], Any, None]:
        """Presence restored after a loss skips a user who logged in elsewhere meanwhile."""
        two, r2 = self.link("p2")
        yield until(lambda: r2.available, "p2 linked")
        yield two.claim("alice")
        one, r1 = self.link("p1", users=("alice", "bob"))
        yield until(lambda: r1.available, "p1 linked")
        self.assertEqual(r1.ups, [["alice"]])
        self.assertEqual(self.redis.command("GET", "securechat:user:alice"), b"p2")
        self.assertEqual(self.redis.command("GET", "securechat:user:bob"), b"p1")

    @inlineCallbacks
    def test_cleanStop(self) -> Generator[Deferred[Any], Any, None]:
        """A process stopped cleanly removes its heartbeat at once."""
        one, r1 = self.link("p1")
        yield until(lambda: r1.available, "linked")
        yield one.stopService()
        self.assertEqual(self.redis.command("EXISTS", "securechat:process:p1"), 0)


class ConfigTests(unittest.TestCase):
    def test_urls(self) -> None:
        self.assertEqual(parse_url("redis://localhost"), ("tcp", ("localhost", 6379), None, None))
        self.assertEqual(parse_url("redis://:s3cret@10.0.0.5:6380/2"),
                         ("tcp", ("10.0.0.5", 6380), "s3cret", 2))
        self.assertEqual(parse_url("unix:///run/redis/redis.sock?db=1"),
                         ("unix", "/run/redis/redis.sock", None, 1))

    def test_badUrls(self) -> None:
        for url in ("http://localhost", "redis://", "unix://", "redis://host/notanumber",
                    "localhost:6379"):
            with self.assertRaises(ClusterConfigError, msg=url):
                parse_url(url)

    def test_processIds(self) -> None:
        check_process_id(default_process_id())
        check_process_id("relay1")
        for bad in ("", "has space", "x" * 65, "é"):
            with self.assertRaises(ClusterConfigError):
                check_process_id(bad)
