# -*- test-case-name: tests.test_tui -*-
"""
The keys of the full-screen interface that are not plain editing (urwid's
L{urwid.Edit} does that: cursor keys, Home/End, Backspace, Delete):

  - Enter sends the input line (pasted lines arrive as keys, one Enter
    each, so they are sent in order);
  - Up / Down walk this window's input history;
  - Tab completes a command (first word) or a user name;
  - Alt-1..Alt-9 and Alt-0 go to window 1..10, Ctrl-N / Ctrl-P to the
    next / previous window;
  - Ctrl-C does what /quit does; a second Ctrl-C leaves at once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from securechat.client.tui.commands import NAMES, is_name

if TYPE_CHECKING:
    from securechat.client.tui.view import FullScreen


class Keys:
    """
    What keys pressed in a L{FullScreen} do.
    """

    def __init__(self, view: FullScreen) -> None:
        self.view = view

    #: Where Up/Down is in the current window's history (None: not in it).
    history_pos: int | None = None
    #: What was typed before Up was first pressed.
    draft: str = ""

    def key(self, key: str) -> bool:
        """
        Handle C{key}; whether it was used.  Nothing here may raise into
        urwid's loop: a failure becomes one line in the status window.
        """
        try:
            return self._key(key)
        except Exception as e:  # noqa: BLE001 -- never a traceback on the screen
            self.view.put(self.view.windows.status, "!", f"internal error handling {key!r}: "
                     f"{type(e).__name__}")
            return True

    def _key(self, key: str) -> bool:
        if key == "enter":
            self.history_pos = None
            self.view.commands.submit(self.view.screen.input.take())
        elif key in ("up", "down"):
            self.walk_history(-1 if key == "up" else 1)
        elif key == "tab":
            self.complete()
        elif key == "ctrl n":
            self.view.windows.step(1)
        elif key == "ctrl p":
            self.view.windows.step(-1)
        elif key == "ctrl c":
            self.view.interrupt()
        elif key.startswith("meta ") and key[5:].isdigit() and len(key) == 6:
            number = int(key[5:]) or 10
            if not self.view.windows.switch_to(number):
                self.view.reply(f"there is no window {number}", error=True)
        else:
            return False
        return True

    def walk_history(self, by: int) -> None:
        history = self.view.windows.current.history
        edit = self.view.screen.input
        if self.history_pos is None:
            if by > 0 or not history:
                return
            self.draft = edit.edit_text
            self.history_pos = len(history)
        position = self.history_pos + by
        if position < 0:
            return
        if position >= len(history):
            self.history_pos = None
            edit.replace(self.draft)
            return
        self.history_pos = position
        edit.replace(history[position])

    def candidates(self) -> list[str]:
        """
        The user names Tab offers: open windows, requests, chats and the
        last online list; only valid names (a relay cannot slip anything
        else into the input line).
        """
        names = set(self.view.seen_names)
        names.update(w.peer for w in self.view.windows.windows if w.peer is not None)
        if self.view.client is not None:
            names.update(self.view.client.chats)
            names.update(self.view.client.incoming)
            names.update(self.view.client.outgoing)
        return sorted(n for n in names if is_name(n))

    def complete(self) -> None:
        edit = self.view.screen.input
        text, pos = edit.edit_text, edit.edit_pos
        start = text.rfind(" ", 0, pos) + 1
        word = text[start:pos]
        if start == 0 and word[:1] in ("/", "!"):
            prefix = word[0]
            options = [prefix + name for name in NAMES]
        else:
            options = self.candidates()
        matches = [o for o in options if o.startswith(word)]
        if not matches:
            return
        if len(matches) == 1:
            completed = matches[0] + " "
        else:
            completed = os.path.commonprefix(matches)
            if completed == word:
                self.view.reply("completions: " + " ".join(matches))
                return
        edit.set_edit_text(text[:start] + completed + text[pos:])
        edit.set_edit_pos(start + len(completed))
