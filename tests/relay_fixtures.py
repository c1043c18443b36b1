"""
Relay messages (docs/protocol.rst section 11) encoded by the reference
implementation (L{securechat.wire.relay}), for the browser client's codec
tests (securechat/web/tests/relay.test.js): the JavaScript encoding of
each client message must be these bytes, and its parse of each relay
message these fields.

Regenerate with ``.venv/bin/python -m tests.relay_fixtures``;
tests/test_browser_core.py checks that the file is what this makes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from securechat.crypto.groupstate import GroupChange, parse_change
from securechat.wire import e2e
from securechat.wire import groups as gr
from securechat.wire import mailbox as mb
from securechat.wire.keyhistory import GetKeyHistory, KeyHistory, PreviousKeyEntry
from securechat.wire.relay import (ChatAccept, ChatCancel, ChatDeclined, ChatEnded, ChatRefuse,
                                   ChatRequest, ChatRequested, ChatStarted, ChatStop,
                                   CommandFailed, ListOnline, OnlineList, Relay, Relayed,
                                   RequestPending, RequestWithdrawn, Welcome)

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "securechat", "web", "tests", "relay-fixtures.json")

CLIENT = [
    ("listOnline", [], ListOnline()),
    ("chatRequest", ["bob"], ChatRequest("bob")),
    ("chatAccept", ["a.b-c_9"], ChatAccept("a.b-c_9")),
    ("chatRefuse", ["carol"], ChatRefuse("carol")),
    ("chatCancel", ["dave"], ChatCancel("dave")),
    ("chatStop", ["eve"], ChatStop("eve")),
    ("relay", ["bob", "00ff10"], Relay("bob", b"\x00\xff\x10")),
]

RELAY: list[tuple[dict[str, Any], Any]] = [
    ({"kind": "welcome", "user": "alice", "maxPayload": "65408"}, Welcome("alice", 65408)),
    ({"kind": "onlineList", "users": ["alice", "bob"], "total": "3"},
     OnlineList(("alice", "bob"), 3)),
    ({"kind": "chatRequested", "requester": "bob"}, ChatRequested("bob")),
    ({"kind": "chatStarted", "peer": "bob", "peerKey": "302a", "initiator": True},
     ChatStarted("bob", b"\x30\x2a", 1)),
    ({"kind": "chatDeclined", "peer": "bob", "reason": 1}, ChatDeclined("bob", 1)),
    ({"kind": "requestWithdrawn", "requester": "bob", "reason": 6}, RequestWithdrawn("bob", 6)),
    ({"kind": "chatEnded", "peer": "bob", "reason": 99}, ChatEnded("bob", 99)),
    ({"kind": "relayed", "peer": "bob", "payload": "deadbeef"}, Relayed("bob", b"\xde\xad\xbe\xef")),
    ({"kind": "commandFailed", "command": 0x36, "subject": "bob", "reason": 13},
     CommandFailed(0x36, "bob", 13)),
    ({"kind": "requestPending", "peer": "bob"}, RequestPending("bob")),
]


ID = bytes(range(16))
PREKEY = bytes.fromhex(
    "00000007dc2cca31e8e43bbd91dff7e475cca3347eb478107d5bd765aba4ae4a30c35d44000000006a18a500"
    "080700406320a33c539ecd3293bdaeeeda71b803866226e9227ef96502e57ad49cb3394aef1db1fc5191f6dd"
    "321650b800b3bf4f0a81595f9f10fe6e477412624f44e202")  # 13.3's signed prekey
ONE_TIME = bytes.fromhex("0000002a736845d54e87de09d6bb114aa7042c50a4a015bd9901d1a0026f5956533a1519")

MAILBOX_CLIENT = [
    ("uploadPrekeys", mb.UploadPrekeys(PREKEY, ONE_TIME)),
    ("fetchBundle", mb.FetchBundle("bob")),
    ("getUserKey", mb.GetUserKey("bob")),
    ("postLetter", mb.PostLetter("bob", ID, b"sealed")),
    ("listLetters", mb.ListLetters(1, 20)),
    ("fetchLetter", mb.FetchLetter("alice", ID)),
    ("deleteLetter", mb.DeleteLetter("alice", ID)),
    ("postReceipt", mb.PostReceipt("alice", ID, b"receipt")),
    ("sentStatus", mb.SentStatus(3)),
    ("listUsers", mb.ListUsers(0)),
    ("getKeyHistory", GetKeyHistory("bob")),
]

MAILBOX_RELAY = [
    mb.PrekeysStored(7, 99), mb.PrekeysLow(3, 1), mb.Bundle("bob", b"\x30\x2a", PREKEY, ONE_TIME),
    mb.Bundle("bob", b"\x30\x2a", PREKEY, b""), mb.UserKey("bob", b"\x30", 1),
    mb.LetterStored("bob", ID, 1000, 2000), mb.LetterRefused("bob", ID, 16), mb.NewLetters(4),
    mb.LetterArrived("alice", ID, 1000, 321),
    mb.LetterList((mb.LetterEntry("alice", ID, 1000, 321, 2),), 5),
    mb.Letter("alice", ID, 1000, 2000, b"sealed"), mb.LetterDeleted("alice", ID),
    mb.ReceiptStored("alice", ID, 2), mb.ReceiptMessage("bob", ID, b"receipt"),
    mb.StatusList((mb.StatusEntry("bob", ID, 1, 2, 3, 0, b"d", b""),), 1),
    mb.UserList((mb.UserEntry("alice", 1), mb.UserEntry("bob", 0)), 2),
    KeyHistory("bob", (PreviousKeyEntry(b"\x30\x2a", 10, 20, 15), PreviousKeyEntry(b"\x30", 1, 9, 0))),
    KeyHistory("bob", ()),
]


GROUP = bytes(range(0x10, 0x20))
#: A change as 15.1 encodes it (an add; not signed by a real key: the codec
#: does not verify, the page shows nothing from a change as verified).
CHANGE = GroupChange(GROUP, 2, bytes(range(32)), "bob", 2, target="carol", made_at=1767225600,
                     scheme=1, signature=b"\x5a" * 64).encode()
CREATE = GroupChange(GROUP, 1, bytes(32), "bob", 1, name="t\u00e9am", scheme=1,
                     signature=b"").encode()

GROUP_CLIENT = [
    ("groupChange", gr.ChangeGroup(CHANGE)),
    ("groupPost", gr.GroupPost(GROUP, b"sealed")),
    ("groupAck", gr.GroupAck(GROUP, 2**64 - 1)),
    ("listGroups", gr.ListGroups()),
    ("groupLog", gr.GetGroupLog(GROUP, 7)),
]

GROUP_RELAY = [
    gr.GroupChanged(CHANGE), gr.GroupRefused(GROUP, 0x70, 25), gr.GroupPosted(GROUP, 3, 1000),
    gr.GroupMessage(GROUP, 3, "bob", 1000, b"body"),
    gr.GroupList((gr.GroupEntry(GROUP, "t\u00e9am", 1, 2, 3),
                  gr.GroupEntry(bytes(16), "x", 3, 1, 1))),
    gr.GroupList(()),
    gr.GroupLogPage(GROUP, (gr.LogEntry(CREATE), gr.LogEntry(CHANGE)), 1),
]


def _plain(value: Any) -> Any:
    """A field's value as JSON: bytes as hex, integers as decimal strings."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [[_plain(v) for v in dataclasses.astuple(e)] for e in value]
    return str(value)


