# -*- test-case-name: tests.test_wire -*-
"""
User names, as they travel on the wire and are registered by the operator.

A user name is 1 to 32 characters: a lowercase ASCII letter, then lowercase
letters, digits, C{.}, C{_} or C{-}.  The rule is strict so that names are
unambiguous on screen, safe as file names, and never need normalising.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from securechat.errors import RemoteProtocolError

if TYPE_CHECKING:
    from securechat.wire.codec import Reader

MAX_NAME_LENGTH = 32

_NAME = re.compile(r"[a-z][a-z0-9._-]{0,31}\Z")


class BadUserName(ValueError):
    """
    A user name does not follow the rule above; the message says why.
    """


def check_user_name(name: str) -> str:
    """
    Return C{name} if it is a valid user name, else raise L{BadUserName}.
    """
    if not name:
        raise BadUserName("user name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise BadUserName(f"user name is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME.match(name):
        raise BadUserName(
            f"bad user name {name!r}: use a lowercase letter followed by "
            "lowercase letters, digits, '.', '_' or '-'"
        )
    return name


def read_user_name(r: Reader, what: str) -> str:
    """
    Read a C{text8} user name from C{r}; one that breaks the rule is the
    remote error C{bad-value} naming the field.
    """
    name = r.text8(what)
    try:
        return check_user_name(name)
    except BadUserName as e:
        raise RemoteProtocolError("bad-value", f"{what}: {e}") from None
