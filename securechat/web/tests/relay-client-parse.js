// For the chat tests: the client's relay messages read back (what the
// relay itself parses), RELAY and CHAT_STOP only.
import { Reader } from "../static/js/protocol/bytes.js";

export function parse(type, body) {
  const r = new Reader(body);
  const peer = r.text8("peer");
  if (type === 0x36) return { kind: "relay", peer, payload: r.bytes32("payload") };
  if (type === 0x35) return { kind: "chatStop", peer };
  throw new Error(`unexpected client message 0x${type.toString(16)}`);
}
