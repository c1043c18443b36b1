// Letters, prekeys and receipts against docs/protocol.rst's vectors 13.3
// and 13.4 byte for byte, and every refusal of 14.4 and 14.5 by its code.
import { test } from "node:test";
import assert from "node:assert/strict";

import { concat, toHex } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey, sha256, x25519, x25519KeyPair } from "../static/js/protocol/crypto.js";
import {
  LetterError, encodeOneTimePrekey, letterKeys, openLetter, parseSignedPrekey, checkSignedPrekey,
  sealLetter, signPrekey,
} from "../static/js/protocol/letters.js";
import { checkReceipt, makeReceipt } from "../static/js/protocol/receipts.js";
import { vector } from "./vectors.js";

const hex = toHex;
const subtle = globalThis.crypto.subtle;
const v = vector("letter");
const text = (b) => new TextDecoder().decode(b);
const num = (b) => Number(BigInt("0x" + toHex(b)));

async function party(seed) {
  const key = await ed25519SigningKey(seed);
  const spki = new Uint8Array(await subtle.exportKey("spki", key.publicKey));
  return { signer: key, spki, verify: { scheme: key.scheme, key: key.publicKey } };
}

async function setting() {
  const alice = await party(v["sender.seed"]);
  const bob = await party(v["recipient.seed"]);
  const spk = await x25519KeyPair(v["signed_prekey.private"]);
  const otk = await x25519KeyPair(v["one_time_prekey.private"]);
  const signedPrekey = { id: num(v["signed_prekey.id"]), publicKey: spk.publicKey,
    createdAt: BigInt("0x" + hex(v["signed_prekey.created_at"])) };
  const oneTimePrekey = { id: num(v["one_time_prekey.id"]), publicKey: otk.publicKey };
  return { alice, bob, spk, otk, signedPrekey, oneTimePrekey };
}

function drawer(...chunks) {
  return (n) => {
    const next = chunks.shift();
    assert.equal(next.length, n);
    return next;
  };
}

async function seal(s, overrides = {}) {
  return sealLetter({
    signer: s.alice.signer, sender: "alice", senderKey: s.alice.spki, recipient: "bob",
    recipientKey: s.bob.spki, signedPrekey: s.signedPrekey, oneTimePrekey: s.oneTimePrekey,
    content: text(v.content), sentAt: BigInt("0x" + hex(v.sent_at)), replyTo: v.reply_to,
    draw: drawer(v.letter_id, v.ephemeral), ...overrides,
  });
}

test("13.3 prekeys: bob's signed prekey and one-time prekey encode as the vector", async () => {
  const s = await setting();
  const signed = await signPrekey(s.bob.signer, "bob", s.signedPrekey);
  assert.equal(hex(signed), hex(v.signed_prekey));
  assert.equal(hex(encodeOneTimePrekey(s.oneTimePrekey)), hex(v.one_time_prekey));
  await checkSignedPrekey(parseSignedPrekey(signed), "bob", s.bob.verify);
  await assert.rejects(checkSignedPrekey(parseSignedPrekey(signed), "carol", s.bob.verify),
    (e) => e.code === "bad-prekey-signature");
});

test("13.3 letter: header, keys, ciphertext, signature and digest as the vector", async () => {
  const s = await setting();
  const { letter, header } = await seal(s);
  assert.equal(hex(header), hex(v.header));
  const e = await x25519KeyPair(v.ephemeral);
  const shared = concat(await x25519(e.privateKey, s.signedPrekey.publicKey),
    await x25519(e.privateKey, s.oneTimePrekey.publicKey));
  assert.equal(hex(shared), hex(v.shared));
  const keys = await letterKeys(shared, { sender: "alice", senderKey: s.alice.spki,
    recipient: "bob", recipientKey: s.bob.spki, header });
  assert.equal(hex(keys.prk), hex(v.prk));
  assert.equal(hex(keys.binding), hex(v.binding));
  assert.equal(hex(keys.key), hex(v.key));
  assert.equal(hex(keys.nonce), hex(v.nonce));
  assert.equal(hex(letter), hex(v.letter));
  assert.equal(hex(await sha256(letter)), hex(v["letter.digest"]));
});

function opening(s, overrides = {}) {
  return {
    letter: v.letter, envelope: { sender: "alice", letterId: v.letter_id }, me: "bob",
    myKey: s.bob.spki, opened: async () => false,
    senderKey: { spki: s.alice.spki, publicKey: s.alice.verify },
    prekeyPrivate: async (kind, id) => (kind === "signed" && id === 7 ? s.spk.privateKey
      : kind === "one-time" && id === 42 ? s.otk.privateKey : null),
    ...overrides,
  };
}

