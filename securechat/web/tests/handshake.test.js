// The initiator's handshake and records against docs/protocol.rst's
// vectors 13.1 and 13.2, byte for byte, and its failure paths.
import { test } from "node:test";
import assert from "node:assert/strict";

import { concat, toHex, utf8 } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey, importPublicKey } from "../static/js/protocol/crypto.js";
import { Connection, State, userIdentity } from "../static/js/protocol/connection.js";
import { Alert } from "../static/js/protocol/errors.js";
import { PING, encodePingData } from "../static/js/protocol/messages.js";
import { certificatePublicKey, checkServerIdentity } from "../static/js/protocol/x509.js";
import { vector } from "./vectors.js";

const hex = toHex;

function drawer(...chunks) {
  const queue = [...chunks];
  return (n) => {
    const next = queue.shift();
    assert.equal(next.length, n);
    return next;
  };
}

async function initiator(v, context, verifyPeer, options = {}) {
  const signer = await ed25519SigningKey(v["initiator.seed"]);
  return new Connection({
    context, signer, identity: userIdentity(new TextDecoder().decode(v["initiator.name"])),
    verifyPeer, suites: [1, 2], draw: drawer(v["initiator.nonce"], v["initiator.ephemeral"]),
    ...options,
  });
}

async function relayKey(v) {
  return importPublicKey(certificatePublicKey(v["responder.certificate"]));
}

const ping = (v) => [PING, encodePingData(v.ping)];

test("13.2 client-server: the initiator's bytes match the vector", async () => {
  const v = vector("client-server");
  // The relay's identity checked as section 9 says, at the vector's time.
  const conn = await initiator(v, 1, async (identity) => (await checkServerIdentity({
    chain: identity.chain, crl: identity.crl, ca: v["ca.certificate"], serverName: "localhost",
    now: new Date("2026-06-01T12:00:00Z"), seen: null,
  })).publicKey);
  await conn.initiate();
  assert.equal(hex(conn.dataToSend()), hex(v.hello));
  const events = await conn.receiveData(concat(v.hello_reply, v["responder.auth_record"]));
  assert.deepEqual(events.map((e) => e.kind), ["established"]);
  assert.equal(events[0].peer.kind, 1);
  assert.equal(conn.state, State.ESTABLISHED);
  assert.equal(hex(conn.dataToSend()), hex(v["initiator.auth_record"]));
  await conn.send(ping(v));
  assert.equal(hex(conn.dataToSend()), hex(v["initiator.record0"]));
  assert.deepEqual(await conn.receiveData(v["responder.record0"]), []);
  await conn.send(ping(v));
  assert.equal(hex(conn.dataToSend()), hex(v["initiator.record1"]));
});

test("13.2 split into one-byte reads gives the same bytes", async () => {
  const v = vector("client-server");
  const conn = await initiator(v, 1, () => relayKey(v));
  await conn.initiate();
  conn.dataToSend();
  const input = concat(v.hello_reply, v["responder.auth_record"]);
  const kinds = [];
  for (let i = 0; i < input.length; i++) {
    kinds.push(...(await conn.receiveData(input.subarray(i, i + 1))).map((e) => e.kind));
  }
  assert.deepEqual(kinds, ["established"]);
  assert.equal(hex(conn.dataToSend()), hex(v["initiator.auth_record"]));
});

test("13.1 end-to-end: the initiator's bytes match, a new key every record", async () => {
  const v = vector("end-to-end");
  const bob = await ed25519SigningKey(v["responder.seed"]);
  const conn = await initiator(v, 2, async (identity) => {
    assert.equal(identity.name, "bob");
    return { scheme: bob.scheme, key: bob.publicKey };
  });
  await conn.initiate();
  assert.equal(hex(conn.dataToSend()), hex(v.hello));
  const events = await conn.receiveData(concat(v.hello_reply, v["responder.auth_record"]));
  assert.deepEqual(events.map((e) => e.kind), ["established"]);
  assert.equal(hex(conn.dataToSend()), hex(v["initiator.auth_record"]));
  await conn.send(ping(v));
  assert.equal(hex(conn.dataToSend()), hex(v["initiator.record0"]));
  await conn.receiveData(v["responder.record0"]);
  await conn.send(ping(v));
  assert.equal(hex(conn.dataToSend()), hex(v["initiator.record1"]));
});

