// Sender keys (docs/protocol.rst 16.1-16.4), sans-IO: a chain's steps,
// the distribution (content type 2 of a letter), a group message's
// header and body, sealed and signed, parsed exactly, verified, opened.
// What a client keeps of chains and which counters it accepts is
// client/groupkeys.js.  Every refusal is a SenderKeyError with 16.6's code.
import { Reader, bytes32, concat, text8, u32, u64, u8, utf8 } from "./bytes.js";
import { RemoteProtocolError } from "./errors.js";
import { isUserName } from "./messages.js";
import { aeadKey, aeadOpen, aeadSeal, ed25519SigningKey, randomBytes, sha256 } from "./crypto.js";
import { expandLabel } from "./schedule.js";

export const MAX_GROUP_MESSAGE = 49152;
export const DISTRIBUTION_LENGTH = 97;
export const LAST_COUNTER = 0xffffffff;
export const TEXT = 1;
const LABEL = utf8("securechat/1 group message signature");
const EMPTY = new Uint8Array(0);
const subtle = globalThis.crypto.subtle;

export class SenderKeyError extends Error {
  constructor(code, detail) {
    super(`${code}: ${detail}`);
    this.code = code;
    this.detail = detail;
  }
}

/** `CK_n`'s message key, nonce and `CK_(n+1)` (16.1). */
export async function chainStep(chainKey) {
  return {
    messageKey: await expandLabel(chainKey, "group message key", EMPTY, 32),
    nonce: await expandLabel(chainKey, "group message iv", EMPTY, 12),
    next: await expandLabel(chainKey, "group chain key", EMPTY, 32),
  };
}

/** An Ed25519 signing key from its seed, with its raw 32-byte public key. */
export async function chainSigner(seed) {
  const signer = await ed25519SigningKey(seed);
  const raw = new Uint8Array(await subtle.exportKey("raw", signer.publicKey));
  return { ...signer, raw };
}

/**
 * A new chain at `epoch` (16.1): chain_id (not 0, nor `replacing`), the
 * chain key, the signing seed, drawn in this order by `draw(n)`.
 */
export async function newChain(epoch, replacing = 0, draw = randomBytes) {
  let chainId = 0;
  while (chainId === 0 || chainId === replacing) {
    const b = draw(4);
    chainId = new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
  }
  const chainKey = draw(32);
  const seed = draw(32);
  const signer = await chainSigner(seed);
  return { chainId, epoch: BigInt(epoch), counter: 0, chainKey, signer, signingPublic: signer.raw };
}

/** The distribution of `chain` in `groupId` (16.2), 97 bytes. */
export function encodeDistribution(groupId, chain) {
  return concat(u8(1), groupId, u64(chain.epoch), u32(chain.chainId), u32(chain.counter),
    chain.chainKey, chain.signingPublic);
}

function parsed(what, read) {
  try {
    return read();
  } catch (e) {
    if (e instanceof RemoteProtocolError) throw new SenderKeyError("malformed", `${what}: ${e.detail}`);
    throw e;
  }
}

/** A distribution parsed exactly (16.2). */
export function parseDistribution(data) {
  return parsed("distribution", () => {
    const r = new Reader(data);
    const version = r.u8("version");
    if (version !== 1) throw new SenderKeyError("unsupported-version", `distribution version ${version}`);
    const d = { groupId: r.take(16, "group_id"), epoch: r.u64("epoch"), chainId: r.u32("chain_id"),
      counter: r.u32("counter"), chainKey: r.take(32, "chain_key"),
      signingPublic: r.take(32, "signing_public") };
    r.end("distribution");
    if (d.chainId === 0) throw new SenderKeyError("malformed", "chain_id 0");
    return d;
  });
}

/** A message header (16.3). */
export function encodeHeader({ groupId, sender, epoch, chainId, counter, sentAt }) {
  return concat(u8(1), groupId, text8(sender), u64(epoch), u32(chainId), u32(counter), u64(sentAt));
}

