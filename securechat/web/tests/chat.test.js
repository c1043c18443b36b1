// Two end-to-end chats (section 12) wired to each other as the relay
// would carry them: READY, lines, END and the clean or truncated ends.
import { test } from "node:test";
import assert from "node:assert/strict";

import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import { parse as parseClient } from "./relay-client-parse.js";
import { Chat } from "../static/js/client/chat.js";

const subtle = globalThis.crypto.subtle;

async function user(byte) {
  const signer = await ed25519SigningKey(new Uint8Array(32).fill(byte));
  return { signer, spki: new Uint8Array(await subtle.exportKey("spki", signer.publicKey)) };
}

/** alice (initiator) and bob (responder), the relay between them in memory. */
async function pair({ tamper = null } = {}) {
  const alice = await user(1);
  const bob = await user(2);
  const seen = { alice: [], bob: [] };
  const queue = [];
  const chats = {};
  const make = (me, peer, initiator, keys, peerKeys) => new Chat({
    peer, peerKey: peerKeys.spki, initiator, me, signer: keys.signer, maxPayload: 65408n,
    out: (messages) => queue.push(...messages.map((m) => [me, peer, m])),
    view: (event) => seen[me].push(event), clock: () => 1767225600000,
  });
  chats.alice = make("alice", "bob", true, alice, bob);
  chats.bob = make("bob", "alice", false, bob, alice);
  const pump = async () => {
    while (queue.length) {
      const [from, to, [type, body]] = queue.shift();
      const message = parseClient(type, body);
      if (message.kind === "relay") {
        const payload = tamper ? tamper(from, message.payload) : message.payload;
        await chats[to].relayed(payload);
      } else if (message.kind === "chatStop") {
        chats.alice.ended(8);
        chats.bob.ended(8);
      }
    }
  };
  await chats.alice.start();
  await pump();
  return { chats, seen, pump };
}

test("a chat is secured on both sides once READY arrives", async () => {
  const { seen } = await pair();
  assert.deepEqual(seen.bob.map((e) => e.kind), ["secured"]);
  assert.deepEqual(seen.alice.map((e) => e.kind), ["secured"]);
});

test("lines both ways, then an END that matches: a clean end", async () => {
  const { chats, seen, pump } = await pair();
  await chats.alice.say("hello bob");
  await chats.bob.say("hi alice");
  await pump();
  assert.deepEqual(seen.bob.filter((e) => e.kind === "text").map((e) => e.text), ["hello bob"]);
  assert.deepEqual(seen.alice.filter((e) => e.kind === "text").map((e) => e.text), ["hi alice"]);
  await chats.alice.stop();
  await pump();
  assert.equal(seen.bob.at(-1).how, "ended by the peer");
  assert.equal(seen.alice.at(-1).how, "stopped by you");
});

test("a relay that drops a line is caught: record-gap ends the chat", async () => {
  const drop = { armed: false };
  const { chats, seen, pump } = await pair({
    tamper: (from, payload) => {
      if (from === "alice" && drop.armed) {
        drop.armed = false;
        return new Uint8Array(0); // the relay drops alice's first line
      }
      return payload;
    },
  });
  drop.armed = true;
  await chats.alice.say("first");
  await pump();
  await chats.alice.say("second");
  await pump();
  const failed = seen.bob.find((e) => e.kind === "failed");
  assert.equal(failed.code, "record-gap");
});

test("a STOPPED chat without END is reported truncated", async () => {
  const { chats, seen } = await pair();
  await chats.alice.say("one");
  chats.bob.ended(8);
  assert.equal(seen.bob.at(-1).how, "truncated");
});

test("a peer who left is reported as left, never as a clean end", async () => {
  const { chats, seen } = await pair();
  chats.bob.ended(7);
  assert.equal(seen.bob.at(-1).how, "the peer went offline");
});

test("a line before the chat is secured is refused locally", async () => {
  const alice = await user(1);
  const bob = await user(2);
  const events = [];
  const chat = new Chat({ peer: "bob", peerKey: bob.spki, initiator: true, me: "alice",
    signer: alice.signer, maxPayload: 65408n, out: () => undefined, view: (e) => events.push(e) });
  await chat.say("too soon");
  assert.equal(events[0].kind, "refused");
});
