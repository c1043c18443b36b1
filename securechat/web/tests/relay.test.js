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
  assert.equal(reasonText(99), "reason 99");
});

test("the client refuses to encode a name outside the rule", () => {
  assert.throws(() => encode.chatRequest("Bob"), TypeError);
});