/** The 69 bytes the chain's key signs (16.4 step 4). */
export async function signedMessage(header, ciphertext) {
  return concat(LABEL, u8(0), await sha256(concat(header, bytes32(ciphertext))));
}

/**
 * Seal `content` (bytes) of `contentType` with `chain` at its counter
 * (16.4 steps 1-5).  Returns `{body, next}`: `next` is the chain key to
 * keep if the body is sent (step 6); the caller advances the counter.
 */
export async function sealGroupMessage({ groupId, sender, epoch, chain, sentAt, contentType = TEXT,
  content }) {
  if (BigInt(epoch) < chain.epoch) {
    throw new SenderKeyError("wrong-epoch", `a chain of epoch ${chain.epoch} at epoch ${epoch}`);
  }
  if (chain.counter > LAST_COUNTER) throw new SenderKeyError("chain-exhausted", "no counter left");
  const header = encodeHeader({ groupId, sender, epoch, chainId: chain.chainId,
    counter: chain.counter, sentAt });
  const step = await chainStep(chain.chainKey);
  const ciphertext = await aeadSeal(await aeadKey(step.messageKey), step.nonce,
    concat(u8(contentType), content), header);
  const signature = new Uint8Array(await subtle.sign({ name: "Ed25519" }, chain.signer.privateKey,
    await signedMessage(header, ciphertext)));
  const body = concat(header, bytes32(ciphertext), signature);
  if (body.length > MAX_GROUP_MESSAGE) {
    throw new SenderKeyError("message-too-large", `a body of ${body.length} bytes`);
  }
  return { body, next: step.next };
}

/** A body parsed exactly (16.4 steps 1-2). */
export function parseBody(body) {
  if (body.length > MAX_GROUP_MESSAGE) {
    throw new SenderKeyError("message-too-large", `a body of ${body.length} bytes`);
  }
  return parsed("group message", () => {
    const r = new Reader(body);
    const version = r.u8("version");
    if (version !== 1) throw new SenderKeyError("unsupported-version", `body version ${version}`);
    const groupId = r.take(16, "group_id");
    const sender = r.text8("sender");
    const m = { groupId, sender, epoch: r.u64("epoch"), chainId: r.u32("chain_id"),
      counter: r.u32("counter"), sentAt: r.u64("sent_at") };
    m.header = body.subarray(0, r.at);
    m.ciphertext = r.bytes32("ciphertext");
    m.signature = r.take(64, "signature");
    r.end("group message");
    if (!isUserName(sender)) throw new SenderKeyError("malformed", "the sender is not a user name");
    if (m.chainId === 0) throw new SenderKeyError("malformed", "chain_id 0");
    if (m.ciphertext.length < 17) throw new SenderKeyError("malformed", "a ciphertext under 17 bytes");
    return m;
  });
}

/** Step 8: the signature by the chain's `signingPublic` (raw 32 bytes). */
export async function checkSignature(m, signingPublic) {
  let ok = false;
  try {
    const key = await subtle.importKey("raw", signingPublic, { name: "Ed25519" }, false, ["verify"]);
    ok = await subtle.verify({ name: "Ed25519" }, key, m.signature,
      await signedMessage(m.header, m.ciphertext));
  } catch {
    ok = false;
  }
  if (!ok) throw new SenderKeyError("bad-signature", "the signature does not verify with the chain's key");
}

/**
 * Steps 10-11 with the message key and nonce of its counter: `{contentType,
 * content, text}` (text for type 1, else null).
 */
export async function decryptBody(m, { messageKey, nonce }) {
  const plaintext = await aeadOpen(await aeadKey(messageKey), nonce, m.ciphertext, m.header);
  if (plaintext === null) throw new SenderKeyError("decrypt-failed", "the ciphertext does not decrypt");
  if (plaintext.length < 1) throw new SenderKeyError("bad-content", "no content type");
  const contentType = plaintext[0];
  const content = plaintext.subarray(1);
  let text = null;
  if (contentType === TEXT) {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(content);
    } catch {
      throw new SenderKeyError("bad-content", "a text message that is not UTF-8");
    }
  }
  return { contentType, content, text };
}
