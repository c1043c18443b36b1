"""
Text a peer or the relay chose never reaches the full-screen interface's
screen as control, format or separator characters, on any display path
(DESIGN.md section 9): every L{ChatView} method, the status bar, the input
caption, the activity list and completion, each rendered with urwid's
display-free canvas.
"""

from __future__ import annotations

from typing import Callable

from twisted.trial import unittest

from securechat.client.display import is_safe, untrusted
from securechat.client.tui.view import FullScreen
from securechat.wire.relay import Reason
from tests.test_display import HOSTILE

SIZE = (120, 40)


class _Client:
    """
    Just enough of a logged-in L{ChatClient} for the view's commands.
    """

    logged_in = True

    def __init__(self) -> None:
        self.chats: dict[str, object] = {}
        self.incoming: set[str] = set()
        self.outgoing: set[str] = set()
        self.asking: set[str] = set()

    def fingerprint(self, peer: str | None) -> str:
        return "SHA256:" + (peer or "")


def _paths() -> list[tuple[str, Callable[[FullScreen, str], None]]]:
    """
    Every way the full screen shows text another party controls, with
    that text set to the hostile string.
    """
    return [
        ("logged_in", lambda v, t: v.logged_in(t)),
        ("online", lambda v, t: v.online((t, "bob"), 5)),
        ("chat_requested", lambda v, t: v.chat_requested(t)),
        ("request_pending", lambda v, t: v.request_pending(t)),
        ("chat_declined", lambda v, t: v.chat_declined(t, Reason.REFUSED)),
        ("chat_declined unknown reason", lambda v, t: (v.request_pending(t),
                                                       v.chat_declined(t, 99))),
        ("request_withdrawn", lambda v, t: v.request_withdrawn(t, Reason.CANCELLED)),
        ("chat_opened first use", lambda v, t: v.chat_opened(t, t, True)),
        ("chat_opened pinned", lambda v, t: v.chat_opened(t, t, False)),
        ("chat_secured (status bar state)", lambda v, t: (v.chat_opened(t, t, True),
                                                          v.chat_secured(t))),
        ("key_changed", lambda v, t: v.key_changed(t, t, t)),
        ("message name", lambda v, t: v.message(t, 0.0, "hello")),
        ("message text", lambda v, t: v.message("bob", 0.0, t)),
        ("chat_ended", lambda v, t: v.chat_ended(t, t)),
        ("chat_ended truncated", lambda v, t: v.chat_ended("bob", "TRUNCATED: " + t)),
        ("security_error", lambda v, t: v.security_error(t, t)),
        ("command_failed", lambda v, t: v.command_failed("chat", t, Reason.UNKNOWN_USER)),
        ("command_failed unknown", lambda v, t: v.command_failed(t, t, 77)),
        ("notice", lambda v, t: v.notice(t)),
        ("disconnected", lambda v, t: v.disconnected(t)),
        ("say (program lines)", lambda v, t: v.say("! " + t)),
        ("fingerprint reply", lambda v, t: v.commands.run_command("/fingerprint " + t)),
        ("completion list", lambda v, t: (v.online((t + "a", t + "b"), 2),
                                          v.screen.input.replace("/chat "),
                                          v.keys.complete())),
    ]


#: Paths that drop hostile text instead of showing it escaped: a command
#: argument ends at whitespace, and completion lists only valid names.
_FILTERED = {"fingerprint reply", "completion list"}


class HostileTextTests(unittest.TestCase):
    """
    The table of hostile strings (tests.test_display.HOSTILE) through
    every display path of the full-screen interface.
    """

    def rendered(self, view: FullScreen) -> list[str]:
        """
        Every window rendered in turn (lines, bar, caption), as text.
        """
        rows: list[str] = []
        for number in range(1, len(view.windows.windows) + 1):
            view.windows.switch_to(number)
            rows += [r.decode("utf-8") for r in view.screen.render(SIZE, focus=True).text]
            # Then the others' activity, seen from the status window.
            view.windows.switch_to(1)
            rows.append(view.screen.bar.text)
        return rows

    def test_hostileTextNeutralisedEverywhere(self) -> None:
        """
        For each hostile string and each path, the rendered screen holds
        no control, format, separator or surrogate character, and the
        string's visible escape is shown instead.
        """
        for label, hostile in HOSTILE:
            for path, show in _paths():
                view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
                view.client = _Client()  # type: ignore[assignment]
                view.windows.switch_to(1)
                show(view, hostile)
                rows = self.rendered(view)
                for row in rows:
                    self.assertTrue(is_safe(row), f"{label} via {path}: {row!r}")
                if not hostile.isprintable() and path not in _FILTERED:
                    escaped = untrusted(hostile)
                    seen = "".join(r.strip() for r in rows)
                    self.assertIn(escaped.split("\\")[1][:3], seen, f"{label} via {path}")

    def test_completionOffersOnlyUserNames(self) -> None:
        """
        Names from the relay that are not valid user names (control
        characters, spaces) are never put into the input line by Tab.
        """
        view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
        view.online(("b\x1b[2Jx", "bo b"), 2)
        view.screen.input.replace("/chat b")
        view.keys.complete()
        self.assertEqual(view.screen.input.edit_text, "/chat b")
