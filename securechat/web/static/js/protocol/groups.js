// The groups' relay messages (docs/protocol.rst 15.2), declared field by
// field like the mailbox's (14.6): what a client sends (encode) and what
// it accepts from the relay (parse, exact), and a change's fields (15.1,
// parsed, not verified: the page does not check or show group state yet).
import { Reader, concat } from "./bytes.js";
import { RemoteProtocolError } from "./errors.js";
import { isUserName } from "./messages.js";
import { encodeField, readFields } from "./mailbox.js";

const GROUP_ENTRY = [["group_id", "id"], ["name", "text8"], ["role", "u8", [1, 2, 3]],
  ["epoch", "u64"], ["members", "u32"]];
const LOG_ENTRY = [["change", "bytes32"]];

/** Client to relay: type and fields. */
export const CLIENT = {
  groupChange: [0x70, [["change", "bytes32"]]],
  groupPost: [0x71, [["group_id", "id"], ["body", "bytes32"]]],
  groupAck: [0x72, [["group_id", "id"], ["seq", "u64"]]],
  listGroups: [0x73, []],
  groupLog: [0x74, [["group_id", "id"], ["after_epoch", "u64"]]],
};

/** Relay to client: type → [message name, fields]. */
const RELAY = {
  0x80: ["groupChanged", [["change", "bytes32"]]],
  0x81: ["groupRefused", [["group_id", "id"], ["command", "u8"], ["reason", "u8"]]],
  0x82: ["groupPosted", [["group_id", "id"], ["seq", "u64"], ["stored_at", "u64"]]],
  0x83: ["groupMessage", [["group_id", "id"], ["seq", "u64"], ["sender", "name"],
    ["stored_at", "u64"], ["body", "bytes32"]]],
  0x84: ["groupList", [["groups", GROUP_ENTRY]]],
  0x85: ["groupLogPage", [["group_id", "id"], ["changes", LOG_ENTRY], ["more", "u8", [0, 1]]]],
};

/** The groups' relay-to-client types, for Connection's `applicationTypes`. */
export const GROUP_TYPES = new Set(Object.keys(RELAY).map(Number));

/** [type, body] of the client message `name` with `fields` (by the spec's names). */
export function encode(name, fields = {}) {
  const [type, layout] = CLIENT[name];
  return [type, concat(...layout.map(([field, kind]) => encodeField(kind, fields[field])))];
}

/** A group message from the relay, parsed exactly: `{message, ...fields}`. */
export function parse(type, body) {
  const entry = RELAY[type];
  if (entry === undefined) {
    throw new RemoteProtocolError("unknown-type", `inner type 0x${type.toString(16)} from the relay`);
  }
  const [name, layout] = entry;
  const r = new Reader(body);
  const message = { message: name, ...readFields(r, layout, name) };
  r.end(name);
  return message;
}

/** The actions of 15.1 by number. */
export const Action = Object.freeze({
  1: "create", 2: "add", 3: "remove", 4: "leave", 5: "set-role", 6: "transfer-owner",
  7: "rename", 8: "delete",
});

const MAX_CHANGE = 714;
const MAX_SIGNATURE = 512;

function badChange(detail) {
  return new RemoteProtocolError("bad-value", `group change: ${detail}`);
}

/**
 * A change's fields (15.1), parsed exactly: version 1, a known action, user
 * names, UTF-8; a field cut short, trailing bytes or any of these wrong is
 * `bad-value` (the relay sent what no actor could have signed).  The
 * signature is NOT verified and the action's shape not checked: nothing
 * here may be shown as the group's verified state.
 */
export function parseChange(data) {
  if (data.length > MAX_CHANGE) throw badChange(`${data.length} bytes, the most is ${MAX_CHANGE}`);
  const r = new Reader(data);
  const version = r.u8("version");
  if (version !== 1) throw badChange(`version ${version}, only 1 is known`);
  const change = { version, group_id: r.take(16, "group_id"), epoch: r.u64("epoch"),
    prev: r.take(32, "prev"), actor: r.text8("actor"), action: r.u8("action"),
    target: r.text8("target"), role: r.u8("role"), name: r.text8("name"),
    made_at: r.u64("made_at"), scheme: r.u16("scheme"), signature: r.bytes16("signature") };
  r.end("group change");
  if (!isUserName(change.actor)) throw badChange(`actor ${JSON.stringify(change.actor)}`);
  if (change.target !== "" && !isUserName(change.target)) {
    throw badChange(`target ${JSON.stringify(change.target)}`);
  }
  if (Action[change.action] === undefined) throw badChange(`unknown action ${change.action}`);
  if (change.signature.length > MAX_SIGNATURE) {
    throw badChange(`a signature of ${change.signature.length} bytes`);
  }
  return change;
}
