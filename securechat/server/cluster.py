# -*- test-case-name: tests.test_cluster_redis -*-
"""
The Redis side of the router (C{twistd securechat --cluster URL}), on
C{txredisapi}: L{RedisCluster} implements L{securechat.server.router.ILink}.

Two connections to Redis, each reconnecting on its own (every 0.2 s at
first, at most every 2 s): one for commands and publishing, one subscribed
to this process's channel C{securechat:to:ID}.  The link is up when both
are connected, this process's heartbeat is written, the presence of its
users is published again, and its channel is subscribed; it is down as
soon as either connection is lost (the other is then closed too, so both
start again from a clean state), or a command gets no answer within a
third of the TTL (a partition: the connection is aborted).

Keys (every key and channel starts with C{securechat:})::

    process:ID     "1", expires after the TTL; the heartbeat (every TTL/3)
                   writes it again.  A process whose key is gone is dead.
    processes      set of the ids of processes seen (pruned when dead)
    online:ID      set of the users logged in on process ID (same TTL)
    user:NAME      the id of the process NAME last logged in on; it counts
                   only while that process is alive, so a dead process's
                   users drop out of presence within the TTL
    to:ID          the channel of process ID (securechat.server.clusterwire)

Each operation is one Lua script (atomic, one round trip).  The scripts
build key names themselves, so Redis must be a single server (or a
primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.server.clusterwire import PROCESS_ID

PREFIX = "securechat:"
#: Users re-published per script call when the link comes back.
RESTORE_CHUNK = 1000

_CLAIM = """
local key = 'securechat:user:' .. ARGV[1]
local old = redis.call('GET', key)
redis.call('SET', key, ARGV[2])
redis.call('SADD', 'securechat:online:' .. ARGV[2], ARGV[1])
if old and old ~= ARGV[2] then
  redis.call('SREM', 'securechat:online:' .. old, ARGV[1])
  if redis.call('EXISTS', 'securechat:process:' .. old) == 1 then return old end