def fixtures() -> dict[str, Any]:
    return {
        "client": [{"encode": f, "args": a, "type": m.TYPE, "body": m.encode_body().hex()}
                   for f, a, m in CLIENT],
        "relay": [{"fields": fields, "type": m.TYPE, "body": m.encode_body().hex()}
                  for fields, m in RELAY],
        "mailbox_client": [{"encode": f, "values": [_plain(v) for v in dataclasses.astuple(m)],
                            "type": m.TYPE, "body": m.encode_body().hex()}
                           for f, m in MAILBOX_CLIENT],
        "e2e": [{"values": [_plain(getattr(m, f.name)) for f in dataclasses.fields(m)],
                 "type": m.TYPE, "body": m.encode_body().hex()}
                for m in (e2e.Text(1767225600123, "hello \u00e9\u2603"), e2e.End(3), e2e.Ready())],
        "mailbox_relay": [{"values": [_plain(getattr(m, f.name)) for f in dataclasses.fields(m)],
                           "type": m.TYPE, "body": m.encode_body().hex()}
                          for m in MAILBOX_RELAY],
        "group_client": [{"encode": f, "values": [_plain(v) for v in dataclasses.astuple(m)],
                          "type": m.TYPE, "body": m.encode_body().hex()}
                         for f, m in GROUP_CLIENT],
        "group_relay": [{"values": [_plain(getattr(m, f.name)) for f in dataclasses.fields(m)],
                         "type": m.TYPE, "body": m.encode_body().hex()}
                        for m in GROUP_RELAY],
        "changes": [{"change": c.hex(), "fields": {
            k: _plain(v) for k, v in dataclasses.asdict(parse_change(c)).items()}}
            for c in (CHANGE, CREATE)],
    }


def main() -> None:
    with open(PATH, "w") as f:
        json.dump(fixtures(), f, indent=1)
        f.write("\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
