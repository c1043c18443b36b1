// A group's signed change log (docs/protocol.rst 15.1, 15.3), sans-IO:
// a change encoded, signed, parsed exactly and checked alone; applied to
// the group's verified state by the membership rules; a whole log
// replayed with every signature verified.  Every refusal is a GroupError
// whose code is one of 15.4's, in lower case with "-".
import { Reader, bytes16, concat, equal, text8, u16, u64, u8, utf8 } from "./bytes.js";
import { RemoteProtocolError } from "./errors.js";
import { isUserName } from "./messages.js";
import { sha256, sign, verifySignature } from "./crypto.js";

export const CREATE = 1;
export const ADD = 2;
export const REMOVE = 3;
export const LEAVE = 4;
export const SET_ROLE = 5;
export const TRANSFER_OWNER = 6;
export const RENAME = 7;
export const DELETE = 8;
export const MEMBER = 1;
export const ADMIN = 2;
export const OWNER = 3;

export const MAX_CHANGE = 714;
const MAX_SIGNATURE = 512;
const MAX_NAME = 64;
const LABEL = utf8("securechat group change v1");
const NO_PREVIOUS = new Uint8Array(32);

/** The action's word for a user (15.1's table). */
export const ACTION_WORDS = Object.freeze({
  1: "create", 2: "add", 3: "remove", 4: "leave", 5: "set-role", 6: "transfer-owner",
  7: "rename", 8: "delete",
});

// action -> [has target, has role, has name] (15.1's table)
const SHAPE = {
  1: [false, false, true], 2: [true, false, false], 3: [true, false, false],
  4: [false, false, false], 5: [true, true, false], 6: [true, false, false],
  7: [false, false, true], 8: [false, false, false],
};

export class GroupError extends Error {
  constructor(code, detail) {
    super(`${code}: ${detail}`);
    this.code = code;
    this.detail = detail;
  }
}

// C0, DEL, C1, U+2028, U+2029 (15.1)
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

function checkName(name) {
  const size = utf8(name).length;
  if (size < 1 || size > MAX_NAME) {
    throw new GroupError("bad-change", `a group name of ${size} bytes (1 to ${MAX_NAME})`);
  }
  if (CONTROL.test(name)) throw new GroupError("bad-change", "a group name with a control character");
}

/** The signed part of a change, `version` to `made_at` (15.1). */
export function changeBody(c) {
  return concat(u8(1), c.group_id, u64(c.epoch), c.prev, text8(c.actor), u8(c.action),
    text8(c.target ?? ""), u8(c.role ?? 0), text8(c.name ?? ""), u64(c.made_at ?? 0n));
}

/** The message the actor signs: label, a zero byte, the body. */
export function changeMessage(c) {
  return concat(LABEL, u8(0), changeBody(c));
}

/** The full encoding, signature included. */
export function encodeChange(c) {
  return concat(changeBody(c), u16(c.scheme), bytes16(c.signature));
}

/** SHA-256 of the full encoding: the next change's `prev`. */
export function changeDigest(c) {
  return sha256(c.encoded ?? encodeChange(c));
}

/** `fields` signed with `signer` (our registered key): the change, with `encoded`. */
export async function signChange(signer, fields) {
  const c = { target: "", role: 0, name: "", made_at: 0n, ...fields };
  checkChange({ ...c, scheme: signer.scheme, signature: new Uint8Array(0) });
  const signature = await sign(signer, changeMessage(c));
  const signed = { ...c, scheme: signer.scheme, signature };
  return { ...signed, encoded: encodeChange(signed) };
}

/** 15.1's rules on one change alone (its fields by action). */
export function checkChange(c) {
  const shape = SHAPE[c.action];
  if (shape === undefined) throw new GroupError("bad-change", `unknown action ${c.action}`);
  const [hasTarget, hasRole, hasName] = shape;
  const word = ACTION_WORDS[c.action];
  if ((c.target !== "") !== hasTarget) {
    throw new GroupError("bad-change", `${word} ${hasTarget ? "needs" : "takes no"} target`);
  }
  if (hasTarget && c.target === c.actor) {
    throw new GroupError("bad-change", `${word} names the actor as its target`);
  }
  if (hasRole ? c.role !== MEMBER && c.role !== ADMIN : c.role !== 0) {
    throw new GroupError("bad-change", `${word} with role ${c.role}`);
  }
  if (hasName) checkName(c.name);
  else if (c.name !== "") throw new GroupError("bad-change", `${word} takes no name`);
  if (c.action === CREATE && (c.epoch !== 1n || !equal(c.prev, NO_PREVIOUS))) {
    throw new GroupError("bad-change", "a creation has epoch 1 and a prev of 32 zero bytes");
  }
  if (c.action !== CREATE && c.epoch < 2n) {
    throw new GroupError("bad-change", `${word} at epoch ${c.epoch}`);
  }
}

