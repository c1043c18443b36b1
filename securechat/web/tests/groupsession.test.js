// Groups between browser sessions through an in-memory relay (15, 16):
// a group made and changed from the page, every change verified, sender
// keys handed over in letters of content type 2 (never shown as letters),
// messages both ways, acknowledged, and a removed member locked out.
import { test } from "node:test";
import assert from "node:assert/strict";

import { concat, text8, toHex, u16, u32, u64, u8, utf8 } from "../static/js/protocol/bytes.js";
import { ADD, REMOVE, signChange } from "../static/js/protocol/grouplog.js";
import { FakeRelay } from "./fakerelay.js";

const texts = (u) => u.seen.filter((e) => e.kind === "groupText").map((e) => `${e.sender}: ${e.text}`);
const kinds = (u, kind) => u.seen.filter((e) => e.kind === kind);
const contains = (hay, needle) => toHex(hay).includes(toHex(utf8(needle)));

/** alice (owner), bob and carol in group 'team', all logged in. */
async function team() {
  const relay = new FakeRelay();
  for (const [name, fill] of [["alice", 1], ["bob", 2], ["carol", 3]]) {
    await relay.user(name, fill);
    relay.login(name);
  }
  await relay.settle();
  const [alice, bob, carol] = ["alice", "bob", "carol"].map((n) => relay.users.get(n));
  await alice.session.groups.create("team");
  await relay.settle();
  const id = [...alice.session.groups.states.keys()][0];
  await alice.session.groups.change(id, ADD, "bob");
  await relay.settle();
  await alice.session.groups.change(id, ADD, "carol");
  await relay.settle();
  return { relay, alice, bob, carol, id };
}

test("a group made on the page: every member replays and verifies the same members", async () => {
  const { alice, bob, carol, id } = await team();
  for (const u of [alice, bob, carol]) {
    assert.deepEqual(u.session.groups.members(id), [["alice", "owner"], ["bob", "member"], ["carol", "member"]]);
    assert.equal(u.session.groups.states.get(id).epoch, 3n);
  }
  const changes = kinds(bob, "groupChange").map((e) => `${e.actor} ${e.action} ${e.target}`);
  assert.deepEqual(changes, ["alice add bob", "alice add carol"]);
});

test("messages both ways; key letters consumed, never listed or shown; the relay sees ciphertext", async () => {
  const { relay, alice, bob, carol, id } = await team();
  alice.session.groups.say(id, "Lunch at noon, the usual place.");
  await relay.settle();
  bob.session.groups.say(id, "I'll be there");
  await relay.settle();
  assert.deepEqual(texts(bob), ["alice: Lunch at noon, the usual place."]);
  assert.deepEqual(texts(carol), ["alice: Lunch at noon, the usual place.", "bob: I'll be there"]);
  assert.deepEqual(texts(alice), ["bob: I'll be there"]);
  for (const u of [alice, bob, carol]) {
    assert.equal(kinds(u, "letterOpened").length, 0);
    assert.equal(kinds(u, "letterFailed").length, 0);
  }
  const keyLetters = relay.letters.filter((l) => l.sender === "alice");
  assert.deepEqual(keyLetters.map((l) => l.recipient).sort(), ["bob", "carol"]);
  assert.ok(keyLetters.every((l) => !l.deleted && l.state === 1)); // kept for another client of theirs
  bob.seen.length = 0;
  bob.session.listLetters(1);
  await relay.settle();
  assert.deepEqual(kinds(bob, "letterList")[0].letters, []); // the key letter is no letter to read
  for (const [, , , body] of relay.wire) {
    assert.ok(!contains(body, "Lunch at noon") && !contains(body, "be there"));
  }
  const acks = relay.wire.filter(([u, name]) => u === "carol" && name === "groupAck").map(([, , f]) => f.seq);
  assert.deepEqual(acks, [1n, 2n]);
  // the second message of alice's reuses her chain: no new key letter
  alice.session.groups.say(id, "see you");
  await relay.settle();
  assert.equal(relay.letters.filter((l) => l.sender === "alice").length, 2);
  assert.deepEqual(texts(carol).at(-1), "alice: see you");
});

