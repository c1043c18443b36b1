# -*- test-case-name: tests.test_mailbox_relay -*-
"""
A session's mailbox and group commands in the order they came
(docs/protocol.rst 14.7, 15.3: answers in order), for
L{securechat.server.mailbox} and L{securechat.server.groups}.
Each answer costs O(1): the commands not yet started are kept apart, with
counts of those started and not finished.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from securechat.wire.messages import Message


class Slot:
    """One command of a session: when it may start, and its answer."""

    __slots__ = ("post", "start", "started", "answer", "done")

    def __init__(self, post: bool, start: Callable[[], None]) -> None:
        self.post = post
        #: Starts the command; dropped once called (L{AnswerOrder.pump}).
        self.start: Callable[[], None] | None = start
        self.started = False
        #: C{None} once done: a command that has no answer (GROUP_ACK);
        #: bytes: answers already encoded (L{securechat.server.letterpost.LetterRun}).
        self.answer: Message | bytes | None = None
        self.done = False


class AnswerOrder:
    """
    A session's commands in the order they came: each answer goes out once
    all before it have gone.  POST_LETTERs may run together (so they share
    a group commit); any other command starts once every command before it
    has finished, and commands after it wait for it, so a command sees the
    effects of those sent before it.
    """

    __slots__ = ("owed", "pending", "busy", "busy_other", "pumping", "again")

    def __init__(self) -> None:
        #: Every command not yet answered, in order.
        self.owed: deque[Slot] = deque()
        #: The commands not yet started (always the tail of C{owed}).
        self.pending: deque[Slot] = deque()
        #: How many started commands are not done, and how many of those
        #: are not POST_LETTERs: each answer costs O(1), not a walk.
        self.busy = 0
        self.busy_other = 0
        self.pumping = False
        self.again = False

    def add(self, slot: Slot, deliver: Callable[[Any], None]) -> None:
        """Queue C{slot}, last, and start it if it may start now."""
        self.owed.append(slot)
        self.pending.append(slot)
        self.pump(deliver)

    def finish(self, slot: Slot, answer: Message | bytes | None,
               deliver: Callable[[Any], None]) -> None:
        """C{slot}'s command finished with C{answer}."""
        slot.answer, slot.done = answer, True
        self.busy -= 1
        if not slot.post:
            self.busy_other -= 1
        self.pump(deliver)

    def pump(self, deliver: Callable[[Any], None]) -> None:
        if self.pumping:
            self.again = True
            return
        self.pumping = True
        try:
            self.again = True
            owed, pending = self.owed, self.pending
            while self.again:
                self.again = False
                while owed and owed[0].done:
                    answer = owed.popleft().answer
                    if answer is not None:
                        deliver(answer)
                while pending:
                    slot = pending[0]
                    # A POST_LETTER waits for any other command before it;
                    # any other command waits for every command before it.
                    if self.busy_other if slot.post else self.busy:
                        break
                    pending.popleft()
                    slot.started = True
                    self.busy += 1
                    if not slot.post:
                        self.busy_other += 1
                    # The slot lets go of its start function when calling
                    # it: that function's closure holds the answer callback,
                    # which holds the slot, and that cycle (a dozen objects
                    # per letter) left every answered command to the
                    # cyclic garbage collector, a fifth of the relay's CPU
                    # under the mailbox benchmark.  Without it, reference
                    # counting frees a command once it is answered.
                    start, slot.start = slot.start, None
                    assert start is not None
                    start()
        finally:
            self.pumping = False
