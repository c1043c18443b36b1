# -*- test-case-name: tests.test_tui_terminal -*-
"""
Running L{FullScreen} on a real terminal: urwid's raw display and main loop
on Twisted's reactor.  Ctrl-C is taken from the terminal driver (no
SIGINT) so that it arrives as a key and ends the chats cleanly; the
terminal's settings are restored when the loop stops.
"""

from __future__ import annotations

from typing import Any

import urwid

from securechat.client.tui.view import FullScreen
from securechat.client.tui.widgets import PALETTE


class ScreenLoop:
    """
    The urwid main loop showing one L{FullScreen}, redrawn after each
    change (coalesced to one redraw per reactor turn).
    """

    def __init__(self, view: FullScreen, reactor: Any) -> None:
        self.view = view
        self.reactor = reactor
        self.screen = urwid.display.raw.Screen()
        self.loop = urwid.MainLoop(
            view.screen, PALETTE, screen=self.screen, handle_mouse=False,
            event_loop=urwid.TwistedEventLoop(reactor=reactor, manage_reactor=False))
        self._draw_pending = False
        self.running = False

    def start(self) -> None:
        self.loop.start()
        self.screen.tty_signal_keys(intr="undefined", quit="undefined", susp="undefined",
                                    start="undefined", stop="undefined")
        self.running = True
        self.view.on_change = self._changed

    def _changed(self) -> None:
        if self.running and not self._draw_pending:
            self._draw_pending = True
            self.reactor.callLater(0, self._draw)

    def _draw(self) -> None:
        self._draw_pending = False
        if self.running:
            self.loop.draw_screen()

    def stop(self) -> None:
        """
        Restore the terminal (idempotent).
        """
        if self.running:
            self.running = False
            self.view.on_change = None
            self.loop.stop()
