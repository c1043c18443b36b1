# -*- test-case-name: tests.test_irc_gateway -*-
"""
Text on its way into the IRC stream, and names between securechat and IRC.

Everything a peer or the relay chose reaches the IRC client only through
L{lines}: it splits the text at its line breaks, passes each line through
L{securechat.client.display.untrusted} (so no CR, LF, NUL, CTCP C{\\x01} or
IRC formatting character is ever written raw: a peer can neither end our
line and forge another, with a server's or the service nick's prefix, nor
send a CTCP query, nor recolour anything), and splits a line too long for
one IRC message (512 bytes with the prefix, the command and CRLF) into
several, at a space when there is one in the second half, never inside a
character.

Names: a securechat user name (C{[a-z][a-z0-9._-]{0,31}}) is the peer's
nick as it is, except the one user who might be called C{securechat}: the
service nick (L{SERVICE}) is the gateway's own, and that user appears as
C{securechat|user} (C{|} is in no user name), so no peer can ever send as
the service nick.  Nicks are compared without case (CASEMAPPING=ascii).
"""

from __future__ import annotations

from securechat.client.display import untrusted
from securechat.wire.names import BadUserName, check_user_name

#: The gateway's service nick: its notices, and the commands sent to it.
SERVICE = "securechat"
#: How the user called C{securechat}, if any, appears on IRC.
SERVICE_USER_NICK = "securechat|user"
#: The gateway's server name (the prefix of numerics).
SERVER_NAME = "gateway.securechat"
#: The service nick's full mask.
SERVICE_MASK = f"{SERVICE}!{SERVICE}@{SERVER_NAME}"
#: The host part of every peer's mask.
PEER_HOST = "e2e.securechat"
#: One IRC message, CRLF included (RFC 1459 2.3).
MAX_LINE = 512
#: How a chat line carries C{/me} (CTCP ACTION on IRC) between clients.
ACTION_PREFIX = "/me "


def nick_of(user: str) -> str:
    """
    The IRC nick of securechat user C{user} (see the module docstring).
    A name that breaks the user-name rule (the core never passes one) is
    shown as C{securechat|bad-name}, never as it is.
    """
    try:
        check_user_name(user)
    except BadUserName:
        return "securechat|bad-name"
    return SERVICE_USER_NICK if user == SERVICE else user


def user_of(nick: str) -> str | None:
    """
    The securechat user an IRC nick names, or None if it names none (the
    service nick names none either).
    """
    nick = nick.lower()
    if nick == SERVICE_USER_NICK:
        return SERVICE
    if nick == SERVICE:
        return None
    try:
        return check_user_name(nick)
    except BadUserName:
        return None


def mask_of(user: str) -> str:
    """The full C{nick!user@host} prefix of messages from C{user}."""
    nick = nick_of(user)
    return f"{nick}!{nick.replace('|', '-')}@{PEER_HOST}"


def token(text: str) -> str:
    """
    C{text} safe as a middle parameter of an IRC message: neutralised, with
    no space, and not empty or starting with C{:}.
    """
    text = untrusted(text).replace(" ", "_")
    return text if text and not text.startswith(":") else "*" + text


def fit(text: str, budget: int) -> int:
    """How many characters of C{text} fit in C{budget} bytes of UTF-8."""
    return len(text.encode("utf-8")[:budget].decode("utf-8", "ignore"))


def split(text: str, budget: int) -> list[str]:
    """
    C{text} in pieces of at most C{budget} bytes of UTF-8 each, cut at a
    space in the second half of a piece when there is one.
    """
    budget = max(budget, 16)
    pieces: list[str] = []
    while len(text.encode("utf-8")) > budget:
        cut = fit(text, budget)
        space = text.rfind(" ", cut // 2, cut)
        if space > 0:
            cut = space + 1
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def lines(text: str, budget: int) -> list[str]:
    """
    C{text} as the trailing parameters of one or more IRC messages: one per
    line of C{text}, neutralised, each at most C{budget} bytes.
    """
    out: list[str] = []
    for line in text.splitlines() or [""]:
        out.extend(split(untrusted(line), budget))
    return out


def budget(prefix: str, command: str, target: str, extra: int = 0) -> int:
    """
    The bytes left for the trailing parameter of
    C{:prefix COMMAND target :...CRLF}, less C{extra}.
    """
    head = f":{prefix} {command} {target} :"
    return MAX_LINE - 2 - len(head.encode("utf-8")) - extra


def ctcp(text: str) -> tuple[str, str] | None:
    """
    C{(TAG, rest)} if C{text} is a CTCP message (C{\\x01TAG rest\\x01}),
    else None.
    """
    if not text.startswith("\x01"):
        return None
    body = text[1:]
    if body.endswith("\x01"):
        body = body[:-1]
    tag, _, rest = body.partition(" ")
    return tag.upper(), rest


def outgoing(text: str) -> tuple[str, str | None]:
    """
    What the user's IRC line C{text} sends to a peer or a group: C{(line,
    None)}, with a CTCP ACTION (C{/me}) turned into a line starting
    L{ACTION_PREFIX}; or C{("", TAG)} for any other CTCP, which is not sent.
    """
    query = ctcp(text)
    if query is None:
        return text, None
    tag, rest = query
    if tag != "ACTION":
        return "", tag
    return ACTION_PREFIX + rest, None
