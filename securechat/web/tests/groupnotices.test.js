// Groups in the page's session (15.2, 15.3): the relay's group messages
// are shown as notices, never end the connection, and are never
// acknowledged (the relay keeps them for the terminal client).
import { test } from "node:test";
import assert from "node:assert/strict";

import { bytes16, bytes32, concat, text8, u16, u32, u64, u8 } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import { RelaySession } from "../static/js/client/session.js";

const ID = new Uint8Array(16).fill(7);
const OTHER = new Uint8Array(16).fill(9);
const entry = (id, name, role) => concat(id, text8(name), u8(role), u64(2n), u32(2));
const groupList = (...entries) => [0x84, concat(u16(entries.length), ...entries)];
const change = (id, actor, action, target) => concat(u8(1), id, u64(2n), new Uint8Array(32),
  text8(actor), u8(action), text8(target), u8(0), text8(""), u64(0n), u16(1), bytes16(Uint8Array.of(5)));
const groupChanged = (c) => [0x80, bytes32(c)];
const groupMessage = (id, seq, sender) => [0x83, concat(id, u64(seq), text8(sender), u64(1n),
  bytes32(Uint8Array.of(1, 2)))];

async function welcomed() {
  const signer = await ed25519SigningKey(new Uint8Array(32).fill(1));
  const sent = [];
  const seen = [];
  const s = new RelaySession({ me: "carol", signer, out: (m) => sent.push(...m),
    view: (e) => seen.push(e) });
  await s.message(0x40, concat(text8("carol"), u64(65408n)));
  const notices = () => seen.filter((e) => e.kind === "notice").map((e) => e.text);
  const groupTypes = () => sent.map(([type]) => type).filter((t) => t >= 0x70 && t <= 0x74);
  return { s, notices, groupTypes };
}

test("GROUP_LIST after WELCOME: one line per group, pointing to securechat-client", async () => {
  const { s, notices } = await welcomed();
  await s.message(...groupList(entry(ID, "team", 1), entry(OTHER, "ops", 3)));
  assert.deepEqual(notices(), [
    "the relay says you are a member of group 'team'; groups are not available in the browser "
      + "yet — use securechat-client",
    "the relay says you are the owner of group 'ops'; groups are not available in the browser "
      + "yet — use securechat-client"]);
  await s.message(...groupList(entry(ID, "team", 1), entry(OTHER, "ops", 3)));
  assert.equal(notices().length, 2); // the same groups again: nothing new
});

test("group messages are shown once per group and never acknowledged (15.3)", async () => {
  const { s, notices, groupTypes } = await welcomed();
  await s.message(...groupList(entry(ID, "team", 1)));
  await s.message(...groupMessage(ID, 1n, "bob"));
  await s.message(...groupMessage(ID, 2n, "bob"));
  assert.equal(notices()[1], "bob wrote in group 'team'; this page cannot read group messages, "
    + "they are kept for securechat-client");
  assert.equal(notices().length, 2);
  assert.deepEqual(groupTypes(), []); // no GROUP_ACK (0x72), nothing else
});

test("GROUP_CHANGED adding us asks LIST_GROUPS (once) for the group's name", async () => {
  const { s, notices, groupTypes } = await welcomed();
  await s.message(...groupChanged(change(ID, "bob", 2, "carol")));
  await s.message(...groupChanged(change(OTHER, "bob", 2, "carol")));
  assert.deepEqual(groupTypes(), [0x73]);
  await s.message(...groupList(entry(ID, "team", 1)));
  assert.match(notices()[0], /^the relay says you are a member of group 'team'/);
  await s.message(...groupChanged(change(ID, "bob", 3, "carol")));
  assert.equal(notices()[1], "bob removed you from group 'team' (not verified here)");
});

test("a group change that does not parse is a notice, not a disconnection", async () => {
  const { s, notices } = await welcomed();
  await s.message(...groupChanged(Uint8Array.of(2)));
  assert.match(notices()[0], /^the relay sent a group change that does not parse \(group change: version 2/);
});

test("a group message before WELCOME is unexpected-message; a bad one bad-value", async () => {
  const signer = await ed25519SigningKey(new Uint8Array(32).fill(1));
  const s = new RelaySession({ me: "carol", signer, out: () => {}, view: () => {} });
  await assert.rejects(s.message(...groupList()), (e) => e.code === "unexpected-message");
  const { s: t } = await welcomed();
  await assert.rejects(t.message(...groupList(entry(ID, "team", 4))), (e) => e.code === "bad-value");
});
