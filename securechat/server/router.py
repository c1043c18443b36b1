# -*- test-case-name: tests.test_router -*-
"""
Where a user is: on this process (a local session, looked up first in the
relay's C{sessions} dict, which is all a relay without C{--cluster} ever
does), on another relay process, or offline.  L{Router} is the relay's side
of the other processes: it turns what the relay does for a user elsewhere
into records for that process (L{securechat.server.clusterwire}), sent
through an L{ILink} (the Redis side, L{securechat.server.cluster}), and
applies what other processes send (its chat commands and events are
L{securechat.server.remotechats.RemoteChats}', a base of it).

State kept here, per process:

  - C{peers}: for each chat or chat request between a user here and a user
    on another process, that process (so a relayed message is one dict
    lookup and one append to the turn's outbox, published once per turn
    per process).  Each side forgets its entry when the chat or request
    ends on its side, and tells the other side with one event.
  - A chat request is held (its expiry timer, the relay's C{_requests}) by
    the target's process, where it is accepted or refused; the requester's
    process keeps only the requester's C{outgoing} entry.  An accept is two
    phases: the target's process reserves the target's chat slot and asks
    the requester's, which checks the requester's slots and starts the
    chat (CHAT_STARTED to the requester), then the target gets its own
    CHAT_STARTED.  A race (a cancel crossing an accept, crossing requests)
    ends with each user told once, as on one process.
  - Backpressure across processes: when a relayed message takes a
    recipient's queue over the soft limit, the recipient's process asks the
    sender's to pause the sender's reading (EVENT_PAUSE) and starts the
    recipient's stall timer; once the queue drains to half the soft limit
    it asks for the sender to be resumed (EVENT_RESUME).  Messages already
    on their way still arrive, so the queue can pass the soft limit by
    what was in flight; past the hard limit the recipient is dropped as
    not reading, as on one relay.

Failures (each with one log line and a metric):

  - Another process dies: its heartbeat key expires within the TTL; the
    next heartbeat here finds it gone and ends every chat and request with
    its users (CHAT_ENDED / CHAT_DECLINED / REQUEST_WITHDRAWN, reason GONE).
  - The link to Redis is lost (Redis restarted, or a partition): logins
    are refused with the alert UNAVAILABLE (docs/protocol.rst 8.1), and
    chats and requests with users elsewhere end (nothing can reach them);
    sessions here go on.  If the link stays down for the presence TTL, the
    other processes no longer see these users, so every session here is
    ended with UNAVAILABLE (their clients reconnect, to a process that
    has the link) rather than serving a split view.  When the link is
    back, the presence of the users here is published again (a user who
    logged in elsewhere meanwhile is ended here as SESSION_REPLACED) and
    logins are accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.errors import ProtocolError
from securechat.server import clusterwire as wire
from securechat.server.remotechats import RemoteChats
from securechat.server.session import _relayed_header_packer
from securechat.server import remotegroups
from securechat.wire.groups import GroupChanged, GroupMessage
from securechat.wire.mailbox import LetterArrived, PrekeysLow, ReceiptMessage
from securechat.wire.messages import Message, Registry
from securechat.wire.relay import ChatDeclined, ChatEnded, Reason, RequestWithdrawn

if TYPE_CHECKING:
    from securechat.server.relay import Relay
    from securechat.server.session import UserSession

#: The relay-to-client messages another process may have delivered here.
NOTICES = Registry((LetterArrived, ReceiptMessage, PrekeysLow, GroupChanged))
GROUP_MESSAGES = Registry((GroupMessage,))

#: The chat event that carries each message the relay's chat logic sends
#: to a user, and the field naming the user it is about.
_EVENT_OF: dict[type, tuple[int, str]] = {
    ChatDeclined: (wire.EVENT_DECLINED, "peer"),
    RequestWithdrawn: (wire.EVENT_WITHDRAWN, "requester"),
    ChatEnded: (wire.EVENT_ENDED, "peer"),
}


class ILink(Protocol):
    """
    What the router needs of the other processes (Redis, or a test's fake).
    Each Deferred fails if the link is down.
    """

    process_id: str

    def publish(self, process: str, data: bytes) -> None:
        """Send one message to C{process}'s channel (dropped if the link is down)."""

    def locate(self, user: str) -> Deferred[str | None]:
        """The live process C{user} is logged in on, or None."""

    def online(self) -> Deferred[list[str]]:
        """Every user logged in on a live process (this one included)."""

    def claim(self, user: str) -> Deferred[str | None]:
        """Record C{user} as here; the live process it was on before, if another."""

    def release(self, user: str) -> None:
        """C{user} left this process (its presence goes if it is still here)."""

    def alive(self, processes: list[str]) -> Deferred[set[str]]:
        """Those of C{processes} whose heartbeat has not expired."""

    def locate_many(self, users: list[str]) -> Deferred[dict[str, str]]:
        """The live process of each of C{users} online (those offline left out)."""


class ClusterMetrics:
    """The cluster's metrics, in the relay's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.published = Counter("securechat_cluster_published",
                                 "Messages published to other relay processes", registry=r)
        self.records_out = Counter("securechat_cluster_records_out",
                                   "Records (relayed messages, events, notices) sent to other "
                                   "relay processes", registry=r)
        self.records_in = Counter("securechat_cluster_records_in",
                                  "Records received from other relay processes", registry=r)
        self.dropped = Counter("securechat_cluster_dropped",
                               "Records from other processes not delivered, by why", ["why"],
                               registry=r)
        self.bad = Counter("securechat_cluster_bad_messages",
                           "Published messages that did not decode (dropped)", registry=r)
        self.linked = Gauge("securechat_cluster_linked",
                            "1 while linked to Redis and accepting logins", registry=r)
        self.link_losses = Counter("securechat_cluster_link_losses",
                                   "Times the link to Redis was lost", registry=r)
        self.processes_gone = Counter("securechat_cluster_processes_gone",
                                      "Other relay processes found dead (heartbeat expired)",
                                      registry=r)
        self.cut_off = Counter("securechat_cluster_sessions_cut_off",
                               "Sessions ended because Redis stayed unreachable for the TTL",
                               registry=r)


class Router(RemoteChats):
    """The relay's side of the other relay processes (see the module)."""

    log = Logger()

    def __init__(self, relay: Relay, link: ILink, clock: IReactorTime, ttl: float) -> None:
        self.relay = relay
        self.link = link
        self.clock = clock
        self.ttl = ttl
        self.process_id = link.process_id
        #: True while linked to Redis with this process's presence published.
        self.available = False
        self.metrics = ClusterMetrics(relay.metrics.registry)
        #: (user here, user elsewhere) -> the process of the user elsewhere.
        self.peers: dict[tuple[str, str], str] = {}
        self._outbox: dict[str, list[bytes]] = {}
        self._flush: IDelayedCall | None = None
        self._cutoff: IDelayedCall | None = None
        self._heads: dict[str, Callable[[int], bytes]] = {}
        #: Per session here, the senders elsewhere its queue paused (and
        #: their processes), to be resumed when it drains.
        self.paused_by: dict[UserSession, dict[str, str]] = {}
        #: What the other processes are told when the link is back: the
        #: chats and requests this process ended while it was down.
        self._owed: list[tuple[str, bytes]] = []
        #: Problems already logged (each is logged once).
        self._logged: set[str] = set()
        self._header = wire.header(self.process_id)
        relay.router = self

    # -- sending ------------------------------------------------------------

    def _send(self, process: str, record: bytes) -> None:
        box = self._outbox.get(process)
        if box is None:
            box = self._outbox[process] = []
        box.append(record)
        if self._flush is None:
            self._flush = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Publish this turn's records: one message per process (split if large)."""
        self._flush = None
        outbox, self._outbox = self._outbox, {}
        for process, records in outbox.items():
            batch, size = [self._header], len(self._header)
            for record in records:
                if size + len(record) > wire.MAX_MESSAGE and len(batch) > 1:
                    self._publish(process, batch)
                    batch, size = [self._header], len(self._header)
                batch.append(record)
                size += len(record)
            self._publish(process, batch)
            self.metrics.records_out.inc(len(records))

    def _publish(self, process: str, batch: list[bytes]) -> None:
        self.metrics.published.inc()
        self.link.publish(process, b"".join(batch))

    def forward(self, session: UserSession, peer: str, payload: memoryview) -> None:
        """A RELAY from C{session} to its chat peer on another process."""
        user = session.user
        assert user is not None
        process = self.peers.get((user, peer))
        if process is not None:
            self._send(process, wire.relay(user, peer, payload))

    def deliver(self, user: str, message: Message) -> None:
        """
        A chat ending message (CHAT_DECLINED, REQUEST_WITHDRAWN, CHAT_ENDED)
        for C{user}, elsewhere: the relationship ends on this side and the
        other side is told.
        """
        kind, field = _EVENT_OF[type(message)]
        subject = getattr(message, field)
        process = self.peers.pop((subject, user), None)
        if process is not None:
            self._send(process, wire.event(kind, subject, user, getattr(message, "reason")))

    def notify(self, user: str, message: Message) -> None:
        """A notice (letter arrived, receipt, ...) for C{user}, wherever it is."""
        def located(process: str | None) -> None:
            if process is not None and process != self.process_id:
                self._send(process, wire.notice(user, message.TYPE, message.encode_body()))
        self.link.locate(user).addCallbacks(located, self._failed, errbackArgs=("a notice",))

    def fan_out(self, members: list[str], body: bytes) -> None:
        """
        A GROUP_MESSAGE (its body) for C{members}, not here: published once
        per process that has any of them online, naming those there.
        """
        def located(where: dict[str, str]) -> None:
            by_process: dict[str, list[str]] = {}
            for member, process in where.items():
                if process != self.process_id:
                    by_process.setdefault(process, []).append(member)
            for process, there in by_process.items():
                self._send(process, wire.group(sorted(there), body))
        self.link.locate_many(members).addCallbacks(located, self._failed,
                                                    errbackArgs=("a group message",))

    def _failed(self, failure: Failure, what: str) -> None:
        self._log_once(f"link:{what}", "cluster: {what} was not sent: {why}", what=what,
                       why=failure.getErrorMessage())

    # -- receiving ----------------------------------------------------------

    def received(self, data: bytes) -> None:
        """A message published to this process: decoded, checked, applied."""
        try:
            process, records = wire.decode(data)
        except wire.ClusterWireError as e:
            self.metrics.bad.inc()
            self._log_once(f"bad:{e}", "cluster: dropped a message that does not decode: {why}",
                           why=str(e))
            return
        self.metrics.records_in.inc(len(records))
        for record in records:
            try:
                self._apply(process, record)
            except Exception:
                self.metrics.bad.inc()
                self.log.failure("cluster: a record from process {process} failed",
                                 process=process)

    def _apply(self, process: str, record: wire.Record) -> None:
        sessions = self.relay.sessions
        if isinstance(record, wire.RelayRecord):
            self._relayed(process, record)
        elif isinstance(record, wire.EventRecord):
            self._event(process, record)
        elif isinstance(record, wire.NoticeRecord):
            target = sessions.get(record.recipient)
            if target is None:
                self.metrics.dropped.labels("offline").inc()
                return
            try:
                message = NOTICES.parse(record.inner_type, record.body)
            except ProtocolError as e:
                self.metrics.bad.inc()
                self._log_once(f"notice:{e.code}", "cluster: dropped a notice from process "
                               "{process}: {why}", process=process, why=e.detail)
                return
            target.deliver(message)
            if isinstance(message, GroupChanged):
                remotegroups.changed(self.relay.groups, target, message)
        elif isinstance(record, wire.GroupRecord):
            try:
                group_message = GROUP_MESSAGES.parse(GroupMessage.TYPE, record.body)
            except ProtocolError as e:
                self.metrics.bad.inc()
                self._log_once(f"group:{e.code}", "cluster: dropped a group message from "
                               "process {process}: {why}", process=process, why=e.detail)
                return
            assert isinstance(group_message, GroupMessage)
            remotegroups.deliver(self.relay.groups, record.members, group_message, record.body)
        elif isinstance(record, wire.KickRecord):
            old = sessions.get(record.user)
            if old is not None and old.active:
                self.log.info("user {user} logged in again on process {process}; closing the "
                              "session here", user=record.user, process=process)
                self.relay._leave(old, Reason.REPLACED)
                old.protocol.terminate("session-replaced", "you logged in again elsewhere")

    def _relayed(self, process: str, record: wire.RelayRecord) -> None:
        sender, target = record.sender, self.relay.sessions.get(record.recipient)
        if (target is None or not target.active or sender not in target.chats
                or self.peers.get((record.recipient, sender)) != process):
            self.metrics.dropped.labels("no-chat").inc()
            return
        payload = record.payload
        limits = self.relay.limits
        if len(payload) > limits.max_payload:
            self.metrics.dropped.labels("too-large").inc()
            self._log_once("too-large", "cluster: dropped a relayed message of {size} bytes "
                           "from process {process}", size=len(payload), process=process)
            return
        head = self._heads.get(sender)
        if head is None:
            if len(self._heads) > 65536:
                self._heads.clear()
            head = self._heads[sender] = _relayed_header_packer(sender)
        queue = target.queue
        assert queue is not None
        queue.push_encoded(head(len(payload)), payload)
        self.relay.metrics.relayed_messages += 1
        self.relay.metrics.relayed_bytes += len(payload)
        if queue.bytes > limits.queue_hard_limit:
            self.relay.drop_slow_reader(target, f"outbound queue over {limits.queue_hard_limit} "
                                        "bytes (from another process)")
        elif queue.bytes > limits.queue_soft_limit:
            target.start_stall_timer()
            paused = self.paused_by.get(target)
            if paused is None:
                paused = self.paused_by[target] = {}
            if sender not in paused:
                paused[sender] = process
                self._send(process, wire.event(wire.EVENT_PAUSE, record.recipient, sender))

    def drained(self, session: UserSession) -> None:
        """C{session}'s queue drained: the senders elsewhere it paused read again."""
        paused = self.paused_by.pop(session, None)
        if paused and session.user is not None:
            for sender, process in paused.items():
                self._send(process, wire.event(wire.EVENT_RESUME, session.user, sender))

    # -- presence -------------------------------------------------------------

    def logged_in(self, session: UserSession) -> None:
        """C{session}'s user is here now: a session elsewhere is replaced."""
        user = session.user
        assert user is not None

        def claimed(previous: str | None) -> None:
            if previous is not None and previous != self.process_id:
                self._send(previous, wire.kick(user))
        self.link.claim(user).addCallbacks(claimed, self._failed, errbackArgs=("presence",))

    def logged_out(self, user: str) -> None:
        self.link.release(user)

    def online(self) -> Deferred[list[str]]:
        """Every user online on any live process, and here."""
        local = self.relay.sessions

        def merged(names: list[str]) -> list[str]:
            return sorted(set(names) | set(local))

        def failed(failure: Failure) -> list[str]:
            self._failed(failure, "the online list")
            return sorted(local)
        return self.link.online().addCallbacks(merged, failed)

    # -- failures -------------------------------------------------------------

    def check_peers(self) -> None:
        """After a heartbeat: end what this process shares with dead ones."""
        processes = sorted(set(self.peers.values()))
        if not processes:
            return

        def found(alive: set[str]) -> None:
            dead = set(processes) - alive
            for process in sorted(dead):
                self.metrics.processes_gone.inc()
                self.log.warn("cluster: process {process} is gone (its heartbeat expired): "
                              "ending the chats and requests with its users", process=process)
            if dead:
                self.end_remote(dead)
        self.link.alive(processes).addCallbacks(found, self._failed, errbackArgs=("a check",))

    def end_remote(self, processes: Iterable[str] | None) -> int:
        """
        End every chat and request between a user here and one on
        C{processes} (on all others if None: the link is down, and the
        other sides are told when it is back), telling the users here (GONE).
        """
        which = None if processes is None else set(processes)
        ended = 0
        for (user, other), process in list(self.peers.items()):
            if which is not None and process not in which:
                continue
            me = self.relay.sessions.get(user)
            self.peers.pop((user, other), None)
            if me is None:
                continue
            ended += 1
            if other in me.chats:
                me.chats.pop(other, None)
                me.resume_reading(f"peer:{other}")
                me.deliver(ChatEnded(other, Reason.GONE))
                self.relay.metrics.chats.dec()
                kind = wire.EVENT_ENDED
            elif other in me.outgoing:
                me.outgoing.pop(other, None)
                me.deliver(ChatDeclined(other, Reason.GONE))
                kind = wire.EVENT_WITHDRAWN
            elif other in me.incoming:
                self.relay._drop_request(other, user)
                me.deliver(RequestWithdrawn(other, Reason.GONE))
                kind = wire.EVENT_DECLINED
            else:
                continue
            if which is None:
                self._owed.append((process, wire.event(kind, user, other, Reason.GONE)))
        return ended

    def link_down(self, why: str) -> None:
        """The link to Redis is lost: no logins, nothing with users elsewhere."""
        if self.available:
            self.available = False
            self.metrics.linked.set(0)
            self.metrics.link_losses.inc()
            ended = self.end_remote(None)
            self.log.error("cluster: lost the link to Redis ({why}): refusing logins until it "
                           "is back; {ended} chats and requests with users on other processes "
                           "ended", why=why, ended=ended)
        if self._cutoff is None and self.relay.sessions:
            self._cutoff = self.clock.callLater(self.ttl, self._cut_off)

    def _cut_off(self) -> None:
        self._cutoff = None
        if self.available:
            return
        sessions = list(self.relay.sessions.values())
        self.log.error("cluster: Redis unreachable for {ttl}s (presence expired elsewhere): "
                       "ending the {count} sessions here", ttl=self.ttl, count=len(sessions))
        for session in sessions:
            self.metrics.cut_off.inc()
            if session.active:
                self.relay._leave(session, Reason.GONE)
            session.protocol.terminate("unavailable", "the relay lost its link to the other "
                                       "relay processes")

    def link_up(self, replaced: list[str]) -> None:
        """
        Linked again (or for the first time) with the presence of the users
        here published; C{replaced} logged in elsewhere meanwhile.
        """
        if self._cutoff is not None:
            if self._cutoff.active():
                self._cutoff.cancel()
            self._cutoff = None
        for user in replaced:
            session = self.relay.sessions.get(user)
            if session is not None and session.active:
                self.log.info("user {user} logged in on another process while Redis was "
                              "unreachable; closing the session here", user=user)
                self.relay._leave(session, Reason.REPLACED)
                session.protocol.terminate("session-replaced", "you logged in again elsewhere")
        owed, self._owed = self._owed, []
        for process, record in owed:
            self._send(process, record)
        if not self.available:
            self.available = True
            self.metrics.linked.set(1)
            self.log.info("cluster: linked to Redis as process {process}; accepting logins "
                          "({count} users here)", process=self.process_id,
                          count=len(self.relay.sessions))

    def _log_once(self, key: str, format: str, **kw: object) -> None:
        if key in self._logged:
            return
        if len(self._logged) < 1024:
            self._logged.add(key)
        self.log.warn(format + " (logged once)", **kw)
