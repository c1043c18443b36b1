// The mailbox's relay messages (14.6) against the reference
// implementation's bytes (tests/relay_fixtures.py), and the refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { bytes16, concat, fromHex, text8, toHex, u16, u64 } from "../static/js/protocol/bytes.js";
import { CLIENT, encode, parse } from "../static/js/protocol/mailbox.js";

import { plain, typed } from "./fixturevalues.js";

const fixtures = JSON.parse(readFileSync(new URL("./relay-fixtures.json", import.meta.url)));

for (const f of fixtures.mailbox_client) {
  test(`mailbox client message ${f.encode}: the reference's bytes`, () => {
    const [, layout] = CLIENT[f.encode];
    const fields = Object.fromEntries(layout.map(([name, kind], i) => [name, typed(kind, f.values[i])]));
    const [type, body] = encode(f.encode, fields);
    assert.equal(type, f.type);
    assert.equal(toHex(body), f.body);
  });
}

for (const f of fixtures.mailbox_relay) {
  test(`mailbox relay message 0x${f.type.toString(16)}: parsed as the reference encodes it`, () => {
    const { message, ...fields } = parse(f.type, fromHex(f.body));
    assert.ok(message);
    assert.deepEqual(Object.values(fields).map(plain), f.values);
  });
}

const bundle = fixtures.mailbox_relay.find((f) => f.type === 0x62);

test("a BUNDLE without a signed prekey, or with a bad one, is bad-value", () => {
  const body = fromHex(bundle.body);
  // user "bob", key 302a, then the signed prekey's length: zero it and drop the prekey.
  const head = body.subarray(0, 1 + 3 + 2 + 2);
  const empty = Uint8Array.from([...head, 0, 0, 0, 0]);
  assert.throws(() => parse(0x62, empty), (e) => e.code === "bad-value");
  const odd = Uint8Array.from(body);
  odd[odd.length - 37] = 35; // one-time prekey of 35 bytes, one byte then left over
  assert.throws(() => parse(0x62, odd), (e) => ["bad-value", "trailing-bytes"].includes(e.code));
});

test("values outside their rule are bad-value", () => {
  const userList = fixtures.mailbox_relay.find((f) => f.type === 0x6e);
  const body = fromHex(userList.body);
  body[2 + 1 + 5] = 2; // alice's online flag
  assert.throws(() => parse(0x6e, body), (e) => e.code === "bad-value");
  assert.throws(() => parse(0x6e, fromHex("2711")), (e) => e.code === "bad-value");
  assert.throws(() => parse(0x6b, fromHex("05616c696365000102030405060708090a0b0c0d0e0f03")),
    (e) => e.code === "bad-value");
});

test("a client type from the relay is unknown-type", () => {
  assert.throws(() => parse(0x53, new Uint8Array(0)), (e) => e.code === "unknown-type");
});

test("a KEY_HISTORY entry outside 14.6's rule is bad-value", () => {
  const history = (key, added, replaced, compromised) => concat(text8("bob"), u16(1), bytes16(key),
    u64(added), u64(replaced), u64(compromised));
  const refused = (body) => assert.throws(() => parse(0x6f, body), { code: "bad-value" });
  refused(history(new Uint8Array(0), 1n, 2n, 0n)); // no key
  refused(history(Uint8Array.of(0x30), 3n, 2n, 0n)); // added after replaced
  refused(history(Uint8Array.of(0x30), 2n, 5n, 1n)); // compromised before added
  refused(history(Uint8Array.of(0x30), 2n, 5n, 6n)); // compromised after replaced
  assert.equal(parse(0x6f, history(Uint8Array.of(0x30), 2n, 5n, 5n)).keys.length, 1);
});
