# -*- test-case-name: tests.test_relay -*-
"""
The relay's limits, their defaults, and the small mechanisms that enforce
them: a token bucket per user and a gate on unauthenticated connections.

Defaults follow the spirit of OpenSSH (C{LoginGraceTime}, C{MaxStartups})
and nginx (C{client_header_timeout}, C{limit_req}); README.rst lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from securechat.server.store.interface import DAY, MailboxLimits


#: The largest frame clients accept from the relay after the handshake
#: (docs/protocol.rst, section 3): C{max_frame} may not exceed it.
MAX_CLIENT_FRAME = 64 * 1024

#: The largest sealed letter clients accept (docs/protocol.rst 14.8,
#: C{letter-too-large}): C{max_letter} may not exceed it.
MAX_LETTER = 49152


@dataclass(frozen=True)
class Limits:
    """
    Every limit the relay enforces, with its default.
    """

    #: Seconds from TCP accept to a completed handshake; trickled bytes do
    #: not extend it.
    handshake_timeout: float = 10.0
    #: Seconds without any traffic before a session is closed; a keepalive
    #: PING goes out at half of it.
    idle_timeout: float = 300.0
    #: Connections that have not completed the handshake, in all ...
    max_unauthenticated: int = 256
    #: ... and from one source address.
    max_unauthenticated_per_host: int = 16
    #: Largest frame before authentication (certificates fit easily).
    max_handshake_frame: int = 16 * 1024
    #: Largest frame after authentication.
    max_frame: int = 64 * 1024
    #: Sustained application messages per second per user ...
    rate: float = 50.0
    #: ... and the burst allowed above it.  A user this far in debt after
    #: one read is disconnected; below that, reading is paused.
    burst: int = 200
    #: Bytes queued for one user above which its senders are paused ...
    queue_soft_limit: int = 256 * 1024
    #: ... and above which that user is disconnected as not reading.
    queue_hard_limit: int = 1024 * 1024
    #: Seconds a user's queue may stay above the soft limit (its senders
    #: paused) before that user is disconnected.
    stall_timeout: float = 30.0
    #: Open chat requests one user may have made, and may have received.
    max_outgoing_requests: int = 8
    max_incoming_requests: int = 16
    #: Seconds a chat request waits for an answer.
    request_timeout: float = 60.0
    #: Chats one user may have open at once.
    max_chats: int = 8
    # The mailbox (docs/protocol.rst 14.7; securechat.server.mailbox).
    #: The largest sealed letter in bytes (at most 49152, and at most
    #: C{max_payload - 69} so that its LETTER fits one record).
    max_letter: int = MAX_LETTER
    #: Letters one recipient's mailbox may hold ...
    mailbox_letters: int = 1000
    #: ... and their total size in bytes.
    mailbox_bytes: int = 32 * 1024 * 1024
    #: Days from storing a letter to its expiry.
    expiry_days: float = 30.0
    #: One-time prekeys the relay holds for one user at most.
    max_one_time_prekeys: int = 500
    #: Fewer one-time prekeys than this left: the owner is told (PREKEYS_LOW).
    prekey_low_mark: int = 10
    #: Letters per second one user may post, sustained ...
    letter_rate: float = 1.0
    #: ... and the burst allowed above it.
    letter_burst: int = 60
    # Groups (docs/protocol.rst 15.3; securechat.server.groups).
    #: Members one group may have.
    max_group_members: int = 1000
    #: Groups one user may be a member of.
    max_groups_per_user: int = 100
    #: Group messages per second one user may post, sustained (all its
    #: groups together) ...
    group_rate: float = 10.0
    #: ... and the burst allowed above it.
    group_burst: int = 100
    #: The largest group message body in bytes (and at most C{max_payload -
    #: 69}, so that its GROUP_MESSAGE fits one record).
    max_group_message: int = 32 * 1024

    @property
    def max_payload(self) -> int:
        """
        The largest end-to-end payload a RELAY may carry: one record must hold
        it with the relay's own framing (record header, tag, inner header,
        user name).
        """
        return self.max_frame - 128

    @property
    def letter_limit(self) -> int:
        """
        The largest letter the relay stores: C{max_letter}, but never more
        than a LETTER of it can carry in one record (docs/protocol.rst 14.7).
        """
        return min(self.max_letter, MAX_LETTER, self.max_payload - 69)

    @property
    def group_message_limit(self) -> int:
        """
        The largest group message body the relay accepts: C{max_group_message},
        but never more than a GROUP_MESSAGE of it can carry in one record
        (its fields around the body take 69 bytes, as a LETTER's do).
        """
        return min(self.max_group_message, self.max_payload - 69)


class TokenBucket:
    """
    C{rate} tokens a second, at most C{burst} saved.  L{take} may drive the
    balance negative; the caller decides what debt means.
    """

    __slots__ = ("_clock", "rate", "burst", "tokens", "_stamp")

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self._stamp = clock.seconds()

    def take(self) -> float:
        """
        Spend one token; return the balance after it.
        """
        self.tokens = self.refill() - 1
        return self.tokens

    def refill(self) -> float:
        """
        Add the tokens earned since the last call; return the balance.
        """
        now = self._clock.seconds()
        self.tokens = min(float(self.burst), self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return self.tokens

    def seconds_until_positive(self) -> float:
        """
        How long until the balance is back above zero.
        """
        return max(0.0, (1 - self.tokens) / self.rate)


class ConnectionGate:
    """
    Counts connections that have not completed the handshake, globally and
    per source address, and says whether one more may start.
    """

    def __init__(self, limit: int, per_host: int) -> None:
        self.limit = limit
        self.per_host = per_host
        self.total = 0
        self._by_host: dict[str, int] = {}

    def admit(self, host: str) -> str | None:
        """
        Count a new connection from C{host}; return C{None} if admitted, else
        the reason it is not (and count nothing).
        """
        if self.total >= self.limit:
            return "too many connections are authenticating"
        if self._by_host.get(host, 0) >= self.per_host:
            return "too many connections from your address are authenticating"
        self.total += 1
        self._by_host[host] = self._by_host.get(host, 0) + 1
        return None

    def release(self, host: str) -> None:
        """
        A connection from C{host} authenticated or went away.
        """
        self.total -= 1
        left = self._by_host[host] - 1
        if left:
            self._by_host[host] = left
        else:
            del self._by_host[host]


def mailbox_limits(limits: Limits) -> MailboxLimits:
    """The store's limits, from the relay's (one place for the defaults)."""
    return MailboxLimits(
        max_letters=limits.mailbox_letters, max_bytes=limits.mailbox_bytes,
        max_letter_size=limits.letter_limit, expiry_seconds=int(limits.expiry_days * DAY),
        max_one_time_prekeys=limits.max_one_time_prekeys)
