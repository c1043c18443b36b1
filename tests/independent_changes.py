"""
A clean-room implementation of a group's change log as a member checks it
(docs/protocol.rst, 15.1 and 15.3): parse each change exactly, verify its
actor's Ed25519 signature, and apply the membership rules in their order.

Written from the document alone: it imports nothing from ``securechat``.
``tests/test_independent_groups_relay.py`` uses it, with
``tests/independent_groups.py`` and ``tests/independent_mailbox.py``, to
join a group made by the real client and to read and send its messages
through the real relay.
"""

import hashlib

from cryptography.exceptions import InvalidSignature

from tests.independent_mailbox import Cursor, Refused

LABEL = b"securechat group change v1" + b"\x00"
ED25519 = 0x0807
MAX_CHANGE = 714
CREATE, ADD, REMOVE, LEAVE, SET_ROLE, TRANSFER, RENAME, DELETE = range(1, 9)
MEMBER, ADMIN, OWNER = 1, 2, 3
# action -> (has target, has role, has name), from the table of 15.1
SHAPES = {CREATE: (False, False, True), ADD: (True, False, False), REMOVE: (True, False, False),
          LEAVE: (False, False, False), SET_ROLE: (True, True, False), TRANSFER: (True, False, False),
          RENAME: (False, False, True), DELETE: (False, False, False)}


def _bad():
    return Refused("bad-change")


def _text8(c):
    raw = c.take(c.int(1))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad()


def parse_change(data):
    """The change's fields as a dict (with its body and digest); Refused("bad-change") otherwise."""
    if len(data) > MAX_CHANGE:
        raise _bad()
    c = Cursor(data)
    try:
        if c.int(1) != 1:
            raise _bad()
        f = {"group_id": c.take(16), "epoch": c.int(8), "prev": c.take(32)}
        f["actor"] = c.name()
        f["action"] = c.int(1)
        f["target"] = _text8(c)
        if f["target"]:
            Cursor(bytes([len(f["target"].encode())]) + f["target"].encode()).name()
        f["role"] = c.int(1)
        f["name"] = _text8(c)
        f["made_at"] = c.int(8)
        f["body"] = data[:c.pos]
        f["scheme"] = c.int(2)
        f["signature"] = c.take(c.int(2))
        c.end()
    except Refused:
        raise _bad()
    if f["action"] not in SHAPES or len(f["signature"]) > 512:
        raise _bad()
    has_target, has_role, has_name = SHAPES[f["action"]]
    if bool(f["target"]) != has_target or f["target"] == f["actor"]:
        raise _bad()
    if (f["role"] in (MEMBER, ADMIN)) != has_role or (not has_role and f["role"] != 0):
        raise _bad()
    if has_name:
        name = f["name"].encode()
        if not 1 <= len(name) <= 64 or any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f
                                           or ch in "\u2028\u2029" for ch in f["name"]):
            raise _bad()
    elif f["name"]:
        raise _bad()
    if f["action"] == CREATE and (f["epoch"] != 1 or f["prev"] != bytes(32)):
        raise _bad()
    if f["action"] != CREATE and f["epoch"] < 2:
        raise _bad()
    f["digest"] = hashlib.sha256(data).digest()
    return f


def replay(log, public_key_of, group_id):
    """
    The group's state after its log (a list of encoded changes from the
    creation): {"name", "epoch", "head", "members": {user: role}, "deleted"};
    Refused with the code of 15.3 at the first change that fails.
    """
    state = None
    for data in log:
        f = parse_change(data)
        if f["group_id"] != group_id:
            raise _bad()
        if f["scheme"] != ED25519:
            raise _bad()
        try:
            public_key_of(f["actor"]).verify(f["signature"], LABEL + f["body"])
        except InvalidSignature:
            raise _bad()
        state = _apply(state, f)
    if state is None:
        raise Refused("unknown-group")
    return state


def _apply(state, f):
    action = f["action"]
    if state is None:
        if action != CREATE:
            raise Refused("unknown-group")
        return {"name": f["name"], "epoch": 1, "head": f["digest"], "members": {f["actor"]: OWNER},
                "deleted": False}
    if action == CREATE:
        raise Refused("group-exists")
    if state["deleted"]:
        raise Refused("unknown-group")
    if f["epoch"] != state["epoch"] + 1 or f["prev"] != state["head"]:
        raise Refused("stale-change")
    members = dict(state["members"])
    actor = members.get(f["actor"], 0)
    if not actor:
        raise Refused("not-member")
    target, target_role = f["target"], members.get(f["target"], 0)
    name, deleted = state["name"], False
    if action in (SET_ROLE, TRANSFER, RENAME, DELETE) and actor != OWNER:
        raise Refused("not-allowed")
    if action == ADD:
        if actor < ADMIN:
            raise Refused("not-allowed")
        if target_role:
            raise _bad()
        members[target] = MEMBER
    elif action == REMOVE:
        if actor < ADMIN:
            raise Refused("not-allowed")
        if not target_role:
            raise _bad()
        if actor == ADMIN and target_role >= ADMIN:
            raise Refused("not-allowed")
        del members[target]
    elif action == LEAVE:
        if actor == OWNER:
            raise Refused("not-allowed")
        del members[f["actor"]]
    elif action == SET_ROLE:
        if not target_role or target_role == f["role"]:
            raise _bad()
        members[target] = f["role"]
    elif action == TRANSFER:
        if not target_role:
            raise _bad()
        members[target], members[f["actor"]] = OWNER, ADMIN
    elif action == RENAME:
        name = f["name"]
    else:
        deleted = True
    return {"name": name, "epoch": f["epoch"], "head": f["digest"], "members": members,
            "deleted": deleted}


def rekey_epoch(log):
    """The latest epoch at which a member was removed or left (16.4 step 7), 0 if none."""
    latest = 0
    for data in log:
        f = parse_change(data)
        if f["action"] in (REMOVE, LEAVE):
            latest = f["epoch"]
    return latest


__all__ = ["parse_change", "replay", "rekey_epoch"]
