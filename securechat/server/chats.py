# -*- test-case-name: tests.test_relay -*-
"""
The relay's side of chat requests and chats (docs/protocol.rst 11.3, 11.4):
L{Chats}, the part of L{securechat.server.relay.Relay} that answers
CHAT_REQUEST, CHAT_ACCEPT, CHAT_REFUSE, CHAT_CANCEL and CHAT_STOP, expires
requests, and keeps each user's request and chat sets in step.  Relay
inherits it, so its handlers are called directly, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from securechat.crypto import keys
from securechat.server.directory import IUserDirectory
from securechat.server.limits import Limits
from securechat.server.metrics import RelayMetrics
from securechat.server.session import _with
from securechat.wire.messages import Message
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
    Reason,
    RequestPending,
    RequestWithdrawn,
)

if TYPE_CHECKING:
    from securechat.server.router import Router
    from securechat.server.session import UserSession


class Chats:
    """
    Chat requests and chats, over the relay's online sessions.  A base of
    L{securechat.server.relay.Relay}, which sets the attributes below.
    """

    log: Logger
    directory: IUserDirectory
    clock: IReactorTime
    limits: Limits
    metrics: RelayMetrics
    sessions: dict[str, UserSession]
    #: The other relay processes (C{--cluster}), or None: users are here or offline.
    router: Router | None
    #: Pending requests, by (requester, target): the call that expires each.
    _requests: dict[tuple[str, str], IDelayedCall]

    # -- commands -----------------------------------------------------------

    def _fail(self, session: UserSession, message: Message, subject: str, reason: Reason) -> None:
        session.deliver(CommandFailed(message.TYPE, subject, reason))

    def _chat_request(self, session: UserSession, message: ChatRequest) -> None:
        """
        Answer a request at once with exactly one message (docs/protocol.rst
        11.4): COMMAND_FAILED when the requester cannot make it (oneself, an
        existing chat or request, its own limits), CHAT_DECLINED when the
        target cannot take it, else REQUEST_PENDING once the target is asked.
        """
        user, target = session.user, message.to
        assert user is not None
        if target == user:
            return self._fail(session, message, target, Reason.SELF)
        if target in session.chats or target in session.outgoing or target in session.incoming:
            return self._fail(session, message, target, Reason.ALREADY)
        if len(session.outgoing) >= self.limits.max_outgoing_requests:
            self.metrics.chat_requests.labels("too_many_pending").inc()
            return self._fail(session, message, target, Reason.TOO_MANY_PENDING)
        if len(session.chats) >= self.limits.max_chats:
            self.metrics.chat_requests.labels("busy").inc()
            return self._fail(session, message, target, Reason.BUSY)
        other = self.sessions.get(target)
        if other is None:
            entry = self.directory.lookup(target)
            if self.router is not None and entry is not None and not entry.revoked:
                return self.router.request(session, target)  # on another process, perhaps
            reason = Reason.OFFLINE if entry is not None and not entry.revoked else Reason.UNKNOWN_USER
            self.metrics.chat_requests.labels(reason.name.lower()).inc()
            session.deliver(ChatDeclined(target, reason))
            return
        if len(other.incoming) >= self.limits.max_incoming_requests:
            self.metrics.chat_requests.labels("too_many_pending").inc()
            session.deliver(ChatDeclined(target, Reason.TOO_MANY_PENDING))
            return
        if len(other.chats) >= self.limits.max_chats:
            self.metrics.chat_requests.labels("busy").inc()
            session.deliver(ChatDeclined(target, Reason.BUSY))
            return
        self._requests[(user, target)] = self.clock.callLater(
            self.limits.request_timeout, self._request_expired, user, target)
        session.outgoing = _with(session.outgoing, target)
        other.incoming = _with(other.incoming, user)
        self.log.info("chat request {requester} -> {target}", requester=user, target=target)
        other.deliver(ChatRequested(user))
        session.deliver(RequestPending(target))

    def _request_expired(self, requester: str, target: str) -> None:
        self._requests.pop((requester, target), None)
        self._forget_request(requester, target)
        self.metrics.chat_requests.labels("timeout").inc()
        self._deliver(requester, ChatDeclined(target, Reason.TIMEOUT))
        self._deliver(target, RequestWithdrawn(requester, Reason.TIMEOUT))

    def _chat_accept(self, session: UserSession, message: ChatAccept) -> None:
        user, requester = session.user, message.requester
        assert user is not None
        if (requester, user) not in self._requests:
            return self._fail(session, message, requester, Reason.NO_REQUEST)
        self._drop_request(requester, user)
        other = self.sessions.get(requester)
        if other is None:  # the requester is on another process
            assert self.router is not None
            return self.router.accept(session, message)
        if len(other.chats) >= self.limits.max_chats or len(session.chats) >= self.limits.max_chats:
            other.deliver(ChatDeclined(user, Reason.BUSY))
            return self._fail(session, message, requester, Reason.BUSY)
        assert other.entry is not None and session.entry is not None
        session.chats = _with(session.chats, requester)
        other.chats = _with(other.chats, user)
        self.metrics.chat_requests.labels("accepted").inc()
        self.metrics.chats.inc()
        self.log.info("chat started: {a} and {b}", a=requester, b=user)
        other.deliver(ChatStarted(user, keys.public_key_der(session.entry.public_key), 1))
        session.deliver(ChatStarted(requester, keys.public_key_der(other.entry.public_key), 0))

    def _chat_refuse(self, session: UserSession, message: ChatRefuse) -> None:
        user, requester = session.user, message.requester
        assert user is not None
        if (requester, user) not in self._requests:
            return self._fail(session, message, requester, Reason.NO_REQUEST)
        self._drop_request(requester, user)
        self.metrics.chat_requests.labels("refused").inc()
        self._deliver(requester, ChatDeclined(user, Reason.REFUSED))

    def _chat_cancel(self, session: UserSession, message: ChatCancel) -> None:
        user, target = session.user, message.to
        assert user is not None
        if (user, target) not in self._requests:
            if self.router is not None and target in session.outgoing and target not in self.sessions:
                return self.router.cancel(session, target)
            return self._fail(session, message, target, Reason.NO_REQUEST)
        self._drop_request(user, target)
        self.metrics.chat_requests.labels("cancelled").inc()
        self._deliver(target, RequestWithdrawn(user, Reason.CANCELLED))
        session.deliver(ChatDeclined(target, Reason.CANCELLED))

    def _chat_stop(self, session: UserSession, message: ChatStop) -> None:
        user, peer = session.user, message.peer
        assert user is not None
        if peer not in session.chats:
            return self._fail(session, message, peer, Reason.NO_CHAT)
        self._end_chat(user, peer)
        self.log.info("chat ended: {a} stopped the chat with {b}", a=user, b=peer)
        self._deliver(peer, ChatEnded(user, Reason.STOPPED))
        session.deliver(ChatEnded(peer, Reason.STOPPED))

    # -- bookkeeping --------------------------------------------------------

    def _deliver(self, user: str, message: Message) -> None:
        session = self.sessions.get(user)
        if session is not None:
            session.deliver(message)
        elif self.router is not None:
            self.router.deliver(user, message)

    def _drop_request(self, requester: str, target: str) -> None:
        call = self._requests.pop((requester, target), None)
        if call is not None and call.active():
            call.cancel()
        self._forget_request(requester, target)

    def _forget_request(self, requester: str, target: str) -> None:
        a, b = self.sessions.get(requester), self.sessions.get(target)
        if a is not None:
            a.outgoing.pop(target, None)
        if b is not None:
            b.incoming.pop(requester, None)

    def _end_chat(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            session = self.sessions.get(x)
            if session is not None:
                session.chats.pop(y, None)
        self.metrics.chats.dec()
