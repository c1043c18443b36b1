// The groups' relay messages (15.2) and a change's fields (15.1) against the
// reference implementation's bytes (tests/relay_fixtures.py), and the refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { fromHex, toHex } from "../static/js/protocol/bytes.js";
import { CLIENT, GROUP_TYPES, encode, parse, parseChange } from "../static/js/protocol/groups.js";
import { FROM_RELAY } from "../static/js/client/transport.js";

import { plain, typed } from "./fixturevalues.js";

const fixtures = JSON.parse(readFileSync(new URL("./relay-fixtures.json", import.meta.url)));

for (const f of fixtures.group_client) {
  test(`group client message ${f.encode}: the reference's bytes`, () => {
    const [, layout] = CLIENT[f.encode];
    const fields = Object.fromEntries(layout.map(([name, kind], i) => [name, typed(kind, f.values[i])]));
    const [type, body] = encode(f.encode, fields);
    assert.equal(type, f.type);
    assert.equal(toHex(body), f.body);
  });
}

for (const f of fixtures.group_relay) {
  test(`group relay message 0x${f.type.toString(16)}: parsed as the reference encodes it`, () => {
    const { message, ...fields } = parse(f.type, fromHex(f.body));
    assert.ok(message);
    assert.deepEqual(Object.values(fields).map(plain), f.values);
  });
}

test("every group relay type is one the connection passes up (no unknown-type)", () => {
  for (const f of fixtures.group_relay) assert.ok(FROM_RELAY.has(f.type));
  assert.deepEqual([...GROUP_TYPES].sort(), [0x80, 0x81, 0x82, 0x83, 0x84, 0x85]);
});

for (const f of fixtures.changes) {
  test(`a change (action ${f.fields.action}): its fields as the reference parses them`, () => {
    const change = parseChange(fromHex(f.change));
    const got = Object.fromEntries(Object.entries(change).map(([k, v]) => [k, plain(v)]));
    assert.deepEqual(got, f.fields);
  });
}

const list = fixtures.group_relay.find((f) => f.type === 0x84 && f.values[0].length === 2);

test("GROUP_LIST: a role outside 1-3, a name not UTF-8, truncation, trailing bytes", () => {
  const body = fromHex(list.body);
  const role = 2 + 16 + 1 + 5; // count, id, name "téam" (5 bytes) -> role
  assert.equal(body[role], 1);
  const badRole = Uint8Array.from(body);
  badRole[role] = 4;
  assert.throws(() => parse(0x84, badRole), (e) => e.code === "bad-value");
  const badName = Uint8Array.from(body);
  badName[2 + 16 + 1 + 1] = 0xff; // inside "é"
  assert.throws(() => parse(0x84, badName), (e) => e.code === "bad-value");
  assert.throws(() => parse(0x84, body.subarray(0, body.length - 1)), (e) => e.code === "truncated");
  assert.throws(() => parse(0x84, Uint8Array.from([...body, 0])), (e) => e.code === "trailing-bytes");
});

test("GROUP_LOG_PAGE's more is 0 or 1; GROUP_MESSAGE's sender a user name", () => {
  const page = fixtures.group_relay.find((f) => f.type === 0x85);
  const body = fromHex(page.body);
  body[body.length - 1] = 2;
  assert.throws(() => parse(0x85, body), (e) => e.code === "bad-value");
  const message = fromHex(fixtures.group_relay.find((f) => f.type === 0x83).body);
  message[16 + 8 + 1] = 0x42; // "bob" -> "Bob"
  assert.throws(() => parse(0x83, message), (e) => e.code === "bad-value");
});

test("a client type from the relay is unknown-type", () => {
  assert.throws(() => parse(0x70, new Uint8Array(0)), (e) => e.code === "unknown-type");
});

test("a change: version, action, names, signature size and exact length are checked", () => {
  const good = fromHex(fixtures.changes[0].change);
  const bad = (edit) => { const c = Uint8Array.from(good); edit(c); return c; };
  const refused = (c) => assert.throws(() => parseChange(c), (e) => e.code === "bad-value"
    && e.detail.startsWith("group change"));
  refused(bad((c) => { c[0] = 2; }));
  refused(bad((c) => { c[1 + 16 + 8 + 32 + 4] = 9; })); // actor "bob" then action
  refused(bad((c) => { c[1 + 16 + 8 + 32 + 1] = 0x42; })); // actor "Bob"
  assert.throws(() => parseChange(Uint8Array.from([...good, 0])), (e) => e.code === "trailing-bytes");
  assert.throws(() => parseChange(good.subarray(0, 40)), (e) => e.code === "truncated");
  refused(new Uint8Array(715));
});

test("the client refuses to encode an id that is not 16 bytes", () => {
  assert.throws(() => encode("groupAck", { group_id: new Uint8Array(15), seq: 1n }), TypeError);
});
