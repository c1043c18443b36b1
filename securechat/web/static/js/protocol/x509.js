// X.509 for the client-server context (docs/protocol.rst section 9), on
// PKI.js and asn1js (static/js/vendor/pki.js, bundled from npm).
import { Certificate, asn1js } from "../vendor/pki.js";
import { RemoteProtocolError } from "./errors.js";

function parse(der, what) {
  const asn1 = asn1js.fromBER(der);
  if (asn1.offset === -1 || asn1.offset !== der.byteLength) {
    throw new RemoteProtocolError("bad-certificate", `[malformed] ${what} is not DER`);
  }
  try {
    return new Certificate({ schema: asn1.result });
  } catch {
    throw new RemoteProtocolError("bad-certificate", `[malformed] ${what} is not a certificate`);
  }
}

/** The DER SubjectPublicKeyInfo of a certificate (DER). */
export function certificatePublicKey(der) {
  const certificate = parse(der, "the certificate");
  return new Uint8Array(certificate.subjectPublicKeyInfo.toSchema().toBER(false));
}
