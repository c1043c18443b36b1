# -*- test-case-name: tests.test_client_groupsession -*-
"""
The group commands, as the line terminal and the full-screen interface
both take them (C{!group ...} or C{/group ...}, C{!groups}, C{!members},
C{!g}); L{run} parses the words and calls the client's
L{securechat.client.groupsession.GroupSession}.
"""

from __future__ import annotations

from typing import Callable

from securechat.client.groupmembers import Action
from securechat.client.groupsession import GroupSession
from securechat.wire.names import BadUserName, check_user_name

#: The commands' lines for /help.
HELP = """\
    !group create NAME    make a group (you are its owner)
    !group add GROUP USER / !group remove GROUP USER
                          add or remove a member (owner and admins)
    !group leave GROUP    leave a group (an owner hands over ownership first)
    !group role GROUP USER member|admin
                          set a member's role (owner)
    !group owner GROUP USER
                          make USER the owner (you become an admin)
    !group rename GROUP NAME / !group delete GROUP
                          rename or delete a group (owner)
    !groups               the groups you are in
    !members GROUP        a group's members (as your client verified them) and their pinned keys
    !g GROUP TEXT         send TEXT to a group (end-to-end encrypted; members offline get it later)"""

_USAGE = ("! usage: !group create NAME | add GROUP USER | remove GROUP USER | leave GROUP | "
          "role GROUP USER member|admin | owner GROUP USER | rename GROUP NAME | delete GROUP")
_WITH_USER = {"add": Action.ADD, "remove": Action.REMOVE, "owner": Action.TRANSFER_OWNER}
_ROLES = {"member": 1, "admin": 2}


def _user(word: str, say: Callable[[str], None]) -> str | None:
    try:
        check_user_name(word)
    except BadUserName:
        say(f"! {word!r} is not a user name")
        return None
    return word


def run(groups: GroupSession | None, command: str, rest: str, say: Callable[[str], None]) -> None:
    """
    One group command: C{command} is C{group}, C{groups}, C{members} or
    C{g}; C{rest} the rest of the line.
    """
    if groups is None:
        say("! groups are not available in this client: it has no letters file")
        return
    words = rest.split()
    if command == "groups":
        groups.list_groups()
    elif command == "members":
        if len(words) != 1:
            say("! usage: !members GROUP")
        else:
            groups.members(words[0])
    elif command == "g":
        group, _, text = rest.strip().partition(" ")
        if not group or not text.strip():
            say("! usage: !g GROUP TEXT")
        else:
            groups.say(group, text.strip())
    else:
        _group(groups, rest, words, say)


def _group(groups: GroupSession, rest: str, words: list[str], say: Callable[[str], None]) -> None:
    sub = words[0].lower() if words else ""
    if sub == "create" and len(words) >= 2:
        groups.create(rest.strip()[len(words[0]):].strip())
    elif sub in _WITH_USER and len(words) == 3:
        if (user := _user(words[2], say)) is not None:
            groups.change(words[1], _WITH_USER[sub], target=user)
    elif sub == "leave" and len(words) == 2:
        groups.change(words[1], Action.LEAVE)
    elif sub == "delete" and len(words) == 2:
        groups.change(words[1], Action.DELETE)
    elif sub == "role" and len(words) == 4 and words[3].lower() in _ROLES:
        if (user := _user(words[2], say)) is not None:
            groups.change(words[1], Action.SET_ROLE, target=user, role=_ROLES[words[3].lower()])
    elif sub == "rename" and len(words) >= 3:
        name = rest.strip()[len(words[0]):].strip()[len(words[1]):].strip()
        groups.change(words[1], Action.RENAME, name=name)
    else:
        say(_USAGE)
