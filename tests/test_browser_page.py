"""
The chat page in a real browser: Debian's Chromium, headless, driven by
Playwright for Python, against C{twistd securechat} serving the page with
C{--web} (its strict Content-Security-Policy in force) and a
C{securechat-client} user on TCP.  A recording proxy between the browser
and the relay keeps every byte; a screenshot of the page is kept as an
artifact (C{$SECURECHAT_ARTIFACTS}, else the test's temporary directory).

Without Playwright or Chromium the test skips, loudly, unless
SECURECHAT_REQUIRE_SERVICES=1 (as in .ci/run, which installs both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from twisted.trial import unittest

from tests.browser_pages import PageDeployment, PlaywrightPage, free_port
from tests.processes import Process, admin
from tests.test_browser_core import REQUIRED
from tests.test_endtoend import Deployment

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

WAIT = 30_000  # milliseconds, Playwright's unit


class ChatPageTests(unittest.TestCase):
    """
    A browser user makes a key, is registered, logs in and chats with a
    terminal user.
    """

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
        deployment = PageDeployment(self)
        assert sync_playwright is not None and CHROMIUM is not None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            try:
                deployment.chat_and_letter(self, PlaywrightPage(browser.new_context()))
            finally:
                browser.close()

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
        deployment = PageDeployment(self)
        assert sync_playwright is not None and CHROMIUM is not None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            try:
                deployment.letter_to_the_page(self, PlaywrightPage(browser.new_context()))
            finally:
                browser.close()

    def test_keyChangeOnThePage(self) -> None:
        """
        12.1 on the page: carol chats with bob once (his key is pinned in
        her browser profile); the operator gives bob a new key
        (C{securechat-admin rekey}); carol's next chat request is refused
        by her page with the terminal's warning (pinned and offered
        fingerprints, what to do) and a Trust button, and bob's side sees
        the chat end; after carol presses Trust the chat is secured with the
        new key and a line goes through.
        """
        d = Deployment(self)
        web = free_port()
        origin = f"http://127.0.0.1:{web}"
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1",
                        "--web", f"tcp:{web}:interface=127.0.0.1", "--websocket-origin", origin)
        server = "tcp:127.0.0.1:" + relay.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1)
        with open(d.ca) as f:
            ca_pem = f.read()
        assert sync_playwright is not None and CHROMIUM is not None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(origin + "/")
                page.fill("#name", "carol")
                page.click("#generate")
                page.wait_for_selector("#public-key:has-text('BEGIN PUBLIC KEY')", timeout=WAIT)
                pub = os.path.join(d.dir, "carol.pub")
                with open(pub, "w") as f:
                    f.write(page.text_content("#public-key") or "")
                admin(d.data, "add-user", "carol", pub)
                page.fill("#ca", ca_pem)
                page.click("#connect")
                page.wait_for_selector("#status:has-text('logged in as carol')", timeout=WAIT)
                bob = d.client("bob", server)
                bob.expect(r"\* logged in as bob")
                self.chatOnce(page, bob, 1)
                page.click(".pane[data-peer=bob] .stop")
                bob.expect(r"chat with carol ended by carol")
                bob.send("!exit")
                self.assertEqual(bob.wait(), 0, bob.output())
                # The operator gives bob a new key (his old file is replaced).
                subprocess.run(["openssl", "genrsa", "-aes256", "-passout", "pass:bobs-rsa-pass",
                                "-out", d.keys["bob"], "2048"], check=True, capture_output=True)
                new_pub = os.path.join(d.dir, "bob-new.pub")
                subprocess.run(["openssl", "rsa", "-in", d.keys["bob"], "-passin",
                                "pass:bobs-rsa-pass", "-pubout", "-out", new_pub],
                               check=True, capture_output=True)
                admin(d.data, "rekey", "bob", new_pub)
                bob = d.client("bob", server)
                bob.expect(r"\* logged in as bob")
                page.fill("#peer", "bob")
                page.click("#ask")
                bob.expect(r"\* carol wants to chat")
                bob.send("!accept carol")
                warning = page.wait_for_selector("#log li.warning:has-text('key CHANGED')",
                                                 timeout=WAIT)
                text = warning.text_content() or ""
                self.assertIn("!!! WARNING: bob's key CHANGED: pinned SHA256:", text)
                self.assertIn("the relay now offers SHA256:", text)
                self.assertIn("The chat was refused. If bob confirms the new fingerprint out of "
                              "band, press Trust and chat again.", text)
                bob.expect(r"chat with carol TRUNCATED")
                self.assertEqual(
                    page.locator(".pane[data-peer=bob] :text('is end-to-end encrypted')").count(), 1)
                page.click("#log button.trust")
                page.wait_for_selector("#log :text('bob is now pinned to SHA256:')", timeout=WAIT)
                self.chatOnce(page, bob, 2)
                bob.send("!exit")
                self.assertEqual(bob.wait(), 0, bob.output())
            finally:
                browser.close()

    def test_severalChatsOnThePage(self) -> None:
        """
        carol chats with alice and bob at once from the page: one pane per
        peer, each showing only its peer's lines and sending only to that
        peer; closing bob's pane ends his chat (bob sees carol's clean
        end) and alice's chat goes on.
        """
        d = Deployment(self)
        web = free_port()
        origin = f"http://127.0.0.1:{web}"
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1",
                        "--web", f"tcp:{web}:interface=127.0.0.1", "--websocket-origin", origin)
        server = "tcp:127.0.0.1:" + relay.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1)
        with open(d.ca) as f:
            ca_pem = f.read()
        peers = {name: d.client(name, server) for name in ("alice", "bob")}
        assert sync_playwright is not None and CHROMIUM is not None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(origin + "/")
                page.fill("#name", "carol")
                page.click("#generate")
                page.wait_for_selector("#public-key:has-text('BEGIN PUBLIC KEY')", timeout=WAIT)
                pub = os.path.join(d.dir, "carol.pub")
                with open(pub, "w") as f:
                    f.write(page.text_content("#public-key") or "")
                admin(d.data, "add-user", "carol", pub)
                page.fill("#ca", ca_pem)
                page.click("#connect")
                page.wait_for_selector("#status:has-text('logged in as carol')", timeout=WAIT)
                for name, peer in peers.items():
                    peer.expect(r"\* logged in as")
                    page.fill("#peer", name)
                    page.click("#ask")
                    peer.expect(r"\* carol wants to chat")
                    peer.send("!accept carol")
                for name in peers:
                    page.wait_for_selector(f".pane[data-peer={name}] :text('is end-to-end "
                                           "encrypted')", timeout=WAIT)
                for name, peer in peers.items():
                    peer.send(f"{name} here")
                    page.fill(f".pane[data-peer={name}] .entry", f"to {name} only")
                    page.click(f".pane[data-peer={name}] .send")
                    peer.expect(rf"\] carol: to {name} only")
                for name in peers:
                    pane = f".pane[data-peer={name}]"
                    page.wait_for_selector(f"{pane} :text('{name}: {name} here')", timeout=WAIT)
                    other = "bob" if name == "alice" else "alice"
                    self.assertNotIn(f"{other} here", page.text_content(pane) or "")
                    self.assertNotIn(f"to {other} only", page.text_content(pane) or "")
                page.click(".pane[data-peer=bob] .close")
                peers["bob"].expect(r"chat with carol ended by carol \(1 messages received\)")
                self.assertEqual(page.locator(".pane[data-peer=bob]").count(), 0)
                page.fill(".pane[data-peer=alice] .entry", "still here")
                page.click(".pane[data-peer=alice] .send")
                peers["alice"].expect(r"\] carol: still here")
                for peer in peers.values():
                    peer.send("!exit")
                    self.assertEqual(peer.wait(), 0, peer.output())
            finally:
                browser.close()

    def chatOnce(self, page: Any, bob: Process, nth: int) -> None:
        """
        carol asks bob from the page, bob accepts, the chat is secured (the
        C{nth} time on this page) and carol's line reaches bob.
        """
        page.fill("#peer", "bob")
        page.click("#ask")
        bob.expect(r"\* carol wants to chat")
        bob.send("!accept carol")
        page.wait_for_function(
            "n => [...document.querySelectorAll('.pane[data-peer=bob] li')].filter("
            "li => li.textContent.includes('is end-to-end encrypted')).length >= n", arg=nth,
            timeout=WAIT)
        page.fill(".pane[data-peer=bob] .entry", f"line {nth} from the page")
        page.click(".pane[data-peer=bob] .send")
        bob.expect(rf"\] carol: line {nth} from the page")

    def test_keyFileFromThePage(self) -> None:
        """
        dave's key file made by securechat-admin new-user (encrypted
        PKCS#8) is chosen on the page with its passphrase: decrypted in the
        browser, shown by its public key, and dave logs in with it.  A
        wrong passphrase is one clear line first
        (tests.browser_pages.PageDeployment.key_file_login, which the
        Firefox test runs too).
        """
        deployment = PageDeployment(self)
        assert sync_playwright is not None and CHROMIUM is not None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            try:
                deployment.key_file_login(self, PlaywrightPage(browser.new_context()))
            finally:
                browser.close()
