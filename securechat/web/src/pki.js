// The entry point of static/js/vendor/pki.js: what the browser client
// uses of PKI.js and asn1js (X.509 certificates and CRLs), bundled by
// esbuild (`npm run build`; the result is committed so that installing
// securechat needs no Node).
export * as asn1js from "asn1js";
export {
  Certificate,
  CertificateRevocationList,
  CryptoEngine,
  getCrypto,
  setEngine,
} from "pkijs";
