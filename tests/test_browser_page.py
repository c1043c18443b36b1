"""
The chat page in a real browser: Debian's Chromium, headless, driven by
Playwright for Python, against C{twistd securechat} serving the page with
C{--web} (its strict Content-Security-Policy in force) and a
C{securechat-client} user on TCP.  A recording proxy between the browser
and the relay keeps every byte; a screenshot of the page is kept as an
artifact (C{$SECURECHAT_ARTIFACTS}, else the test's temporary directory).
The scenarios themselves are in L{tests.browser_pages}, shared with the
Firefox tests (L{tests.test_browser_firefox}).

Without Playwright or Chromium the test skips, loudly, unless
SECURECHAT_REQUIRE_SERVICES=1 (as in .ci/run, which installs both).
"""

from __future__ import annotations

import shutil
from typing import Callable

from twisted.trial import unittest

from tests.browser_pages import ChatPage, PageDeployment, PlaywrightPage
from tests.test_browser_core import REQUIRED

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

Scenario = Callable[[PageDeployment, unittest.TestCase, ChatPage], None]


class ChatPageTests(unittest.TestCase):
    """
    A browser user makes a key, is registered, logs in and chats with a
    terminal user.
    """

    #: Several bounded waits (each at most WAIT_SECONDS) and real processes.
    timeout = 300

    def setUp(self) -> None:
        problem = None
        if sync_playwright is None:
            problem = "playwright is not installed (pip install playwright)"
        elif CHROMIUM is None:
            problem = "chromium is not installed (apt-get install chromium)"
        if problem is not None:
            message = f"{problem}: the chat page was NOT tested in a browser (.ci/run installs it)"
            if REQUIRED:
                self.fail(message)
            raise unittest.SkipTest(message)

    def _inChromium(self, scenario: Scenario) -> None:
        """
        Run one of L{PageDeployment}'s scenarios against a fresh deployment
        in a new headless Chromium, closed afterwards whatever happens.
        """
        deployment = PageDeployment(self)
        assert sync_playwright is not None and CHROMIUM is not None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            try:
                scenario(deployment, self, PlaywrightPage(browser.new_context()))
            finally:
                browser.close()

    def test_chatFromThePage(self) -> None:
        """
        carol opens the page (served by --web through a recording proxy),
        makes a key there (the private key stays in the browser), the
        operator registers the public key the page shows, carol logs in
        (the page checks the relay's certificate and CRL), asks bob to
        chat, and they exchange a line each; bob's line, which holds HTML,
        is shown as text; carol ends the chat and bob sees a clean end.
        bob goes offline; carol sends him a letter from the page; bob logs
        in and reads it (verified); the page shows his delivery and read
        receipts, verified.  The proxy saw none of the texts; a screenshot
        is kept (tests.browser_pages.chat_and_letter, which the Firefox
        test runs too).
        """
        self._inChromium(PageDeployment.chat_and_letter)

    def test_letterToTheBrowser(self) -> None:
        """
        Letters to a browser user (14.1, 14.4, 14.5): carol logs in once
        from the page, which uploads her prekeys, and leaves; bob writes
        her a letter from the terminal; carol logs in again in the same
        browser profile (her key and prekeys' private halves in IndexedDB),
        is told of the new letter, reads it (shown as text, "Verification:
        ok"), and bob sees her delivery and read receipts verified.  The
        proxy saw neither text; a screenshot is kept
        (tests.browser_pages.PageDeployment.letter_to_the_page, which the
        Firefox test runs too).
        """
        self._inChromium(PageDeployment.letter_to_the_page)

    def test_keyChangeOnThePage(self) -> None:
        """
        12.1 on the page: carol chats with bob once (his key is pinned in
        her browser profile); the operator gives bob a new key
        (C{securechat-admin rekey}); carol's next chat request is refused
        by her page with the terminal's warning (pinned and offered
        fingerprints, what to do) and a Trust button, and bob's side sees
        the chat end; after carol presses Trust the chat is secured with the
        new key and a line goes through
        (tests.browser_pages.PageDeployment.key_change, which the Firefox test
        runs too).
        """
        self._inChromium(PageDeployment.key_change)

    def test_severalChatsOnThePage(self) -> None:
        """
        carol chats with alice and bob at once from the page: one pane per
        peer, each showing only its peer's lines and sending only to that
        peer; closing bob's pane ends his chat (bob sees carol's clean
        end) and alice's chat goes on
        (tests.browser_pages.PageDeployment.several_chats, which the Firefox test
        runs too).
        """
        self._inChromium(PageDeployment.several_chats)

    def test_keyFileFromThePage(self) -> None:
        """
        dave's key file made by securechat-admin new-user (encrypted
        PKCS#8) is chosen on the page with its passphrase: decrypted in the
        browser, shown by its public key, and dave logs in with it.  A
        wrong passphrase is one clear line first
        (tests.browser_pages.PageDeployment.key_file_login, which the
        Firefox test runs too).
        """
        self._inChromium(PageDeployment.key_file_login)

    def test_groupOnThePage(self) -> None:
        """
        A browser user and a terminal user in one group through a real
        relay over WebSocket: bob creates 'team' on the terminal and adds
        carol, who is on the page; the page verifies the log and shows the
        members; messages go both ways (sender keys in letters of content
        type 2, taken by each client, never shown as letters); carol logs
        in again and reads what bob wrote meanwhile; the proxy saw no text
        (tests.browser_pages.PageDeployment.group_member).
        """
        self._inChromium(PageDeployment.group_member)

    def test_groupMadeOnThePage(self) -> None:
        """
        carol creates a group on the page, adds bob (on the terminal),
        they write both ways, and she removes him from the page; he never
        reads what follows (tests.browser_pages.PageDeployment.group_owner).
        """
        self._inChromium(PageDeployment.group_owner)
