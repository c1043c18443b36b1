// The end-to-end layer's messages (docs/protocol.rst 12.2): inner messages
// of the end-to-end context, between two clients through the relay.
import { Reader, concat, text16, u64, utf8 } from "./bytes.js";
import { RemoteProtocolError } from "./errors.js";

export const TEXT = 0x50;
export const END = 0x51;
export const READY = 0x52;
/** The longest chat line, in UTF-8 bytes. */
export const MAX_TEXT = 16 * 1024;
/** The end-to-end types, for Connection's `applicationTypes`. */
export const E2E_TYPES = new Set([TEXT, END, READY]);

export const encode = {
  /** One chat line; `sentAt` is milliseconds since the Unix epoch. */
  text: (sentAt, text) => {
    if (utf8(text).length > MAX_TEXT) throw new RangeError(`a line over ${MAX_TEXT} bytes`);
    return [TEXT, concat(u64(sentAt), text16(text))];
  },
  end: (sent) => [END, u64(sent)],
  ready: () => [READY, new Uint8Array(0)],
};

/** An end-to-end message, parsed exactly; a TEXT over MAX_TEXT is limit-exceeded. */
export function parse(type, body) {
  const r = new Reader(body);
  let message;
  if (type === TEXT) {
    message = { kind: "text", sentAt: r.u64("sent_at"), text: r.text16("text") };
  } else if (type === END) {
    message = { kind: "end", sent: r.u64("sent") };
  } else if (type === READY) {
    message = { kind: "ready" };
  } else {
    throw new RemoteProtocolError("unknown-type", `end-to-end type 0x${type.toString(16)}`);
  }
  r.end(message.kind);
  if (message.kind === "text" && utf8(message.text).length > MAX_TEXT) {
    throw new RemoteProtocolError("limit-exceeded",
      `TEXT of ${utf8(message.text).length} bytes, the most is ${MAX_TEXT}`);
  }
  return message;
}
