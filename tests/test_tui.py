"""
Tests for the full-screen interface (L{securechat.client.tui}) without a
terminal: the urwid widgets are driven with synthetic keys
(C{widget.keypress}) and rendered to a canvas (C{widget.render(size).text}),
over real chat clients and a real relay on the in-memory network.
"""

from __future__ import annotations

import os

from twisted.trial import unittest

from securechat.client.cli import settings, wants_full_screen
from securechat.client.core import ChatClient
from securechat.client.pins import PinStore
from securechat.client.tui.view import FullScreen
from securechat.client.tui.widgets import NAME_COLOURS, PALETTE, name_attr
from securechat.client.tui.windows import PeerState, short_fingerprint
from securechat.crypto.handshake import CLIENT_SERVER, Config, Role
from securechat.protocol import SecureChatProtocol
from securechat.wire.messages import UserIdentity
from securechat.wire.relay import FROM_SERVER
from tests.relay_harness import Harness, user_key
from tests.test_client_core import verify_test_server

SIZE = (100, 30)


class Screen:
    """
    One user's full-screen view, driven by keys and rendered to text.
    """

    def __init__(self, harness: "TuiHarness", name: str) -> None:
        self.harness = harness
        self.name = name
        self.exits: list[str] = []
        self.view = FullScreen(name, "tcp:relay.test:7070", clock=lambda: 0.0,
                               on_exit=lambda: self.exits.append("exit"),
                               on_abort=lambda: self.exits.append("abort"))

    def press(self, *keys: str) -> None:
        for key in keys:
            self.view.screen.keypress(SIZE, key)
        self.harness.pump()

    def type(self, text: str, enter: bool = True) -> None:
        """
        Type C{text} key by key (and Enter).
        """
        for char in text:
            self.view.screen.keypress(SIZE, " " if char == " " else char)
        if enter:
            self.view.screen.keypress(SIZE, "enter")
        self.harness.pump()

    def rows(self, size: tuple[int, int] = SIZE) -> list[str]:
        canvas = self.view.screen.render(size, focus=True)
        return [row.decode("utf-8") for row in canvas.text]

    def text(self) -> str:
        return "\n".join(self.rows())

    def bar(self) -> str:
        return self.rows()[-2].rstrip()

    def input_row(self) -> str:
        return self.rows()[-1].rstrip()

    def window_text(self, number: int) -> str:
        window = self.view.windows.windows[number - 1]
        return "\n".join(line.prefix + (f"<{line.name}> " if line.name else "") + line.body
                         for line in window.lines)


class TuiHarness(Harness):
    def screen(self, name: str) -> Screen:
        screen = Screen(self, name)
        self.connect_screen(screen)
        return screen

    def connect_screen(self, screen: Screen) -> None:
        """
        Give C{screen} a new client and connect it (as the program does on
        every connection).
        """
        name = screen.name
        client = ChatClient(name, user_key(name), screen.view, verify_test_server,
                            PinStore(None), clock=lambda: 0.0)
        screen.view.client = client
        config = Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
                        registry=FROM_SERVER)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        self.links[name] = self.network.connect(proto, self.factory.buildProtocol(None))


def open_chat(a: Screen, b: Screen) -> None:
    a.type(f"/chat {b.name}")
    b.type(f"/accept {a.name}")


class TuiTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.h = TuiHarness()
        self.alice = self.h.screen("alice")
        self.bob = self.h.screen("bob")
        self.carol = self.h.screen("carol")


