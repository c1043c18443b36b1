// Sender keys (16.1-16.4) against vector 13.6 byte for byte, and every
// refusal of a body or a distribution that depends on the bytes alone.
import { test } from "node:test";
import assert from "node:assert/strict";

import { concat, toHex } from "../static/js/protocol/bytes.js";
import {
  SenderKeyError, chainSigner, chainStep, checkSignature, decryptBody, encodeDistribution,
  encodeHeader, newChain, parseBody, parseDistribution, sealGroupMessage, signedMessage,
} from "../static/js/protocol/senderkeys.js";
import { sha256 } from "../static/js/protocol/crypto.js";
import { vector } from "./vectors.js";

const v = vector("group-message");
const big = (b) => BigInt("0x" + toHex(b));
const num = (b) => Number(big(b));
const text = (b) => new TextDecoder().decode(b);

async function chain() {
  const signer = await chainSigner(v["signing.seed"]);
  return { chainId: num(v.chain_id), epoch: big(v["chain.epoch"]), counter: num(v.counter),
    chainKey: v.chain_key, signer, signingPublic: signer.raw };
}

test("vector 13.6: keys, distribution, header, ciphertext, signature and body byte for byte", async () => {
  const c = await chain();
  assert.equal(toHex(c.signingPublic), toHex(v["signing.public"]));
  assert.equal(toHex(encodeDistribution(v.group_id, c)), toHex(v.distribution));
  const step = await chainStep(v.chain_key);
  assert.equal(toHex(step.messageKey), toHex(v.message_key));
  assert.equal(toHex(step.nonce), toHex(v.nonce));
  assert.equal(toHex(step.next), toHex(v.next_chain_key));
  const header = encodeHeader({ groupId: v.group_id, sender: text(v["sender.name"]), epoch: big(v.epoch),
    chainId: c.chainId, counter: c.counter, sentAt: big(v.sent_at) });
  assert.equal(toHex(header), toHex(v.header));
  const { body, next } = await sealGroupMessage({ groupId: v.group_id, sender: "alice",
    epoch: big(v.epoch), chain: c, sentAt: big(v.sent_at), contentType: v.content_type[0],
    content: v.content });
  assert.equal(toHex(body), toHex(v.body));
  assert.equal(toHex(next), toHex(v.next_chain_key));
  const m = parseBody(body);
  assert.equal(toHex(m.ciphertext), toHex(v.ciphertext));
  assert.equal(toHex(m.signature), toHex(v.signature));
  const signed = await signedMessage(m.header, m.ciphertext);
  assert.equal(signed.length, 69);
  assert.equal(toHex(signed.subarray(37)), toHex(v.signed_hash));
  await checkSignature(m, v["signing.public"]);
  const opened = await decryptBody(m, step);
  assert.equal(opened.text, "Lunch at noon, the usual place.");
});

test("a distribution parses to its fields; cut, trailing, chain id 0, version 2 refused", () => {
  const d = parseDistribution(v.distribution);
  assert.equal(d.chainId, 0x0badc0de);
  assert.equal(d.counter, 5);
  assert.equal(d.epoch, 3n);
  const code = (data) => {
    try {
      parseDistribution(data);
    } catch (e) {
      assert.ok(e instanceof SenderKeyError);
      return e.code;
    }
    return "parsed";
  };
  assert.equal(code(v.distribution.subarray(0, 96)), "malformed");
  assert.equal(code(concat(v.distribution, Uint8Array.of(0))), "malformed");
  const zero = v.distribution.slice();
  zero.fill(0, 25, 29);
  assert.equal(code(zero), "malformed");
  assert.equal(code(concat(Uint8Array.of(2), v.distribution.subarray(1))), "unsupported-version");
});

function bodyCode(data) {
  try {
    parseBody(data);
  } catch (e) {
    assert.ok(e instanceof SenderKeyError);
    return e.code;
  }
  return "parsed";
}

test("a body cut short, with trailing bytes, chain id 0, a bad sender: malformed", () => {
  assert.equal(bodyCode(v.body.subarray(0, v.body.length - 1)), "malformed");
  assert.equal(bodyCode(concat(v.body, Uint8Array.of(0))), "malformed");
  const zero = v.body.slice();
  zero.fill(0, 31, 35); // chain_id after version, group id, text8 "alice", epoch
  assert.equal(bodyCode(zero), "malformed");
  const name = v.body.slice();
  name[18] = 0x41; // "Alice": not a user name
  assert.equal(bodyCode(name), "malformed");
  const short = concat(v.header, Uint8Array.of(0, 0, 0, 16), new Uint8Array(16), new Uint8Array(64));
  assert.equal(bodyCode(short), "malformed");
});

test("a body of version 2: unsupported-version; over 49152 bytes: message-too-large", () => {
  assert.equal(bodyCode(concat(Uint8Array.of(2), v.body.subarray(1))), "unsupported-version");
  assert.equal(bodyCode(new Uint8Array(49153)), "message-too-large");
});

test("a tampered header or ciphertext fails the signature before any decryption", async () => {
  for (const at of [20, v.header.length + 10]) {
    const b = v.body.slice();
    b[at] ^= 1;
    await assert.rejects(checkSignature(parseBody(b), v["signing.public"]),
      (e) => e.code === "bad-signature");
  }
  await assert.rejects(checkSignature(parseBody(v.body), new Uint8Array(32).fill(3)),
    (e) => e.code === "bad-signature");
});

test("a wrong message key: decrypt-failed; non-UTF-8 text: bad-content", async () => {
  const m = parseBody(v.body);
  const step = await chainStep(v.chain_key);
  await assert.rejects(decryptBody(m, { ...step, messageKey: new Uint8Array(32) }),
    (e) => e.code === "decrypt-failed");
  const c = await chain();
  const { body } = await sealGroupMessage({ groupId: v.group_id, sender: "alice", epoch: 4n, chain: c,
    sentAt: 1n, content: Uint8Array.of(0xff, 0xfe) });
  await assert.rejects(decryptBody(parseBody(body), step), (e) => e.code === "bad-content");
});

test("sealing with a chain for an earlier epoch than the chain's: wrong-epoch", async () => {
  const c = await chain();
  await assert.rejects(sealGroupMessage({ groupId: v.group_id, sender: "alice", epoch: 2n, chain: c,
    sentAt: 1n, content: new Uint8Array(1) }), (e) => e.code === "wrong-epoch");
});

test("a new chain draws chain_id (again while 0 or the replaced id), key, seed in order", async () => {
  const draws = [Uint8Array.of(0, 0, 0, 0), Uint8Array.of(0, 0, 0, 9), Uint8Array.of(0, 0, 0, 7),
    new Uint8Array(32).fill(1), v["signing.seed"]];
  const c = await newChain(4n, 9, (n) => {
    const next = draws.shift();
    assert.equal(next.length, n);
    return next;
  });
  assert.equal(c.chainId, 7);
  assert.equal(toHex(c.chainKey), toHex(new Uint8Array(32).fill(1)));
  assert.equal(toHex(c.signingPublic), toHex(v["signing.public"]));
  assert.equal(c.counter, 0);
  assert.ok((await sha256(c.chainKey)).length === 32);
});