// -- failures ---------------------------------------------------------------

async function afterReply(v, verifyPeer, options) {
  const conn = await initiator(v, 1, verifyPeer ?? (() => relayKey(v)), options);
  await conn.initiate();
  conn.dataToSend();
  return conn;
}

function plainAlert(code) {
  return hex(Uint8Array.of(0, 0, 0, 3, 0x15, code, 0));
}

test("a refused relay certificate is bad-certificate, a plaintext HANDSHAKE_FAILED", async () => {
  const v = vector("client-server");
  const { RemoteProtocolError } = await import("../static/js/protocol/errors.js");
  const conn = await afterReply(v, async () => {
    throw new RemoteProtocolError("bad-certificate", "[expired] test");
  });
  const events = await conn.receiveData(concat(v.hello_reply, v["responder.auth_record"]));
  assert.equal(events.at(-1).error.code, "bad-certificate");
  assert.equal(conn.state, State.FAILED);
  assert.equal(hex(conn.dataToSend()), plainAlert(Alert.HANDSHAKE_FAILED));
});

test("a tampered handshake record is bad-handshake-record", async () => {
  const v = vector("client-server");
  const conn = await afterReply(v);
  const record = Uint8Array.from(v["responder.auth_record"]);
  record[40] ^= 1;
  const events = await conn.receiveData(concat(v.hello_reply, record));
  assert.equal(events.at(-1).error.code, "bad-handshake-record");
  assert.equal(hex(conn.dataToSend()), plainAlert(Alert.HANDSHAKE_FAILED));
});

test("a signature by another key is bad-signature", async () => {
  const v = vector("client-server");
  const other = await ed25519SigningKey(new Uint8Array(32).fill(7));
  const conn = await afterReply(v, async () => ({ scheme: other.scheme, key: other.publicKey }));
  const events = await conn.receiveData(concat(v.hello_reply, v["responder.auth_record"]));
  assert.equal(events.at(-1).error.code, "bad-signature");
});

test("a handshake record of the other context does not open", async () => {
  const v = vector("end-to-end");
  const conn = await afterReply(v); // client-server keys: the salt names the context
  const events = await conn.receiveData(concat(v.hello_reply, v["responder.auth_record"]));
  assert.equal(events.at(-1).error.code, "bad-handshake-record");
});

test("a suite not offered is suite-not-offered", async () => {
  const v = vector("client-server");
  const conn = await afterReply(v, undefined, { suites: [1] });
  // (a different offer: the transcript differs, but the reply is refused first)
  const reply = Uint8Array.from(v.hello_reply);
  reply[reply.length - 1] = 2;
  const events = await conn.receiveData(reply);
  assert.equal(events.at(-1).error.code, "suite-not-offered");
  assert.equal(hex(conn.dataToSend()), plainAlert(Alert.HANDSHAKE_FAILED));
});

test("an offered suite WebCrypto cannot run is refused, not used", async () => {
  const v = vector("client-server");
  const conn = await afterReply(v);
  const reply = Uint8Array.from(v.hello_reply);
  reply[reply.length - 1] = 2;
  const events = await conn.receiveData(reply);
  assert.equal(events.at(-1).error.code, "no-common-suite");
});

test("the browser offers AES-256-GCM only by default", async () => {
  const signer = await ed25519SigningKey(new Uint8Array(32));
  const conn = new Connection({ signer, identity: userIdentity("alice"), verifyPeer: null });
  await conn.initiate();
  const hello = conn.dataToSend();
  assert.equal(hex(hello.subarray(-3)), "010001");
});

