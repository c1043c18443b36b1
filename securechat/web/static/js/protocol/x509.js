// The relay's certificate identity checked as docs/protocol.rst section 9
// says, in its order, each failure `bad-certificate` with the check's code
// in brackets.  X.509 and CRL parsing is PKI.js and asn1js's
// (static/js/vendor/pki.js, bundled from the lockfile); signatures are
// verified with WebCrypto.
import { Certificate, CertificateRevocationList, asn1js } from "../vendor/pki.js";
import { equal, toHex } from "./bytes.js";
import { importPublicKey } from "./crypto.js";
import { RemoteProtocolError } from "./errors.js";

const subtle = globalThis.crypto.subtle;

const BASIC_CONSTRAINTS = "2.5.29.19";
const KEY_USAGE = "2.5.29.15";
const EXT_KEY_USAGE = "2.5.29.37";
const SUBJECT_ALT_NAME = "2.5.29.17";
const CRL_NUMBER = "2.5.29.20";
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
/** Extensions a certificate may mark critical: the ones checked here. */
const UNDERSTOOD = new Set([BASIC_CONSTRAINTS, KEY_USAGE, EXT_KEY_USAGE, SUBJECT_ALT_NAME,
  "2.5.29.14", "2.5.29.35"]);

/** Certificate and CRL signature algorithms allowed (section 9, check 6). */
const ECDSA_HASHES = {
  "1.2.840.10045.4.3.2": "SHA-256", "1.2.840.10045.4.3.3": "SHA-384",
  "1.2.840.10045.4.3.4": "SHA-512",
};
const RSA_HASHES = {
  "1.2.840.113549.1.1.11": "SHA-256", "1.2.840.113549.1.1.12": "SHA-384",
  "1.2.840.113549.1.1.13": "SHA-512",
};
const HASH_OIDS = {
  "2.16.840.1.101.3.4.2.1": "SHA-256", "2.16.840.1.101.3.4.2.2": "SHA-384",
  "2.16.840.1.101.3.4.2.3": "SHA-512",
};
const RSA_PSS = "1.2.840.113549.1.1.10";

/** A refusal: `bad-certificate`, with the check's code and what to remember. */
export class CertificateError extends RemoteProtocolError {
  constructor(check, message, seen = null) {
    super("bad-certificate", `[${check}] ${message}`);
    this.check = check;
    this.seen = seen;
  }
}

function parseDer(der, Kind, what) {
  const asn1 = asn1js.fromBER(der);
  if (asn1.offset === -1 || asn1.offset !== der.byteLength) {
    throw new CertificateError("malformed", `${what} is not DER`);
  }
  try {
    return new Kind({ schema: asn1.result });
  } catch {
    throw new CertificateError("malformed", `${what} does not parse`);
  }
}

function extension(cert, oid) {
  return (cert.extensions ?? []).find((e) => e.extnID === oid);
}

function bits(bitString) {
  return bitString?.valueBlock?.valueHexView ?? new Uint8Array(0);
}

/** The certificate's public key as DER SubjectPublicKeyInfo. */
function spki(cert) {
  return new Uint8Array(cert.subjectPublicKeyInfo.toSchema().toBER(false));
}

/** An integer's value as minimal hex (a serial or a CRL number). */
function integerHex(integer) {
  const hex = toHex(integer.valueBlock.valueHexView).replace(/^0+/, "");
  return hex === "" ? "0" : hex;
}

// -- names (section 9, "Name matching") --------------------------------------

const IPV4 = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/;
const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

function ipv4(name) {
  const m = IPV4.exec(name);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? Uint8Array.from(parts) : null;
}

