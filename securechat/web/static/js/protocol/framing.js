// Frames: docs/protocol.rst section 3.  `u32 length | u8 type | payload`,
// the length checked against the maximum as soon as its four bytes are in,
// before any of the payload is kept.
import { concat, u32 } from "./bytes.js";
import { RemoteProtocolError } from "./errors.js";

export const HELLO = 0x01;
export const HELLO_REPLY = 0x02;
export const ALERT = 0x15;
export const RECORD = 0x17;
export const FRAME_TYPES = new Set([HELLO, HELLO_REPLY, ALERT, RECORD]);

/** Before the handshake completes a client accepts frames up to this. */
export const MAX_HANDSHAKE_FRAME = 16384;
/** After it, frames from the relay up to this. */
export const MAX_FRAME = 65536;

/** The bytes of one frame. */
export function encodeFrame(type, payload) {
  return concat(u32(1 + payload.length), Uint8Array.of(type), payload);
}

/**
 * Splits a byte stream into whole frames (length field included).
 * `maxLength` may be raised between frames (after the handshake).
 */
export class FrameDecoder {
  constructor(maxLength = MAX_HANDSHAKE_FRAME) {
    this.maxLength = maxLength;
    this.pending = new Uint8Array(0);
  }

  /** Add received bytes. */
  feed(data) {
    this.pending = this.pending.length ? concat(this.pending, data) : Uint8Array.from(data);
  }

  /** How many bytes are held, not yet returned as frames. */
  get buffered() {
    return this.pending.length;
  }

  /**
   * The next whole frame, or null if it has not fully arrived.
   * Throws `empty-frame` or `frame-too-large` from the length alone.
   */
  next() {
    const p = this.pending;
    if (p.length < 4) return null;
    const length = new DataView(p.buffer, p.byteOffset, 4).getUint32(0);
    if (length === 0) throw new RemoteProtocolError("empty-frame");
    if (length > this.maxLength) {
      throw new RemoteProtocolError("frame-too-large",
        `frame of ${length} bytes, maximum ${this.maxLength}`);
    }
    if (p.length < 4 + length) return null;
    const frame = p.slice(0, 4 + length);
    this.pending = p.subarray(4 + length);
    return frame;
  }
}

/** A frame's type byte. */
export function frameType(frame) {
  return frame[4];
}

/** A frame's payload (after length and type). */
export function framePayload(frame) {
  return frame.subarray(5);
}
