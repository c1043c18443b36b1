// Letters for the browser user (14.1, 14.4, 14.5, 14.7) through the client
// core: prekeys made, uploaded, rotated and refilled; letters listed,
// fetched and opened with every check of 14.4 in the spec's order; receipts
// signed; replays refused.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  Reader, bytes16, bytes32, concat, text8, toHex, u16, u32, u64, u8, utf8,
} from "../static/js/protocol/bytes.js";
import { ed25519SigningKey, importPublicKey, randomBytes, sha256, sign } from "../static/js/protocol/crypto.js";
import {
  checkSignedPrekey, parseLetter, parseOneTimePrekey, parseSignedPrekey, sealLetter,
} from "../static/js/protocol/letters.js";
import { checkReceipt } from "../static/js/protocol/receipts.js";
import { MemoryPins, RelaySession, fingerprint } from "../static/js/client/session.js";
import { MemoryStore } from "../static/js/client/store.js";

const subtle = globalThis.crypto.subtle;
const DAY = 86400 * 1000;

const relay = {
  welcome: (user) => [0x40, concat(text8(user), u64(65408n))],
  prekeysStored: (id, count) => [0x60, concat(u32(id), u64(BigInt(count)))],
  prekeysLow: (count, signed) => [0x61, concat(u64(BigInt(count)), u8(signed))],
  userKey: (user, key) => [0x63, concat(text8(user), bytes16(key), u8(0))],
  letterList: (entries) => [0x68, concat(u16(entries.length), ...entries.map((e) => concat(
    text8(e.sender), e.id, u64(10n), u64(BigInt(e.size)), u8(0))), u64(BigInt(entries.length)))],
  keyHistory: (user, keys) => [0x6f, concat(text8(user), u16(keys.length), ...keys.map((k) => concat(
    bytes16(k.key), u64(k.added), u64(k.replaced), u64(k.compromised ?? 0n))))],
  letter: (sender, id, letter) => [0x69,
    concat(text8(sender), id, u64(1000n), u64(1000n + 30n * 86400n), bytes32(letter))],
};

async function party(name, fill) {
  const signer = await ed25519SigningKey(new Uint8Array(32).fill(fill));
  const spki = new Uint8Array(await subtle.exportKey("spki", signer.publicKey));
  return { name, signer, spki };
}

/** bob's session (logged in, prekeys uploaded and stored) and alice, who writes to him. */
async function setting({ pins = new MemoryPins(), store = new MemoryStore(), now = 1e12 } = {}) {
  const alice = await party("alice", 1);
  const bob = await party("bob", 2);
  const clock = { now };
  const sent = [];
  const seen = [];
  const session = new RelaySession({ me: "bob", signer: bob.signer, spki: bob.spki, pins, store,
    out: (m) => sent.push(...m), view: (e) => seen.push(e), clock: () => clock.now });
  await session.message(...relay.welcome("bob"));
  return { session, sent, seen, alice, bob, store, pins, clock };
}

/** The prekeys of an UPLOAD_PREKEYS body. */
function upload([type, body]) {
  assert.equal(type, 0x50);
  const r = new Reader(body);
  const signed = r.bytes16("signed");
  const oneTime = r.bytes16("one_time");
  const list = [];
  for (let at = 0; at < oneTime.length; at += 36) list.push(parseOneTimePrekey(oneTime.subarray(at, at + 36)));
  return { signed: signed.length ? parseSignedPrekey(signed) : null, oneTime: list };
}

/** A letter from alice to bob, sealed to the prekeys bob uploaded. */
async function letterTo(s, { content = "dear bob", oneTime = true, sender = s.alice, id } = {}) {
  const up = upload(s.sent[0]);
  const draws = id ? [id, randomBytes(32)] : null;
  return sealLetter({ signer: sender.signer, sender: sender.name, senderKey: sender.spki,
    recipient: "bob", recipientKey: s.bob.spki, signedPrekey: up.signed,
    oneTimePrekey: oneTime ? up.oneTime[0] : null, content, sentAt: 5n,
    draw: draws ? () => draws.shift() : undefined });
}