class InputTests(TuiTestCase):
    """
    The input line: never interrupted, history, completion, wrapping, paste.
    """

    def test_linesNeverInterruptTheInput(self) -> None:
        """
        A message arriving while a line is half typed goes into the window
        above; the input line keeps exactly what was typed, cursor included
        (issue 13: incoming lines landed in the middle of typing).
        """
        open_chat(self.alice, self.bob)
        self.alice.type("half-typed line", enter=False)
        self.bob.type("interrupting you")
        self.assertEqual(self.alice.view.screen.input.edit_text, "half-typed line")
        self.assertEqual(self.alice.view.screen.input.edit_pos, len("half-typed line"))
        rows = self.alice.rows()
        self.assertEqual(rows[-1].rstrip(), "[bob] half-typed line")
        self.assertTrue(any("<bob> interrupting you" in row for row in rows[:-2]))
        self.alice.type(" goes on")
        self.assertIn("<alice> half-typed line goes on", self.bob.text())

    def test_historyPerWindow(self) -> None:
        """
        Up and Down walk the current window's own history, and give back
        the line being typed at the end.
        """
        open_chat(self.alice, self.bob)
        self.alice.type("first")
        self.alice.type("second")
        self.alice.type("draft", enter=False)
        self.alice.press("up")
        self.assertEqual(self.alice.view.screen.input.edit_text, "second")
        self.alice.press("up")
        self.assertEqual(self.alice.view.screen.input.edit_text, "first")
        self.alice.press("up")
        self.assertEqual(self.alice.view.screen.input.edit_text, "first")
        self.alice.press("down", "down")
        self.assertEqual(self.alice.view.screen.input.edit_text, "draft")
        self.alice.view.screen.input.take()
        self.alice.press("meta 1", "up")
        self.assertEqual(self.alice.view.screen.input.edit_text, "/chat bob")

    def test_completion(self) -> None:
        """
        Tab completes a command as the first word, and a user name after
        it; with several matches it completes their common part and lists
        them.
        """
        self.alice.type("/onl", enter=False)
        self.alice.press("tab")
        self.assertEqual(self.alice.view.screen.input.edit_text, "/online ")
        self.alice.press("enter")
        self.alice.type("/chat b", enter=False)
        self.alice.press("tab")
        self.assertEqual(self.alice.view.screen.input.edit_text, "/chat bob ")
        self.alice.view.screen.input.take()
        self.alice.type("/c", enter=False)
        self.alice.press("tab")
        self.assertEqual(self.alice.view.screen.input.edit_text, "/c")
        self.assertIn("completions: /cancel /chat /close", self.alice.text())

    def test_longInputWraps(self) -> None:
        """
        A line longer than the screen is wide wraps onto more rows, above
        which the bar stays.
        """
        self.alice.type("x" * 150, enter=False)
        rows = self.alice.rows((60, 12))
        self.assertEqual(rows[-3].rstrip(), "[status] " + "x" * 51)
        self.assertIn("alice@relay.test:7070", rows[-4])

    def test_pasteSendsInOrder(self) -> None:
        """
        Pasted lines (keys with an Enter after each) are sent in order.
        """
        open_chat(self.alice, self.bob)
        for line in ("one", "two", "three"):
            for char in line:
                self.alice.view.screen.keypress(SIZE, char)
            self.alice.view.screen.keypress(SIZE, "enter")
        self.h.pump()
        received = [line.body for line in self.bob.view.windows.find("alice").lines  # type: ignore[union-attr]
                    if line.name == "alice"]
        self.assertEqual(received, ["one", "two", "three"])


class WindowTests(TuiTestCase):
    """
    A window per conversation, switching, unread counts.
    """

    def test_eachWindowOnlyItsConversation(self) -> None:
        """
        Two chats open: each peer's lines go to that peer's window only.
        """
        open_chat(self.alice, self.bob)
        open_chat(self.alice, self.carol)
        self.bob.type("from bob")
        self.carol.type("from carol")
        self.assertIn("<bob> from bob", self.alice.window_text(2))
        self.assertNotIn("from carol", self.alice.window_text(2))
        self.assertIn("<carol> from carol", self.alice.window_text(3))
        self.assertNotIn("from bob", self.alice.window_text(3))
        self.assertNotIn("from", self.alice.window_text(1))

    def test_switching(self) -> None:
        """
        Alt-number, Ctrl-N / Ctrl-P and /window N change the current
        window; a window that does not exist is refused in one line.
        """
        open_chat(self.alice, self.bob)
        open_chat(self.alice, self.carol)
        windows = self.alice.view.windows
        self.assertEqual(windows.current.peer, "carol")
        self.alice.press("meta 1")
        self.assertIsNone(windows.current.peer)
        self.alice.press("ctrl n")
        self.assertEqual(windows.current.peer, "bob")
        self.alice.press("ctrl p", "ctrl p")
        self.assertEqual(windows.current.peer, "carol")
        self.alice.type("/window 2")
        self.assertEqual(windows.current.peer, "bob")
        self.assertIn("[2:bob]", self.alice.bar())
        self.alice.type("/window 9")
        self.assertIn("! usage: /window N, N from 1 to 3", self.alice.text())
        self.alice.press("meta 7")
        self.assertIn("! there is no window 7", self.alice.text())
        self.assertEqual(windows.current.peer, "bob")

    def test_closeOnlyEndedWindows(self) -> None:
        """
        /close refuses the status window and a window whose chat is open,
        and closes one whose chat has ended, moving to the window before.
        """
        open_chat(self.alice, self.bob)
        self.alice.type("/close")
        self.assertIn("! the chat or request with bob is still open", self.alice.text())
        self.alice.type("/stop")
        self.alice.type("/close")
        self.assertEqual(len(self.alice.view.windows.windows), 1)
        self.assertIn("[1:status]", self.alice.bar())
        self.alice.type("/close")
        self.assertIn("! the status window stays open", self.alice.text())

    def test_unreadCounts(self) -> None:
        """
        Lines in a window not looked at count as unread in the bar's
        activity list, until the window is visited.
        """
        open_chat(self.alice, self.bob)
        self.alice.press("meta 1")
        self.bob.type("one")
        self.bob.type("two")
        self.assertIn("act: 2:bob(2)", self.alice.bar())
        self.alice.press("meta 2")
        self.assertNotIn("act:", self.alice.bar())
        self.assertEqual(self.alice.view.windows.current.unread, 0)


