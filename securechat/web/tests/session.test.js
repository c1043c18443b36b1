// The client core above the relay connection (12.1, 12.4): what it checks
// of the relay, pins, and chats run through it.
import { test } from "node:test";
import assert from "node:assert/strict";

import { bytes16, bytes32, concat, text8, u64, u8 } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import { MemoryPins, RelaySession, fingerprint } from "../static/js/client/session.js";

const subtle = globalThis.crypto.subtle;

const from = {
  welcome: (user) => [0x40, concat(text8(user), u64(65408n))],
  chatStarted: (peer, key, initiator) => [0x43, concat(text8(peer), bytes16(key), u8(initiator))],
  relayed: (peer, payload) => [0x47, concat(text8(peer), bytes32(payload))],
  chatEnded: (peer, reason) => [0x46, concat(text8(peer), u8(reason))],
  chatRequested: (peer) => [0x42, text8(peer)],
};

async function user(byte) {
  const signer = await ed25519SigningKey(new Uint8Array(32).fill(byte));
  return { signer, spki: new Uint8Array(await subtle.exportKey("spki", signer.publicKey)) };
}

async function session(me = "alice", pins = new MemoryPins()) {
  const keys = await user(1);
  const sent = [];
  const seen = [];
  const s = new RelaySession({ me, signer: keys.signer, pins, out: (m) => sent.push(...m),
    view: (e) => seen.push(e) });
  return { s, sent, seen };
}

const code = (promise) => promise.then(() => "ok", (e) => e.code);

test("the fingerprint is SHA256: and unpadded base64, as the terminal shows it", async () => {
  const bob = await user(2);
  const fp = await fingerprint(bob.spki);
  assert.match(fp, /^SHA256:[A-Za-z0-9+/]{43}$/);
});

test("12.4: WELCOME must name us, once, and come first", async () => {
  let { s } = await session();
  assert.equal(await code(s.message(...from.chatRequested("bob"))), "unexpected-message");
  ({ s } = await session());
  assert.equal(await code(s.message(...from.welcome("mallory"))), "bad-value");
  ({ s } = await session());
  await s.message(...from.welcome("alice"));
  assert.equal(await code(s.message(...from.welcome("alice"))), "unexpected-message");
});

test("12.4: RELAYED with no chat is unexpected-message", async () => {
  const { s } = await session();
  await s.message(...from.welcome("alice"));
  assert.equal(await code(s.message(...from.relayed("bob", Uint8Array.of(1)))),
    "unexpected-message");
});

test("12.1: a first key is pinned; a changed one is refused with CHAT_STOP", async () => {
  const pins = new MemoryPins();
  const bob = await user(2);
  let { s, sent, seen } = await session("alice", pins);
  await s.message(...from.welcome("alice"));
  await s.message(...from.chatStarted("bob", bob.spki, 1));
  assert.equal(seen.at(-1).kind, "chatStarted");
  assert.equal(seen.at(-1).first, true);
  assert.equal(sent.at(-1)[0], 0x36); // the HELLO, in a RELAY
  assert.equal(await pins.get("bob"), await fingerprint(bob.spki));

  const impostor = await user(3);
  ({ s, sent, seen } = await session("alice", pins));
  await s.message(...from.welcome("alice"));
  await s.message(...from.chatStarted("bob", impostor.spki, 1));
  assert.deepEqual(sent.map(([t]) => t), [0x50, 0x35]); // our prekeys; CHAT_STOP, no handshake
  assert.equal(seen.at(-1).kind, "keyChanged");
  assert.equal(seen.at(-1).offered, await fingerprint(impostor.spki));
  // RELAYED from bob is dropped until CHAT_ENDED (the peer may have started).
  assert.equal(await code(s.message(...from.relayed("bob", Uint8Array.of(1)))), "ok");
  await s.message(...from.chatEnded("bob", 8));
  assert.equal(await code(s.message(...from.relayed("bob", Uint8Array.of(1)))),
    "unexpected-message");
  await s.trustKey("bob");
  assert.equal(await pins.get("bob"), await fingerprint(impostor.spki));
});

test("two sessions chat through a relay in memory", async () => {
  const alice = await user(1);
  const bob = await user(2);
  const seen = { alice: [], bob: [] };
  const queue = [];
  const sessions = {};
  for (const [me, keys] of [["alice", alice], ["bob", bob]]) {
    sessions[me] = new RelaySession({ me, signer: keys.signer,
      out: (messages) => queue.push(...messages.map((m) => [me, m])),
      view: (e) => seen[me].push(e) });
    await sessions[me].message(...from.welcome(me));
  }
  await sessions.alice.message(...from.chatStarted("bob", bob.spki, 1));
  await sessions.bob.message(...from.chatStarted("alice", alice.spki, 0));
  const pump = async () => {
    while (queue.length) {
      const [sender, [type, body]] = queue.shift();
      const other = sender === "alice" ? "bob" : "alice";
      if (type === 0x36) {
        const nameLength = body[0];
        await sessions[other].message(...from.relayed(sender, body.subarray(1 + nameLength + 4)));
      }
    }
  };
  await pump();
  await sessions.alice.say("bob", "hello");
  await pump();
  assert.deepEqual(seen.bob.filter((e) => e.kind === "text").map((e) => e.text), ["hello"]);
  assert.ok(seen.alice.some((e) => e.kind === "secured"));
});
