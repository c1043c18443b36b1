// The relay's messages (docs/protocol.rst section 11): what the client
// sends (encode) and what it accepts from the relay (parse), each an
// inner message [type, body] of the client-server context.
import {
  Reader, bytes32, concat, text8,
} from "./bytes.js";
import { RemoteProtocolError } from "./errors.js";
import { isUserName } from "./messages.js";

/** The most names an ONLINE_LIST may announce. */
export const MAX_ONLINE_LIST = 10000;

export const ClientType = Object.freeze({
  LIST_ONLINE: 0x30, CHAT_REQUEST: 0x31, CHAT_ACCEPT: 0x32, CHAT_REFUSE: 0x33,
  CHAT_CANCEL: 0x34, CHAT_STOP: 0x35, RELAY: 0x36,
});

export const RelayType = Object.freeze({
  WELCOME: 0x40, ONLINE_LIST: 0x41, CHAT_REQUESTED: 0x42, CHAT_STARTED: 0x43,
  CHAT_DECLINED: 0x44, REQUEST_WITHDRAWN: 0x45, CHAT_ENDED: 0x46, RELAYED: 0x47,
  COMMAND_FAILED: 0x48, REQUEST_PENDING: 0x49,
});

/** Reasons (11.3); a code not here is shown by its number, never an error. */
export const Reason = Object.freeze({
  1: "refused", 2: "offline", 3: "unknown user", 4: "busy", 5: "timeout", 6: "cancelled",
  7: "gone", 8: "stopped", 9: "self", 10: "too many pending", 11: "already",
  12: "no request", 13: "no chat", 14: "revoked", 15: "replaced", 16: "mailbox full",
  17: "too large", 18: "rate limited", 19: "no prekeys", 20: "no letter", 21: "bad prekey",
  22: "bad receipt", 23: "not member", 24: "not allowed", 25: "stale change", 26: "bad change",
  27: "unknown group", 28: "group exists", 29: "group full", 30: "too many groups",
  31: "group rate", 32: "group message too large", 33: "try again",
});

export function reasonText(code) {
  return Reason[code] ?? `reason ${code}`;
}

function name(value) {
  if (!isUserName(value)) throw new TypeError(`${JSON.stringify(value)} is not a user name`);
  return text8(value);
}

/** Client to relay: [type, body]. */
export const encode = {
  listOnline: () => [ClientType.LIST_ONLINE, new Uint8Array(0)],
  chatRequest: (to) => [ClientType.CHAT_REQUEST, name(to)],
  chatAccept: (requester) => [ClientType.CHAT_ACCEPT, name(requester)],
  chatRefuse: (requester) => [ClientType.CHAT_REFUSE, name(requester)],
  chatCancel: (to) => [ClientType.CHAT_CANCEL, name(to)],
  chatStop: (peer) => [ClientType.CHAT_STOP, name(peer)],
  relay: (peer, payload) => [ClientType.RELAY, concat(name(peer), bytes32(payload))],
};

function readName(r, what) {
  const value = r.text8(what);
  if (!isUserName(value)) {
    throw new RemoteProtocolError("bad-value", `${what}: ${JSON.stringify(value)} is not a user name`);
  }
  return value;
}

const PARSERS = {
  [RelayType.WELCOME]: (r) => ({ kind: "welcome", user: readName(r, "user"),
    maxPayload: r.u64("max_payload") }),
  [RelayType.ONLINE_LIST]: (r) => {
    const count = r.u16("users count");
    if (count > MAX_ONLINE_LIST) throw new RemoteProtocolError("bad-value", `users: ${count} names`);
    const users = [];
    for (let i = 0; i < count; i++) users.push(readName(r, "users"));
    return { kind: "onlineList", users, total: r.u64("total") };
  },
  [RelayType.CHAT_REQUESTED]: (r) => ({ kind: "chatRequested", requester: readName(r, "requester") }),
  [RelayType.CHAT_STARTED]: (r) => ({ kind: "chatStarted", peer: readName(r, "peer"),
    peerKey: r.bytes16("peer_key"), initiator: r.u8("initiator") !== 0 }),
  [RelayType.CHAT_DECLINED]: (r) => ({ kind: "chatDeclined", peer: readName(r, "peer"),
    reason: r.u8("reason") }),
  [RelayType.REQUEST_WITHDRAWN]: (r) => ({ kind: "requestWithdrawn",
    requester: readName(r, "requester"), reason: r.u8("reason") }),
  [RelayType.CHAT_ENDED]: (r) => ({ kind: "chatEnded", peer: readName(r, "peer"),
    reason: r.u8("reason") }),
  [RelayType.RELAYED]: (r) => ({ kind: "relayed", peer: readName(r, "peer"),
    payload: r.bytes32("payload") }),
  [RelayType.COMMAND_FAILED]: (r) => ({ kind: "commandFailed", command: r.u8("command"),
    subject: r.text16("subject"), reason: r.u8("reason") }),
  [RelayType.REQUEST_PENDING]: (r) => ({ kind: "requestPending", peer: readName(r, "peer") }),
};

/** The relay-to-client types, for Connection's `applicationTypes`. */
export const RELAY_TYPES = new Set(Object.keys(PARSERS).map(Number));

/** A relay-to-client message from its type and body; exact, else a RemoteProtocolError. */
export function parse(type, body) {
  const parser = PARSERS[type];
  if (parser === undefined) {
    throw new RemoteProtocolError("unknown-type", `inner type 0x${type.toString(16)} from the relay`);
  }
  const r = new Reader(body);
  const message = parser(r);
  r.end(message.kind);
  return message;
}