function ipv6(name) {
  if (!name.includes(":") || !/^[0-9A-Fa-f:.]+$/.test(name)) return null;
  let text = name;
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(name);
  if (dotted) {
    const v4 = ipv4(dotted[2]);
    if (v4 === null) return null;
    text = `${dotted[1]}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  } else if (name.includes(".")) {
    return null;
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const group = (s) => (s === "" ? [] : s.split(":"));
  const head = group(halves[0]);
  const rest = halves.length === 2 ? group(halves[1]) : [];
  if (![...head, ...rest].every((w) => /^[0-9A-Fa-f]{1,4}$/.test(w))) return null;
  const count = head.length + rest.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return null;
  const words = [...head, ...new Array(8 - count).fill("0"), ...rest].map((w) => parseInt(w, 16));
  const out = new Uint8Array(16);
  words.forEach((w, i) => { out[2 * i] = w >> 8; out[2 * i + 1] = w & 0xff; });
  return out;
}

/** What `serverName` must match: `{ip}` bytes or `{dns}` lower-case. */
export function subjectOf(serverName) {
  const ip = ipv4(serverName) ?? ipv6(serverName);
  if (ip !== null) return { ip };
  const host = serverName.endsWith(".") ? serverName.slice(0, -1) : serverName;
  if (host.length === 0 || host.length > 253 || !host.split(".").every((l) => LABEL.test(l))) {
    throw new CertificateError("name-mismatch", `${JSON.stringify(serverName)} is not a DNS host ` +
      "name or IP address (give internationalised names in their xn-- form)");
  }
  return { dns: host.toLowerCase() };
}

function matches(wanted, cert) {
  const san = extension(cert, SUBJECT_ALT_NAME)?.parsedValue?.altNames ?? [];
  if (wanted.ip) {
    return san.some((n) => n.type === 7 && equal(n.value.valueBlock.valueHexView, wanted.ip));
  }
  return san.some((n) => n.type === 2 && typeof n.value === "string"
    && /^[\x00-\x7f]*$/.test(n.value) && n.value.toLowerCase() === wanted.dns);
}

// -- signatures on certificates and CRLs ------------------------------------------

function rawEcdsa(der, size) {
  const asn1 = asn1js.fromBER(der);
  const seq = asn1.result?.valueBlock?.value;
  if (asn1.offset !== der.byteLength || !seq || seq.length !== 2) return null;
  const out = new Uint8Array(2 * size);
  for (let i = 0; i < 2; i++) {
    let v = seq[i].valueBlock.valueHexView;
    while (v.length > size && v[0] === 0) v = v.subarray(1);
    if (v.length > size) return null;
    out.set(v, (i + 1) * size - v.length);
  }
  return out;
}

/** Whether `signed` (a Certificate or CRL) is signed by the key of `issuer`. */
async function signedBy(signed, issuer) {
  const algorithm = signed.signatureAlgorithm.algorithmId;
  const signature = signed.signatureValue.valueBlock.valueHexView;
  const key = spki(issuer);
  try {
    if (ECDSA_HASHES[algorithm]) {
      for (const [curve, size] of [["P-256", 32], ["P-384", 48], ["P-521", 66]]) {
        let k;
        try {
          k = await subtle.importKey("spki", key, { name: "ECDSA", namedCurve: curve }, false,
            ["verify"]);
        } catch { continue; }
        const raw = rawEcdsa(signature, size);
        return raw !== null && subtle.verify({ name: "ECDSA", hash: ECDSA_HASHES[algorithm] }, k,
          raw, signed.tbsView);
      }
      return false;
    }
    if (RSA_HASHES[algorithm]) {
      const k = await subtle.importKey("spki", key,
        { name: "RSASSA-PKCS1-v1_5", hash: RSA_HASHES[algorithm] }, false, ["verify"]);
      return k.algorithm.modulusLength >= 2048
        && subtle.verify("RSASSA-PKCS1-v1_5", k, signature, signed.tbsView);
    }
    if (algorithm === RSA_PSS) {
      const params = signed.signatureAlgorithm.algorithmParams;
      const hashOid = params?.valueBlock?.value?.[0]?.valueBlock?.value?.[0]?.valueBlock?.value?.[0]
        ?.valueBlock?.toString?.();
      const hash = HASH_OIDS[hashOid];
      const salt = params?.valueBlock?.value?.find((b) => b.idBlock.tagNumber === 2)
        ?.valueBlock?.value?.[0]?.valueBlock?.valueDec ?? 20;
      if (!hash) return false;
      const k = await subtle.importKey("spki", key, { name: "RSA-PSS", hash }, false, ["verify"]);
      return k.algorithm.modulusLength >= 2048
        && subtle.verify({ name: "RSA-PSS", saltLength: salt }, k, signature, signed.tbsView);
    }
  } catch {
    return false;
  }
  return false; // SHA-1, MD5, Ed25519 and anything else: not allowed
}

function isCA(cert) {
  const bc = extension(cert, BASIC_CONSTRAINTS);
  return Boolean(bc?.parsedValue?.cA);
}

function unknownCritical(cert) {
  return (cert.extensions ?? []).filter((e) => e.critical && !UNDERSTOOD.has(e.extnID))
    .map((e) => e.extnID);
}

async function checkPath(leaf, ca, now) {
  const refuse = (why) => {
    throw new CertificateError("untrusted", `the relay's certificate is not from the expected CA: ${why}`);
  };
  if (!leaf.issuer.isEqual(ca.subject)) refuse("issuer is not the CA");
  if (now < ca.notBefore.value || now > ca.notAfter.value) refuse("the CA is not valid now");
  const bc = extension(ca, BASIC_CONSTRAINTS);
  if (!bc?.critical || !bc.parsedValue?.cA) refuse("the CA has no critical basicConstraints cA");
  const caUsage = extension(ca, KEY_USAGE);
  if (!caUsage || !(bits(caUsage.parsedValue)[0] & 0x04)) refuse("the CA lacks keyUsage keyCertSign");
  if (isCA(leaf)) refuse("the relay's certificate is a CA");
  if (!extension(leaf, "2.5.29.35")) refuse("the relay's certificate has no authorityKeyIdentifier");
  if (extension(leaf, SUBJECT_ALT_NAME)?.critical) {
    refuse("the relay's certificate marks subjectAltName critical");
  }
  const unknown = [...unknownCritical(leaf), ...unknownCritical(ca)];
  if (unknown.length) refuse(`unknown critical extension ${unknown.join(", ")}`);
  if (!await signedBy(leaf, ca)) refuse("its signature does not verify with the CA's key");
}