/** bob lists, reads and is sent `letter`; what the session sent and showed after. */
async function deliver(s, sealed, { sender = "alice", key = s.alice.spki, history = [] } = {}) {
  const mark = s.sent.length;
  s.session.readLetter(sender, sealed.letterId);
  await s.session.message(...relay.letter(sender, sealed.letterId, sealed.letter));
  if (s.sent.at(-1)[0] === 0x52) await s.session.message(...relay.userKey(sender, key));
  if (s.sent.at(-1)[0] === 0x5a) await s.session.message(...relay.keyHistory(sender, history));
  return s.sent.slice(mark + 1).map(([t]) => t);
}

test("14.1: at first login, a signed prekey (ours, non-extractable) and 100 one-time prekeys", async () => {
  const s = await setting();
  const up = upload(s.sent[0]);
  await checkSignedPrekey(up.signed, "bob", await importPublicKey(s.bob.spki));
  assert.equal(up.oneTime.length, 100);
  const priv = await s.store.get(`signed/${up.signed.id}`);
  assert.equal(priv.extractable, false);
  assert.equal((await s.store.get(`one-time/${up.oneTime[0].id}`)).extractable, false);
  assert.equal(new Set([up.signed.id, ...up.oneTime.map((p) => p.id)]).size, 101); // no id twice
});

test("14.1: the next login uploads nothing; after 7 days a new signed prekey, the old kept for the grace", async () => {
  const store = new MemoryStore();
  const s = await setting({ store });
  const first = upload(s.sent[0]).signed;
  await s.session.message(...relay.prekeysStored(first.id, 100));
  const again = await setting({ store, now: 1e12 + DAY });
  assert.equal(again.sent.length, 0);
  const later = await setting({ store, now: 1e12 + 7 * DAY });
  const rotated = upload(later.sent[0]);
  assert.notEqual(rotated.signed.id, first.id);
  assert.equal(rotated.oneTime.length, 0);
  assert.ok(await store.get(`signed/${first.id}`)); // letters sealed to it still open
  await setting({ store, now: 1e12 + 7 * DAY + 31 * DAY });
  assert.equal(await store.get(`signed/${first.id}`), undefined);
});

test("14.7: PREKEYS_LOW refills to 100; with no signed prekey on the relay it goes again", async () => {
  const s = await setting();
  const first = upload(s.sent[0]).signed;
  await s.session.message(...relay.prekeysStored(first.id, 100));
  await s.session.message(...relay.prekeysLow(7, 1));
  let up = upload(s.sent.at(-1));
  assert.equal(up.signed, null);
  assert.equal(up.oneTime.length, 93);
  await s.session.message(...relay.prekeysLow(3, 1)); // the refill is on its way: nothing more
  assert.equal(s.sent.length, 2);
  await s.session.message(...relay.prekeysStored(first.id, 100));
  await s.session.message(...relay.prekeysLow(0, 0));
  up = upload(s.sent.at(-1));
  assert.equal(up.signed.id, first.id);
  assert.equal(up.oneTime.length, 100);
});

test("14.4: a letter listed, fetched, opened as text; delivery and read receipts that verify", async () => {
  const s = await setting();
  const sealed = await letterTo(s, { content: "dear bob, <b>hi</b>" });
  s.session.listLetters();
  assert.deepEqual(s.sent.at(-1), [0x54, concat(u8(0), u64(0n))]);
  await s.session.message(...relay.letterList([{ sender: "alice", id: sealed.letterId, size: 300 }]));
  assert.equal(s.seen.at(-1).kind, "letterList");
  assert.equal(s.seen.at(-1).letters[0].sender, "alice");
  const types = await deliver(s, sealed);
  assert.deepEqual(types, [0x52, 0x57, 0x57]); // GET_USER_KEY, two POST_RECEIPTs
  const opened = s.seen.find((e) => e.kind === "letterOpened");
  assert.equal(opened.text, "dear bob, <b>hi</b>");
  assert.equal(opened.verification, "ok");
  assert.equal(await s.pins.get("alice"), await fingerprint(s.alice.spki));
  const mine = { letterId: sealed.letterId, sender: "alice", recipient: "bob",
    digest: await sha256(sealed.letter) };
  const kinds = [];
  for (const [, body] of s.sent.slice(-2)) {
    const r = new Reader(body);
    assert.equal(r.text8("sender"), "alice");
    assert.equal(toHex(r.take(16, "id")), toHex(sealed.letterId));
    kinds.push((await checkReceipt(r.bytes16("receipt"), mine, await importPublicKey(s.bob.spki))).kind);
  }
  assert.deepEqual(kinds, [1, 2]);
  const oneTimeId = parseLetter(sealed.letter).oneTimePrekeyId;
  assert.equal(await s.store.get(`one-time/${oneTimeId}`), undefined); // forgotten once used
});

