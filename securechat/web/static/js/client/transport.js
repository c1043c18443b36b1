// The relay over a WebSocket (docs/protocol.rst 3.1), with the standard
// WebSocket API (browsers; Node 22, or Node 20 with
// --experimental-websocket): binary messages in, to the protocol core;
// what the core produces, out in one message per write.  Text messages
// from the relay are a protocol error.
import { Connection } from "../protocol/connection.js";
import { GROUP_TYPES } from "../protocol/groups.js";
import { MAILBOX_TYPES } from "../protocol/mailbox.js";
import { RELAY_TYPES } from "../protocol/relay.js";

/** The largest binary message a client sends (docs/protocol.rst 3.1). */
export const MAX_MESSAGE = 65540;

/** What the relay may send after the handshake: sections 11, 14.6 and 15.2. */
export const FROM_RELAY = new Set([...RELAY_TYPES, ...MAILBOX_TYPES, ...GROUP_TYPES]);

/**
 * Connect to `url` (ws:// or wss://, path /relay) and log in.
 *
 * @param options.url       the relay's WebSocket
 * @param options.signer    the user's signing key (crypto.js)
 * @param options.identity  `{kind: 2, name}`
 * @param options.checkRelay async (identity) => public key: the section 9
 *   check (x509.checkServerIdentity) with the user's CA and server name
 * @param options.onEvent   called with each core event, in order
 * @returns {{send(messages...), close()}} once the socket is open
 */
export function connectRelay({ url, signer, identity, checkRelay, onEvent, WebSocketClass }) {
  const Socket = WebSocketClass ?? globalThis.WebSocket;
  const socket = new Socket(url);
  socket.binaryType = "arraybuffer";
  const conn = new Connection({ signer, identity, verifyPeer: checkRelay,
    applicationTypes: FROM_RELAY });
  let chain = Promise.resolve();
  const run = (step) => {
    chain = chain.then(async () => {
      const events = await step();
      const out = conn.dataToSend();
      // At most the largest frame with its prefix per message (3.1); where
      // the cut falls does not matter (boundaries carry no meaning).
      for (let at = 0; at < out.length && socket.readyState === 1; at += MAX_MESSAGE) {
        socket.send(out.subarray(at, at + MAX_MESSAGE));
      }
      for (const event of events) onEvent(event);
      if (conn.state === "FAILED" || conn.state === "CLOSED") socket.close(1000);
    });
    return chain;
  };
  socket.addEventListener("open", () => run(async () => {
    await conn.initiate();
    return [];
  }));
  socket.addEventListener("message", (message) => {
    if (typeof message.data === "string") {
      run(() => conn.close("unexpected-message", "a text WebSocket message"));
      return;
    }
    const data = new Uint8Array(message.data);
    run(() => conn.receiveData(data));
  });
  socket.addEventListener("close", (closed) => {
    run(async () => (conn.state === "FAILED" || conn.state === "CLOSED" ? [] : [{
      kind: "lost", code: closed.code, reason: closed.reason,
    }]));
  });
  socket.addEventListener("error", () => undefined); // "close" follows
  return {
    connection: conn,
    send: (...messages) => run(async () => {
      await conn.send(...messages);
      return [];
    }),
    close: () => run(async () => {
      await conn.close();
      return [];
    }),
  };
}