/**
 * Check the relay's chain (DER, leaf first) and stapled CRL (DER) against
 * the CA (DER) for `serverName` at `now` (a Date), given what is
 * remembered of the CA's CRLs (`seen`: `{number, revoked}`, hex strings;
 * or null).  Returns `{publicKey, seen}`: the leaf's key (crypto.js) and
 * what to remember from now on.  Throws CertificateError.
 */
export async function checkServerIdentity({ chain, crl, ca, serverName, now, seen = null }) {
  if (!chain.length) throw new CertificateError("malformed", "the relay sent no certificate");
  const certs = chain.map((der, i) => parseDer(der, Certificate, `certificate ${i + 1}`));
  const list = parseDer(crl, CertificateRevocationList, "the CRL");
  const anchor = parseDer(ca, Certificate, "the CA certificate");
  const leaf = certs[0];

  if (now < leaf.notBefore.value) {
    throw new CertificateError("not-yet-valid",
      `the relay's certificate is not valid before ${leaf.notBefore.value.toISOString()}`);
  }
  if (now > leaf.notAfter.value) {
    throw new CertificateError("expired",
      `the relay's certificate expired on ${leaf.notAfter.value.toISOString()}`);
  }
  if (!matches(subjectOf(serverName), leaf)) {
    throw new CertificateError("name-mismatch", `the relay's certificate is not for ${serverName}`);
  }
  const usage = extension(leaf, KEY_USAGE);
  const eku = extension(leaf, EXT_KEY_USAGE)?.parsedValue?.keyPurposes ?? [];
  if (!usage || !(bits(usage.parsedValue)[0] & 0x80) || !eku.includes(SERVER_AUTH)) {
    throw new CertificateError("key-usage", "the relay's certificate is not for server " +
      "authentication (needs keyUsage digitalSignature and extendedKeyUsage serverAuth)");
  }
  if (!(chain.length === 1 || (chain.length === 2 && equal(chain[1], ca)))) {
    throw new CertificateError("intermediate",
      "the relay's chain holds a certificate other than its own and the CA's");
  }
  await checkPath(leaf, anchor, now);

  if (!list.issuer.isEqual(anchor.subject)) {
    throw new CertificateError("crl-wrong-issuer", "the relay's CRL is not from the expected CA");
  }
  if (!await signedBy(list, anchor)) {
    throw new CertificateError("crl-bad-signature", "the relay's CRL is not signed by the CA");
  }
  const extensions = list.crlExtensions?.extensions ?? [];
  const entries = list.revokedCertificates ?? [];
  const critical = [...extensions, ...entries.flatMap((e) => e.crlEntryExtensions?.extensions ?? [])]
    .filter((e) => e.critical);
  if (critical.length) {
    throw new CertificateError("crl-unsupported", "the relay's CRL has a critical extension " +
      `(${critical.map((e) => e.extnID).join(", ")}): only complete, direct CRLs are accepted`);
  }
  const numberExt = extensions.find((e) => e.extnID === CRL_NUMBER);
  if (!numberExt) throw new CertificateError("crl-no-number", "the relay's CRL has no CRL number");
  const number = BigInt("0x" + integerHex(numberExt.parsedValue));
  if (seen !== null && number < seen.number) {
    throw new CertificateError("crl-rollback", `the relay stapled CRL number ${number}, older ` +
      `than number ${seen.number} already seen from this CA`);
  }
  const revoked = new Set([...(seen?.revoked ?? []),
    ...entries.map((e) => integerHex(e.userCertificate))]);
  const remembered = { number: seen !== null && seen.number > number ? seen.number : number, revoked };
  const refuse = (check, message) => {
    throw new CertificateError(check, message, remembered);
  };
  if (now < list.thisUpdate.value) refuse("crl-not-yet-valid", "the relay's CRL is not valid yet");
  if (!list.nextUpdate) refuse("crl-no-next-update", "the relay's CRL has no nextUpdate");
  if (now > list.nextUpdate.value) refuse("crl-expired", "the relay's CRL is out of date");
  if (revoked.has(integerHex(leaf.serialNumber))) {
    refuse("revoked", "the relay's certificate has been revoked");
  }
  let publicKey;
  try {
    publicKey = await importPublicKey(spki(leaf));
  } catch (e) {
    refuse("bad-key", `the relay's key is not usable: ${e.message}`);
  }
  return { publicKey, seen: remembered };
}

/** The DER SubjectPublicKeyInfo of a certificate (DER). */
export function certificatePublicKey(der) {
  return spki(parseDer(der, Certificate, "the certificate"));
}
