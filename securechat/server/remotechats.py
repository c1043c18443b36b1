# -*- test-case-name: tests.test_router -*-
"""
The chat commands and chat events of users on different relay processes:
L{RemoteChats}, the part of L{securechat.server.router.Router} that asks
another process for a chat request, cancel or accept, and applies the
events other processes send (clusterwire's EVENT records).  The rules are
the router's (see there): the target's process holds a request and its
expiry; an accept is two phases; each side forgets the relationship when
it ends on its side, and tells the other with one event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.crypto import keys
from securechat.server import clusterwire as wire
from securechat.server.session import _with
from securechat.wire.messages import Message
from securechat.wire.relay import (
    ChatAccept, ChatDeclined, ChatEnded, ChatRequest, ChatRequested, ChatStarted, CommandFailed, Reason,
    RequestPending, RequestWithdrawn)

if TYPE_CHECKING:
    from securechat.server.relay import Relay
    from securechat.server.router import ILink
    from securechat.server.session import UserSession


class RemoteChats:
    """Chat requests and chats with users elsewhere; a base of the router."""

    log: Logger
    relay: Relay
    link: ILink
    clock: IReactorTime
    process_id: str
    peers: dict[tuple[str, str], str]

    def _send(self, process: str, record: bytes) -> None:
        raise NotImplementedError

    def _failed(self, failure: Failure, what: str) -> None:
        raise NotImplementedError

    def deliver(self, user: str, message: Message) -> None:
        raise NotImplementedError

    # -- chat commands for users elsewhere ----------------------------------

    def request(self, session: UserSession, target: str) -> None:
        """
        CHAT_REQUEST from C{session} to C{target}, not here: found in
        Redis, then asked of its process (which answers PENDING or
        DECLINED); offline if it is nowhere.
        """
        user = session.user
        assert user is not None
        session.outgoing = _with(session.outgoing, target)

        def located(process: str | None) -> None:
            if not session.active or target not in session.outgoing or (user, target) in self.peers:
                return  # cancelled, or gone, meanwhile
            if process is None or process == self.process_id:
                session.outgoing.pop(target, None)
                self.relay.metrics.chat_requests.labels("offline").inc()
                session.deliver(ChatDeclined(target, Reason.OFFLINE))
                return
            self.peers[(user, target)] = process
            self._send(process, wire.event(wire.EVENT_REQUEST, user, target))

        def failed(failure: Failure) -> None:
            self._failed(failure, "a chat request")
            if session.active and target in session.outgoing and (user, target) not in self.peers:
                session.outgoing.pop(target, None)
                session.deliver(ChatDeclined(target, Reason.OFFLINE))
        self.link.locate(target).addCallbacks(located, failed)

    def cancel(self, session: UserSession, target: str) -> None:
        """CHAT_CANCEL of a request to C{target}, elsewhere."""
        user = session.user
        assert user is not None
        session.outgoing.pop(target, None)
        self.relay.metrics.chat_requests.labels("cancelled").inc()
        self.deliver(target, RequestWithdrawn(user, Reason.CANCELLED))
        session.deliver(ChatDeclined(target, Reason.CANCELLED))

    def accept(self, session: UserSession, message: ChatAccept) -> None:
        """
        CHAT_ACCEPT of a request from C{requester}, elsewhere (the relay
        dropped the request): reserve this user's chat slot and ask the
        requester's process to start the chat.
        """
        user, requester = session.user, message.requester
        assert user is not None
        limits = self.relay.limits
        if len(session.chats) >= limits.max_chats:
            self.deliver(requester, ChatDeclined(user, Reason.BUSY))
            session.deliver(CommandFailed(message.TYPE, requester, Reason.BUSY))
            return
        process = self.peers.get((user, requester))
        if process is None:
            session.deliver(CommandFailed(message.TYPE, requester, Reason.NO_REQUEST))
            return
        session.chats = _with(session.chats, requester)
        self.relay.metrics.chats.inc()
        self._send(process, wire.event(wire.EVENT_ACCEPT, user, requester))

    def _event(self, process: str, r: wire.EventRecord) -> None:
        me = self.relay.sessions.get(r.recipient)
        other, kind = r.sender, r.event
        if kind == wire.EVENT_REQUEST:
            return self._requested(process, me, other, r.recipient)
        if me is None or not me.active:
            if kind == wire.EVENT_ACCEPT:
                self._send(process, wire.event(wire.EVENT_ACCEPT_FAILED, r.recipient, other,
                                               Reason.NO_REQUEST))
            return
        user = r.recipient
        if kind == wire.EVENT_PENDING:
            if other in me.outgoing:
                me.deliver(RequestPending(other))
        elif kind == wire.EVENT_DECLINED:
            if other in me.outgoing:
                me.outgoing.pop(other, None)
                self.peers.pop((user, other), None)
                me.deliver(ChatDeclined(other, _reason(r.reason)))
        elif kind == wire.EVENT_WITHDRAWN:
            if other in me.incoming:
                self.relay._drop_request(other, user)
                self.peers.pop((user, other), None)
                me.deliver(RequestWithdrawn(other, _reason(r.reason)))
        elif kind == wire.EVENT_PAUSE:
            if other in me.chats:
                me.pause_reading(f"peer:{other}")
                self.relay.metrics.senders_paused.inc()
        elif kind == wire.EVENT_RESUME:
            me.resume_reading(f"peer:{other}")
        elif kind == wire.EVENT_ENDED:
            me.resume_reading(f"peer:{other}")
            if other in me.chats:
                me.chats.pop(other, None)
                self.relay.metrics.chats.dec()
                self.peers.pop((user, other), None)
                me.deliver(ChatEnded(other, _reason(r.reason)))
        elif kind == wire.EVENT_ACCEPT:
            self._accepted(process, me, other)
        elif kind == wire.EVENT_ACCEPT_FAILED:
            if other in me.chats:
                me.chats.pop(other, None)
                self.relay.metrics.chats.dec()
                self.peers.pop((user, other), None)
                me.deliver(CommandFailed(ChatAccept.TYPE, other, _reason(r.reason)))
        elif kind == wire.EVENT_STARTED:
            entry = self.relay.directory.lookup(other)
            if other in me.chats and entry is not None:
                self.relay.metrics.chat_requests.labels("accepted").inc()
                self.log.info("chat started: {a} (process {process}) and {b}", a=other,
                              process=process, b=user)
                me.deliver(ChatStarted(other, keys.public_key_der(entry.public_key), 0))

    def _requested(self, process: str, target: UserSession | None, requester: str,
                   name: str) -> None:
        """A CHAT_REQUEST from C{requester} on C{process} for C{name}, here."""
        relay, limits = self.relay, self.relay.limits

        def decline(reason: Reason) -> None:
            relay.metrics.chat_requests.labels(reason.name.lower()).inc()
            self._send(process, wire.event(wire.EVENT_DECLINED, name, requester, reason))
        if target is None or not target.active:
            return decline(Reason.OFFLINE)
        if requester in target.outgoing:
            # The two asked each other at once, each on its process.  As if
            # the request of the name that sorts first had come first: it
            # stands, the other fails ALREADY (on the process of the one
            # that made it, which sees the same crossing).
            if name < requester:
                return  # ours stands; the requester's process fails its request
            target.outgoing.pop(requester, None)
            self.peers.pop((name, requester), None)
            relay.metrics.chat_requests.labels("already").inc()
            target.deliver(CommandFailed(ChatRequest.TYPE, requester, Reason.ALREADY))
        if requester in target.chats or requester in target.incoming:
            return decline(Reason.ALREADY)
        if len(target.incoming) >= limits.max_incoming_requests:
            return decline(Reason.TOO_MANY_PENDING)
        if len(target.chats) >= limits.max_chats:
            return decline(Reason.BUSY)
        relay._requests[(requester, name)] = self.clock.callLater(
            limits.request_timeout, relay._request_expired, requester, name)
        target.incoming = _with(target.incoming, requester)
        self.peers[(name, requester)] = process
        self.log.info("chat request {requester} (process {process}) -> {target}",
                      requester=requester, process=process, target=name)
        target.deliver(ChatRequested(requester))
        self._send(process, wire.event(wire.EVENT_PENDING, name, requester))

    def _accepted(self, process: str, me: UserSession, target: str) -> None:
        """The target on C{process} accepted C{me}'s request: start the chat here."""
        user = me.user
        assert user is not None
        entry = self.relay.directory.lookup(target)
        if target not in me.outgoing or entry is None:
            self._send(process, wire.event(wire.EVENT_ACCEPT_FAILED, user, target,
                                           Reason.NO_REQUEST))
            return
        me.outgoing.pop(target, None)
        if len(me.chats) >= self.relay.limits.max_chats:
            self.peers.pop((user, target), None)
            me.deliver(ChatDeclined(target, Reason.BUSY))
            self._send(process, wire.event(wire.EVENT_ACCEPT_FAILED, user, target, Reason.BUSY))
            return
        me.chats = _with(me.chats, target)
        self.relay.metrics.chats.inc()
        self.log.info("chat started: {a} and {b} (process {process})", a=user, b=target,
                      process=process)
        me.deliver(ChatStarted(target, keys.public_key_der(entry.public_key), 1))
        self._send(process, wire.event(wire.EVENT_STARTED, user, target))


def _reason(code: int) -> Reason:
    try:
        return Reason(code)
    except ValueError:
        return Reason.GONE
