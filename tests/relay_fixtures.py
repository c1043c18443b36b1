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

import json
import os
from typing import Any

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


def fixtures() -> dict[str, Any]:
    return {
        "client": [{"encode": f, "args": a, "type": m.TYPE, "body": m.encode_body().hex()}
                   for f, a, m in CLIENT],
        "relay": [{"fields": fields, "type": m.TYPE, "body": m.encode_body().hex()}
                  for fields, m in RELAY],
    }


def main() -> None:
    with open(PATH, "w") as f:
        json.dump(fixtures(), f, indent=1)
        f.write("\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
