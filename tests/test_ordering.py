"""
Tests for L{securechat.server.ordering}: a session's mailbox commands start
and are answered in the order of docs/protocol.rst 14.6.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.server.ordering import AnswerOrder, Slot
from securechat.wire.messages import Message


class AnswerOrderTests(unittest.TestCase):
    """
    POST_LETTERs run together, any other command waits for every command
    before it and holds back those after it; answers go out in order.
    """

    def setUp(self) -> None:
        self.order = AnswerOrder()
        self.started: list[str] = []
        self.delivered: list[object] = []
        self.slots: dict[str, Slot] = {}

    def add(self, name: str, post: bool) -> None:
        slot = self.slots[name] = Slot(post, lambda: self.started.append(name))
        self.order.add(slot, self.delivered.append)

    def finish(self, name: str) -> None:
        answer: Message = name  # type: ignore[assignment]
        self.order.finish(self.slots[name], answer, self.delivered.append)

    def test_postsRunTogetherOthersWait(self) -> None:
        """
        Three POST_LETTERs start at once; a LIST after them waits for all
        three, and a POST after the LIST waits for it; answers finished out
        of order go out in the order the commands came.
        """
        for name in ("p1", "p2", "p3"):
            self.add(name, True)
        self.add("list", False)
        self.add("p4", True)
        self.assertEqual(self.started, ["p1", "p2", "p3"])
        self.finish("p3")
        self.finish("p2")
        self.assertEqual(self.delivered, [])
        self.finish("p1")
        self.assertEqual(self.delivered, ["p1", "p2", "p3"])
        self.assertEqual(self.started, ["p1", "p2", "p3", "list"])
        self.finish("list")
        self.assertEqual(self.started, ["p1", "p2", "p3", "list", "p4"])
        self.finish("p4")
        self.assertEqual(self.delivered, ["p1", "p2", "p3", "list", "p4"])
        self.assertEqual((len(self.order.owed), self.order.busy, self.order.busy_other), (0, 0, 0))

    def test_answerDoesNotWalkTheQueue(self) -> None:
        """
        With many POST_LETTERs owed, answering one does not look at the
        others (O(1) per answer): a slot's C{done} is read only when it is
        at the front.
        """
        reads: list[int] = []

        class Counting(Slot):
            __slots__ = ()

            @property  # type: ignore[misc]
            def done(self) -> bool:  # type: ignore[override]
                reads.append(1)
                return False

            @done.setter
            def done(self, value: bool) -> None:
                pass
        for n in range(1000):
            slot = Counting(True, lambda: None)
            self.order.add(slot, self.delivered.append)
        self.assertLess(len(reads), 2000)
