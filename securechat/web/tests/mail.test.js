// Letters from the client core (14.3, 14.5): key pinned, bundle checked,
// letter posted, receipts verified.
import { test } from "node:test";
import assert from "node:assert/strict";

import { bytes16, bytes32, concat, text8, u64, u8 } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey, sha256, x25519KeyPair } from "../static/js/protocol/crypto.js";
import { encodeOneTimePrekey, parseLetter, signPrekey } from "../static/js/protocol/letters.js";
import { makeReceipt } from "../static/js/protocol/receipts.js";
import { MemoryPins, RelaySession, fingerprint } from "../static/js/client/session.js";

const subtle = globalThis.crypto.subtle;
const spkiOf = async (key) => new Uint8Array(await subtle.exportKey("spki", key.publicKey));

const relay = {
  welcome: (user) => [0x40, concat(text8(user), u64(65408n))],
  userKey: (user, key) => [0x63, concat(text8(user), bytes16(key), u8(0))],
  bundle: (user, key, signed, oneTime) => [0x62,
    concat(text8(user), bytes16(key), bytes16(signed), bytes16(oneTime))],
  stored: (user, id) => [0x64, concat(text8(user), id, u64(1n), u64(2n))],
  receipt: (user, id, receipt) => [0x6c, concat(text8(user), id, bytes16(receipt))],
};

async function setting(pins = new MemoryPins()) {
  const carol = await ed25519SigningKey(new Uint8Array(32).fill(3));
  const bob = await ed25519SigningKey(new Uint8Array(32).fill(2));
  const bobSpki = await spkiOf(bob);
  const spk = await x25519KeyPair(new Uint8Array(32).fill(7));
  const otk = await x25519KeyPair(new Uint8Array(32).fill(8));
  const signed = await signPrekey(bob, "bob", { id: 5, publicKey: spk.publicKey, createdAt: 1n });
  const oneTime = encodeOneTimePrekey({ id: 9, publicKey: otk.publicKey });
  const sent = [];
  const seen = [];
  const session = new RelaySession({ me: "carol", signer: carol, spki: await spkiOf(carol), pins,
    out: (m) => sent.push(...m), view: (e) => seen.push(e) });
  await session.message(...relay.welcome("carol"));
  return { session, sent, seen, bob, bobSpki, signed, oneTime, pins };
}

test("a letter: key pinned, bundle checked, posted; both receipts verified", async () => {
  const s = await setting();
  s.session.sendLetter("bob", "dear bob");
  // our prekeys (after WELCOME), then GET_USER_KEY, FETCH_BUNDLE
  assert.deepEqual(s.sent.map(([t]) => t), [0x50, 0x52, 0x51]);
  await s.session.message(...relay.userKey("bob", s.bobSpki));
  await s.session.message(...relay.bundle("bob", s.bobSpki, s.signed, s.oneTime));
  const [type, body] = s.sent.at(-1);
  assert.equal(type, 0x53); // POST_LETTER
  const letter = body.subarray(1 + 3 + 16 + 4);
  const parsed = parseLetter(letter);
  assert.equal(parsed.recipient, "bob");
  assert.equal(await s.pins.get("bob"), await fingerprint(s.bobSpki));
  await s.session.message(...relay.stored("bob", parsed.letterId));
  assert.equal(s.seen.at(-1).kind, "letterStored");
  for (const kind of [1, 2]) {
    const receipt = await makeReceipt(s.bob, { kind, letterDigest: await sha256(letter),
      letterId: parsed.letterId, letterSender: "carol", signer: "bob", signedAt: 3n });
    await s.session.message(...relay.receipt("bob", parsed.letterId, receipt));
  }
  assert.deepEqual(s.seen.filter((e) => e.kind === "receipt").map((e) => e.what),
    ["delivered", "read"]);
});

