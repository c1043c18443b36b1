"""
The chat page in Firefox: Debian's C{firefox-esr}, headless, driven by
Mozilla's C{marionette_driver} through the Marionette server built into
Firefox (no geckodriver, no browser download), through the same scenario
as the Chromium test (L{tests.browser_pages}).

Without firefox-esr or marionette_driver the test skips, loudly, unless
SECURECHAT_REQUIRE_SERVICES=1 (as in .ci/run, which installs both).
"""

from __future__ import annotations

from twisted.trial import unittest

from tests.browser_pages import FIREFOX, FirefoxPage, Marionette, PageDeployment
from tests.test_browser_core import REQUIRED


class FirefoxChatPageTests(unittest.TestCase):
    """
    A Firefox user makes a key, is registered, logs in, chats with a
    terminal user and writes a letter.
    """

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
