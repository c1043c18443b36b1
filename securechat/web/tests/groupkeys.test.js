// What a member keeps of sender keys and what it accepts (16.2, 16.4,
// 16.5): every refusal by its code, held and waiting messages, replays,
// reordering and gaps detected by the signed per-sender counters.
import { test } from "node:test";
import assert from "node:assert/strict";

import { utf8 } from "../static/js/protocol/bytes.js";
import { ADD, CREATE, REMOVE } from "../static/js/protocol/grouplog.js";
import { encodeDistribution, newChain, sealGroupMessage } from "../static/js/protocol/senderkeys.js";
import { GroupKeys, HOLD_PER_SENDER, KEEP_CHAINS } from "../static/js/client/groupkeys.js";

const GID = new Uint8Array(16).fill(5);

/** bob's GroupKeys in a group of alice, bob, carol at epoch 3; alice's chain at epoch 3. */
async function setting() {
  const keys = new GroupKeys({ me: "bob" });
  await keys.changed(GID, { epoch: 1n, action: CREATE, actor: "alice", target: "" }, new Set(["alice"]));
  await keys.changed(GID, { epoch: 2n, action: ADD, actor: "alice", target: "bob" }, new Set(["alice", "bob"]));
  await keys.changed(GID, { epoch: 3n, action: ADD, actor: "alice", target: "carol" },
    new Set(["alice", "bob", "carol"]));
  const chain = await newChain(3n);
  let seq = 0n;
  const seal = async ({ epoch = 3n, sender = "alice", c = chain, text = "hi", advance = true } = {}) => {
    const { body, next } = await sealGroupMessage({ groupId: GID, sender, epoch, chain: c, sentAt: 7n,
      content: utf8(text) });
    if (advance) {
      c.chainKey = next;
      c.counter += 1;
    }
    seq += 1n;
    return { group_id: GID, seq, sender, stored_at: 1n, body };
  };
  const give = (c = chain, sender = "alice") => keys.distribution(sender, encodeDistribution(GID, c));
  return { keys, chain, seal, give };
}

const codes = (o) => o.events.filter((e) => e.kind === "groupRefused" || e.kind === "keyRefused")
  .map((e) => e.code);
const shown = (o) => o.events.filter((e) => e.kind === "groupText").map((e) => e.text + (e.late ? " (late)" : ""));

test("a message with its key opens; the same counter again is replayed", async () => {
  const s = await setting();
  await s.give();
  const m = await s.seal({ text: "one" });
  assert.deepEqual(shown(await s.keys.message(m)), ["one"]);
  assert.deepEqual(codes(await s.keys.message({ ...m, seq: 99n })), ["replayed"]);
});

test("reordered: a gap is shown, the late message opens with its skipped key, once", async () => {
  const s = await setting();
  await s.give();
  const first = await s.seal({ text: "first" });
  const second = await s.seal({ text: "second" });
  const o = await s.keys.message(second);
  assert.deepEqual(o.events.filter((e) => e.kind === "groupGap").map((e) => e.count), [1]);
  assert.deepEqual(shown(o), ["second"]);
  assert.deepEqual(shown(await s.keys.message(first)), ["first (late)"]);
  assert.deepEqual(codes(await s.keys.message(first)), ["replayed"]);
});

test("a message before its key is held, then opened when the key letter comes", async () => {
  const s = await setting();
  const distribution = encodeDistribution(GID, s.chain); // at counter 0
  const m = await s.seal({ text: "early" });
  const held = await s.keys.message(m);
  assert.deepEqual(held.events.map((e) => e.kind), ["groupHeld"]);
  assert.deepEqual(shown(await s.keys.distribution("alice", distribution)), ["early"]);
});

test("held messages beyond the limit: the oldest is given up as held-overflow", async () => {
  const s = await setting();
  const other = await newChain(3n);
  let o;
  for (let i = 0; i <= HOLD_PER_SENDER; i++) o = await s.keys.message(await s.seal({ c: other }));
  assert.deepEqual(codes(o), ["held-overflow"]);
});

test("a sender who is not a member at the message's epoch: not-member", async () => {
  const s = await setting();
  const dave = await newChain(3n);
  assert.deepEqual(codes(await s.keys.message(await s.seal({ sender: "dave", c: dave }))), ["not-member"]);
  assert.deepEqual(codes(await s.give(dave, "dave")), ["not-member"]);
});

test("a body naming another sender or group than GROUP_MESSAGE: wrong-sender, wrong-group", async () => {
  const s = await setting();
  const m = await s.seal();
  assert.deepEqual(codes(await s.keys.message({ ...m, sender: "carol" })), ["wrong-sender"]);
  assert.deepEqual(codes(await s.keys.message({ ...m, group_id: new Uint8Array(16) })), ["wrong-group"]);
});