end
return false
"""
_RELEASE = """
local key = 'securechat:user:' .. ARGV[1]
if redis.call('GET', key) == ARGV[2] then redis.call('DEL', key) end
redis.call('SREM', 'securechat:online:' .. ARGV[2], ARGV[1])
return 0
"""
_LOCATE = """
local p = redis.call('GET', 'securechat:user:' .. ARGV[1])
if p and redis.call('EXISTS', 'securechat:process:' .. p) == 1 then return p end
return false
"""
_ALIVE = """
local out = {}
for i = 1, #ARGV do
  if redis.call('EXISTS', 'securechat:process:' .. ARGV[i]) == 1 then out[#out + 1] = ARGV[i] end
end
return out
"""
_LOCATE_MANY = """
local out = {}
for i = 1, #ARGV do
  local p = redis.call('GET', 'securechat:user:' .. ARGV[i])
  if p and redis.call('EXISTS', 'securechat:process:' .. p) == 1 then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = p
  end
end
return out
"""
_ONLINE = """
local out = {}
for _, p in ipairs(redis.call('SMEMBERS', 'securechat:processes')) do
  if redis.call('EXISTS', 'securechat:process:' .. p) == 1 then
    for _, u in ipairs(redis.call('SMEMBERS', 'securechat:online:' .. p)) do out[#out + 1] = u end
  else
    redis.call('SREM', 'securechat:processes', p)
    redis.call('DEL', 'securechat:online:' .. p)
  end
end
return out
"""
_BEAT = """
redis.call('SET', 'securechat:process:' .. ARGV[1], '1', 'PX', ARGV[2])
redis.call('SADD', 'securechat:processes', ARGV[1])
redis.call('PEXPIRE', 'securechat:online:' .. ARGV[1], ARGV[2])
return 1
"""
_RESTORE = """
local me = ARGV[1]
local online = 'securechat:online:' .. me
if ARGV[3] == '1' then redis.call('DEL', online) end
local replaced = {}
for i = 4, #ARGV do
  local key = 'securechat:user:' .. ARGV[i]
  local cur = redis.call('GET', key)
  if (not cur) or cur == me or redis.call('EXISTS', 'securechat:process:' .. cur) == 0 then
    redis.call('SET', key, me)
    redis.call('SADD', online, ARGV[i])
  else
    replaced[#replaced + 1] = ARGV[i]
  end
end
redis.call('PEXPIRE', online, ARGV[2])
return replaced
"""
_GONE = """
redis.call('DEL', 'securechat:process:' .. ARGV[1])
redis.call('DEL', 'securechat:online:' .. ARGV[1])
redis.call('SREM', 'securechat:processes', ARGV[1])
return 0
"""


class ClusterConfigError(ValueError):
    """A C{--cluster} URL or C{--process-id} that cannot be used; says why."""


def default_process_id() -> str:
    """The host name and the process id: unique on one machine and across hosts."""
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "._-") or "host"
    return f"{host[:50]}-{os.getpid()}"


def check_process_id(value: str) -> str:
    if not PROCESS_ID.match(value):
        raise ClusterConfigError(f"--process-id {value!r}: use 1 to 64 letters, digits, "
                                 "'.', '_', ':' or '-'")
    return value


def parse_url(url: str) -> tuple[str, Any, str | None, int | None]:
    """
    (C{"tcp"}, (host, port), password, db) or (C{"unix"}, path, password, db)
    from C{redis://[:password@]host[:port][/db]} or C{unix:///path/redis.sock[?db=N]}.
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    try:
        if parts.scheme == "redis":
            if not parts.hostname:
                raise ClusterConfigError(f"--cluster {url!r}: no host (redis://HOST[:PORT])")
            db = int(parts.path.strip("/")) if parts.path.strip("/") else None
            return "tcp", (parts.hostname, parts.port or 6379), password, db
        if parts.scheme == "unix":
            if not parts.path:
                raise ClusterConfigError(f"--cluster {url!r}: no socket path "
                                         "(unix:///path/redis.sock)")
            query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
            return "unix", parts.path, password, int(query["db"]) if "db" in query else None
    except ValueError as e:
        if isinstance(e, ClusterConfigError):
            raise
        raise ClusterConfigError(f"--cluster {url!r}: {e}") from None
    raise ClusterConfigError(f"--cluster {url!r}: use redis://HOST[:PORT][/DB] or "
                             "unix:///PATH/redis.sock")


class _Commands(txredisapi.RedisProtocol):
    owner: RedisCluster

    def connectionMade(self) -> Any:
        d = super().connectionMade()
        d.addCallback(lambda _: self.owner._connected(self))
        return d

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self.owner._lost(self, why)


class _Subscriber(txredisapi.SubscriberProtocol):
    owner: RedisCluster

    def connectionMade(self) -> Any:
        d = super().connectionMade()
        d.addCallback(lambda _: self.owner._connected(self))
        return d

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        if isinstance(message, bytes):
            self.owner.router_received(message)

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self.owner._lost(self, why)


class _Factory(ReconnectingClientFactory):
    initialDelay = 0.2
    maxDelay = 2
    factor = 1.5
    noisy = False

    def __init__(self, owner: RedisCluster, protocol: type) -> None:
        self.owner = owner
        self.redis_protocol = protocol
        self.clock = owner.clock  # type: ignore[assignment]

    def buildProtocol(self, addr: Any) -> Any:
        self.resetDelay()
        p = self.redis_protocol(None, replyTimeout=self.owner.reply_timeout,
                          password=self.owner.password, dbid=self.owner.db,
                          convertNumbers=False)
        p.factory = self
        p.owner = self.owner
        return p

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.owner._unreachable(reason)
        super().clientConnectionFailed(connector, reason)


class RedisCluster(Service):
    """This process's link to the others, through Redis (see the module)."""

    log = Logger()
    name = "cluster"  # type: ignore[assignment]

    def __init__(self, url: str, process_id: str, ttl: float, clock: IReactorTime,
                 connect: Callable[[str, Any, ReconnectingClientFactory], Any] | None = None
                 ) -> None:
        self.url = url
        self.kind, self.address, self.password, self.db = parse_url(url)
        self.process_id = check_process_id(process_id)
        self.ttl = ttl
        self.reply_timeout = max(ttl / 3, 0.5)
        self.clock = clock
        self.channel = f"{PREFIX}to:{process_id}"
        #: Set by the router: where published messages for this process go.
        self.router: Any = None
        self.commands: _Commands | None = None
        self.subscriber: _Subscriber | None = None
        self.linked = False
        self._registering = False
        self._beat: IDelayedCall | None = None
        self._factories: list[_Factory] = []
        self._connect = connect or _connect
        self._unreachable_logged = False

    # -- the service --------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.log.info("cluster: process {process} connecting to Redis at {url} (presence TTL "
                      "{ttl}s); logins are refused until linked", process=self.process_id,
                      url=_safe(self.url), ttl=self.ttl)
        for protocol in (_Commands, _Subscriber):
            factory = _Factory(self, protocol)
            self._factories.append(factory)
            self._connect(self.kind, self.address, factory)

    def stopService(self) -> Any:
        super().stopService()
        if self._beat is not None and self._beat.active():
            self._beat.cancel()
        self._beat = None
        for factory in self._factories:
            factory.stopTrying()
        commands = self.commands
        d: Deferred[Any] | None = None
        if commands is not None and self.linked:
            d = commands.eval(_GONE, [], [self.process_id])
            d.addErrback(lambda _: None)
        self.linked = False

        def close(_: Any = None) -> None:
            for p in (self.commands, self.subscriber):
                if p is not None and p.transport is not None:
                    p.transport.loseConnection()
        if d is None:
            close()
            return None
        return d.addBoth(close)

    # -- connections --------------------------------------------------------

    def _connected(self, protocol: Any) -> None:
        if isinstance(protocol, _Subscriber):
            self.subscriber = protocol
        else:
            self.commands = protocol
        if self.commands is not None and self.subscriber is not None and not self._registering:
            self._register()

    def _lost(self, protocol: Any, why: Failure) -> None:
        if protocol is self.commands:
            self.commands = None
        elif protocol is self.subscriber:
            self.subscriber = None
        else:
            return
        other = self.commands or self.subscriber
        if other is not None and other.transport is not None:
            other.transport.abortConnection()  # both start again from a clean state
        if self._beat is not None and self._beat.active():
            self._beat.cancel()
        self._beat = None
        self.linked = False
        if self.running and self.router is not None:
            self.router.link_down(why.getErrorMessage())

    def _unreachable(self, reason: Failure) -> None:
        if not self._unreachable_logged:
            self._unreachable_logged = True
            self.log.error("cluster: cannot reach Redis at {url}: {why}; retrying (logins "
                           "refused meanwhile)", url=_safe(self.url), why=reason.getErrorMessage())
        if self.router is not None:
            self.router.link_down(reason.getErrorMessage())

    def _register(self) -> None:
        """Heartbeat, presence again, subscribe; then the link is up."""
        commands, subscriber = self.commands, self.subscriber
        assert commands is not None and subscriber is not None
        self._registering = True
        users = sorted(self.router.relay.sessions) if self.router is not None else []
        ttl_ms = str(int(self.ttl * 1000))
        replaced: list[str] = []

        def restore(_: Any, start: int) -> Any:
            chunk = users[start:start + RESTORE_CHUNK]
            if start and not chunk:
                return None
            d = commands.eval(_RESTORE, [], [self.process_id, ttl_ms, "1" if start == 0 else "0",
                                             *chunk])
            d.addCallback(lambda found: replaced.extend(_texts(found)))
            if start + RESTORE_CHUNK < len(users):
                d.addCallback(restore, start + RESTORE_CHUNK)
            return d

        def up(_: Any) -> None:
            self._registering = False
            if self.commands is not commands or self.subscriber is not subscriber:
                # Lost (and perhaps back) meanwhile: again, on what is there now.
                if self.commands is not None and self.subscriber is not None:
                    self._register()
                return
            self.linked = True
            self._unreachable_logged = False
            self._schedule_beat()
            if self.router is not None:
                self.router.link_up(replaced)

        def failed(failure: Failure) -> None:
            self._registering = False
            self.log.error("cluster: registering with Redis failed: {why}",
                           why=failure.getErrorMessage())
            for p in (commands, subscriber):
                if p.transport is not None:
                    p.transport.loseConnection()
        d = commands.eval(_BEAT, [], [self.process_id, ttl_ms])
        d.addCallback(restore, 0)
        d.addCallback(lambda _: subscriber.subscribe(self.channel))
        d.addCallbacks(up, failed)

    def _schedule_beat(self) -> None:
        self._beat = self.clock.callLater(self.ttl / 3, self._heartbeat)

    def _heartbeat(self) -> None:
        self._beat = None
        commands = self.commands
        if commands is None or not self.linked:
            return

        def beaten(_: Any) -> None:
            if self.linked and self._beat is None:
                self._schedule_beat()
            if self.router is not None:
                self.router.check_peers()

        def failed(failure: Failure) -> None:
            self.log.error("cluster: heartbeat failed: {why}", why=failure.getErrorMessage())
            if commands.transport is not None:
                commands.transport.abortConnection()
        commands.eval(_BEAT, [], [self.process_id, str(int(self.ttl * 1000))]).addCallbacks(
            beaten, failed)

    def router_received(self, data: bytes) -> None:
        if self.router is not None:
            self.router.received(data)

    # -- ILink --------------------------------------------------------------

    def _eval(self, script: str, args: list[str]) -> Deferred[Any]:
        commands = self.commands
        if commands is None or not self.linked:
            return fail(ConnectionError("no link to Redis"))
        return commands.eval(script, [], args)

    def publish(self, process: str, data: bytes) -> None:
        commands = self.commands
        if commands is None or not self.linked:
            return
        commands.publish(f"{PREFIX}to:{process}", data).addErrback(lambda _: None)

    def locate(self, user: str) -> Deferred[str | None]:
        return self._eval(_LOCATE, [user]).addCallback(_text)

    def online(self) -> Deferred[list[str]]:
        return self._eval(_ONLINE, []).addCallback(_texts)

    def locate_many(self, users: list[str]) -> Deferred[dict[str, str]]:
        def pairs(found: Any) -> dict[str, str]:
            flat = _texts(found)
            return dict(zip(flat[0::2], flat[1::2]))
        return self._eval(_LOCATE_MANY, users).addCallback(pairs)

    def claim(self, user: str) -> Deferred[str | None]:
        return self._eval(_CLAIM, [user, self.process_id]).addCallback(_text)

    def release(self, user: str) -> None:
        self._eval(_RELEASE, [user, self.process_id]).addErrback(lambda _: None)

    def alive(self, processes: list[str]) -> Deferred[set[str]]:
        return self._eval(_ALIVE, processes).addCallback(lambda found: set(_texts(found)))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _texts(values: Any) -> list[str]:
    return [t for t in (_text(v) for v in (values or [])) if t is not None]


def _safe(url: str) -> str:
    """The URL without its password, for the log."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _connect(kind: str, address: Any, factory: ReconnectingClientFactory) -> Any:
    from twisted.internet import reactor
    if kind == "unix":
        return reactor.connectUNIX(address, factory)  # type: ignore[attr-defined]
    return reactor.connectTCP(address[0], address[1], factory)
