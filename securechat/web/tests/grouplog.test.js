// A group's change log (15.1, 15.3) against vector 13.5 byte for byte, and
// every refusal of the membership rules and of a replayed log by its code.
import { test } from "node:test";
import assert from "node:assert/strict";

import { concat, toHex, utf8 } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import {
  ADD, ADMIN, CREATE, DELETE, LEAVE, MEMBER, REMOVE, RENAME, SET_ROLE, TRANSFER_OWNER, GroupError,
  applyChange, changeBody, changeDigest, encodeChange, parseChange, replayLog, signChange,
  verifyChange,
} from "../static/js/protocol/grouplog.js";
import { vector } from "./vectors.js";

const v = vector("group-change");
const big = (b) => BigInt("0x" + toHex(b));
const text = (b) => new TextDecoder().decode(b);

async function user(seedByte) {
  const signer = await ed25519SigningKey(new Uint8Array(32).fill(seedByte));
  return { signer, key: { scheme: signer.scheme, key: signer.publicKey } };
}

test("vector 13.5: body, signature, change and digest byte for byte", async () => {
  const signer = await ed25519SigningKey(v["actor.seed"]);
  const fields = { group_id: v.group_id, epoch: big(v.epoch), prev: v.prev, actor: text(v.actor),
    action: v.action[0], target: text(v.target), role: v.role[0], name: text(v.name),
    made_at: big(v.made_at) };
  assert.equal(toHex(changeBody(fields)), toHex(v.body));
  const signed = await signChange(signer, fields);
  assert.equal(toHex(signed.signature), toHex(v.signature));
  assert.equal(toHex(signed.encoded), toHex(v.change));
  assert.equal(toHex(await changeDigest(signed)), toHex(v.digest));
  const parsed = parseChange(v.change);
  assert.equal(parsed.actor, "alice");
  assert.equal(parsed.target, "bob");
  await verifyChange(parsed, { scheme: signer.scheme, key: signer.publicKey });
});

const GID = new Uint8Array(16).fill(7);

/** A group made by alice (seed 1) with bob (2) and carol (3) added: its log and keys. */
async function team() {
  const people = { alice: await user(1), bob: await user(2), carol: await user(3), dave: await user(4) };
  const log = [];
  let prev = new Uint8Array(32);
  let epoch = 1n;
  const add = async (actor, action, more = {}) => {
    const c = await signChange(people[actor].signer, { group_id: GID, epoch, prev, actor, action,
      ...more });
    log.push(c.encoded);
    prev = await changeDigest(c);
    epoch += 1n;
    return c;
  };
  await add("alice", CREATE, { name: "team" });
  await add("alice", ADD, { target: "bob" });
  await add("alice", ADD, { target: "carol" });
  const keyFor = async (name) => people[name]?.key ?? null;
  return { people, log, add, keyFor, next: () => ({ epoch, prev }) };
}

async function refused(promise, code) {
  await assert.rejects(promise, (e) => e instanceof GroupError && e.code === code);
}

test("a replayed log gives the members, roles, name and epoch", async () => {
  const t = await team();
  await t.add("alice", SET_ROLE, { target: "bob", role: ADMIN });
  await t.add("alice", RENAME, { name: "the team" });
  const state = await replayLog(t.log, { keyFor: t.keyFor, groupId: GID });
  assert.equal(state.epoch, 5n);
  assert.equal(state.name, "the team");
  assert.deepEqual([...state.members], [["alice", 3], ["bob", ADMIN], ["carol", MEMBER]]);
});

test("a forged change (another key's signature) is refused: bad-change", async () => {
  const t = await team();
  const { epoch, prev } = t.next();
  const forged = await signChange(t.people.dave.signer, { group_id: GID, epoch, prev, actor: "alice",
    action: ADD, target: "dave" });
  await refused(replayLog([...t.log, forged.encoded], { keyFor: t.keyFor }), "bad-change");
});

test("a change altered after signing is refused: bad-change", async () => {
  const t = await team();
  const altered = t.log[2].slice();
  assert.equal(altered[65], utf8("c")[0]); // the target's first byte, after its length
  altered[65] ^= 1; // "barol": still a user name, no longer what alice signed
  await refused(replayLog([t.log[0], t.log[1], altered], { keyFor: t.keyFor }), "bad-change");
});

test("a broken hash chain (prev not the head) is refused: stale-change", async () => {
  const t = await team();
  const { epoch } = t.next();
  const c = await signChange(t.people.alice.signer, { group_id: GID, epoch, prev: new Uint8Array(32).fill(9),
    actor: "alice", action: ADD, target: "dave" });
  await refused(replayLog([...t.log, c.encoded], { keyFor: t.keyFor }), "stale-change");
});

