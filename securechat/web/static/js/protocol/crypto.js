// The cryptography the protocol needs, all of it WebCrypto's: SHA-256,
// HMAC-SHA-256 (and HKDF over it), X25519, Ed25519, ECDSA P-256, RSA-PSS
// (verification) and AES-256-GCM.  Nothing here implements a primitive;
// what is not WebCrypto's is encoding (ECDSA signatures between DER and
// WebCrypto's r || s) and the checks docs/protocol.rst asks for.
import { concat, u8 } from "./bytes.js";
import { LocalProtocolError, RemoteProtocolError } from "./errors.js";

const subtle = globalThis.crypto.subtle;

export const ED25519 = 0x0807;
export const ECDSA_P256 = 0x0403;
export const RSA_PSS = 0x0804;

/** `n` random bytes. */
export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

export async function sha256(data) {
  return new Uint8Array(await subtle.digest("SHA-256", data));
}

async function hmacKey(key) {
  return subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false,
    ["sign", "verify"]);
}

export async function hmac(key, data) {
  return new Uint8Array(await subtle.sign("HMAC", await hmacKey(key), data));
}

/** Whether `mac` is HMAC(key, data), compared by WebCrypto (constant time). */
export async function hmacVerify(key, data, mac) {
  return subtle.verify("HMAC", await hmacKey(key), mac, data);
}

/** HKDF-Extract (RFC 5869, 2.2): HMAC(salt, IKM). */
export function hkdfExtract(salt, ikm) {
  return hmac(salt, ikm);
}

/**
 * HKDF-Expand (RFC 5869, 2.3) for at most one hash length, the most the
 * protocol asks for: T(1) = HMAC(PRK, info || 0x01), cut to `length`.
 * (WebCrypto's HKDF always extracts first, so it cannot expand a given
 * secret; tests/crypto.test.js checks this against WebCrypto's HKDF.)
 */
export async function hkdfExpand(prk, info, length) {
  if (length > 32) throw new RangeError("HKDF-Expand past one block is not needed");
  return (await hmac(prk, concat(info, u8(1)))).subarray(0, length);
}

// -- X25519 ------------------------------------------------------------

const X25519_PKCS8 = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b,
  0x65, 0x6e, 0x04, 0x22, 0x04, 0x20);
const ED25519_PKCS8 = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b,
  0x65, 0x70, 0x04, 0x22, 0x04, 0x20);

