// The WebSocket transport (3.1) with a stand-in socket: binary messages
// both ways, none over 65540 bytes, text from the relay refused.
import { test } from "node:test";
import assert from "node:assert/strict";

import { concat } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import { userIdentity } from "../static/js/protocol/connection.js";
import { PING, encodeInner, encodePingData } from "../static/js/protocol/messages.js";
import { RecordSealer } from "../static/js/protocol/records.js";
import { MAX_MESSAGE, connectRelay } from "../static/js/client/transport.js";
import { certificatePublicKey } from "../static/js/protocol/x509.js";
import { importPublicKey } from "../static/js/protocol/crypto.js";
import { vector } from "./vectors.js";

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.listeners = {};
    FakeSocket.last = this;
  }

  addEventListener(kind, f) {
    (this.listeners[kind] ??= []).push(f);
  }

  emit(kind, event = {}) {
    for (const f of this.listeners[kind] ?? []) f(event);
  }

  send(data) {
    this.sent.push(Uint8Array.from(data));
  }

  close(code) {
    this.closedWith = code;
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

async function established(v) {
  const signer = await ed25519SigningKey(v["initiator.seed"]);
  const events = [];
  const draws = [v["initiator.nonce"], v["initiator.ephemeral"]];
  const session = connectRelay({
    url: "ws://relay.example/relay", signer, identity: userIdentity("alice"),
    checkRelay: async () => importPublicKey(certificatePublicKey(v["responder.certificate"])),
    onEvent: (e) => events.push(e), WebSocketClass: FakeSocket,
  });
  // The vector's randomness, so the relay's recorded answers fit.
  session.connection.suites = [1, 2];
  session.connection.draw = () => draws.shift();
  const socket = FakeSocket.last;
  socket.readyState = 1;
  socket.emit("open");
  await settle();
  await session.connection._chain;
  socket.emit("message", { data: concat(v.hello_reply, v["responder.auth_record"]).buffer });
  await settle();
  await session.connection._chain;
  return { session, socket, events };
}

test("binary messages carry the frames; the handshake completes", async () => {
  const v = vector("client-server");
  const { socket, events } = await established(v);
  assert.equal(socket.sent.length, 2); // HELLO, then the AUTH record
  assert.deepEqual(events.map((e) => e.kind), ["established"]);
});

test("output over 65540 bytes goes in several messages", async () => {
  const v = vector("client-server");
  const { socket, session } = await established(v);
  // The relay sends 2000 PINGs at once: 2000 PONG records answer them.
  const relay = await RecordSealer.create(v.ap_r, 1n << 20n);
  const pings = [];
  for (let i = 0; i < 2000; i++) {
    pings.push(await relay.seal(encodeInner(PING, encodePingData(Uint8Array.of(1)))));
  }
  socket.sent = [];
  socket.emit("message", { data: concat(...pings).buffer });
  await settle();
  await session.connection._chain;
  await settle();
  const total = socket.sent.reduce((n, m) => n + m.length, 0);
  assert.equal(total, 2000 * 36); // every PONG: 13 header + 7 plaintext + 16 tag
  assert.ok(socket.sent.length >= 2, `${socket.sent.length} messages`);
  assert.ok(socket.sent.every((m) => m.length <= MAX_MESSAGE));
});

test("a text message from the relay ends the connection", async () => {
  const v = vector("client-server");
  const { socket, events, session } = await established(v);
  socket.emit("message", { data: "hello" });
  await settle();
  await session.connection._chain;
  assert.equal(events.at(-1).kind, "failed");
  assert.equal(events.at(-1).error.code, "unexpected-message");
  assert.equal(socket.closedWith, 1000);
});