test("a receipt signed by someone else is refused, never shown as a receipt", async () => {
  const s = await setting();
  s.session.sendLetter("bob", "dear bob");
  await s.session.message(...relay.userKey("bob", s.bobSpki));
  await s.session.message(...relay.bundle("bob", s.bobSpki, s.signed, s.oneTime));
  const letter = s.sent.at(-1)[1].subarray(1 + 3 + 16 + 4);
  const parsed = parseLetter(letter);
  const mallory = await ed25519SigningKey(new Uint8Array(32).fill(9));
  const forged = await makeReceipt(mallory, { kind: 2, letterDigest: await sha256(letter),
    letterId: parsed.letterId, letterSender: "carol", signer: "bob", signedAt: 3n });
  await s.session.message(...relay.receipt("bob", parsed.letterId, forged));
  assert.equal(s.seen.at(-1).kind, "receiptRefused");
  assert.equal(s.seen.at(-1).code, "bad-signature");
});

test("a changed key for the recipient stops the letter before sealing", async () => {
  const pins = new MemoryPins();
  await pins.set("bob", "SHA256:something-else");
  const s = await setting(pins);
  s.session.sendLetter("bob", "dear bob");
  await s.session.message(...relay.userKey("bob", s.bobSpki));
  await s.session.message(...relay.bundle("bob", s.bobSpki, s.signed, s.oneTime));
  assert.equal(s.seen.at(-1).kind, "keyChanged");
  assert.ok(!s.sent.some(([t]) => t === 0x53));
});

test("a bundle whose prekey is not signed by the pinned key sends nothing", async () => {
  const s = await setting();
  const mallory = await ed25519SigningKey(new Uint8Array(32).fill(9));
  const spk = await x25519KeyPair(new Uint8Array(32).fill(6));
  const substituted = await signPrekey(mallory, "bob", { id: 5, publicKey: spk.publicKey,
    createdAt: 1n });
  s.session.sendLetter("bob", "dear bob");
  await s.session.message(...relay.userKey("bob", s.bobSpki));
  await s.session.message(...relay.bundle("bob", s.bobSpki, substituted, s.oneTime));
  assert.equal(s.seen.at(-1).code, "bad-prekey-signature");
  assert.ok(!s.sent.some(([t]) => t === 0x53));
});

test("messages are handled in order, however slow a pin lookup is", async () => {
  let release;
  const slow = new MemoryPins();
  const gate = new Promise((resolve) => { release = resolve; });
  const get = slow.get.bind(slow);
  slow.get = async (peer) => {
    await gate;
    return get(peer);
  };
  const s = await setting(slow);
  s.session.sendLetter("bob", "dear bob");
  const first = s.session.message(...relay.userKey("bob", s.bobSpki));
  const second = s.session.message(...relay.bundle("bob", s.bobSpki, s.signed, s.oneTime));
  release();
  await Promise.all([first, second]);
  assert.equal(s.sent.at(-1)[0], 0x53); // the letter was posted after all
});

test("12.1 for letters: after the user trusts the recipient's new key, the letter goes", async () => {
  const pins = new MemoryPins();
  await pins.set("bob", "SHA256:the-key-we-pinned");
  const s = await setting(pins);
  s.session.sendLetter("bob", "dear bob");
  await s.session.message(...relay.userKey("bob", s.bobSpki));
  await s.session.message(...relay.bundle("bob", s.bobSpki, s.signed, s.oneTime));
  const warning = s.seen.find((e) => e.kind === "keyChanged");
  assert.equal(warning.letter, true);
  assert.equal(warning.offered, await fingerprint(s.bobSpki));
  // a warning about another key than the one offered last pins nothing
  await assert.rejects(s.session.trustKey("bob", "SHA256:another"), { code: "unexpected-message" });
  assert.equal(await s.pins.get("bob"), "SHA256:the-key-we-pinned");
  await s.session.trustKey("bob", warning.offered);
  await assert.rejects(s.session.trustKey("bob"), { code: "unexpected-message" }); // once
  s.session.sendLetter("bob", "dear bob");
  await s.session.message(...relay.userKey("bob", s.bobSpki));
  await s.session.message(...relay.bundle("bob", s.bobSpki, s.signed, s.oneTime));
  assert.equal(s.sent.at(-1)[0], 0x53); // POST_LETTER
});