function base64url(text) {
  const b = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

/**
 * An ephemeral X25519 key pair: `{privateKey, publicKey}` (the public key
 * as its 32 raw bytes).  From `seed` (32 bytes) for test vectors; else
 * fresh and non-extractable.
 */
export async function x25519KeyPair(seed) {
  if (seed === undefined) {
    const pair = await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    const raw = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
    return { privateKey: pair.privateKey, publicKey: raw };
  }
  const privateKey = await subtle.importKey("pkcs8", concat(X25519_PKCS8, seed),
    { name: "X25519" }, true, ["deriveBits"]);
  const jwk = await subtle.exportKey("jwk", privateKey);
  return { privateKey, publicKey: base64url(jwk.x) };
}

/**
 * The X25519 shared secret with `peerPublic` (32 raw bytes); an all-zero
 * result (low-order point, RFC 7748 6.1) is `bad-key-share`, however
 * WebCrypto reports it.
 */
export async function x25519(privateKey, peerPublic) {
  let bits;
  try {
    const peer = await subtle.importKey("raw", peerPublic, { name: "X25519" }, false, []);
    bits = new Uint8Array(await subtle.deriveBits({ name: "X25519", public: peer }, privateKey,
      256));
  } catch {
    throw new RemoteProtocolError("bad-key-share", "X25519 refused the peer's key share");
  }
  if (bits.every((b) => b === 0)) {
    throw new RemoteProtocolError("bad-key-share", "X25519 shared secret is all zeros");
  }
  return bits;
}

// -- signatures (section 7) ------------------------------------------------

const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function toBigInt(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function fromBigInt(n, length) {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/**
 * r and s of a strict-DER ECDSA P-256 signature with 0 < r < n and
 * 0 < s <= n/2, or null if it is not one.
 */
export function parseEcdsaDer(der) {
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2 || der[1] > 0x7f) {
    return null;
  }
  const ints = [];
  let at = 2;
  for (let i = 0; i < 2; i++) {
    if (der[at] !== 0x02) return null;
    const len = der[at + 1];
    if (len < 1 || len > 33 || at + 2 + len > der.length) return null;
    const v = der.subarray(at + 2, at + 2 + len);
    if (v[0] & 0x80) return null; // negative
    if (len > 1 && v[0] === 0 && !(v[1] & 0x80)) return null; // not minimal
    ints.push(toBigInt(v));
    at += 2 + len;
  }
  if (at !== der.length) return null;
  const [r, s] = ints;
  if (r <= 0n || r >= P256_ORDER || s <= 0n || s > P256_ORDER / 2n) return null;
  return { r, s };
}

function derInteger(n) {
  let b = fromBigInt(n, 32);
  let i = 0;
  while (i < 31 && b[i] === 0) i++;
  b = b.subarray(i);
  if (b[0] & 0x80) b = concat(u8(0), b);
  return concat(Uint8Array.of(0x02, b.length), b);
}

/** A WebCrypto r || s ECDSA P-256 signature as low-S DER. */
export function ecdsaToDer(raw) {
  const r = toBigInt(raw.subarray(0, 32));
  let s = toBigInt(raw.subarray(32));
  if (s > P256_ORDER / 2n) s = P256_ORDER - s;
  const body = concat(derInteger(r), derInteger(s));
  return concat(Uint8Array.of(0x30, body.length), body);
}

/**
 * A public key from its DER SubjectPublicKeyInfo: `{scheme, key}`, or
 * throws TypeError if it is none of section 7's (RSA: 2048-4096 bits,
 * e = 65537).
 */
export async function importPublicKey(spki) {
  try {
    const key = await subtle.importKey("spki", spki, { name: "Ed25519" }, true, ["verify"]);
    return { scheme: ED25519, key };
  } catch { /* not Ed25519 */ }
  try {
    const key = await subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" },
      true, ["verify"]);
    return { scheme: ECDSA_P256, key };
  } catch { /* not P-256 */ }
  try {
    const key = await subtle.importKey("spki", spki, { name: "RSA-PSS", hash: "SHA-256" },
      true, ["verify"]);
    const { modulusLength, publicExponent } = key.algorithm;
    if (modulusLength < 2048 || modulusLength > 4096 || toBigInt(publicExponent) !== 65537n) {
      throw new TypeError("RSA key outside 2048-4096 bits, e = 65537");
    }
    return { scheme: RSA_PSS, key, modulusBytes: modulusLength / 8 };
  } catch (e) {
    if (e instanceof TypeError && e.message.startsWith("RSA")) throw e;
  }
  throw new TypeError("not an Ed25519, ECDSA P-256 or RSA public key");
}

/** Whether `signature` under `scheme` fits `publicKey` (5.1: "fits"). */
export function fits(publicKey, scheme, signature) {
  if (scheme !== publicKey.scheme) return false;
  if (scheme === RSA_PSS) return signature.length === publicKey.modulusBytes;
  return true;
}

/** Whether `signature` (section 7's form) verifies `message` with `publicKey`. */
export async function verifySignature(publicKey, scheme, signature, message) {
  if (!fits(publicKey, scheme, signature)) return false;
  try {
    if (scheme === ED25519) {
      return await subtle.verify({ name: "Ed25519" }, publicKey.key, signature, message);
    }
    if (scheme === ECDSA_P256) {
      const rs = parseEcdsaDer(signature);
      if (rs === null) return false;
      const raw = concat(fromBigInt(rs.r, 32), fromBigInt(rs.s, 32));
      return await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, publicKey.key, raw, message);
    }
    if (scheme === RSA_PSS) {
      return await subtle.verify({ name: "RSA-PSS", saltLength: 32 }, publicKey.key, signature,
        message);
    }
  } catch {
    return false;
  }
  return false;
}