test("14.2, 14.4 step 5: the same letter again is shown from our copy; other bytes under its id are replayed", async () => {
  const s = await setting();
  const sealed = await letterTo(s);
  await deliver(s, sealed);
  assert.deepEqual(await deliver(s, sealed), []); // shown again, nothing sent
  assert.equal(s.seen.at(-1).kind, "letterOpened");
  assert.equal(s.seen.at(-1).again, true);
  const other = await letterTo(s, { content: "something else", oneTime: false,
    id: sealed.letterId });
  assert.deepEqual(await deliver(s, other), []); // refused before the key is asked for; no receipt
  assert.equal(s.seen.at(-1).kind, "letterFailed");
  assert.equal(s.seen.at(-1).code, "replayed");
});

test("a LETTER nobody asked for is dropped: nothing opened, answered or pinned", async () => {
  const s = await setting();
  const sealed = await letterTo(s);
  const mark = s.sent.length;
  await s.session.message(...relay.letter("alice", sealed.letterId, sealed.letter));
  assert.equal(s.sent.length, mark);
  assert.ok(!s.seen.some((e) => e.kind === "letterOpened" || e.kind === "letterFailed"));
});

async function refusedAs(s, sealed, options) {
  const types = await deliver(s, sealed, options);
  const shown = s.seen.at(-1);
  assert.equal(shown.kind, "letterFailed");
  assert.ok(!s.seen.some((e) => e.kind === "letterOpened"));
  return { code: shown.code, types };
}

/** `letter` with its header changed by `edit` and signed again by `signer`. */
async function resigned(letter, signer, edit) {
  const p = parseLetter(letter);
  const header = edit(Uint8Array.from(p.header));
  const hash = await sha256(concat(header, bytes32(p.ciphertext)));
  const signature = await sign(signer, concat(utf8("securechat/1 letter signature"), u8(0), hash));
  return { letterId: p.letterId, letter: concat(header, bytes32(p.ciphertext), u16(signer.scheme),
    bytes16(signature)) };
}

test("14.4 refusals through the page's core, each by its code, receipts only after the signature", async () => {
  const s = await setting();
  const mallory = await party("mallory", 9);
  const sealed = await letterTo(s);
  // step 3: posted under another sender's name
  assert.deepEqual(await refusedAs(s, sealed, { sender: "mallory" }),
    { code: "wrong-envelope", types: [] });
  // step 4: a letter for someone else
  const carol = await resigned(sealed.letter, s.alice.signer, (h) => {
    h.set(utf8("car"), 1 + 2 + 16 + 1 + 5 + 1);
    return h;
  });
  assert.deepEqual(await refusedAs(s, carol), { code: "wrong-recipient", types: [] });
  // step 6: signed by someone else's key (no receipt: it may not be alice's)
  const forged = await letterTo(s, { sender: { ...mallory, name: "alice" } });
  assert.deepEqual(await refusedAs(s, forged), { code: "bad-signature", types: [0x52, 0x5a] });
  // step 7: a prekey bob does not hold (a delivery receipt, no read receipt)
  const unknown = await resigned((await letterTo(s)).letter, s.alice.signer, (h) => {
    h.set(u32(4000), h.length - 32 - 4);
    return h;
  });
  assert.deepEqual(await refusedAs(s, unknown), { code: "unknown-prekey", types: [0x52, 0x57] });
  // step 8: an ephemeral key that gives an all-zero share
  const zero = await resigned((await letterTo(s)).letter, s.alice.signer, (h) => {
    h.fill(0, h.length - 32);
    return h;
  });
  assert.equal((await refusedAs(s, zero)).code, "bad-key-share");
  // step 9: the header changed after sealing, signed again: the AEAD refuses it
  const tampered = await resigned((await letterTo(s)).letter, s.alice.signer, (h) => {
    h[1 + 2 + 16 + 6 + 4 + 7] ^= 1; // sent_at
    return h;
  });
  assert.deepEqual(await refusedAs(s, tampered), { code: "decrypt-failed", types: [0x52, 0x57] });
  // step 10: text that is not UTF-8
  const bad = await letterTo(s, { content: Uint8Array.of(0xff, 0xfe) });
  assert.equal((await refusedAs(s, bad)).code, "bad-content");
});

