// Records: docs/protocol.rst section 6.  One direction is a RecordSealer
// on one side and a RecordOpener on the other, made from the same traffic
// secret; counters are BigInts, checked before decryption.
import { concat, u32, u64 } from "./bytes.js";
import { TAG_LENGTH, aeadKey, aeadOpen, aeadSeal } from "./crypto.js";
import { LocalProtocolError, RemoteProtocolError } from "./errors.js";
import { RECORD } from "./framing.js";
import { nextSecret, trafficKeys } from "./schedule.js";

export const HEADER_LENGTH = 13;
export const COUNTER_LIMIT = (1n << 64n) - 1n;
/** Key update interval N by context (section 6). */
export const REKEY_INTERVAL = Object.freeze({ 1: 1n << 20n, 2: 1n });

class Direction {
  /** Use `create`: the keys are derived asynchronously. */
  constructor(rekeyInterval) {
    this.counter = 0n;
    this.rekeyInterval = BigInt(rekeyInterval);
    this.secret = null;
    this.key = null;
    this.iv = null;
  }

  static async create(secret, rekeyInterval) {
    const d = new this(rekeyInterval);
    await d.install(secret);
    return d;
  }

  async install(secret) {
    const { key, iv } = await trafficKeys(secret);
    this.secret = secret;
    this.key = await aeadKey(key);
    this.iv = iv;
  }

  nonce(counter) {
    const out = Uint8Array.from(this.iv);
    const c = u64(counter);
    for (let i = 0; i < 8; i++) out[4 + i] ^= c[i];
    return out;
  }

  async advance() {
    this.counter += 1n;
    if (this.counter % this.rekeyInterval === 0n) {
      await this.install(await nextSecret(this.secret));
    }
  }
}

/** Seals plaintexts into record frames. */
export class RecordSealer extends Direction {
  async seal(plaintext) {
    const counter = this.counter;
    if (counter >= COUNTER_LIMIT) {
      throw new LocalProtocolError("record-limit", "send counter exhausted");
    }
    const header = concat(u32(9 + plaintext.length + TAG_LENGTH), Uint8Array.of(RECORD),
      u64(counter));
    const ciphertext = await aeadSeal(this.key, this.nonce(counter), plaintext, header);
    await this.advance();
    return concat(header, ciphertext);
  }
}

/** Opens record frames, in strict counter order. */
export class RecordOpener extends Direction {
  async open(frame) {
    if (frame.length < HEADER_LENGTH + TAG_LENGTH) {
      throw new RemoteProtocolError("truncated", "record shorter than header and tag");
    }
    const counter = new DataView(frame.buffer, frame.byteOffset + 5, 8).getBigUint64(0);
    if (counter !== this.counter) {
      const code = counter < this.counter ? "record-replayed" : "record-gap";
      throw new RemoteProtocolError(code, `record counter ${counter}, expected ${this.counter}`);
    }
    if (counter >= COUNTER_LIMIT) {
      throw new RemoteProtocolError("record-limit", "peer exhausted its counter");
    }
    const header = frame.subarray(0, HEADER_LENGTH);
    const plaintext = await aeadOpen(this.key, this.nonce(counter),
      frame.subarray(HEADER_LENGTH), header);
    if (plaintext === null) {
      throw new RemoteProtocolError("bad-record-mac", `record ${counter} failed authentication`);
    }
    await this.advance();
    return plaintext;
  }
}