class StatusBarTests(TuiTestCase):
    """
    The status bar shows who, where, the connection, and the current
    conversation's state.
    """

    def test_statesInTurn(self) -> None:
        """
        Logged in and connected; requested; asks to chat; end-to-end
        encrypted with the short fingerprint; ended; reconnecting (in N s
        once the retry is scheduled); connected again.
        """
        bar = self.alice.bar()
        self.assertIn("alice@relay.test:7070 connected | [1:status]", bar)
        self.alice.type("/chat bob")
        self.assertIn("[2:bob] requested", self.alice.bar())
        self.bob.press("meta 2")
        self.assertIn("[2:alice] asks to chat", self.bob.bar())
        self.bob.type("/accept")
        fp = self.alice.view.client.fingerprint("bob")  # type: ignore[union-attr]
        assert fp is not None
        self.assertIn(f"[2:bob] e2e encrypted {short_fingerprint(fp)}", self.alice.bar())
        self.assertLessEqual(len(self.alice.bar()), 80)
        self.assertRegex(short_fingerprint(fp), r"^SHA256:\S{8}$")
        self.bob.type("/stop")
        self.assertIn("[2:bob] ended", self.alice.bar())
        self.h.links["alice"].close(ConnectionError())
        self.assertIn("alice@relay.test:7070 reconnecting |", self.alice.bar())
        self.alice.view.retrying_in(2.6)
        self.assertIn("alice@relay.test:7070 reconnecting in 3 s |", self.alice.bar())
        self.h.connect_screen(self.alice)
        self.assertIn("alice@relay.test:7070 connected | [2:bob] ended", self.alice.bar())

    def test_securing(self) -> None:
        """
        Between the accept and the end-to-end handshake's end the state is
        "securing".
        """
        self.alice.type("/chat bob")
        self.alice.view.chat_opened("bob", "SHA256:abcdefghijkl", False)
        self.assertIn("[2:bob] securing", self.alice.bar())

    def test_keyChanged(self) -> None:
        """
        A changed key shows as KEY CHANGED in the bar, and as a trust line
        in the window.
        """
        self.alice.type("/chat bob")
        self.alice.view.key_changed("bob", "SHA256:old", "SHA256:new")
        self.assertIn("[2:bob] KEY CHANGED", self.alice.bar())
        self.assertIn("!!! WARNING: bob's key CHANGED", self.alice.text())
        self.assertEqual(self.alice.view.windows.current.state, PeerState.KEY_CHANGED)


