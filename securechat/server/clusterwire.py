# -*- test-case-name: tests.test_clusterwire -*-
"""
What one relay process publishes to another over Redis (C{--cluster}):
the encoding, version 1.  Pure (bytes in, values out), no IO.

Each process subscribes to its own channel, C{securechat:to:PROCESS_ID}.
A published message is a batch of records for users on that process,
everything one process had for it in one reactor turn, in order::

    message  = u8 version (1) || text8 sender process id || record*
    record   = u8 kind || u32 length || body (length bytes)

    kind 1 RELAY   body = text8 sender || text8 recipient || payload
                   (a chat's end-to-end ciphertext, exactly as the client
                   sent it in RELAY; the rest of the body)
    kind 2 EVENT   body = u8 event || text8 from || text8 to || u8 reason
                   (a chat event between user "from" on the sending process
                   and user "to" on the receiving one; EVENT_* below;
                   reason a docs/protocol.rst 11.3 code, 0 for none)
    kind 3 NOTICE  body = text8 recipient || u8 inner type || inner body
                   (a relay-to-client message for the recipient: only
                   LETTER_ARRIVED, RECEIPT, PREKEYS_LOW and GROUP_CHANGED
                   are accepted; they carry names, ids, times and signed
                   receipts, never a letter or a key)
    kind 4 KICK    body = text8 user
                   (the user logged in on the sending process: its session
                   here, if any, ends as SESSION_REPLACED)
    kind 5 GROUP   body = u16 count || text8 member * count || GROUP_MESSAGE body
                   (one group message, published once per process that has
                   members online: the members there; the body is the
                   group ciphertext with its routing fields, 15.2)

Nothing published is plaintext or key material: chat payloads and group
bodies are end-to-end ciphertext, the rest is routing metadata.

A receiving process treats a message as untrusted input: L{decode} checks
every length against what is left and against L{MAX_MESSAGE}, every name
against the rules for user names, and raises L{ClusterWireError} (the
whole message is then dropped, logged once per sender and error, and
counted); a record kind or event this version does not know is an error
too.  A new version changes the first byte, and processes of different
versions do not mix (roll a cluster over by stopping the old processes).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from securechat.wire.names import BadUserName, check_user_name

VERSION = 1
#: The largest message a process publishes or accepts (bytes).
MAX_MESSAGE = 1 << 20

RELAY, EVENT, NOTICE, KICK, GROUP = 1, 2, 3, 4, 5

#: Chat events (EVENT records): a request asked of the target's process,
#: its answers, the two phases of an accept, the three ends that the
#: relay tells users on one process (docs/protocol.rst 11.4), and the
#: backpressure of a chat (the recipient's process asks the sender's to
#: pause and resume the sender's reading, as one relay does).
EVENT_REQUEST = 1         # from asks to chat with to
EVENT_PENDING = 2         # to (the target) was asked: from gets REQUEST_PENDING
EVENT_DECLINED = 3        # CHAT_DECLINED(from, reason) to "to"
EVENT_WITHDRAWN = 4       # REQUEST_WITHDRAWN(from, reason) to "to"
EVENT_ACCEPT = 5          # from accepted to's request (from's side reserved)
EVENT_ACCEPT_FAILED = 6   # the accept could not complete (reason)
EVENT_STARTED = 7         # the chat started on the requester's side
EVENT_ENDED = 8           # CHAT_ENDED(from, reason) to "to"
EVENT_PAUSE = 9           # from's queue is over its soft limit: stop reading "to"
EVENT_RESUME = 10         # from's queue drained: read "to" again
EVENTS = frozenset(range(1, 11))

#: A process id (C{--process-id}): 1 to 64 of these characters.
PROCESS_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")

_HEAD = struct.Struct(">BI")
_U16 = struct.Struct(">H")


class ClusterWireError(Exception):
    """A published message that does not decode; the message says why."""


@dataclass(frozen=True, slots=True)
class RelayRecord:
    sender: str
    recipient: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class EventRecord:
    event: int
    sender: str
    recipient: str
    reason: int


@dataclass(frozen=True, slots=True)
class NoticeRecord:
    recipient: str
    inner_type: int
    body: bytes


@dataclass(frozen=True, slots=True)
class KickRecord:
    user: str


@dataclass(frozen=True, slots=True)
class GroupRecord:
    members: tuple[str, ...]
    body: bytes


Record = RelayRecord | EventRecord | NoticeRecord | KickRecord | GroupRecord


def _text8(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise ValueError("name longer than 255 bytes")
    return bytes((len(raw),)) + raw


def _record(kind: int, body: bytes) -> bytes:
    return _HEAD.pack(kind, len(body)) + body


def header(process: str) -> bytes:
    """The start of every message from C{process}."""
    return bytes((VERSION,)) + _text8(process)


def relay(sender: str, recipient: str, payload: bytes | memoryview) -> bytes:
    return _record(RELAY, _text8(sender) + _text8(recipient) + bytes(payload))


def event(kind: int, sender: str, recipient: str, reason: int = 0) -> bytes:
    return _record(EVENT, bytes((kind,)) + _text8(sender) + _text8(recipient) + bytes((reason,)))


def notice(recipient: str, inner_type: int, body: bytes) -> bytes:
    return _record(NOTICE, _text8(recipient) + bytes((inner_type,)) + body)


def kick(user: str) -> bytes:
    return _record(KICK, _text8(user))


def group(members: list[str] | tuple[str, ...], body: bytes) -> bytes:
    return _record(GROUP, _U16.pack(len(members)) + b"".join(_text8(m) for m in members) + body)


class _Cursor:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, n: int, what: str) -> bytes:
        if n > self.end - self.pos:
            raise ClusterWireError(f"{what}: {n} bytes needed, {self.end - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def name(self, what: str) -> str:
        """A user name (securechat.wire.names)."""
        raw = self.take(self.u8(what + " length"), what)
        try:
            return check_user_name(raw.decode("ascii"))
        except (UnicodeDecodeError, BadUserName):
            raise ClusterWireError(f"{what}: not a user name") from None

    def process(self) -> str:
        raw = self.take(self.u8("process id length"), "process id")
        text = raw.decode("ascii", "replace")
        if not PROCESS_ID.match(text):
            raise ClusterWireError("process id: not a process id")
        return text

    def rest(self) -> bytes:
        chunk = self.data[self.pos:self.end]
        self.pos = self.end
        return chunk

    def finish(self, what: str) -> None:
        if self.pos != self.end:
            raise ClusterWireError(f"{what}: {self.end - self.pos} trailing bytes")


def decode(data: bytes) -> tuple[str, list[Record]]:
    """
    The sending process and the records of one published message.

    @raise ClusterWireError: anything that does not follow the format above.
    """
    if len(data) > MAX_MESSAGE:
        raise ClusterWireError(f"message of {len(data)} bytes, the most is {MAX_MESSAGE}")
    top = _Cursor(data, 0, len(data))
    version = top.u8("version")
    if version != VERSION:
        raise ClusterWireError(f"version {version}, this process speaks {VERSION}")
    process = top.process()
    records: list[Record] = []
    while top.pos < top.end:
        kind, length = _HEAD.unpack(top.take(_HEAD.size, "record header"))
        if length > top.end - top.pos:
            raise ClusterWireError(f"record of {length} bytes, {top.end - top.pos} left")
        body = _Cursor(data, top.pos, top.pos + length)
        top.pos += length
        records.append(_decode_record(kind, body))
    return process, records


def _decode_record(kind: int, c: _Cursor) -> Record:
    record: Record
    if kind == RELAY:
        record = RelayRecord(c.name("sender"), c.name("recipient"), c.rest())
    elif kind == EVENT:
        which = c.u8("event")
        if which not in EVENTS:
            raise ClusterWireError(f"unknown event {which}")
        record = EventRecord(which, c.name("from"), c.name("to"), c.u8("reason"))
    elif kind == NOTICE:
        record = NoticeRecord(c.name("recipient"), c.u8("inner type"), c.rest())
    elif kind == KICK:
        record = KickRecord(c.name("user"))
    elif kind == GROUP:
        count = _U16.unpack(c.take(2, "member count"))[0]
        if count == 0:
            raise ClusterWireError("group record for no member")
        members = tuple(c.name("member") for _ in range(count))
        record = GroupRecord(members, c.rest())
    else:
        raise ClusterWireError(f"unknown record kind {kind}")
    c.finish(f"record kind {kind}")
    return record