test("a reflected key share is reflected-key-share", async () => {
  const v = vector("client-server");
  const conn = await afterReply(v);
  const reply = Uint8Array.from(v.hello_reply);
  reply.set(v.hello.subarray(4 + 1 + 2 + 1 + 32, 4 + 1 + 2 + 1 + 64), 4 + 1 + 2 + 32);
  const events = await conn.receiveData(reply);
  assert.equal(events.at(-1).error.code, "reflected-key-share");
});

test("a low-order key share is bad-key-share", async () => {
  const v = vector("client-server");
  const conn = await afterReply(v);
  const reply = Uint8Array.from(v.hello_reply);
  reply.fill(0, 4 + 1 + 2 + 32, 4 + 1 + 2 + 64);
  const events = await conn.receiveData(reply);
  assert.equal(events.at(-1).error.code, "bad-key-share");
});

test("another version is unsupported-version", async () => {
  const v = vector("client-server");
  const conn = await afterReply(v);
  const reply = Uint8Array.from(v.hello_reply);
  reply[6] = 2;
  const events = await conn.receiveData(reply);
  assert.equal(events.at(-1).error.code, "unsupported-version");
  const out = conn.dataToSend();
  assert.equal(hex(out.subarray(4, 6)), "1504"); // plaintext UNSUPPORTED_VERSION
});

test("a plaintext alert before keys is believed; after, unauthenticated", async () => {
  const v = vector("client-server");
  let conn = await afterReply(v);
  let events = await conn.receiveData(Uint8Array.of(0, 0, 0, 3, 0x15, Alert.LIMIT_EXCEEDED, 0));
  assert.equal(events.at(-1).error.code, "peer-alert");
  assert.equal(events.at(-1).error.peerAlert, Alert.LIMIT_EXCEEDED);
  conn = await afterReply(v);
  events = await conn.receiveData(concat(v.hello_reply,
    Uint8Array.of(0, 0, 0, 3, 0x15, Alert.CLOSE_NOTIFY, 0)));
  assert.equal(events.at(-1).error.code, "unauthenticated-alert");
  assert.equal(conn.dataToSend().length, 0); // not answered
});

async function established(v) {
  const conn = await afterReply(v, undefined, {});
  await conn.receiveData(concat(v.hello_reply, v["responder.auth_record"]));
  conn.dataToSend();
  return conn;
}

test("a replayed record is record-replayed, a skipped one record-gap", async () => {
  const v = vector("client-server");
  let conn = await established(v);
  await conn.receiveData(v["responder.record0"]);
  let events = await conn.receiveData(v["responder.record0"]);
  assert.equal(events.at(-1).error.code, "record-replayed");
  conn = await established(v);
  const later = Uint8Array.from(v["responder.record0"]);
  later[12] = 1;
  events = await conn.receiveData(later);
  assert.equal(events.at(-1).error.code, "record-gap");
});

test("a forged record is bad-record-mac, answered inside a record", async () => {
  const v = vector("client-server");
  const conn = await established(v);
  const forged = Uint8Array.from(v["responder.record0"]);
  forged[forged.length - 1] ^= 1;
  const events = await conn.receiveData(forged);
  assert.equal(events.at(-1).error.code, "bad-record-mac");
  const out = conn.dataToSend();
  assert.equal(out[4], 0x17); // the BAD_RECORD alert is sealed, not plaintext
});

test("frames over the pre-handshake maximum are refused from their length", async () => {
  const v = vector("client-server");
  const conn = await afterReply(v);
  const events = await conn.receiveData(Uint8Array.of(0, 0, 0x40, 1, 2));
  assert.equal(events.at(-1).error.code, "frame-too-large");
  assert.equal(events.at(-1).error.detail, "frame of 16385 bytes, maximum 16384");
  assert.equal(hex(conn.dataToSend().subarray(4, 6)), "1502"); // plaintext FRAME_TOO_LARGE
});