/** A change parsed exactly (15.1) and checked alone; `bad-change` for anything wrong. */
export function parseChange(data) {
  if (data.length > MAX_CHANGE) {
    throw new GroupError("bad-change", `a change of ${data.length} bytes, the most is ${MAX_CHANGE}`);
  }
  const r = new Reader(data);
  let c;
  try {
    const version = r.u8("version");
    if (version !== 1) throw new GroupError("bad-change", `change version ${version}, only 1 is known`);
    c = { version, group_id: r.take(16, "group_id"), epoch: r.u64("epoch"),
      prev: r.take(32, "prev"), actor: r.text8("actor"), action: r.u8("action"),
      target: r.text8("target"), role: r.u8("role"), name: r.text8("name"),
      made_at: r.u64("made_at"), scheme: r.u16("scheme"), signature: r.bytes16("signature") };
    r.end("group change");
  } catch (e) {
    if (e instanceof RemoteProtocolError) throw new GroupError("bad-change", `${e.code}: ${e.detail}`);
    throw e;
  }
  if (!isUserName(c.actor)) throw new GroupError("bad-change", "the actor is not a user name");
  if (c.target !== "" && !isUserName(c.target)) {
    throw new GroupError("bad-change", "the target is not a user name");
  }
  if (c.signature.length > MAX_SIGNATURE) {
    throw new GroupError("bad-change", `a signature of ${c.signature.length} bytes`);
  }
  checkChange(c);
  return { ...c, encoded: data };
}

/** The signature by the actor's key (`{scheme, key}`), else `bad-change`. */
export async function verifyChange(c, actorKey) {
  if (!await verifySignature(actorKey, c.scheme, c.signature, changeMessage(c))) {
    throw new GroupError("bad-change", `the change at epoch ${c.epoch} is not signed by ${c.actor}'s key`);
  }
}

/**
 * The state after `c` (15.3, checks 1 to 5 in order; the signature is
 * verifyChange's).  A state: `{groupId, name, epoch, head, members: Map
 * user -> role, deleted}`; `null` before the creation.
 */
export async function applyChange(state, c) {
  checkChange(c);
  const word = ACTION_WORDS[c.action];
  const head = await changeDigest(c);
  if (state === null) {
    if (c.action !== CREATE) throw new GroupError("unknown-group", `${word} for a group never created`);
    return { groupId: c.group_id, name: c.name, epoch: 1n, head,
      members: new Map([[c.actor, OWNER]]), deleted: false };
  }
  if (!equal(c.group_id, state.groupId)) throw new GroupError("bad-change", "a change for another group");
  if (c.action === CREATE) throw new GroupError("group-exists", "a creation for a group id already taken");
  if (state.deleted) throw new GroupError("unknown-group", "the group was deleted");
  if (c.epoch !== state.epoch + 1n || !equal(c.prev, state.head)) {
    throw new GroupError("stale-change", `the change extends epoch ${c.epoch - 1n}, the group is at `
      + `epoch ${state.epoch} (or its prev is not the head)`);
  }
  const actor = state.members.get(c.actor) ?? 0;
  if (!actor) throw new GroupError("not-member", `${c.actor} is not a member`);
  const target = state.members.get(c.target) ?? 0;
  const members = new Map(state.members);
  let { name } = state;
  let deleted = false;
  const ownerOnly = [SET_ROLE, TRANSFER_OWNER, RENAME, DELETE].includes(c.action);
  if (ownerOnly && actor !== OWNER) throw new GroupError("not-allowed", `only the owner may ${word}`);
  if ((c.action === ADD || c.action === REMOVE) && actor < ADMIN) {
    throw new GroupError("not-allowed", `only the owner and admins ${word} members`);
  }
  const needMember = [REMOVE, SET_ROLE, TRANSFER_OWNER].includes(c.action);
  if (needMember && !target) throw new GroupError("bad-change", `${c.target} is not a member`);
  switch (c.action) {
    case ADD:
      if (target) throw new GroupError("bad-change", `${c.target} is already a member`);
      members.set(c.target, MEMBER);
      break;
    case REMOVE:
      if (actor === ADMIN && target >= ADMIN) {
        throw new GroupError("not-allowed", "an admin cannot remove the owner or another admin");
      }
      members.delete(c.target);
      break;
    case LEAVE:
      if (actor === OWNER) throw new GroupError("not-allowed", "the owner must transfer ownership first");
      members.delete(c.actor);
      break;
    case SET_ROLE:
      if (target === c.role) throw new GroupError("bad-change", `${c.target} already has role ${c.role}`);
      members.set(c.target, c.role);
      break;
    case TRANSFER_OWNER:
      members.set(c.target, OWNER);
      members.set(c.actor, ADMIN);
      break;
    case RENAME:
      name = c.name;
      break;
    default: // DELETE
      deleted = true;
  }
  return { groupId: state.groupId, name, epoch: c.epoch, head, members, deleted };
}

/**
 * Replay `changes` (encoded) from `state` (null: from the creation), each
 * parsed, of `groupId`, verified with `await keyFor(actor)` and applied;
 * `onChange(before, after, change)` sees each.  The first refusal throws.
 */
export async function replayLog(changes, { keyFor, state = null, groupId = null, onChange }) {
  for (const data of changes) {
    const c = parseChange(data);
    if (groupId !== null && !equal(c.group_id, groupId)) {
      throw new GroupError("bad-change", "a change for another group in the log");
    }
    const key = await keyFor(c.actor);
    if (!key) throw new GroupError("bad-change", `no key for ${c.actor}, who signed epoch ${c.epoch}`);
    await verifyChange(c, key);
    const after = await applyChange(state, c);
    if (onChange) await onChange(state, after, c);
    state = after;
  }
  if (state === null) throw new GroupError("unknown-group", "an empty log");
  return state;
}