test("a wrong epoch (a change skipped or repeated) is refused: stale-change", async () => {
  const t = await team();
  await refused(replayLog([t.log[0], t.log[2]], { keyFor: t.keyFor }), "stale-change");
  await refused(replayLog([t.log[0], t.log[1], t.log[1]], { keyFor: t.keyFor }), "stale-change");
});

test("a change by a non-member is refused: not-member", async () => {
  const t = await team();
  const { epoch, prev } = t.next();
  const c = await signChange(t.people.dave.signer, { group_id: GID, epoch, prev, actor: "dave",
    action: LEAVE });
  await refused(replayLog([...t.log, c.encoded], { keyFor: t.keyFor }), "not-member");
});

test("a member adding, the owner leaving, an admin removing the owner: not-allowed", async () => {
  const t = await team();
  const state = await replayLog(t.log, { keyFor: t.keyFor });
  const { epoch, prev } = t.next();
  const base = { group_id: GID, epoch, prev };
  const change = (actor, action, more) => signChange(t.people[actor].signer, { ...base, actor, action,
    ...more });
  await refused(applyChange(state, await change("bob", ADD, { target: "dave" })), "not-allowed");
  await refused(applyChange(state, await change("alice", LEAVE, {})), "not-allowed");
  await refused(applyChange(state, await change("bob", RENAME, { name: "x" })), "not-allowed");
  await refused(applyChange(state, await change("bob", DELETE, {})), "not-allowed");
  const admin = await applyChange(state, await change("alice", SET_ROLE, { target: "bob", role: ADMIN }));
  const next = { group_id: GID, epoch: epoch + 1n, prev: admin.head };
  const byBob = await signChange(t.people.bob.signer, { ...next, actor: "bob", action: REMOVE,
    target: "alice" });
  await refused(applyChange(admin, byBob), "not-allowed");
});

test("targets that do not fit: bad-change", async () => {
  const t = await team();
  const state = await replayLog(t.log, { keyFor: t.keyFor });
  const { epoch, prev } = t.next();
  const change = (action, more) => signChange(t.people.alice.signer, { group_id: GID, epoch, prev,
    actor: "alice", action, ...more });
  await refused(applyChange(state, await change(ADD, { target: "bob" })), "bad-change");
  await refused(applyChange(state, await change(REMOVE, { target: "dave" })), "bad-change");
  await refused(applyChange(state, await change(SET_ROLE, { target: "bob", role: MEMBER })), "bad-change");
  await refused(applyChange(state, await change(TRANSFER_OWNER, { target: "dave" })), "bad-change");
  await refused(signChange(t.people.alice.signer, { group_id: GID, epoch, prev, actor: "alice",
    action: ADD, target: "alice" }), "bad-change");
});

test("a change for another group, a second creation, a change after delete", async () => {
  const t = await team();
  const state = await replayLog(t.log, { keyFor: t.keyFor });
  const { epoch, prev } = t.next();
  const other = await signChange(t.people.alice.signer, { group_id: new Uint8Array(16), epoch, prev,
    actor: "alice", action: LEAVE });
  await refused(replayLog([...t.log, other.encoded], { keyFor: t.keyFor, groupId: GID }), "bad-change");
  await refused(applyChange(state, parseChange(t.log[0])), "group-exists");
  await refused(applyChange(null, parseChange(t.log[1])), "unknown-group");
  const gone = await t.add("alice", DELETE);
  const after = await replayLog(t.log, { keyFor: t.keyFor });
  assert.equal(after.deleted, true);
  const late = await signChange(t.people.alice.signer, { group_id: GID, epoch: gone.epoch + 1n,
    prev: after.head, actor: "alice", action: RENAME, name: "again" });
  await refused(applyChange(after, late), "unknown-group");
});

test("a change that does not parse exactly: bad-change", () => {
  const change = v.change;
  for (const data of [change.subarray(0, change.length - 1), concat(change, Uint8Array.of(0)),
    concat(Uint8Array.of(2), change.subarray(1)), new Uint8Array(715)]) {
    assert.throws(() => parseChange(data), (e) => e instanceof GroupError && e.code === "bad-change");
  }
  const unknown = change.slice();
  unknown[1 + 16 + 8 + 32 + 6] = 9; // the action byte, after text8 "alice"
  assert.throws(() => parseChange(unknown), (e) => e.code === "bad-change");
});

test("an actor with no key, and an empty log", async () => {
  const t = await team();
  await refused(replayLog(t.log, { keyFor: async () => null }), "bad-change");
  await refused(replayLog([], { keyFor: t.keyFor }), "unknown-group");
});

test("encodeChange of a parsed change gives its bytes again", () => {
  assert.equal(toHex(encodeChange(parseChange(v.change))), toHex(v.change));
});
