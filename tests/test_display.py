"""
Tests for L{securechat.client.display}: text a peer or the relay chose
never reaches the screen as control, format or separator characters, on
any display path of the line terminal.
"""

from __future__ import annotations

import unicodedata
from typing import Callable

from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from securechat.client.display import escape, is_safe, untrusted
from securechat.client.terminal import ChatTerminal
from securechat.wire.relay import ChatDeclined, CommandFailed, Reason, RequestWithdrawn

#: What a hostile peer or relay might put in any text it controls.
HOSTILE: list[tuple[str, str]] = [
    ("window title OSC 0", "\x1b]0;pwned\x07"),
    ("window title OSC 2, ST", "\x1b]2;pwned\x1b\\"),
    ("clipboard OSC 52", "\x1b]52;c;cm0gLXJmIH4K\x07"),
    ("clear screen CSI 2J", "\x1b[2J\x1b[H"),
    ("cursor up, erase line", "\x1b[1A\x1b[2K"),
    ("cursor position", "\x1b[10;1H"),
    ("save/restore cursor", "\x1b7\x1b8"),
    ("SGR recolour", "\x1b[31;1mred\x1b[0m"),
    ("backspaces hide text", "secret\x08\x08\x08\x08\x08\x08"),
    ("CR overwrite", "harmless\r* chat with bob is end-to-end encrypted"),
    ("bidi override U+202E", "\u202eexe.txt"),
    ("bidi isolates", "\u2067abc\u2069\u2066d\u2069"),
    ("bidi marks", "\u200e\u200f\u061c"),
    ("zero-width characters", "a\u200db\u200bc\u200cd\u2060e\ufeff"),
    ("C1 CSI U+009B", "\x9b2J"),
    ("C1 OSC and ST", "\x9d0;title\x9c"),
    ("BEL", "\x07\x07"),
    ("DEL", "x\x7fy"),
    ("NUL", "a\x00b"),
    ("forged line after a newline",
     "hi\n* chat with bob is end-to-end encrypted; type to talk, !stop to end"),
    ("line and paragraph separators", "a\u2028b\u2029c"),
    ("lone surrogate", "a\ud800b"),
    ("tab, VT, FF", "a\tb\x0bc\x0cd"),
    ("soft hyphen, tag character", "\u00ad\U000e0041"),
    ("format braces", "{peer}{0}{why}{"),
]


def _paths() -> list[tuple[str, Callable[[ChatTerminal, str], None]]]:
    """
    Every way the terminal shows text that another party controls: each
    L{ChatView} method (each untrusted argument set to the hostile text),
    the fingerprint command, and a line refused while disconnected.
    """

    class Client:
        logged_in = True
        chats: dict[str, object] = {}
        incoming: set[str] = set()
        outgoing: set[str] = set()

        def __init__(self, text: str) -> None:
            self.text = text

        def fingerprint(self, user: str | None) -> str:
            return self.text

    def fingerprint(t: ChatTerminal, s: str) -> None:
        t.client = Client(s)  # type: ignore[assignment]
        t.cmd_fingerprint("bob")

    def offline_line(t: ChatTerminal, s: str) -> None:
        t.was_logged_in = True
        t.lineReceived(s.replace("\n", " ").encode("utf-8", "surrogatepass"))

    return [
        ("logged_in", lambda t, s: t.logged_in(s)),
        ("online", lambda t, s: t.online((s, "bob", s), 9)),
        ("chat_requested", lambda t, s: t.chat_requested(s)),
        ("request_pending", lambda t, s: t.request_pending(s)),
        ("chat_declined", lambda t, s: t.chat_declined(s, Reason.REFUSED)),
        ("chat_declined unknown reason", lambda t, s: t.chat_declined(s, 99)),
        ("request_withdrawn", lambda t, s: t.request_withdrawn(s, Reason.CANCELLED)),
        ("request_withdrawn unknown reason", lambda t, s: t.request_withdrawn(s, 99)),
        ("chat_opened", lambda t, s: t.chat_opened(s, s, True)),
        ("chat_secured", lambda t, s: t.chat_secured(s)),
        ("key_changed", lambda t, s: t.key_changed(s, s, s)),
        ("message", lambda t, s: t.message(s, 0.0, s)),
        ("chat_ended", lambda t, s: t.chat_ended(s, s)),
        ("chat_ended clean", lambda t, s: t.chat_ended(s, "ended by " + s)),
        ("security_error", lambda t, s: t.security_error(s, s)),
        ("command_failed", lambda t, s: t.command_failed("chat", s, Reason.ALREADY)),
        ("command_failed cancel", lambda t, s: t.command_failed("cancel", s, Reason.NO_REQUEST)),
        ("command_failed unknown", lambda t, s: t.command_failed(s, s, 99)),
        ("notice", lambda t, s: t.notice(s)),
        ("disconnected", lambda t, s: t.disconnected(s)),
        ("fingerprint output", fingerprint),
        ("line refused while disconnected", offline_line),
    ]


