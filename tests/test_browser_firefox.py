"""
The chat page in Firefox: Debian's C{firefox-esr}, headless, driven by
Mozilla's C{marionette_driver} through the Marionette server built into
Firefox (no geckodriver, no browser download), through the same scenario
as the Chromium test (L{tests.browser_pages}; the driver is
L{tests.firefox_page}).

Without firefox-esr or marionette_driver the test skips, loudly, unless
SECURECHAT_REQUIRE_SERVICES=1 (as in .ci/run, which installs both).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature, encode_dss_signature)
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from twisted.trial import unittest

from tests.browser_pages import PageDeployment
from tests.firefox_page import FIREFOX, FirefoxPage, Marionette

# Run in the page (its own origin, so its Content-Security-Policy allows
# the import): each WebCrypto operation of the protocol core on the
# inputs the test gives, answered in hex for Python to check.
_CORE_IN_FIREFOX = """
const [inputs, done] = arguments;
(async () => {
  const c = await import('/js/protocol/crypto.js');
  const { fromHex, toHex, utf8 } = await import('/js/protocol/bytes.js');
  const out = {};
  const a = await c.x25519KeyPair(fromHex(inputs.seedA));
  const b = await c.x25519KeyPair(fromHex(inputs.seedB));
  out.x25519A = toHex(a.publicKey);
  out.x25519Shared = toHex(await c.x25519(a.privateKey, b.publicKey));
  try { await c.x25519(a.privateKey, new Uint8Array(32)); out.lowOrder = 'accepted'; }
  catch (e) { out.lowOrder = e.code; }
  const signer = await c.ed25519SigningKey(fromHex(inputs.seedA));
  out.ed25519 = toHex(await c.sign(signer, utf8(inputs.message)));
  for (const name of ['ecdsa', 'rsa']) {
    const key = await c.importPublicKey(fromHex(inputs[name + 'Spki']));
    out[name] = [
      await c.verifySignature(key, key.scheme, fromHex(inputs[name + 'Signature']),
                              utf8(inputs.message)),
      await c.verifySignature(key, key.scheme, fromHex(inputs[name + 'Signature']),
                              utf8(inputs.message + '!'))];
  }
  const aead = await c.aeadKey(fromHex(inputs.seedA));
  out.sealed = toHex(await c.aeadSeal(aead, fromHex(inputs.nonce), utf8(inputs.message),
                                      utf8('aad')));
  out.expanded = toHex(await c.hkdfExpand(fromHex(inputs.seedB), utf8('info'), 32));
  return out;
})().then(done, (e) => done({ error: String(e) }));
"""
from tests.test_browser_core import REQUIRED

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def low_s(der: bytes) -> str:
    """
    An ECDSA P-256 signature in the low-S form section 7 requires, as hex.
    """
    r, s = decode_dss_signature(der)
    return encode_dss_signature(r, min(s, P256_ORDER - s)).hex()


class FirefoxChatPageTests(unittest.TestCase):
    """
    A Firefox user makes a key, is registered, logs in, chats with a
    terminal user and writes a letter.
    """

    #: Several bounded waits (each at most WAIT_SECONDS) and real processes.
    timeout = 300

    def setUp(self) -> None:
        problem = None
        if Marionette is None:
            problem = "marionette_driver is not installed (pip install marionette_driver)"
        elif FIREFOX is None:
            problem = "firefox-esr is not installed (apt-get install firefox-esr)"
        if problem is not None:
            message = f"{problem}: the chat page was NOT tested in Firefox (.ci/run installs it)"
            if REQUIRED:
                self.fail(message)
            raise unittest.SkipTest(message)

    def test_coreCryptoInFirefox(self) -> None:
        """
        The JavaScript core's WebCrypto operations give in Firefox what
        Python's C{cryptography} gives for the same inputs: X25519 public
        keys and shared secrets from fixed seeds (the spec vectors' way of
        importing keys), a low-order key share refused as C{bad-key-share}
        however Firefox reports it, Ed25519 signatures byte for byte,
        ECDSA P-256 (DER) and RSA-PSS signatures made by Python verified
        (and refused for another message), AES-256-GCM and HKDF-Expand.
        """
        deployment = PageDeployment(self)
        page = FirefoxPage(self)
        page.goto(deployment.origin + "/")
        seed_a, seed_b, nonce = bytes(range(1, 33)), bytes(range(33, 65)), bytes(12)
        message = "what the peers sign"
        ecdsa_key = ec.generate_private_key(ec.SECP256R1())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        inputs = {
            "seedA": seed_a.hex(), "seedB": seed_b.hex(), "nonce": nonce.hex(),
            "message": message,
            "ecdsaSpki": ecdsa_key.public_key().public_bytes(*spki).hex(),
            "ecdsaSignature": low_s(ecdsa_key.sign(message.encode(), ec.ECDSA(hashes.SHA256()))),
            "rsaSpki": rsa_key.public_key().public_bytes(*spki).hex(),
            "rsaSignature": rsa_key.sign(
                message.encode(), padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                hashes.SHA256()).hex(),
        }
        out = page.driver.execute_async_script(_CORE_IN_FIREFOX, script_args=[inputs],
                                               sandbox=None)
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        a = x25519.X25519PrivateKey.from_private_bytes(seed_a)
        b = x25519.X25519PrivateKey.from_private_bytes(seed_b)
        self.assertEqual(out, {
            "x25519A": a.public_key().public_bytes(*raw).hex(),
            "x25519Shared": a.exchange(b.public_key()).hex(),
            "lowOrder": "bad-key-share",
            "ed25519": ed25519.Ed25519PrivateKey.from_private_bytes(seed_a).sign(
                message.encode()).hex(),
            "ecdsa": [True, False],
            "rsa": [True, False],
            "sealed": AESGCM(seed_a).encrypt(nonce, message.encode(), b"aad").hex(),
            "expanded": HKDFExpand(hashes.SHA256(), 32, b"info").derive(seed_b).hex(),
        })
        self.assertEqual(page.errors(), [])

    def test_chatFromFirefox(self) -> None:
        """
        The Chromium scenario in Firefox (issue 18: the page works in
        current Chromium and Firefox): carol opens the page through a
        recording proxy, makes an Ed25519 key there (kept non-extractable
        in Firefox's IndexedDB), is registered, logs in over WebSocket
        (relay certificate and CRL checked with Firefox's WebCrypto),
        chats with bob on the terminal end to end (X25519, AES-256-GCM;
        bob's HTML shown as text), ends the chat, writes offline bob a
        letter and sees his delivery and read receipts verified.  The
        proxy saw none of the texts; a screenshot is kept.
        """
        deployment = PageDeployment(self)
        deployment.chat_and_letter(self, FirefoxPage(self))

    def test_letterToFirefox(self) -> None:
        """
        Letters to a Firefox user: carol's Ed25519 key and her prekeys'
        private X25519 halves, non-extractable CryptoKeys, are kept in
        Firefox's IndexedDB and found again after she left the page; she
        reads bob's letter (verified) and he gets her receipts.
        """
        deployment = PageDeployment(self)
        deployment.letter_to_the_page(self, FirefoxPage(self))

    def test_keyFileInFirefox(self) -> None:
        """
        An encrypted PKCS#8 key file is decrypted in Firefox (PBKDF2 and
        AES with Firefox's WebCrypto), a wrong passphrase is one clear
        line, and the user logs in with the key.
        """
        deployment = PageDeployment(self)
        deployment.key_file_login(self, FirefoxPage(self))

    def test_keyChangeInFirefox(self) -> None:
        """
        12.1 in Firefox: bob's pinned key changes, carol's page refuses the
        chat with the terminal's warning and a Trust button; after Trust
        the chat is secured with the new key.
        """
        deployment = PageDeployment(self)
        deployment.key_change(self, FirefoxPage(self))

    def test_severalChatsInFirefox(self) -> None:
        """
        Several chats at once in Firefox, one pane per peer; closing one
        ends only that chat.
        """
        deployment = PageDeployment(self)
        deployment.several_chats(self, FirefoxPage(self))

    def test_groupInFirefox(self) -> None:
        """
        Groups in Firefox: bob on the terminal makes 'team' and adds carol
        on the page; the page verifies the log (Ed25519 in Firefox's
        WebCrypto), messages go both ways with sender keys, carol logs in
        again and reads what bob wrote meanwhile; the proxy saw no text
        (tests.browser_pages.PageDeployment.group_member).
        """
        deployment = PageDeployment(self)
        deployment.group_member(self, FirefoxPage(self))
