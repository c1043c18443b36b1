// The handshake's messages and the core inner messages:
// docs/protocol.rst sections 2 and 4.
import {
  Reader, bytes16, bytes8, concat, text8, u16, u32, u8, utf8,
} from "./bytes.js";
import { RemoteProtocolError } from "./errors.js";

export const PROTOCOL_VERSION = 1;
export const CLIENT_SERVER = 1;
export const END_TO_END = 2;
export const NONCE_LENGTH = 32;
export const KEY_SHARE_LENGTH = 32;
export const MAX_SUITES = 32;
export const MAX_CHAIN = 8;

// Inner types of the core (4.4).
export const AUTH = 0x03;
export const INNER_ALERT = 0x15;
export const PING = 0x20;
export const PONG = 0x21;

export const CERTIFICATE_IDENTITY = 1;
export const USER_IDENTITY = 2;

const USER_NAME = /^[a-z][a-z0-9._-]{0,31}$/;

/** Whether `name` is a user name (section 2). */
export function isUserName(name) {
  return typeof name === "string" && USER_NAME.test(name);
}

/** HELLO's payload (4.1). */
export function encodeHello({ version = PROTOCOL_VERSION, context, nonce, keyShare, suites }) {
  return concat(u16(version), u8(context), nonce, keyShare, u8(suites.length),
    ...suites.map(u16));
}

export function parseHello(payload) {
  const r = new Reader(payload);
  const version = r.u16("version");
  const context = r.u8("context");
  const nonce = r.take(NONCE_LENGTH, "nonce");
  const keyShare = r.take(KEY_SHARE_LENGTH, "key share");
  const count = r.u8("suite count");
  if (count < 1 || count > MAX_SUITES) {
    throw new RemoteProtocolError("bad-value", `HELLO: suite count ${count}`);
  }
  const suites = [];
  for (let i = 0; i < count; i++) suites.push(r.u16("suite"));
  r.end("HELLO");
  return { version, context, nonce, keyShare, suites };
}

/** HELLO_REPLY's payload (4.2). */
export function encodeHelloReply({ version = PROTOCOL_VERSION, nonce, keyShare, suite }) {
  return concat(u16(version), nonce, keyShare, u16(suite));
}

export function parseHelloReply(payload) {
  const r = new Reader(payload);
  const reply = {
    version: r.u16("version"),
    nonce: r.take(NONCE_LENGTH, "nonce"),
    keyShare: r.take(KEY_SHARE_LENGTH, "key share"),
    suite: r.u16("suite"),
  };
  r.end("HELLO_REPLY");
  return reply;
}

/** ALERT's payload or inner body (4.3). */
export function encodeAlert(code, reason = "") {
  let bytes = utf8(reason);
  while (bytes.length > 255) {
    reason = reason.slice(0, -1);
    bytes = utf8(reason);
  }
  return concat(u8(code), bytes8(bytes));
}

export function parseAlert(body) {
  const r = new Reader(body);
  const alert = { code: r.u8("alert code"), reason: r.text8("alert reason") };
  r.end("ALERT");
  return alert;
}

/** An identity's encoding (4.6). */
export function encodeIdentity(identity) {
  if (identity.kind === CERTIFICATE_IDENTITY) {
    return concat(u8(CERTIFICATE_IDENTITY), u8(identity.chain.length),
      ...identity.chain.map(bytes16), bytes16(identity.crl));
  }
  return concat(u8(USER_IDENTITY), text8(identity.name));
}

function parseIdentity(r) {
  const kind = r.u8("identity kind");
  if (kind === CERTIFICATE_IDENTITY) {
    const count = r.u8("certificate count");
    if (count < 1 || count > MAX_CHAIN) {
      throw new RemoteProtocolError("bad-value", `AUTH: certificate count ${count}`);
    }
    const chain = [];
    for (let i = 0; i < count; i++) chain.push(r.bytes16("certificate"));
    return { kind, chain, crl: r.bytes16("CRL") };
  }
  if (kind === USER_IDENTITY) {
    const name = r.text8("user name");
    if (!isUserName(name)) {
      throw new RemoteProtocolError("bad-value", `AUTH: ${JSON.stringify(name)} is not a user name`);
    }
    return { kind, name };
  }
  throw new RemoteProtocolError("bad-value", `AUTH: unknown identity kind ${kind}`);
}

/** `u16 scheme || bytes16 signature` (4.5). */
export function signatureBytes(scheme, signature) {
  return concat(u16(scheme), bytes16(signature));
}

/**
 * AUTH's body split as the transcript needs it (4.5): the identity and
 * its bytes, the scheme and signature and their bytes, and finished.
 */
export function parseAuth(body) {
  const r = new Reader(body);
  const identity = parseIdentity(r);
  const identityBytes = body.subarray(0, r.at);
  const start = r.at;
  const scheme = r.u16("signature scheme");
  const signature = r.bytes16("signature");
  const sigBytes = body.subarray(start, r.at);
  const finished = r.take(32, "finished");
  r.end("AUTH");
  return { identity, identityBytes, scheme, signature, signatureBytes: sigBytes, finished };
}

/** One inner message: `u8 type | u32 length | body` (4.4). */
export function encodeInner(type, body) {
  return concat(u8(type), u32(body.length), body);
}

/**
 * The inner messages of a record's plaintext, as [type, body] pairs:
 * none is `empty-record`, a header or body past the end `truncated`.
 */
export function splitInner(plaintext) {
  if (plaintext.length === 0) throw new RemoteProtocolError("empty-record");
  const r = new Reader(plaintext);
  const items = [];
  while (r.remaining) {
    const type = r.u8("inner type");
    items.push([type, r.bytes32("inner body")]);
  }
  return items;
}

/** PING and PONG bodies: `bytes8 data`. */
export function encodePingData(data) {
  return bytes8(data);
}

export function parsePingData(body) {
  const r = new Reader(body);
  const data = r.bytes8("ping data");
  r.end("PING");
  return data;
}
