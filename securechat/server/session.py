# -*- test-case-name: tests.test_relay -*-
"""
One connection's side of the relay: L{UserSession}, the delegate of its
L{SecureChatProtocol}.  It checks the login against the directory, charges
the user's rate bucket, pauses and resumes its reading, and queues what the
relay delivers to the user (RELAYED messages packed straight from their
bytes).  The shared state is L{securechat.server.relay.Relay}'s.

Its request, chat and pause sets are dicts used as sets, all the one
read-only L{_EMPTY} until something goes in (L{_with}): most users are idle.
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from twisted.internet.interfaces import IDelayedCall
from zope.interface import implementer

from securechat.crypto import keys
from securechat.errors import ProtocolError
from securechat.delegate import IRawMessageDelegate, PeerRejected
from securechat.outbound import OutboundQueue
from securechat.protocol import SecureChatProtocol
from securechat.server.directory import UserEntry
from securechat.server.limits import TokenBucket
from securechat.wire.messages import Identity, Message
from securechat.wire.relay import Relay as RelayMessage, Relayed

if TYPE_CHECKING:
    from securechat.server.relay import Relay

_RELAYED = Relayed.TYPE
_RELAY = RelayMessage.TYPE


@functools.lru_cache(maxsize=None)
def _relayed_layout(name_length: int) -> struct.Struct:
    return struct.Struct(f">BIB{name_length}sI")


def _relayed_header_packer(sender: str) -> Callable[[int], bytes]:
    """
    A function of the payload length giving everything of a RELAYED from
    C{sender} that comes before its payload: inner header (type, body
    length), the name (u8 length, bytes) and the payload's u32 length.
    """
    name = sender.encode("ascii")
    pack = _relayed_layout(len(name)).pack
    fixed = 1 + len(name) + 4

    def head(length: int) -> bytes:
        return pack(_RELAYED, fixed + length, len(name), name, length)
    return head


class _EmptyKeys(dict):
    """
    The one empty key set all sessions share until something goes in (most
    users are idle, with all of theirs empty): reads like an empty dict,
    refuses to be written (L{_with} puts a dict of its own in its place).
    """

    __slots__ = ()

    def __setitem__(self, key: object, value: object) -> None:
        raise TypeError("the shared empty key set is read-only")

    def setdefault(self, key: object, default: object = None) -> None:
        raise TypeError("the shared empty key set is read-only")

    def update(self, *args: object, **kw: object) -> None:
        raise TypeError("the shared empty key set is read-only")

    def __ior__(self, other: object) -> _EmptyKeys:  # type: ignore[misc]
        raise TypeError("the shared empty key set is read-only")


_EMPTY: dict[Any, None] = _EmptyKeys()

K = TypeVar("K")


def _with(keys: dict[K, None], key: K) -> dict[K, None]:
    """
    C{keys} with C{key} added: a dict of its own in place of L{_EMPTY}.
    """
    if keys is _EMPTY:
        keys = {}
    keys[key] = None
    return keys


@implementer(IRawMessageDelegate)
class UserSession:
    """
    One connection's view of the relay: the delegate of its
    L{SecureChatProtocol}.  Before the handshake completes it only answers
    L{verify_peer}; after, it is the user's presence, chats and queue.
    """

    __slots__ = ("relay", "host", "user", "entry", "queue", "_relayed_head", "bucket", "chats",
                 "outgoing", "incoming", "blocked_senders", "active", "_authenticating",
                 "_pause_reasons", "_rate_resume", "_stall", "protocol")

    protocol: SecureChatProtocol

    def __init__(self, relay: Relay, host: str) -> None:
        self.relay = relay
        self.host = host
        self.user: str | None = None
        self.entry: UserEntry | None = None
        self.queue: OutboundQueue | None = None
        #: Packs the start of a RELAYED from this user (inner header, name,
        #: payload length) around a payload; made when the user first relays.
        self._relayed_head: Callable[[int], bytes] | None = None
        self.bucket = TokenBucket(relay.clock, relay.limits.rate, relay.limits.burst)
        # Sets kept as dicts (keys only), all the shared _EMPTY until
        # something goes in (added to with _with): most users are idle, and
        # an empty dict would still cost 64 bytes each (an empty set 216).
        self.chats: dict[str, None] = _EMPTY
        self.outgoing: dict[str, None] = _EMPTY
        self.incoming: dict[str, None] = _EMPTY
        self.blocked_senders: dict[UserSession, None] = _EMPTY
        self.active = False
        self._authenticating = True
        self._pause_reasons: dict[str, None] = _EMPTY
        self._rate_resume: IDelayedCall | None = None
        self._stall: IDelayedCall | None = None

    # -- ISessionDelegate ---------------------------------------------------

    def verify_peer(self, identity: Identity) -> keys.PublicKey:
        name = getattr(identity, "name", None)
        entry = self.relay.directory.lookup(name) if name else None
        if entry is None:
            raise PeerRejected("unknown-user", f"no registered user {name!r}")
        if entry.revoked:
            raise PeerRejected("revoked-user", f"user {name!r} is revoked")
        self.entry = entry
        return entry.public_key

    def established(self, peer: Identity) -> None:
        self._leave_gate()
        assert self.entry is not None
        self.user = self.entry.name
        self.queue = self.protocol.outbound
        self.queue.on_drained = self._queue_drained
        self.protocol.register_producer(self.queue)
        self.relay.login(self)

    def message_received(self, message: Message) -> None:
        if self.active and self._charge():
            self.relay.handle(self, message)

    def raw_messages_received(self, items: list[tuple[int, memoryview]]) -> None:
        # RELAY and POST_LETTER are handed over undecoded (Relay.config),
        # a run of one type at a time: the hot paths.
        if not self.active:
            return
        take = (self.relay.relay_all if items[0][0] == _RELAY
                else self.relay.mailbox.letters.post_raw)
        if self.bucket.refill() >= len(items):
            self.bucket.tokens -= len(items)  # the whole run is within the rate
            take(self, items)
            return
        for item in items:  # near the limit: message by message
            if not (self.active and self._charge()):
                return
            take(self, [item])

    def connection_ended(self, error: ProtocolError | None) -> None:
        self._leave_gate()
        if self._rate_resume is not None and self._rate_resume.active():
            self._rate_resume.cancel()
        self._cancel_stall()
        if self.queue is not None:
            self.queue.clear()
        self.relay.connection_ended(self, error)

    # -- for the relay ------------------------------------------------------

    def deliver(self, message: Message | bytes) -> None:
        """
        Queue C{message} for this user: a message, or whole inner messages
        already encoded (the answers to a run of letters).
        """
        if self.queue is not None and self.active:
            if type(message) is bytes:
                self.queue.push_inner(message)
            else:
                self.queue.push(message)  # type: ignore[arg-type]

    def deliver_relayed(self, sender: UserSession, payload: memoryview) -> None:
        """
        Queue a RELAYED of C{payload} from C{sender}, encoded directly
        (no message object), the payload uncopied until its record is sealed.
        """
        assert self.queue is not None
        self.queue.push_encoded(sender.relayed_head()(len(payload)), payload)

    def relayed_head(self) -> Callable[[int], bytes]:
        """
        The packer of this user's RELAYED headers (see
        L{_relayed_header_packer}), made the first time it is needed.
        """
        head = self._relayed_head
        if head is None:
            assert self.user is not None
            head = self._relayed_head = _relayed_header_packer(self.user)
        return head

    def pause_reading(self, reason: str) -> None:
        if not self._pause_reasons and self.protocol.transport is not None:
            self.protocol.tcp.pauseProducing()
        self._pause_reasons = _with(self._pause_reasons, reason)

    def resume_reading(self, reason: str) -> None:
        self._pause_reasons.pop(reason, None)
        if not self._pause_reasons and self.protocol.transport is not None and self.active:
            self.protocol.tcp.resumeProducing()

    @property
    def reading_paused(self) -> bool:
        return bool(self._pause_reasons)

    def start_stall_timer(self) -> None:
        if self._stall is None:
            self._stall = self.relay.clock.callLater(
                self.relay.limits.stall_timeout, self.relay.drop_slow_reader, self,
                "outbound queue stalled")

    def _cancel_stall(self) -> None:
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None

    # -- internals ----------------------------------------------------------

    def _charge(self) -> bool:
        """
        Take one message from the rate bucket: throttle in debt, disconnect
        (and return False) far in debt.
        """
        balance = self.bucket.take()
        if balance < 0:
            if balance < -self.relay.limits.burst:
                self.relay.log.warn("user {user} disconnected: message rate", user=self.user)
                self.relay.metrics.refusals.labels("rate").inc()
                self.protocol.terminate("limit-exceeded", "message rate limit")
                return False
            self._throttle()
        return True

    def _leave_gate(self) -> None:
        if self._authenticating:
            self._authenticating = False
            self.relay.gate.release(self.host)
            self.relay.metrics.unauthenticated -= 1

    def _throttle(self) -> None:
        self.relay.metrics.rate_limited.inc()
        self.pause_reading("rate")
        if self._rate_resume is None or not self._rate_resume.active():
            self._rate_resume = self.relay.clock.callLater(
                self.bucket.seconds_until_positive(), self.resume_reading, "rate")

    def _queue_drained(self) -> None:
        assert self.queue is not None
        waiting = self.relay.groups.waiting
        if waiting and self in waiting:  # a group backlog waits for room
            self.relay.groups.drained(self)
        if not self.blocked_senders and self._stall is None:
            return
        if self.queue.bytes <= self.relay.limits.queue_soft_limit // 2:
            self._cancel_stall()
            senders, self.blocked_senders = self.blocked_senders, _EMPTY
            for sender in senders:
                sender.resume_reading(f"peer:{self.user}")
            router = self.relay.router
            if router is not None and self in router.paused_by:  # senders elsewhere
                router.drained(self)