test("13.3 letter opens for bob: the text, the reply-to, the digest", async () => {
  const s = await setting();
  const opened = await openLetter(opening(s));
  assert.equal(opened.text, text(v.content));
  assert.equal(hex(opened.replyTo), hex(v.reply_to));
  assert.equal(hex(opened.digest), hex(v["letter.digest"]));
});

async function refusal(s, overrides) {
  try {
    await openLetter(opening(s, overrides));
  } catch (e) {
    assert.ok(e instanceof LetterError, String(e));
    return e.code;
  }
  return "opened";
}

test("14.4 refusals, each by its code", async () => {
  const s = await setting();
  const changed = (at, value) => {
    const copy = Uint8Array.from(v.letter);
    copy[at] = value;
    return copy;
  };
  assert.equal(await refusal(s, { letter: new Uint8Array(49153) }), "letter-too-large");
  assert.equal(await refusal(s, { letter: changed(0, 2) }), "unsupported-version");
  assert.equal(await refusal(s, { letter: v.letter.subarray(0, 40) }), "malformed");
  assert.equal(await refusal(s, { letter: concat(v.letter, Uint8Array.of(0)) }), "malformed");
  assert.equal(await refusal(s, { letter: changed(2, 9) }), "unknown-suite");
  assert.equal(await refusal(s, { letter: changed(2, 2) }), "unknown-suite"); // ChaCha: not here
  assert.equal(await refusal(s, { envelope: { sender: "carol", letterId: v.letter_id } }),
    "wrong-envelope");
  assert.equal(await refusal(s, { me: "carol" }), "wrong-recipient");
  assert.equal(await refusal(s, { opened: async () => true }), "replayed");
  assert.equal(await refusal(s, { letter: changed(v.letter.length - 1, v.letter.at(-1) ^ 1) }),
    "bad-signature");
  assert.equal(await refusal(s, { prekeyPrivate: async () => null }), "unknown-prekey");
  const other = await x25519KeyPair(new Uint8Array(32).fill(9));
  assert.equal(await refusal(s, { prekeyPrivate: async (kind) => (kind === "signed"
    ? other.privateKey : s.otk.privateKey) }), "decrypt-failed");
});

test("a letter sealed without a one-time prekey opens without one", async () => {
  const s = await setting();
  const { letter, letterId } = await seal(s, { oneTimePrekey: null,
    draw: drawer(v.letter_id, v.ephemeral) });
  const opened = await openLetter(opening(s, { letter, envelope: { sender: "alice", letterId } }));
  assert.equal(opened.oneTimePrekeyId, null);
  assert.equal(opened.text, text(v.content));
});

test("a letter over 49152 bytes is not sealed", async () => {
  const s = await setting();
  await assert.rejects(seal(s, { content: "x".repeat(49152) }),
    (e) => e.code === "letter-too-large");
});

// -- receipts (13.4, 14.5) --------------------------------------------------

const r = vector("receipt");

test("13.4 receipt: bob's read receipt as the vector, verified by alice", async () => {
  const s = await setting();
  const receipt = await makeReceipt(s.bob.signer, { kind: 2, letterDigest: r["letter.digest"],
    letterId: v.letter_id, letterSender: "alice", signer: "bob",
    signedAt: BigInt("0x" + hex(r.signed_at)) });
  assert.equal(hex(receipt), hex(r.receipt));
  const ok = await checkReceipt(receipt, { letterId: v.letter_id, sender: "alice",
    recipient: "bob", digest: r["letter.digest"] }, s.bob.verify);
  assert.equal(ok.kind, 2);
});

test("14.5 refusals, each by its code", async () => {
  const s = await setting();
  const letter = { letterId: v.letter_id, sender: "alice", recipient: "bob",
    digest: r["letter.digest"] };
  const code = async (data, l = letter, key = s.bob.verify) => {
    try {
      await checkReceipt(data, l, key);
      return "verified";
    } catch (e) {
      return e.code;
    }
  };
  const changed = (at, value) => {
    const copy = Uint8Array.from(r.receipt);
    copy[at] = value;
    return copy;
  };
  assert.equal(await code(changed(0, 2)), "unsupported-version");
  assert.equal(await code(changed(1, 3)), "malformed");
  assert.equal(await code(r.receipt.subarray(0, 60)), "malformed");
  assert.equal(await code(r.receipt, { ...letter, recipient: "carol" }), "wrong-signer");
  assert.equal(await code(r.receipt, { ...letter, sender: "carol" }), "wrong-sender");
  assert.equal(await code(r.receipt, { ...letter, digest: new Uint8Array(32) }), "wrong-letter");
  assert.equal(await code(r.receipt, letter, s.alice.verify), "bad-signature");
});
