# -*- test-case-name: tests.test_tui -*-
"""
The full-screen interface's windows (buffers), without any drawing: which
windows exist, what each holds, which one is current, and what is unread.

Window 1 is the status window (relay events, answers to commands); every
conversation gets its own window after it, numbered in the order opened,
as in irssi and WeeChat.  A window's lines are L{Line} values whose text
has already been through L{securechat.client.display.untrusted}: L{Window.add}
is the only way a line gets in, and it neutralises every field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable

from securechat.client.display import untrusted

#: How many lines a window keeps (older ones are dropped).
MAX_LINES = 2000
#: How many lines of input history a window keeps.
MAX_HISTORY = 200


class Style(str, enum.Enum):
    """
    What kind of line this is, which decides how it looks.  Only the view
    chooses it; nothing a peer sends can.
    """

    EVENT = "event"        # "*": something happened
    ERROR = "error"        # "!": a refusal or a failure, one line
    TRUST = "trust"        # "!!!": key pinned / key changed / security failure
    OWN = "own"            # a line we sent
    PEER = "peer"          # a line a peer sent


class Activity(enum.IntEnum):
    """
    How much happened in a window since it was last looked at.
    """

    NONE = 0
    EVENT = 1      # an event or notice
    MESSAGE = 2    # a peer's message
    ALERT = 3      # a chat request, or a trust event


class PeerState(str, enum.Enum):
    """
    Where a conversation stands, as the status bar says it.
    """

    ASKED = "asks to chat"          # they asked us: /accept or /refuse
    REQUESTED = "requested"         # we asked, no answer yet
    SECURING = "securing"           # accepted, end-to-end handshake running
    SECURE = "e2e encrypted"        # with the pinned fingerprint's short form
    KEY_CHANGED = "KEY CHANGED"
    ENDED = "ended"


@dataclass(frozen=True)
class Line:
    """
    One line of a window: a prefix (time, marker, name) and a body, both
    already neutralised, and the name whose colour the prefix takes.
    """

    prefix: str
    body: str
    style: Style
    name: str = ""


@dataclass
class Window:
    """
    One buffer: the status window (C{peer} None) or one conversation.
    """

    peer: str | None
    lines: list[Line] = field(default_factory=list)
    unread: int = 0
    activity: Activity = Activity.NONE
    history: list[str] = field(default_factory=list)
    state: PeerState | None = None
    #: The peer's pinned fingerprint, once the chat was opened.
    fingerprint: str | None = None
    #: Called with each line added (the widget that shows this window).
    on_line: Callable[[Line], None] | None = None
    #: The mailbox window (letters, receipts, users): no peer, no chat.
    mailbox: bool = False
    #: A group's window (its name): no peer; what is typed goes to the group.
    group: str | None = None

    @property
    def title(self) -> str:
        if self.mailbox:
            return "mailbox"
        if self.group is not None:
            return untrusted("#" + self.group)
        return "status" if self.peer is None else untrusted(self.peer)

    def add(self, prefix: str, body: str, style: Style, name: str = "") -> Line:
        """
        Append a line, neutralising every field (the only way in).
        """
        line = Line(untrusted(prefix), untrusted(body), style, untrusted(name))
        self.lines.append(line)
        del self.lines[:-MAX_LINES]
        if self.on_line is not None:
            self.on_line(line)
        return line

    def remember(self, text: str) -> None:
        """
        Add C{text} to this window's input history (not twice in a row).
        """
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
            del self.history[:-MAX_HISTORY]

    def status(self) -> str:
        """
        The conversation's state as the status bar shows it.
        """
        if self.state is None:
            return ""
        if self.state is PeerState.SECURE and self.fingerprint:
            return f"{self.state.value} {short_fingerprint(self.fingerprint)}"
        return self.state.value


def short_fingerprint(fingerprint: str) -> str:
    """
    The short form of a fingerprint for the status bar: the algorithm and
    the first 8 characters (the whole one is shown when the chat opens and
    by /fingerprint).
    """
    algorithm, sep, digest = fingerprint.partition(":")
    if not sep:
        return fingerprint[:12]
    return f"{algorithm}:{digest[:8]}"


class WindowList:
    """
    The windows in order (the status window first) and the current one.
    """

    def __init__(self) -> None:
        self.windows: list[Window] = [Window(None)]
        self.current: Window = self.windows[0]
        #: Called after the current window changed.
        self.on_switch: Callable[[Window], None] | None = None

    @property
    def status(self) -> Window:
        return self.windows[0]

    def find_mailbox(self) -> Window | None:
        for window in self.windows[1:]:
            if window.mailbox:
                return window
        return None

    def find_group(self, group: str) -> Window | None:
        for window in self.windows[1:]:
            if window.group == group:
                return window
        return None

    def find(self, peer: str) -> Window | None:
        for window in self.windows[1:]:
            if window.peer == peer:
                return window
        return None

    def open(self, peer: str) -> Window:
        """
        The window for C{peer}, created (at the end) if there is none.
        """
        window = self.find(peer)
        if window is None:
            window = Window(peer)
            self.windows.append(window)
        return window

    def number(self, window: Window) -> int:
        return self.windows.index(window) + 1

    def switch(self, window: Window) -> None:
        self.current = window
        window.unread = 0
        window.activity = Activity.NONE
        if self.on_switch is not None:
            self.on_switch(window)

    def switch_to(self, number: int) -> bool:
        """
        Make window C{number} (1-based) current; False if there is none.
        """
        if not 1 <= number <= len(self.windows):
            return False
        self.switch(self.windows[number - 1])
        return True

    def step(self, by: int) -> None:
        """
        The next (C{by} 1) or previous (-1) window, wrapping around.
        """
        index = (self.windows.index(self.current) + by) % len(self.windows)
        self.switch(self.windows[index])

    def close(self, window: Window) -> None:
        if window.peer is None:
            return
        index = self.windows.index(window)
        self.windows.remove(window)
        if self.current is window:
            self.switch(self.windows[index - 1])

    def mark(self, window: Window, activity: Activity) -> None:
        """
        Note a line added to C{window}: unread and activity, unless it is
        the one being looked at.
        """
        if window is self.current:
            return
        window.unread += 1
        window.activity = max(window.activity, activity)

    def hotlist(self) -> list[tuple[int, Window]]:
        """
        The windows with something unread, by number.
        """
        return [(i + 1, w) for i, w in enumerate(self.windows)
                if w.unread and w is not self.current]
