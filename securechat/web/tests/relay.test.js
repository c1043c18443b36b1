// The relay's messages (section 11) against the reference
// implementation's bytes (tests/relay_fixtures.py), and the codec's refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { fromHex, toHex } from "../static/js/protocol/bytes.js";
import { encode, parse, reasonText } from "../static/js/protocol/relay.js";

const fixtures = JSON.parse(readFileSync(new URL("./relay-fixtures.json", import.meta.url)));

for (const f of fixtures.client) {
  test(`client message ${f.encode}: the reference's bytes`, () => {
    const args = f.encode === "relay" ? [f.args[0], fromHex(f.args[1])] : f.args;
    const [type, body] = encode[f.encode](...args);
    assert.equal(type, f.type);
    assert.equal(toHex(body), f.body);
  });
}

function plain(message) {
  const out = {};
  for (const [k, v] of Object.entries(message)) {
    out[k] = v instanceof Uint8Array ? toHex(v) : typeof v === "bigint" ? String(v) : v;
  }
  return out;
}

for (const f of fixtures.relay) {
  test(`relay message ${f.fields.kind}: parsed as the reference encodes it`, () => {
    assert.deepEqual(plain(parse(f.type, fromHex(f.body))), f.fields);
  });
}

test("a client type from the relay is unknown-type", () => {
  assert.throws(() => parse(0x36, new Uint8Array(0)), (e) => e.code === "unknown-type");
});

test("a bad user name is bad-value; trailing bytes and truncation are refused", () => {
  assert.throws(() => parse(0x42, fromHex("03426f62")), (e) => e.code === "bad-value");
  assert.throws(() => parse(0x42, fromHex("03626f6200")), (e) => e.code === "trailing-bytes");
  assert.throws(() => parse(0x42, fromHex("05626f62")), (e) => e.code === "truncated");
});

test("an ONLINE_LIST announcing more than 10000 names is bad-value", () => {
  assert.throws(() => parse(0x41, fromHex("2711")), (e) => e.code === "bad-value");
});

test("reasons in words; an unknown one by its number", () => {
  assert.equal(reasonText(10), "too many pending");
  assert.equal(reasonText(33), "try again");
  assert.equal(reasonText(99), "reason 99");
});

test("the client refuses to encode a name outside the rule", () => {
  assert.throws(() => encode.chatRequest("Bob"), TypeError);
});

// -- the end-to-end layer (12.2) ------------------------------------------------

import * as e2e from "../static/js/protocol/e2e.js";

test("end-to-end messages: the reference's bytes both ways", () => {
  const [text, end, ready] = fixtures.e2e;
  const [tType, tBody] = e2e.encode.text(BigInt(text.values[0]), text.values[1]);
  assert.equal(tType, text.type);
  assert.equal(toHex(tBody), text.body);
  assert.equal(toHex(e2e.encode.end(3n)[1]), end.body);
  assert.equal(toHex(e2e.encode.ready()[1]), ready.body);
  const parsed = e2e.parse(text.type, fromHex(text.body));
  assert.equal(parsed.text, text.values[1]);
  assert.equal(String(parsed.sentAt), text.values[0]);
  assert.equal(e2e.parse(end.type, fromHex(end.body)).sent, 3n);
});

test("a TEXT over 16384 bytes is limit-exceeded on receipt", () => {
  const long = "é".repeat(8193); // 16386 bytes of UTF-8
  const body = Uint8Array.from([...fromHex("0000000000000001"), 0x40, 0x02,
    ...new TextEncoder().encode(long)]);
  assert.throws(() => e2e.parse(0x50, body), (e) => e.code === "limit-exceeded");
  assert.throws(() => e2e.encode.text(1n, long), RangeError);
  assert.throws(() => e2e.parse(0x52, Uint8Array.of(0)), (e) => e.code === "trailing-bytes");
});