class SendingTests(TuiTestCase):
    """
    Where a line goes: the current window's chat only; commands never.
    """

    def test_plainLineOnlyToCurrentWindowPeer(self) -> None:
        """
        With chats open with bob and carol, a line typed in carol's window
        reaches carol and nobody else, whatever it looks like (issue 13: a
        line "alice: ..." went to bob).
        """
        open_chat(self.alice, self.bob)
        open_chat(self.alice, self.carol)
        self.alice.press("meta 3")
        self.alice.type("bob: meant for carol")
        self.assertIn("<alice> bob: meant for carol", self.carol.text())
        self.assertNotIn("meant for", self.bob.window_text(2))
        self.assertIn("<alice> bob: meant for carol", self.alice.window_text(3))

    def test_statusWindowRefuses(self) -> None:
        """
        A plain line in the status window is refused with a hint, sent to
        nobody.
        """
        open_chat(self.alice, self.bob)
        self.alice.press("meta 1")
        self.alice.type("hello?")
        self.assertIn("! this is the status window: nothing typed here is sent", self.alice.text())
        self.assertNotIn("hello?", self.bob.window_text(2))

    def test_endedWindowRefuses(self) -> None:
        """
        A line in a window whose chat ended is refused, saying why.
        """
        open_chat(self.alice, self.bob)
        self.bob.type("/stop")
        self.alice.type("anyone there?")
        self.assertIn("! the chat with bob has ended (/chat bob asks again); not sent",
                      self.alice.text())

    def test_helpAndQuitNotSent(self) -> None:
        """
        /help, /quit and an unknown /command are handled here: the peer
        receives none of them; //text sends /text.
        """
        open_chat(self.alice, self.bob)
        self.alice.type("/help")
        self.assertIn("/chat USER", self.alice.text())
        self.alice.type("/frobnicate")
        self.assertIn("! unknown command /frobnicate, not sent", self.alice.text())
        self.alice.type("//shrug")
        self.alice.type("/quit")
        lines = [line.body for line in self.bob.view.windows.windows[1].lines if line.name]
        self.assertEqual(lines, ["/shrug"])
        self.assertEqual(self.alice.exits, ["exit"])

    def test_bangSynonym(self) -> None:
        """
        The line mode's !commands work too (!! sends a line starting
        with !).
        """
        self.alice.type("!online")
        self.assertIn("* online: alice, bob, carol", self.alice.text())
        open_chat(self.alice, self.bob)
        self.alice.type("!!wow")
        self.assertIn("<alice> !wow", self.bob.text())

    def test_notConnectedRefusedAtOnce(self) -> None:
        """
        Before the login (or while reconnecting) a command that needs the
        relay, or a line of text, is refused at once, never kept for
        later; /help and /window still work.
        """
        view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
        for key in "/chat bob":
            view.screen.keypress(SIZE, key)
        view.screen.keypress(SIZE, "enter")
        view.commands.submit("/help")
        view.commands.submit("/window 1")
        text = "\n".join(line.body for line in view.windows.status.lines)
        self.assertIn("not connected to the relay; /chat not run", text)
        self.assertIn("/chat USER", text)
        self.assertNotIn("usage: /window", text)
        self.assertEqual(len(view.windows.windows), 1)

    def test_msgCommand(self) -> None:
        """
        /msg USER TEXT goes to an open chat with USER only, refused
        otherwise.
        """
        open_chat(self.alice, self.bob)
        self.alice.press("meta 1")
        self.alice.type("/msg bob hi there")
        self.assertIn("<alice> hi there", self.bob.text())
        self.alice.type("/msg carol hi")
        self.assertIn("! no open chat with carol; not sent (/chat carol first)",
                      self.alice.text())


class QuitTests(TuiTestCase):
    """
    Ctrl-C ends every chat cleanly, like /quit.
    """

    def test_ctrlCEndsChatsCleanly(self) -> None:
        """
        Ctrl-C sends each peer an authenticated END (they see the chat
        ended by us, with the count confirmed), logs out and exits; a
        second Ctrl-C aborts.
        """
        open_chat(self.alice, self.bob)
        open_chat(self.alice, self.carol)
        self.alice.type("one line")
        self.alice.press("ctrl c")
        self.assertEqual(self.alice.exits, ["exit"])
        self.assertIn("chat with alice ended by alice (0 messages received)", self.bob.text())
        self.assertIn("chat with alice ended by alice (1 messages received)",
                      self.carol.text())
        self.alice.press("ctrl c")
        self.assertEqual(self.alice.exits, ["exit", "abort"])


