# -*- test-case-name: tests.test_tui -*-
"""
The urwid widgets of the full-screen interface: the window's lines above,
the status bar, and the input line at the bottom, which lines arriving
never touch (they go into the list above it).

Every string drawn here is either ours or comes from a L{Line} (already
neutralised by L{Window.add}); the status bar's text is passed through
L{untrusted} as a whole before it is drawn, like a line of the line-mode
terminal.

Colours: a palette with a monochrome fallback for each entry, so a terminal
without colours still tells trust events (bold, standout) and our own lines
(bold) apart.  Each peer's name takes one of L{NAME_COLOURS}, chosen by a
hash of the name, so it is the same in every window and every session.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import urwid

from securechat.client.display import untrusted
from securechat.client.tui.windows import Line, Style

NAME_COLOURS = ("dark cyan", "dark green", "brown", "dark magenta", "light blue", "light green")

#: (name, foreground, background, monochrome)
PALETTE: list[tuple[str, str, str, str]] = [
    ("event", "dark gray", "default", ""),
    ("error", "yellow", "default", "bold"),
    ("trust", "white,bold", "dark red", "standout,bold"),
    ("own", "white,bold", "default", "bold"),
    ("peer", "default", "default", ""),
    ("time", "dark gray", "default", ""),
    ("bar", "white", "dark blue", "standout"),
    ("bar-alert", "yellow,bold", "dark blue", "standout,bold"),
    ("input", "default", "default", ""),
] + [(f"name{i}", colour, "default", "") for i, colour in enumerate(NAME_COLOURS)]


def name_attr(name: str) -> str:
    """
    The palette entry of C{name}'s colour: stable across runs.
    """
    digest = hashlib.sha256(name.encode("utf-8", "replace")).digest()
    return f"name{digest[0] % len(NAME_COLOURS)}"


def line_widget(line: Line) -> urwid.Widget:
    """
    One window line: the prefix in its own column, so that a long body
    wraps under itself and a peer's text never starts at the left edge
    where our markers are.
    """
    marker = "time" if line.style in (Style.PEER, Style.OWN) else line.style.value
    prefix: list[Any] = [(marker, line.prefix)]
    if line.name:
        colour = "own" if line.style is Style.OWN else name_attr(line.name)
        prefix += [(colour, f"<{line.name}>"), " "]
    body = urwid.Text((line.style.value, line.body))
    return urwid.Columns([("pack", urwid.Text(prefix)), body])


class InputLine(urwid.Edit):
    """
    The input line: urwid's editing (cursor keys, Home/End, Backspace,
    Delete, wrapping long input), plus a caption naming the window.
    """

    def __init__(self) -> None:
        super().__init__(caption="", edit_text="", multiline=False, wrap="any")

    def take(self) -> str:
        text = self.edit_text
        self.set_edit_text("")
        return text

    def replace(self, text: str) -> None:
        self.set_edit_text(text)
        self.set_edit_pos(len(text))


class ChatScreen(urwid.WidgetWrap):
    """
    The whole screen: the current window's lines, the status bar, the
    input line.  Keys the input line does not use go to C{on_key}; it
    returns whether it used them.
    """

    def __init__(self, on_key: Callable[[str], bool]) -> None:
        self.walker: urwid.SimpleFocusListWalker[Any] = urwid.SimpleFocusListWalker([])
        self.listbox = urwid.ListBox(self.walker)
        self.bar = urwid.Text("", wrap="ellipsis")
        self.input = InputLine()
        footer = urwid.Pile([urwid.AttrMap(self.bar, "bar"), urwid.AttrMap(self.input, "input")])
        self.frame: urwid.Frame[Any, Any, Any] = urwid.Frame(self.listbox, footer=footer, focus_part="footer")
        self.on_key = on_key
        super().__init__(self.frame)

    def show(self, lines: list[Line]) -> None:
        """
        Show C{lines} (another window's), scrolled to the end.
        """
        self.walker[:] = [line_widget(line) for line in lines]
        self._to_end()

    def append(self, line: Line) -> None:
        at_end = not self.walker or self.walker.focus == len(self.walker) - 1
        self.walker.append(line_widget(line))
        if at_end:
            self._to_end()

    def _to_end(self) -> None:
        if self.walker:
            self.walker.set_focus(len(self.walker) - 1)

    def set_bar(self, parts: list[tuple[str, str]]) -> None:
        """
        Show the status bar: (palette entry, text) pairs, each text
        neutralised here.
        """
        self.bar.set_text([(attr, untrusted(text)) for attr, text in parts] or "")

    def set_caption(self, text: str) -> None:
        self.input.set_caption(untrusted(text))

    def keypress(self, size: tuple[int, int], key: str) -> str | None:  # type: ignore[override]
        if key in ("page up", "page down"):
            rows = size[1] - 2
            return self.listbox.keypress((size[0], max(rows, 1)), key)
        if key in ("up", "down"):
            # Moving within a long (wrapped) input first, then history.
            if self.frame.keypress(size, key) is None:
                return None
            return None if self.on_key(key) else key
        if self.on_key(key):
            return None
        return self.frame.keypress(size, key)
