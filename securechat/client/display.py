# -*- test-case-name: tests.test_display -*-
"""
Neutralising text that a peer or the relay chose, before it reaches a
screen.

Everything another party controls (chat lines, user names, reasons, notices,
the relay's words when it ends a connection) is untrusted text: written raw
to a terminal it could set the window title, write the clipboard, clear or
redraw the screen, recolour, hide or reverse text.  L{untrusted} is the one
function that makes such text safe to show, and every view calls it on
every path to a screen (DESIGN.md, section 9): the line terminal passes each
whole line through it; a full-screen view or an IRC gateway must do the
same for each field.

What is replaced, each character by a visible escape:

  - control characters (Unicode category Cc): C0 U+0000-U+001F (NUL, BEL,
    BS, TAB, LF, CR, ESC...), DEL U+007F and C1 U+0080-U+009F (including
    the one-character CSI U+009B);
  - format characters (Cf): bidi embeddings, overrides and isolates
    (U+202A-U+202E, U+2066-U+2069), marks (U+200E, U+200F, U+061C),
    zero-width characters (U+200B-U+200D, U+2060, U+FEFF), soft hyphen and
    the rest of the category;
  - line and paragraph separators (Zl, Zp: U+2028, U+2029);
  - lone surrogates (Cs) and non-characters a decoder may let through.

The escape is C{\\xNN} for a code point below U+0100, C{\\uNNNN} up to
U+FFFF and C{\\UNNNNNNNN} above, lower-case hex, as in a Python string
literal: ESC becomes C{\\x1b}, U+202E becomes C{\\u202e}.  With ESC gone,
the rest of an escape sequence (C{[2J}, C{]0;title}) is harmless text.  A
backslash is shown as it is, so a peer can type something that I{looks}
like an escape, never one that acts like a control.
"""

from __future__ import annotations

import unicodedata

#: Categories never written to a screen as they are.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _unsafe(char: str) -> bool:
    code = ord(char)
    return (unicodedata.category(char) in UNSAFE_CATEGORIES
            or (code & 0xFFFE) == 0xFFFE or 0xFDD0 <= code <= 0xFDEF)  # non-characters


def escape(char: str) -> str:
    """
    The visible escape for one character: C{\\xNN}, C{\\uNNNN} or
    C{\\UNNNNNNNN}.
    """
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def untrusted(text: str) -> str:
    """
    C{text} made safe to show on one line: every control, format, separator
    or surrogate character replaced by its visible escape (see the module
    docstring).  Everything else, including any printable script, is kept.
    """
    if text.isprintable():
        return text  # the common case: nothing of the kinds above
    return "".join(escape(c) if _unsafe(c) else c for c in text)


def is_safe(text: str) -> bool:
    """
    Whether C{text} holds nothing L{untrusted} would replace.
    """
    return text.isprintable() or not any(_unsafe(c) for c in text)
