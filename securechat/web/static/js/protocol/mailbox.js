// The mailbox's relay messages (docs/protocol.rst 14.6), declared field by
// field as the spec's tables are: what the client sends (encode) and what
// it accepts from the relay (parse, exact).  Field names are the spec's.
import { Reader, bytes16, bytes32, concat, text8, u16, u32, u64, u8 } from "./bytes.js";
import { RemoteProtocolError } from "./errors.js";
import { isUserName } from "./messages.js";
import { LetterError, parseOneTimePrekey, parseSignedPrekey } from "./letters.js";

export const MAX_LIST = 10000;
const ID_LENGTH = 16;
const ONE_TIME_LENGTH = 36;

const LETTER_ENTRY = [["sender", "name"], ["letter_id", "id"], ["stored_at", "u64"],
  ["size", "u64"], ["state", "u8", [0, 1, 2]]];
const STATUS_ENTRY = [["recipient", "name"], ["letter_id", "id"], ["stored_at", "u64"],
  ["expires_at", "u64"], ["delivered_at", "u64"], ["read_at", "u64"],
  ["delivery_receipt", "bytes16"], ["read_receipt", "bytes16"]];
const USER_ENTRY = [["user", "name"], ["online", "u8", [0, 1]]];
const PREVIOUS_KEY_ENTRY = [["user_key", "bytes16"], ["added_at", "u64"], ["replaced_at", "u64"],
  ["compromised_at", "u64"]];

/** Client to relay: type and fields. */
export const CLIENT = {
  uploadPrekeys: [0x50, [["signed_prekey", "bytes16"], ["one_time", "bytes16"]]],
  fetchBundle: [0x51, [["user", "name"]]],
  getUserKey: [0x52, [["user", "name"]]],
  postLetter: [0x53, [["recipient", "name"], ["letter_id", "id"], ["letter", "bytes32"]]],
  listLetters: [0x54, [["which", "u8", [0, 1]], ["offset", "u64"]]],
  fetchLetter: [0x55, [["sender", "name"], ["letter_id", "id"]]],
  deleteLetter: [0x56, [["sender", "name"], ["letter_id", "id"]]],
  postReceipt: [0x57, [["sender", "name"], ["letter_id", "id"], ["receipt", "bytes16"]]],
  sentStatus: [0x58, [["offset", "u64"]]],
  listUsers: [0x59, [["offset", "u64"]]],
  getKeyHistory: [0x5a, [["user", "name"]]],
};

/** Relay to client: type → [message name, fields, extra check]. */
const RELAY = {
  0x60: ["prekeysStored", [["signed_prekey_id", "u32"], ["one_time_count", "u64"]]],
  0x61: ["prekeysLow", [["one_time_count", "u64"], ["has_signed_prekey", "u8", [0, 1]]]],
  0x62: ["bundle", [["user", "name"], ["user_key", "bytes16"], ["signed_prekey", "bytes16"],
    ["one_time_prekey", "bytes16"]], checkBundle],
  0x63: ["userKey", [["user", "name"], ["user_key", "bytes16"], ["revoked", "u8", [0, 1]]]],
  0x64: ["letterStored", [["recipient", "name"], ["letter_id", "id"], ["stored_at", "u64"],
    ["expires_at", "u64"]]],
  0x65: ["letterRefused", [["recipient", "name"], ["letter_id", "id"], ["reason", "u8"]]],
  0x66: ["newLetters", [["count", "u64"]]],
  0x67: ["letterArrived", [["sender", "name"], ["letter_id", "id"], ["stored_at", "u64"],
    ["size", "u64"]]],
  0x68: ["letterList", [["letters", LETTER_ENTRY], ["total", "u64"]]],
  0x69: ["letter", [["sender", "name"], ["letter_id", "id"], ["stored_at", "u64"],
    ["expires_at", "u64"], ["letter", "bytes32"]]],
  0x6a: ["letterDeleted", [["sender", "name"], ["letter_id", "id"]]],
  0x6b: ["receiptStored", [["sender", "name"], ["letter_id", "id"], ["kind", "u8", [1, 2]]]],
  0x6c: ["receipt", [["recipient", "name"], ["letter_id", "id"], ["receipt", "bytes16"]]],
  0x6d: ["statusList", [["letters", STATUS_ENTRY], ["total", "u64"]]],
  0x6e: ["userList", [["users", USER_ENTRY], ["total", "u64"]]],
  0x6f: ["keyHistory", [["user", "name"], ["keys", PREVIOUS_KEY_ENTRY]], checkHistory],
};