test("a removed member gets no new chain and cannot read what follows; the rest re-key", async () => {
  const { relay, alice, bob, carol, id } = await team();
  alice.session.groups.say(id, "before");
  await relay.settle();
  await alice.session.groups.change(id, REMOVE, "carol");
  await relay.settle();
  assert.equal(carol.session.groups.states.has(id), false);
  assert.equal(kinds(carol, "groupGone").length, 1);
  alice.session.groups.say(id, "after");
  await relay.settle();
  assert.deepEqual(texts(bob), ["alice: before", "alice: after"]);
  const toCarol = relay.letters.filter((l) => l.sender === "alice" && l.recipient === "carol");
  assert.equal(toCarol.length, 1); // only the first chain
  // a relay that hands carol the new message anyway: she cannot open it
  const g = relay.groups.get(id);
  relay.deliver("carol", g.state.groupId, g.messages.at(-1));
  await relay.settle();
  assert.deepEqual(texts(carol), ["alice: before"]);
});

test("a member added later reads from its joining on; an earlier message is unknown-epoch", async () => {
  const relay = new FakeRelay();
  for (const [name, fill] of [["alice", 1], ["bob", 2], ["dave", 4]]) {
    await relay.user(name, fill);
    relay.login(name);
  }
  await relay.settle();
  const [alice, bob, dave] = ["alice", "bob", "dave"].map((n) => relay.users.get(n));
  await alice.session.groups.create("team");
  await relay.settle();
  const id = [...alice.session.groups.states.keys()][0];
  await alice.session.groups.change(id, ADD, "bob");
  await relay.settle();
  alice.session.groups.say(id, "one");
  await relay.settle();
  await alice.session.groups.change(id, ADD, "dave");
  await relay.settle();
  alice.session.groups.say(id, "two");
  await relay.settle();
  assert.deepEqual(texts(dave), ["alice: two"]);
  assert.deepEqual(texts(bob), ["alice: one", "alice: two"]);
  const g = relay.groups.get(id);
  relay.deliver("dave", g.state.groupId, g.messages[0]); // sent before dave joined
  await relay.settle();
  assert.deepEqual(kinds(dave, "groupRefused").map((e) => e.code), ["unknown-epoch"]);
  relay.deliver("dave", g.state.groupId, g.messages[0]); // the same seq again: ignored (15.3)
  await relay.settle();
  assert.equal(kinds(dave, "groupRefused").length, 1);
});

const notices = (u) => kinds(u, "groupNotice").map((e) => e.text);