test("14.4 order: the signature is checked before any prekey or ciphertext", async () => {
  const s = await setting();
  const mallory = await party("mallory", 9);
  const unknown = await resigned((await letterTo(s)).letter, mallory.signer, (h) => {
    h.set(u32(4000), h.length - 32 - 4);
    return h;
  });
  assert.equal((await refusedAs(s, unknown)).code, "bad-signature");
});

test("12.1 for letters: a sender's changed key refuses the letter until the user trusts it", async () => {
  const pins = new MemoryPins();
  await pins.set("alice", "SHA256:the-key-we-pinned");
  const s = await setting({ pins });
  const sealed = await letterTo(s);
  assert.deepEqual(await refusedAs(s, sealed), { code: "key-changed", types: [0x52] });
  const warning = s.seen.find((e) => e.kind === "keyChanged");
  assert.equal(warning.peer, "alice");
  assert.equal(warning.letter, true);
  await s.session.trustKey("alice");
  assert.equal(await pins.get("alice"), await fingerprint(s.alice.spki));
  await deliver(s, sealed);
  assert.equal(s.seen.at(-1).kind, "letterOpened");
});

/** alice signs with her old key, the relay now has her new one; bob's pins as `pinned`. */
async function rekeyed(pinned) {
  const pins = new MemoryPins();
  const s = await setting({ pins });
  const old = s.alice;
  const fresh = await party("alice", 5);
  for (const key of pinned(old, fresh)) await pins.set("alice", await fingerprint(key.spki));
  const sealed = await letterTo(s, { sender: old }); // the LETTER says stored_at 1000
  return { s, old, fresh, sealed };
}

async function withHistory(r, entry) {
  return refusedOrOpened(r.s, r.sealed, { key: r.fresh.spki,
    history: [{ key: r.fresh.spki, added: 0n, replaced: 0n }, { key: r.old.spki, ...entry }] });
}

async function refusedOrOpened(s, sealed, options) {
  const types = await deliver(s, sealed, options);
  const shown = s.seen.at(-1);
  return { kind: shown.kind, code: shown.code, keyReplaced: shown.keyReplaced, types };
}

test("14.9: a letter signed with the sender's previous key, pinned here, stored before the rekey, opens", async () => {
  const r = await rekeyed((old, fresh) => [old, fresh]); // pinned the old key, then trusted the new
  assert.deepEqual(await withHistory(r, { added: 1n, replaced: 2000n }),
    { kind: "letterOpened", code: undefined, keyReplaced: 2000n, types: [0x52, 0x5a, 0x57, 0x57] });
});

test("14.9 refusals: unpinned-key, key-compromised, key-replaced, and bad-signature with no key", async () => {
  let r = await rekeyed((old, fresh) => [fresh]); // the old key was never pinned here
  assert.equal((await withHistory(r, { added: 1n, replaced: 2000n })).code, "unpinned-key");
  r = await rekeyed((old, fresh) => [old, fresh]);
  assert.equal((await withHistory(r, { added: 1n, replaced: 2000n, compromised: 900n })).code,
    "key-compromised");
  r = await rekeyed((old, fresh) => [old, fresh]);
  assert.equal((await withHistory(r, { added: 1n, replaced: 1000n })).code, "key-replaced");
  r = await rekeyed((old, fresh) => [old, fresh]);
  assert.deepEqual(await refusedOrOpened(r.s, r.sealed, { key: r.fresh.spki, history: [] }),
    { kind: "letterFailed", code: "bad-signature", keyReplaced: undefined, types: [0x52, 0x5a] });
});
