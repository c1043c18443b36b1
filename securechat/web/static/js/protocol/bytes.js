// Bytes, integers and length-prefixed fields of docs/protocol.rst,
// section 2: the reader that parses exactly (truncated, trailing-bytes)
// and the writers that build messages.  No crypto, no IO.
import { RemoteProtocolError } from "./errors.js";

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** The UTF-8 bytes of `text`. */
export function utf8(text) {
  return encoder.encode(text);
}

/** `data` as lower-case hex. */
export function toHex(data) {
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The bytes of a hex string (whitespace ignored). */
export function fromHex(text) {
  const clean = text.replace(/\s+/g, "");
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) {
    throw new TypeError("not a hex string");
  }
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(clean.substr(2 * i, 2), 16);
  }
  return out;
}

/** The concatenation of byte arrays. */
export function concat(...parts) {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Whether two byte arrays hold the same bytes (not constant time). */
export function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function u8(n) {
  return Uint8Array.of(n);
}

export function u16(n) {
  return Uint8Array.of((n >>> 8) & 0xff, n & 0xff);
}

export function u32(n) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

/** A u64 from a BigInt (or a safe integer). */
export function u64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

function prefixed(width, max, data) {
  if (data.length > max) throw new RangeError(`field of ${data.length} bytes over ${max}`);
  const head = width === 1 ? u8(data.length) : width === 2 ? u16(data.length) : u32(data.length);
  return concat(head, data);
}

export const bytes8 = (data) => prefixed(1, 0xff, data);
export const bytes16 = (data) => prefixed(2, 0xffff, data);
export const bytes32 = (data) => prefixed(4, 0xffffffff, data);
export const text8 = (text) => bytes8(utf8(text));
export const text16 = (text) => bytes16(utf8(text));

/**
 * Reads one message exactly: a field running past the end is `truncated`,
 * bytes left after the last field (checked by `end()`) `trailing-bytes`.
 */
export class Reader {
  constructor(data) {
    this.data = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.at = 0;
  }

  get remaining() {
    return this.data.length - this.at;
  }

  take(n, what = "field") {
    if (n > this.remaining) {
      throw new RemoteProtocolError("truncated", `${what} runs past the end`);
    }
    const out = this.data.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  u8(what) {
    return this.take(1, what)[0];
  }

  u16(what) {
    const b = this.take(2, what);
    return (b[0] << 8) | b[1];
  }

  u32(what) {
    this.take(4, what);
    return this.view.getUint32(this.at - 4);
  }

  /** A u64, as a BigInt. */
  u64(what) {
    this.take(8, what);
    return this.view.getBigUint64(this.at - 8);
  }

  bytes8(what) {
    return this.take(this.u8(what), what);
  }

  bytes16(what) {
    return this.take(this.u16(what), what);
  }

  bytes32(what) {
    return this.take(this.u32(what), what);
  }

  /** UTF-8 text; invalid UTF-8 is `bad-value`. */
  text(data, what) {
    try {
      return strictDecoder.decode(data);
    } catch {
      throw new RemoteProtocolError("bad-value", `${what} is not UTF-8`);
    }
  }

  text8(what) {
    return this.text(this.bytes8(what), what);
  }

  text16(what) {
    return this.text(this.bytes16(what), what);
  }

  /** Everything left. */
  rest() {
    return this.take(this.remaining);
  }

  end(what = "message") {
    if (this.remaining !== 0) {
      throw new RemoteProtocolError("trailing-bytes", `${this.remaining} bytes after the ${what}`);
    }
  }
}