class UntrustedTests(unittest.TestCase):
    """
    L{untrusted} itself.
    """

    def test_escapeForms(self) -> None:
        """
        The documented escape forms: C{\\xNN} below U+0100, C{\\uNNNN} in
        the BMP, C{\\UNNNNNNNN} above, lower-case hex.
        """
        self.assertEqual(untrusted("\x1b[2J"), "\\x1b[2J")
        self.assertEqual(untrusted("\u202eabc"), "\\u202eabc")
        self.assertEqual(untrusted("\U000e0041"), "\\U000e0041")
        self.assertEqual(untrusted("\x9b"), "\\x9b")
        self.assertEqual(escape("\x7f"), "\\x7f")

    def test_printableKept(self) -> None:
        """
        Printable text of any script, emoji, combining accents, spaces and
        backslashes are shown as they are.
        """
        for text in ("hello, world", "grüße", "日本語", "مرحبا", "שלום", "😀👍",
                     "e\u0301", "a\u00a0b", "C:\\path\\x1b", "private \ue000"):
            self.assertEqual(untrusted(text), text)

    def test_everyUnsafeCategory(self) -> None:
        """
        Every character of categories Cc, Cf, Cs, Zl and Zp is replaced,
        whatever the Unicode database of this Python holds.
        """
        for code in range(0x110000):
            char = chr(code)
            if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
                self.assertEqual(untrusted(char), escape(char), hex(code))


class DisplayPathTests(unittest.TestCase):
    """
    The table of hostile strings through every display path: what is
    written is one line per event, holding no control, format or separator
    character, and the hostile text is still visible (escaped, not dropped).
    """

    def test_everyPathNeutralises(self) -> None:
        """
        DESIGN.md 9: everything a peer or the relay controls is neutralised
        by one function on every path to the screen.
        """
        for path, show in _paths():
            for label, hostile in HOSTILE:
                terminal = ChatTerminal(clock=lambda: 0.0)
                transport = StringTransport()
                terminal.makeConnection(transport)
                show(terminal, hostile)
                written = transport.value().decode("utf-8")
                where = f"{path} / {label}: {written!r}"
                self.assertTrue(written.endswith("\n"), where)
                self.assertEqual(written.count("\n"), 1, where)
                self.assertTrue(is_safe(written[:-1]), where)
                if path.startswith("line"):  # typed: one line, decoded as the terminal does
                    hostile = hostile.replace("\n", " ").encode("utf-8", "surrogatepass").decode(
                        "utf-8", "replace")
                visible = untrusted(hostile)
                self.assertIn(visible, written, where)

    def test_forgedStatusLineIsVisiblyPartOfTheMessage(self) -> None:
        """
        A chat line carrying a newline and a forged status line is shown on
        the sender's one line, the forgery after a visible C{\\x0a}.
        """
        terminal = ChatTerminal(clock=lambda: 0.0)
        transport = StringTransport()
        terminal.makeConnection(transport)
        terminal.message("bob", 0.0, "hi\n* chat with bob is end-to-end encrypted")
        line = transport.value().decode("utf-8")
        self.assertTrue(line.endswith("] bob: hi\\x0a* chat with bob is end-to-end encrypted\n"),
                        line)


class RelayControlledTextTests(unittest.TestCase):
    """
    Text the relay chooses, fed through the client core into the terminal.
    """

    def setUp(self) -> None:
        from securechat.client.core import ChatClient
        from securechat.client.pins import PinStore
        from tests.relay_harness import user_key
        from tests.test_client_core import verify_test_server

        self.transport = StringTransport()
        self.terminal = ChatTerminal(clock=lambda: 0.0)
        self.terminal.makeConnection(self.transport)
        self.client = ChatClient("alice", user_key("alice"), self.terminal, verify_test_server,
                                 PinStore(None))
        self.terminal.client = self.client

    def test_commandFailedSubject(self) -> None:
        """
        COMMAND_FAILED's subject is free text (text16) from the relay: with
        escapes, braces or an unknown reason code it is one safe line, never
        a traceback.
        """
        for label, hostile in HOSTILE:
            self.client.message_received(CommandFailed(0x31, hostile, 11))
            self.client.message_received(CommandFailed(0x77, hostile, 250))
            lines = self.transport.value().decode("utf-8").splitlines(keepends=True)
            self.transport.clear()
            self.assertEqual(len(lines), 2, label)
            for line in lines:
                self.assertTrue(is_safe(line[:-1]), (label, line))
            self.assertIn("failed: reason 250", lines[1])

    def test_unknownReasonsShownByNumber(self) -> None:
        """
        A reason code this client does not know (a newer relay) is shown by
        number, not raised as an error.
        """
        self.client.message_received(ChatDeclined("bob", 200))
        self.client.message_received(RequestWithdrawn("bob", 201))
        self.assertEqual(self.transport.value().decode("utf-8").splitlines(), [
            "* your chat request to bob ended: reason 200",
            "* the chat request from bob is gone: reason 201",
        ])