class LookTests(unittest.TestCase):
    """
    Layout, colours and resizing.
    """

    def test_monochromeFallback(self) -> None:
        """
        Trust events, errors, our own lines and the bar look different on
        a terminal without colours too.
        """
        mono = {entry[0]: entry[3] for entry in PALETTE}
        for name in ("trust", "error", "own", "bar", "bar-alert"):
            self.assertTrue(mono[name], name)
        self.assertNotEqual(mono["trust"], mono["own"])

    def test_resize(self) -> None:
        """
        Any size renders the lines, the bar and the input line in place.
        """
        view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
        view.message("bob", 0.0, "a message long enough to wrap on a narrow screen " * 2)
        view.windows.switch_to(2)
        for size in ((100, 30), (30, 8), (20, 4)):
            rows = [r.decode() for r in view.screen.render(size, focus=True).text]
            self.assertEqual(len(rows), size[1])
            self.assertTrue(rows[-1].startswith("[bob]"), rows)
            self.assertIn("alice", rows[-2])

    def test_namesInStableColoursOwnLinesBold(self) -> None:
        """
        A peer's name takes a colour chosen by a hash of the name that is
        the same in every process (not Python's salted hash()); our own
        lines use the "own" style (bold without colours), a peer's text the
        plain one, and a trust event the "trust" style.
        """
        import hashlib
        expected = f"name{hashlib.sha256(b'bob').digest()[0] % len(NAME_COLOURS)}"
        self.assertEqual(name_attr("bob"), expected)
        view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
        view.message("bob", 0.0, "hi")
        view.echo("bob", "yo")
        view.security_error("bob", "end-to-end check failed")
        view.windows.switch_to(2)
        rows = [[(attr, text.decode()) for attr, _, text in row]
                for row in view.screen.render((60, 6), focus=True).content()]
        self.assertIn((expected, "<bob>"), rows[0])
        self.assertIn(("peer", "hi"), rows[0])
        self.assertIn(("own", "<alice>"), rows[1])
        self.assertIn(("own", "yo"), rows[1])
        self.assertEqual(rows[2][0][0], "trust")

    def test_peerTextCannotImitateTrustEvents(self) -> None:
        """
        A peer's line, even one wrapping onto more rows, never starts a
        row where our markers are: its rows are indented after the time
        and name.
        """
        view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
        view.message("bob", 0.0, "x" * 20 + "!!! WARNING: carol's key CHANGED")
        view.windows.switch_to(2)
        rows = [r.decode() for r in view.screen.render((40, 10), focus=True).text]
        body = [r for r in rows if "WARNING" in r or "xxx" in r]
        self.assertEqual(len(body), 2)
        self.assertRegex(body[0], r"^\d\d:\d\d <bob> x{20}")
        self.assertTrue(body[1].startswith(" " * len("00:00 <bob> ")), body)


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class ModeTests(unittest.TestCase):
    """
    Which interface the client runs.
    """

    def conf(self, *argv: str) -> dict[str, object]:
        config = os.path.join(self.mktemp(), "none.ini")
        return settings(["--config", config, "--ca", "ca.pem", "--user", "alice",
                         "--key", "k.pem", *argv])

    def test_fullScreenOnlyOnATerminal(self) -> None:
        """
        The full screen runs when standard input and output are both a
        terminal; piped input or output keeps the line mode (scripts and
        the end-to-end tests rely on it), and so does --line (or --plain).
        """
        tty, pipe = _Stream(True), _Stream(False)
        conf = self.conf()
        self.assertTrue(wants_full_screen(conf, tty, tty))  # type: ignore[arg-type]
        self.assertFalse(wants_full_screen(conf, pipe, tty))  # type: ignore[arg-type]
        self.assertFalse(wants_full_screen(conf, tty, pipe))  # type: ignore[arg-type]
        for flag in ("--line", "--plain"):
            self.assertFalse(wants_full_screen(self.conf(flag), tty, tty))  # type: ignore[arg-type]


class LineModeSlashTests(unittest.TestCase):
    """
    The line mode takes /commands too, so none is sent to a peer as text
    (issue 13: /help and /quit were sent as messages).
    """

    def test_slashCommandsInLineMode(self) -> None:
        """
        /help lists the commands, //text sends /text, and /quit exits:
        the peer receives only "/text".
        """
        from tests.test_terminal import TerminalHarness
        h = TerminalHarness()
        alice, sa = h.terminal("alice")
        bob, sb = h.terminal("bob")
        h.type(alice, "/chat bob")
        h.type(bob, "/accept")
        sa.take()
        sb.take()
        h.type(alice, "/help")
        self.assertIn("    !online               who is online", sa.take())
        h.type(alice, "//shrug")
        h.type(alice, "/quit")
        self.assertEqual(alice.exits, [True])  # type: ignore[attr-defined]
        said = [line for line in sb.take() if "alice:" in line]
        self.assertEqual(len(said), 1)
        self.assertTrue(said[0].endswith("] alice: /shrug"), said)