/**
 * A signing key: `{scheme, privateKey, publicKey}` (CryptoKeys).  From a
 * 32-byte Ed25519 seed (test vectors), or a CryptoKeyPair.
 */
export async function ed25519SigningKey(seed) {
  const privateKey = await subtle.importKey("pkcs8", concat(ED25519_PKCS8, seed),
    { name: "Ed25519" }, true, ["sign"]);
  const jwk = await subtle.exportKey("jwk", privateKey);
  const publicKey = await subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x },
    { name: "Ed25519" }, true, ["verify"]);
  return { scheme: ED25519, privateKey, publicKey };
}

/** `message` signed with `signer` (section 7's encoding). */
export async function sign(signer, message) {
  if (signer.scheme === ED25519) {
    return new Uint8Array(await subtle.sign({ name: "Ed25519" }, signer.privateKey, message));
  }
  if (signer.scheme === ECDSA_P256) {
    const raw = new Uint8Array(await subtle.sign({ name: "ECDSA", hash: "SHA-256" },
      signer.privateKey, message));
    return ecdsaToDer(raw);
  }
  if (signer.scheme === RSA_PSS) {
    return new Uint8Array(await subtle.sign({ name: "RSA-PSS", saltLength: 32 },
      signer.privateKey, message));
  }
  throw new LocalProtocolError("signing-failed", `no signing for scheme ${signer.scheme}`);
}

// -- stand-in keys (5.1, "Refusals cost a verification") ------------------

const standIns = new Map();

async function standIn(scheme, length) {
  const id = scheme === RSA_PSS ? `rsa${Math.min(512, Math.max(256, length))}` : `${scheme}`;
  if (!standIns.has(id)) {
    let pair;
    if (scheme === ECDSA_P256) {
      pair = subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    } else if (scheme === RSA_PSS) {
      pair = subtle.generateKey({ name: "RSA-PSS", hash: "SHA-256",
        modulusLength: 8 * Math.min(512, Math.max(256, length)),
        publicExponent: Uint8Array.of(1, 0, 1) }, false, ["sign", "verify"]);
    } else {
      pair = subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    }
    standIns.set(id, pair.then((p) => ({
      scheme: scheme === ECDSA_P256 || scheme === RSA_PSS ? scheme : ED25519,
      key: p.publicKey,
      modulusBytes: scheme === RSA_PSS ? Math.min(512, Math.max(256, length)) : undefined,
    })));
  }
  return standIns.get(id);
}

/**
 * Verify `signature` once against a stand-in key of the shape it implies,
 * and ignore the outcome: a refusal costs what an acceptance costs.
 */
export async function verifyAgainstStandIn(scheme, signature, message) {
  const key = await standIn(scheme, signature.length);
  await verifySignature({ ...key, modulusBytes: signature.length }, key.scheme, signature,
    message);
}

// -- AES-256-GCM (suite 0x0001) ----------------------------------------------

export const AES_256_GCM = 0x0001;
export const CHACHA20_POLY1305 = 0x0002;
/** The suites this implementation can run (WebCrypto has no ChaCha20-Poly1305). */
export const SUPPORTED_SUITES = new Set([AES_256_GCM]);
export const TAG_LENGTH = 16;

export async function aeadKey(raw) {
  return subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

export async function aeadSeal(key, nonce, plaintext, aad) {
  return new Uint8Array(await subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, key, plaintext));
}

/** The plaintext, or null if the record does not authenticate. */
export async function aeadOpen(key, nonce, ciphertext, aad) {
  try {
    return new Uint8Array(await subtle.decrypt(
      { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, key, ciphertext));
  } catch {
    return null;
  }
}