/** The mailbox's relay-to-client types, for Connection's `applicationTypes`. */
export const MAILBOX_TYPES = new Set(Object.keys(RELAY).map(Number));

/** One field's bytes (kinds as in 14.6; a list is an array of its entry's fields). */
export function encodeField(kind, value) {
  if (Array.isArray(kind)) {
    return concat(u16(value.length), ...value.map((entry) => concat(
      ...kind.map(([field, k]) => encodeField(k, entry[field])))));
  }
  switch (kind) {
    case "name":
      if (!isUserName(value)) throw new TypeError(`${JSON.stringify(value)} is not a user name`);
      return text8(value);
    case "id":
      if (value.length !== ID_LENGTH) throw new TypeError("an id is 16 bytes");
      return value;
    case "text8": return text8(value);
    case "u8": return u8(value);
    case "u32": return u32(value);
    case "u64": return u64(value);
    case "bytes16": return bytes16(value);
    case "bytes32": return bytes32(value);
    default: throw new TypeError(`no field kind ${kind}`);
  }
}

/** [type, body] of the client message `name` with `fields` (by the spec's names). */
export function encode(name, fields) {
  const [type, layout] = CLIENT[name];
  return [type, concat(...layout.map(([field, kind]) => encodeField(kind, fields[field])))];
}

/** Fields in order by `layout` ([name, kind, allowed values]), exactly as 14.6 reads them. */
export function readFields(r, layout, what) {
  const out = {};
  for (const [field, kind, allowed] of layout) {
    out[field] = readField(r, kind, `${what} ${field}`);
    if (allowed && !allowed.includes(out[field])) {
      throw new RemoteProtocolError("bad-value", `${what} ${field} is ${out[field]}`);
    }
  }
  return out;
}

function readField(r, kind, what) {
  if (Array.isArray(kind)) {
    const count = r.u16(`${what} count`);
    if (count > MAX_LIST) throw new RemoteProtocolError("bad-value", `${what}: ${count} entries`);
    const entries = [];
    for (let i = 0; i < count; i++) entries.push(readFields(r, kind, what));
    return entries;
  }
  switch (kind) {
    case "name": {
      const name = r.text8(what);
      if (!isUserName(name)) {
        throw new RemoteProtocolError("bad-value", `${what}: ${JSON.stringify(name)} is not a user name`);
      }
      return name;
    }
    case "id": return r.take(ID_LENGTH, what);
    case "text8": return r.text8(what);
    case "u8": return r.u8(what);
    case "u32": return r.u32(what);
    case "u64": return r.u64(what);
    case "bytes16": return r.bytes16(what);
    case "bytes32": return r.bytes32(what);
    default: throw new TypeError(`no field kind ${kind}`);
  }
}

function checkBundle(m) {
  if (m.signed_prekey.length === 0) {
    throw new RemoteProtocolError("bad-value", "BUNDLE without a signed prekey");
  }
  if (m.one_time_prekey.length !== 0 && m.one_time_prekey.length !== ONE_TIME_LENGTH) {
    throw new RemoteProtocolError("bad-value",
      `BUNDLE one-time prekey of ${m.one_time_prekey.length} bytes`);
  }
  try {
    parseSignedPrekey(m.signed_prekey);
    if (m.one_time_prekey.length) parseOneTimePrekey(m.one_time_prekey);
  } catch (e) {
    if (e instanceof LetterError) throw new RemoteProtocolError("bad-value", `BUNDLE: ${e.detail}`);
    throw e;
  }
}

function checkHistory(m) {
  for (const e of m.keys) {
    const compromised = e.compromised_at;
    if (e.user_key.length === 0 || e.added_at > e.replaced_at
        || (compromised !== 0n && (compromised < e.added_at || compromised > e.replaced_at))) {
      throw new RemoteProtocolError("bad-value", "KEY_HISTORY entry outside its rule");
    }
  }
}

/**
 * A mailbox message from the relay, parsed exactly: `{message, ...fields}`
 * (`message` names it: RECEIPT_STORED has a field called kind).
 */
export function parse(type, body) {
  const entry = RELAY[type];
  if (entry === undefined) {
    throw new RemoteProtocolError("unknown-type", `inner type 0x${type.toString(16)} from the relay`);
  }
  const [name, layout, check] = entry;
  const r = new Reader(body);
  const message = { message: name, ...readFields(r, layout, name) };
  r.end(name);
  if (check) check(message);
  return message;
}