test("PING is answered with PONG of the same data", async () => {
  const v = vector("client-server");
  const conn = await established(v);
  // responder.record0 is a PONG: ignored, nothing sent.
  assert.deepEqual(await conn.receiveData(v["responder.record0"]), []);
  assert.equal(conn.dataToSend().length, 0);
});

test("utf8 helper", () => {
  assert.equal(hex(utf8("é")), "c3a9");
});

// -- the responder (13.1) ------------------------------------------------------

import { Responder } from "../static/js/protocol/responder.js";

async function responder(v, verifyPeer) {
  const signer = await ed25519SigningKey(v["responder.seed"]);
  return new Responder({
    context: 2, signer, identity: userIdentity("bob"), verifyPeer, suites: [1, 2],
    draw: drawer(v["responder.nonce"], v["responder.ephemeral"]),
  });
}

const aliceKey = async (v) => {
  const alice = await ed25519SigningKey(v["initiator.seed"]);
  return { scheme: alice.scheme, key: alice.publicKey };
};

test("13.1 end-to-end: the responder's bytes match the vector", async () => {
  const v = vector("end-to-end");
  const conn = await responder(v, async (identity) => {
    assert.equal(identity.name, "alice");
    return aliceKey(v);
  });
  assert.deepEqual(await conn.receiveData(v.hello), []);
  assert.equal(hex(conn.dataToSend()), hex(concat(v.hello_reply, v["responder.auth_record"])));
  const events = await conn.receiveData(v["initiator.auth_record"]);
  assert.deepEqual(events.map((e) => e.kind), ["established"]);
  await conn.receiveData(v["initiator.record0"]); // PING: the automatic PONG
  assert.equal(hex(conn.dataToSend()), hex(v["responder.record0"]));
  await conn.receiveData(v["initiator.record1"]); // under ap_i.next: opens
  assert.equal(conn.state, State.ESTABLISHED);
});

test("a refused initiator gets its alert under ap_r, which it can open", async () => {
  const v = vector("end-to-end");
  const { RemoteProtocolError } = await import("../static/js/protocol/errors.js");
  const conn = await responder(v, async () => {
    throw new RemoteProtocolError("peer-rejected", "not the peer asked for");
  });
  await conn.receiveData(v.hello);
  conn.dataToSend();
  const events = await conn.receiveData(v["initiator.auth_record"]);
  assert.equal(events.at(-1).error.code, "peer-rejected");
  const out = conn.dataToSend();
  assert.equal(hex(out.subarray(4, 13)), "170000000000000000"); // a record, counter 0
  // The initiator, established by then, opens it as HANDSHAKE_FAILED.
  const bob = await ed25519SigningKey(v["responder.seed"]);
  const alice = await initiator(v, 2, async () => ({ scheme: bob.scheme, key: bob.publicKey }));
  await alice.initiate();
  await alice.receiveData(concat(v.hello_reply, v["responder.auth_record"]));
  const seen = await alice.receiveData(out);
  assert.equal(seen.at(-1).error.code, "peer-alert");
  assert.equal(seen.at(-1).error.peerAlert, Alert.HANDSHAKE_FAILED);
});

test("a responder takes the first offered suite it can run", async () => {
  const v = vector("end-to-end");
  const conn = await responder(v, () => aliceKey(v));
  // An offer of ChaCha20-Poly1305 alone: WebCrypto cannot run it.
  const hello = Uint8Array.from(v.hello);
  hello.set([0, 2, 0, 2], hello.length - 4);
  const events = await conn.receiveData(hello);
  assert.equal(events.at(-1).error.code, "no-common-suite");
  assert.equal(hex(conn.dataToSend().subarray(4, 6)), "1505"); // plaintext NO_COMMON_SUITE
});

test("a HELLO for the other context is wrong-context", async () => {
  const v = vector("client-server");
  const conn = await responder(vector("end-to-end"), () => null);
  const events = await conn.receiveData(v.hello);
  assert.equal(events.at(-1).error.code, "wrong-context");
});
