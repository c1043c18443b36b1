# -*- test-case-name: tests.test_tui -*-
"""
L{FullScreen}: the full-screen interface as a L{ChatView} of the client
core.  Each thing that happened becomes a line in the window it belongs to
(a conversation's own window, or the status window for relay events), and
the status bar follows the state.  What the user types is handled by its
L{Commands} (lines) and L{Keys} (keys).

Every text field that reaches a window goes through L{Window.add}, which
neutralises it (L{securechat.client.display.untrusted}); the status bar and
the input caption neutralise theirs in the widgets.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from securechat.client.core import ChatClient
from securechat.client.groupview import GroupLines
from securechat.client.letterview import LetterLines, key_changed_words
from securechat.client.reasons import reason_name
from securechat.client.terminal import _DECLINED, _WITHDRAWN, ended_text, failure_template
from securechat.client.tui.commands import Commands
from securechat.client.tui.keys import Keys
from securechat.client.tui.widgets import ChatScreen
from securechat.client.tui.windows import Activity, Line, PeerState, Style, Window, WindowList
from securechat.wire.relay import Reason

#: Conversation states that end when the relay connection does (the core
#: forgets requests then, and ends every chat).
_OPEN_STATES = (PeerState.ASKED, PeerState.REQUESTED, PeerState.SECURING, PeerState.SECURE)


def slash(template: str) -> str:
    """
    A line-mode template with its C{!command} hints in C{/command} form.
    """
    return template.replace("!", "/")


class FullScreen(LetterLines, GroupLines):
    """
    The full-screen view: windows, status bar, input line.

    It offers what L{securechat.client.cli.RelaySession} needs of a front
    end (C{client}, C{say}, C{exiting}, C{was_logged_in}, C{input_ended},
    C{login_abandoned}), like the line terminal.

    @ivar on_exit: called once the user quit (after the chats were ended).
    @ivar on_abort: called on a second Ctrl-C: leave at once.
    @ivar on_change: called after anything on screen changed (the program
        redraws then; tests render when they like).
    """

    def __init__(self, user: str, relay: str, clock: Callable[[], float] = time.time,
                 on_exit: Callable[[], None] | None = None,
                 on_abort: Callable[[], None] | None = None) -> None:
        self.user = user
        self.relay = relay
        #: The relay as the bar shows it (C{tcp:} is the default, left out).
        self.relay_name = relay[4:] if relay.startswith("tcp:") else relay
        self.clock = clock
        self.on_exit = on_exit
        self.on_abort = on_abort
        self.on_change: Callable[[], None] | None = None
        self.client: ChatClient | None = None
        self.connection = "connecting"
        self.exiting = False
        self.was_logged_in = False
        #: Never set: a full screen's input ends only with /quit or Ctrl-C.
        self.input_ended = False
        #: Names seen in the last online list (for completion).
        self.seen_names: set[str] = set()
        self.notices = 0
        self.commands = Commands(self)
        self.keys = Keys(self)
        self.windows = WindowList()
        self.windows.on_switch = self._switched
        self.screen = ChatScreen(self.keys.key)
        self._watch(self.windows.status)
        self._switched(self.windows.status)
        self.put(self.windows.status, "*", f"connecting to {relay} as {user}...")

    # -- output -------------------------------------------------------------

    def _watch(self, window: Window) -> None:
        def added(line: Line) -> None:
            if window is self.windows.current:
                self.screen.append(line)
        window.on_line = added

    def window_for(self, peer: str) -> Window:
        """
        C{peer}'s window, opened if there is none.
        """
        window = self.windows.find(peer)
        if window is None:
            window = self.windows.open(peer)
            self._watch(window)
        return window

    def put(self, window: Window, marker: str, text: str, style: Style = Style.EVENT,
            activity: Activity = Activity.EVENT) -> None:
        """
        One line in C{window}: our marker (C{*}, C{!}, C{!!!}) and the text.
        """
        window.add(f"{self._stamp()} {marker} ", text, style)
        self.windows.mark(window, activity)
        self.refresh()

    def mailbox_window(self) -> Window:
        """
        The mailbox window (letters, receipts, the user list), opened if
        there is none.
        """
        window = self.windows.find_mailbox()
        if window is None:
            window = Window(None, mailbox=True)
            self.windows.windows.append(window)
            self._watch(window)
        return window

    def letter_line(self, text: str, alert: bool = False) -> None:
        """
        A letter event: a line in the mailbox window (through L{put}, whose
        L{Window.add} neutralises it).
        """
        self.put(self.mailbox_window(), "!" if alert else "*", text,
                 Style.ERROR if alert else Style.EVENT,
                 Activity.MESSAGE if alert else Activity.EVENT)

    #: The group whose event is being shown (its window gets the lines).
    _group: str | None = None

    def group_window(self, group: str) -> Window:
        """The window of the group named C{group}, opened if there is none."""
        window = self.windows.find_group(group)
        if window is None:
            window = Window(None, group=group)
            self.windows.windows.append(window)
            self._watch(window)
        return window

    def group_event(self, group: str, event: Any) -> None:
        self._group = group
        try:
            GroupLines.group_event(self, group, event)
        finally:
            self._group = None

    def group_changed(self, group: str, epoch: int, action: Any, actor: str, target: str = "",
                      new_name: str = "", group_id: bytes = b"") -> None:
        self._group = group
        try:
            GroupLines.group_changed(self, group, epoch, action, actor, target, new_name)
        finally:
            self._group = None

    def group_notice(self, group: str, text: str, alert: bool = False, group_id: bytes = b"") -> None:
        self._group = group
        try:
            GroupLines.group_notice(self, group, text, alert)
        finally:
            self._group = None

    def group_line(self, text: str, alert: bool = False) -> None:
        """
        A group's line or event, marked with the group's name, in the
        group's window (lists in the status window), through L{put}, which
        neutralises it.
        """
        window = self.windows.status if self._group is None else self.group_window(self._group)
        marker = text[0] if text[:2] in ("* ", "! ") else ""
        peer_line = not marker and window is not self.windows.status
        self.put(window, marker, text[2:] if marker else text,
                 Style.ERROR if alert else (Style.PEER if peer_line else Style.EVENT),
                 Activity.MESSAGE if alert or peer_line else Activity.EVENT)

    def _stamp(self, at: float | None = None) -> str:
        return time.strftime("%H:%M", time.localtime(self.clock() if at is None else at))

    def say(self, text: str) -> None:
        """
        One line in the status window (what the program says about the
        relay connection, as the line terminal's C{say}).
        """
        marker, _, rest = text.partition(" ")
        if marker in ("*", "!", "!!!"):
            style = {"*": Style.EVENT, "!": Style.ERROR, "!!!": Style.TRUST}[marker]
            if rest.startswith("reconnecting"):
                self.connection = "reconnecting"
            self.put(self.windows.status, marker, rest, style)
        else:
            self.put(self.windows.status, "*", text)

    def reply(self, text: str, error: bool = False) -> None:
        """
        The answer to something the user typed, in the current window.
        """
        self.put(self.windows.current, "!" if error else "*", text,
                 Style.ERROR if error else Style.EVENT)

    def refresh(self) -> None:
        """
        Redraw the status bar and caption from the current state.
        """
        current = self.windows.current
        number = self.windows.number(current)
        parts: list[tuple[str, str]] = [
            ("bar", f" {self.user}@{self.relay_name} {self.connection} | "
                    f"[{number}:{current.title}]")]
        state = current.status()
        if state:
            alert = current.state in (PeerState.KEY_CHANGED, PeerState.ASKED)
            parts.append(("bar-alert" if alert else "bar", f" {state}"))
        hot = self.windows.hotlist()
        if hot:
            parts.append(("bar", " | act: "))
            for i, (n, window) in enumerate(hot):
                label = str(n) if window.peer is None else f"{n}:{window.title}({window.unread})"
                parts.append(("bar-alert" if window.activity >= Activity.ALERT else "bar",
                              ("," if i else "") + label))
        self.screen.set_bar(parts)
        self.screen.set_caption(f"[{current.title}] ")
        if self.on_change is not None:
            self.on_change()

    def _switched(self, window: Window) -> None:
        self.keys.history_pos = None
        self.screen.show(window.lines)
        self.refresh()

    # -- what RelaySession needs of a front end -------------------------------

    def login_abandoned(self) -> None:
        """
        The client gives up before its first login: nothing typed waits
        (commands typed before the login were refused at once).
        """

    def exit(self) -> None:
        """
        End every chat with its authenticated END, log out, then leave.
        """
        if self.exiting:
            return
        self.exiting = True
        client = self.client
        if client is not None and client.logged_in:
            if client.chats:
                self.put(self.windows.status, "*", f"ending {len(client.chats)} chat(s) and "
                         "logging out (Ctrl-C again quits at once)")
            client.logout()
        if self.on_exit is not None:
            self.on_exit()

    def interrupt(self) -> None:
        """
        Ctrl-C: the first does what /quit does; a second leaves at once.
        """
        if not self.exiting:
            self.exit()
        elif self.on_abort is not None:
            self.on_abort()

    def retrying_in(self, delay: float) -> None:
        """
        The next attempt to reach the relay is C{delay} seconds away.
        """
        if not self.exiting:
            self.connection = f"reconnecting in {max(1, round(delay))} s"
            self.refresh()

    # -- ChatView -------------------------------------------------------------

    def logged_in(self, user: str) -> None:
        self.connection = "connected"
        self.was_logged_in = True
        self.put(self.windows.status, "*", f"logged in as {user}; /help lists the commands, "
                 "Alt-1..9 or Ctrl-N/Ctrl-P switch windows")

    def online(self, users: tuple[str, ...], total: int) -> None:
        self.seen_names = set(users)
        more = f" (and {total - len(users)} more)" if total > len(users) else ""
        self.reply(f"online: {', '.join(users)}{more}")

    def chat_requested(self, requester: str) -> None:
        window = self.window_for(requester)
        window.state = PeerState.ASKED
        self.put(window, "*", f"{requester} wants to chat: /accept or /refuse",
                 activity=Activity.ALERT)
        self.put(self.windows.status, "*", f"{requester} wants to chat (window "
                 f"{self.windows.number(window)}): /accept {requester} or /refuse {requester}",
                 activity=Activity.ALERT)

    def request_pending(self, peer: str) -> None:
        window = self.window_for(peer)
        window.state = PeerState.REQUESTED
        self.put(window, "*", f"{peer} has been asked to chat; waiting for an answer "
                 f"(/cancel withdraws)")

    def mark_ended(self, peer: str, text: str, style: Style = Style.EVENT) -> None:
        window = self.windows.find(peer)
        if window is None:
            self.put(self.windows.status, "*", text, style)
            return
        window.state = PeerState.ENDED
        self.put(window, "*" if style is Style.EVENT else "!", text, style)

    def chat_declined(self, peer: str, reason: Reason | int) -> None:
        template = slash(_DECLINED.get(reason, "your chat request to {peer} ended: {why}"))
        self.mark_ended(peer, template.format(peer=peer, why=reason_name(reason)))

    def request_withdrawn(self, requester: str, reason: Reason | int) -> None:
        template = slash(_WITHDRAWN.get(reason, "the chat request from {peer} is gone: {why}"))
        self.mark_ended(requester, template.format(peer=requester, why=reason_name(reason)))

    def chat_opened(self, peer: str, fingerprint: str, first_use: bool) -> None:
        window = self.window_for(peer)
        window.state = PeerState.SECURING
        window.fingerprint = fingerprint
        if first_use:
            self.put(window, "!!!", f"first chat with {peer}: key {fingerprint} pinned; "
                     f"compare it with {peer} out of band", Style.TRUST, Activity.ALERT)
        else:
            self.put(window, "*", f"securing the chat with {peer}, key {fingerprint} (as pinned)")

    def chat_secured(self, peer: str) -> None:
        window = self.window_for(peer)
        window.state = PeerState.SECURE
        self.put(window, "*", f"chat with {peer} is end-to-end encrypted; type to talk, "
                 "/stop to end")

    def key_changed(self, peer: str, pinned: str, offered: str, letter: bool = False) -> None:
        window = self.window_for(peer)
        window.state = PeerState.KEY_CHANGED
        refused, retry = key_changed_words(peer, letter)
        text = (f"WARNING: {peer}'s key CHANGED: pinned {pinned}, the relay now offers "
                f"{offered}. {refused} If {peer} confirms the new fingerprint "
                f"out of band, run /trust {peer}{retry}")
        self.put(window, "!!!", text, Style.TRUST, Activity.ALERT)
        if window is not self.windows.current:
            self.put(self.windows.status, "!!!", f"{peer}'s key CHANGED (window "
                     f"{self.windows.number(window)})", Style.TRUST, Activity.ALERT)

    def message(self, peer: str, sent_at: float, text: str) -> None:
        window = self.window_for(peer)
        window.add(f"{self._stamp(sent_at)} ", text, Style.PEER, name=peer)
        self.windows.mark(window, Activity.MESSAGE)
        self.refresh()

    def echo(self, peer: str, text: str) -> None:
        """
        Our own line, as sent to C{peer}, in C{peer}'s window.
        """
        window = self.window_for(peer)
        window.add(f"{self._stamp()} ", text, Style.OWN, name=self.user)
        self.refresh()

    def chat_ended(self, peer: str, outcome: str) -> None:
        truncated = outcome.startswith("TRUNC")
        text = ended_text(peer, outcome)
        self.mark_ended(peer, text, Style.TRUST if truncated else Style.EVENT)

    def security_error(self, peer: str, detail: str) -> None:
        window = self.window_for(peer)
        self.put(window, "!!!", f"chat with {peer}: {detail}", Style.TRUST, Activity.ALERT)

    def command_failed(self, command: str, subject: str, reason: Reason | int) -> None:
        template = slash(failure_template(self.client, command, subject, reason))
        window = self.windows.find(subject) or self.windows.current
        if command == "chat" and reason is not Reason.ALREADY and window.peer == subject:
            window.state = PeerState.ENDED
        self.put(window, "!", template.format(peer=subject, command=command,
                                              why=reason_name(reason)), Style.ERROR)

    def notice(self, text: str) -> None:
        self.notices += 1
        self.reply(text, error=True)

    def disconnected(self, reason: str | None) -> None:
        for window in self.windows.windows[1:]:
            if window.state in _OPEN_STATES:
                window.state = PeerState.ENDED
        self.connection = "disconnected" if self.exiting else "reconnecting"
        if reason is not None:
            self.put(self.windows.status, "!", f"disconnected: {reason}", Style.ERROR)
        elif not self.exiting:
            self.put(self.windows.status, "!", "disconnected", Style.ERROR)
        else:
            self.refresh()