test("a message from before we joined (epoch 1, we came at 2): unknown-epoch", async () => {
  const s = await setting();
  const early = await newChain(1n);
  assert.deepEqual((await s.give(early)).events.map((e) => e.kind), ["keyArrived"]); // member at our first epoch
  assert.deepEqual(codes(await s.keys.message(await s.seal({ c: early, epoch: 1n }))), ["unknown-epoch"]);
});

test("a message at an epoch the log has not reached waits, then opens when it does", async () => {
  const s = await setting();
  await s.give();
  const m = await s.seal({ epoch: 4n, text: "later" });
  const o = await s.keys.message(m);
  assert.deepEqual(o.events.map((e) => e.kind), ["groupLogBehind"]);
  const after = await s.keys.changed(GID, { epoch: 4n, action: 7, actor: "alice", target: "" },
    new Set(["alice", "bob", "carol"]));
  assert.deepEqual(shown(after), ["later"]);
});

test("after a removal, a chain made before it: stale-chain; and we make a new chain to send", async () => {
  const s = await setting();
  await s.give();
  const mine = await s.keys.send(GID, "before", 1n);
  assert.equal(mine.effects.filter((e) => e.kind === "distribute").length, 2);
  await s.keys.changed(GID, { epoch: 4n, action: REMOVE, actor: "alice", target: "carol" },
    new Set(["alice", "bob"]));
  assert.deepEqual(codes(await s.keys.message(await s.seal({ epoch: 4n }))), ["stale-chain"]);
  const again = await s.keys.send(GID, "after", 2n);
  const to = again.effects.filter((e) => e.kind === "distribute").map((e) => e.to);
  assert.deepEqual(to, ["alice"]); // never carol
});

test("a chain made for a later epoch than the message: wrong-epoch", async () => {
  const s = await setting();
  await s.keys.changed(GID, { epoch: 4n, action: 7, actor: "alice", target: "" }, new Set(["alice", "bob", "carol"]));
  const c4 = await newChain(4n);
  await s.give(c4);
  const lie = { ...c4, epoch: 3n }; // the sender seals at epoch 3 with its epoch-4 chain
  const { body } = await sealGroupMessage({ groupId: GID, sender: "alice", epoch: 3n, chain: lie, sentAt: 1n,
    content: utf8("x") });
  assert.deepEqual(codes(await s.keys.message({ group_id: GID, seq: 1n, sender: "alice", stored_at: 1n, body })),
    ["wrong-epoch"]);
});

test("a forged signature (another signing key): bad-signature, and nothing changes", async () => {
  const s = await setting();
  await s.give();
  const thief = { ...s.chain, signer: (await newChain(3n)).signer };
  const { body } = await sealGroupMessage({ groupId: GID, sender: "alice", epoch: 3n, chain: thief, sentAt: 1n,
    content: utf8("forged") });
  assert.deepEqual(codes(await s.keys.message({ group_id: GID, seq: 1n, sender: "alice", stored_at: 1n, body })),
    ["bad-signature"]);
  assert.deepEqual(shown(await s.keys.message(await s.seal({ text: "real" }))), ["real"]);
});

test("a counter before the key we were given: before-key; more than 1000 ahead: too-far-ahead", async () => {
  const s = await setting();
  const old = await s.seal({ text: "old" });
  await s.give(); // at counter 1
  assert.deepEqual(codes(await s.keys.message({ ...old, seq: 50n })).slice(-1), ["before-key"]);
  s.chain.counter += 1001;
  assert.deepEqual(codes(await s.keys.message(await s.seal())), ["too-far-ahead"]);
});

test("another key under a chain id held: chain-conflict; the same again is nothing new", async () => {
  const s = await setting();
  await s.give();
  assert.deepEqual((await s.give()).events, []);
  const other = { ...(await newChain(3n)), chainId: s.chain.chainId };
  assert.deepEqual(codes(await s.give(other)), ["chain-conflict"]);
});

test("beyond the chains kept, the oldest is retired: its messages and its key are retired-chain", async () => {
  const s = await setting();
  await s.give();
  const oldMessage = await s.seal({ advance: false });
  for (let i = 0; i < KEEP_CHAINS; i++) await s.give(await newChain(3n));
  assert.deepEqual(codes(await s.keys.message(oldMessage)), ["retired-chain"]);
  assert.deepEqual(codes(await s.give()), ["retired-chain"]);
});

test("a distribution that does not parse is refused; one for an unknown group waits", async () => {
  const s = await setting();
  assert.deepEqual(codes(await s.keys.distribution("alice", Uint8Array.of(1, 2))), ["malformed"]);
  const elsewhere = encodeDistribution(new Uint8Array(16).fill(8), s.chain);
  assert.deepEqual((await s.keys.distribution("alice", elsewhere)).events.map((e) => e.kind), ["groupLogBehind"]);
});