test("a forged GROUP_CHANGED (not the actor's key) is refused, the log asked, the state kept", async () => {
  const { relay, bob, id } = await team();
  const dave = await relay.user("dave", 4);
  const state = bob.session.groups.states.get(id);
  const forged = await signChange(dave.signer, { group_id: state.groupId, epoch: 4n, prev: state.head,
    actor: "alice", action: ADD, target: "dave" });
  relay.to(bob, "groupChanged", { change: forged.encoded });
  await relay.settle();
  assert.match(notices(bob).at(-1), /REFUSED \(bad-change\): the change at epoch 4 is not signed by alice's key/);
  assert.equal(bob.session.groups.states.get(id).epoch, 3n);
  assert.equal(bob.session.groups.members(id).length, 3);
  assert.deepEqual(relay.wire.filter(([u, n]) => u === "bob" && n === "groupLog").map(([, , f]) => f.after_epoch),
    [0n, 3n]);
});

test("a log with a broken hash chain refuses the group view from that change on", async () => {
  const { relay, alice, id } = await team();
  const g = relay.groups.get(id);
  const bad = await signChange(alice.signer, { group_id: g.state.groupId, epoch: 3n,
    prev: new Uint8Array(32).fill(1), actor: "alice", action: ADD, target: "carol" });
  g.log[2] = bad.encoded; // the relay rewrote history
  const erin = await relay.user("erin", 5);
  relay.login("erin");
  await relay.settle();
  erin.session.groups._askLog(id, g.state.groupId, 0n);
  await relay.settle();
  assert.match(notices(erin).at(-1), /a change in its log is REFUSED \(stale-change\)/);
  assert.equal(erin.session.groups.states.get(id).epoch, 2n); // nothing after it taken
});

test("GROUP_LIST that does not match the verified log: the relay is lying", async () => {
  const { relay, bob, id } = await team();
  const state = bob.session.groups.states.get(id);
  bob.inbox.push([0x84, concat(u16(1), state.groupId, text8("team"), u8(1), u64(3n), u32(7))]);
  await relay.settle();
  assert.match(notices(bob).at(-1), /does not match team's verified log .*: the relay is lying/);
});

test("a key letter read from the list is consumed: no letter shown, no read receipt, not deleted", async () => {
  const { relay, alice, bob, id } = await team();
  relay.mute = (user, name) => user === "bob" && name === "letterArrived"; // no automatic fetch
  alice.session.groups.say(id, "hello");
  await relay.settle();
  assert.deepEqual(kinds(bob, "groupHeld").length, 1);
  const letter = relay.letters.find((l) => l.sender === "alice" && l.recipient === "bob");
  bob.session.readLetter("alice", letter.letter_id); // the user pressed Read
  await relay.settle();
  assert.deepEqual(texts(bob), ["alice: hello"]);
  assert.equal(kinds(bob, "letterOpened").length, 0);
  const receipts = relay.wire.filter(([u, n]) => u === "bob" && n === "postReceipt").map(([, , f]) => f.receipt[1]);
  assert.deepEqual(receipts, [1]); // delivery only
  assert.equal(letter.deleted, false);
});

test("a key letter fetched by another client of ours is still taken at the next login", async () => {
  const { relay, alice, bob, id } = await team();
  bob.online = false; // bob is away; his other client fetches the letter meanwhile
  alice.session.groups.say(id, "while you were out");
  await relay.settle();
  const letter = relay.letters.find((l) => l.sender === "alice" && l.recipient === "bob");
  letter.state = 1;
  bob.inbox.length = 0;
  bob.seen.length = 0;
  relay.login("bob");
  await relay.settle();
  relay.deliver("bob", relay.groups.get(id).state.groupId, relay.groups.get(id).messages[0]);
  relay.to(bob, "newLetters", { count: 0n });
  await relay.settle();
  assert.deepEqual(texts(bob), ["alice: while you were out"]);
});

test("a group message before WELCOME is unexpected-message; a bad one bad-value", async () => {
  const relay = new FakeRelay();
  const carol = await relay.user("carol", 3);
  const { RelaySession } = await import("../static/js/client/session.js");
  const s = new RelaySession({ me: "carol", signer: carol.signer, out: () => {}, view: () => {} });
  const list = (role) => [0x84, concat(u16(1), new Uint8Array(16), text8("team"), u8(role), u64(2n), u32(2))];
  await assert.rejects(s.message(...list(1)), (e) => e.code === "unexpected-message");
  relay.login("carol");
  await relay.settle();
  await assert.rejects(carol.session.message(...list(4)), (e) => e.code === "bad-value");
});

test("a page loaded again refuses a message it opened before as replayed (reading positions kept)", async () => {
  const { relay, alice, bob, id } = await team();
  alice.session.groups.say(id, "one");
  await relay.settle();
  alice.session.groups.say(id, "two");
  await relay.settle();
  assert.deepEqual(texts(bob), ["alice: one", "alice: two"]);
  bob.online = false;
  bob.seen.length = 0;
  relay.login("bob"); // the same store (IndexedDB on the page), nothing else kept
  await relay.settle();
  const g = relay.groups.get(id);
  relay.deliver("bob", g.state.groupId, { ...g.messages[0], seq: 41n }); // replayed under a new seq
  relay.deliver("bob", g.state.groupId, { ...g.messages[1], seq: 42n });
  await relay.settle();
  assert.deepEqual(kinds(bob, "groupRefused").map((e) => e.code), ["replayed", "replayed"]);
  alice.session.groups.say(id, "three");
  await relay.settle();
  assert.deepEqual(texts(bob), ["alice: three"]);
});

test("GROUP_LOG refused: a notice, and the log can be asked for again", async () => {
  const { relay, bob, id } = await team();
  const state = bob.session.groups.states.get(id);
  bob.session.groups._askLog(id, state.groupId, 3n);
  bob.inbox.length = 0; // the relay refuses it instead of answering
  relay.to(bob, "groupRefused", { group_id: state.groupId, command: 0x74, reason: 23 });
  await relay.settle();
  assert.match(notices(bob).at(-1), /refused a group command \(0x74\)/);
  assert.equal(bob.session.groups.logs.has(id), false);
});

test("messages waiting for a group we do not know yet ask LIST_GROUPS once", async () => {
  const { relay, alice, bob, id } = await team();
  const g = relay.groups.get(id);
  alice.session.groups.say(id, "a");
  alice.session.groups.say(id, "b");
  await relay.settle();
  bob.session.groups.states.delete(id); // as if the list had not come yet
  bob.session.groups.keys.groups.delete(id);
  const mark = relay.wire.length;
  relay.deliver("bob", g.state.groupId, { ...g.messages[0], seq: 50n });
  relay.deliver("bob", g.state.groupId, { ...g.messages[1], seq: 51n });
  relay.mute = (user, name) => name === "groupList";
  await relay.settle();
  assert.equal(relay.wire.slice(mark).filter(([u, n]) => u === "bob" && n === "listGroups").length, 1);
});

test("a key letter that could not be sealed (no prekeys) is owed and sent again before the next message", async () => {
  const { relay, alice, carol, id } = await team();
  const prekeys = relay.prekeys.get("carol");
  relay.prekeys.delete("carol");
  alice.session.groups.say(id, "one");
  await relay.settle();
  assert.match(notices(alice).at(-1), /could not be sent to carol yet/);
  assert.deepEqual(kinds(carol, "groupHeld").length, 1);
  relay.prekeys.set("carol", prekeys);
  alice.session.groups.say(id, "two");
  await relay.settle();
  assert.deepEqual(texts(carol), ["alice: one", "alice: two"]);
  const toCarol = relay.letters.filter((l) => l.sender === "alice" && l.recipient === "carol");
  assert.equal(toCarol.length, 1);
});

test("a FETCH_LETTER refused (NO_LETTER) can be asked again: the fetch is not left pending", async () => {
  const { relay, bob } = await team();
  const id = new Uint8Array(16).fill(3);
  bob.session.readLetter("alice", id);
  relay.to(bob, "commandFailed", { command: 0x55, subject: utf8("alice"), reason: 20 });
  await relay.settle();
  assert.deepEqual(bob.session.inbox.reading, []);
  bob.session.readLetter("alice", id);
  assert.equal(relay.wire.filter(([u, n]) => u === "bob" && n === "fetchLetter").length, 2);
});

test("a change the rules refuse is refused on the page before it is sent (not-allowed)", async () => {
  const { relay, alice, bob, id } = await team();
  const mark = relay.wire.length;
  bob.session.groups.change(id, ADD, "dave");
  alice.session.groups.change(id, 4); // the owner leaving
  await relay.settle();
  assert.match(notices(bob).at(-1), /not sent \(not-allowed\): only the owner and admins add members/);
  assert.match(notices(alice).at(-1), /not sent \(not-allowed\): the owner must transfer ownership first/);
  assert.equal(relay.wire.slice(mark).filter(([, n]) => n === "groupChange").length, 0);
});
