"""
The chat page in real browsers, behind one small interface so the same
scenario runs in Chromium (Playwright) and in Firefox (Mozilla's
C{marionette_driver}, talking to the Marionette server built into
Firefox: no geckodriver, nothing downloaded).

L{ChatPage} is what a scenario may do on the page; L{PlaywrightPage} and
L{tests.firefox_page.FirefoxPage} implement it.  Every wait is the page's
own: a script that resolves when enough elements matching a CSS selector
hold a text (Playwright polls it on animation frames, Firefox on DOM
mutations), bounded by L{WAIT_SECONDS}; nothing sleeps.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from typing import Any, Callable, Protocol

from twisted.trial import unittest

from tests.processes import Process, admin
from tests.recording_proxy import RecordingProxy
from tests.test_endtoend import Deployment

# A bound, not a pause: on a loaded machine (two cores, other suites running)
# a page's step has taken more than 30 s.
WAIT_SECONDS = 60
# True when at least n elements matching the selector hold the text.
HOLDS = ("(css, text, n) => [...document.querySelectorAll(css)]"
          ".filter((e) => (e.textContent || '').includes(text)).length >= n")


class ChatPage(Protocol):
    """
    What a scenario does on the chat page, in any browser.
    """

    name: str

    def goto(self, url: str) -> None: ...
    def fill(self, css: str, text: str) -> None: ...
    def click(self, css: str) -> None: ...
    def wait_text(self, css: str, text: str, at_least: int = 1) -> None: ...
    def choose_file(self, css: str, path: str) -> None: ...
    def leave(self) -> None: ...
    def text(self, css: str) -> str: ...
    def count(self, css: str) -> int: ...
    def screenshot(self, path: str) -> None: ...
    def errors(self) -> list[str]: ...


class PlaywrightPage:
    """
    L{ChatPage} over a Playwright page (Chromium).
    """

    name = "chromium"

    def __init__(self, context: Any) -> None:
        self.context = context
        self._errors: list[str] = []
        self._open()

    def _open(self) -> None:
        self.page = page = self.context.new_page()
        page.on("console", lambda m: self._errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self._errors.append(str(e)))

    def leave(self) -> None:
        """
        Close the page; the next L{goto} opens one in the same profile.
        """
        self.page.close()
        self._open()

    def choose_file(self, css: str, path: str) -> None:
        self.page.set_input_files(css, path)

    def goto(self, url: str) -> None:
        self.page.goto(url)

    def fill(self, css: str, text: str) -> None:
        self.page.fill(css, text)

    def click(self, css: str) -> None:
        self.page.click(css)

    def wait_text(self, css: str, text: str, at_least: int = 1) -> None:
        self.page.wait_for_function(f"([css, text, n]) => ({HOLDS})(css, text, n)",
                                    arg=[css, text, at_least], timeout=WAIT_SECONDS * 1000)

    def text(self, css: str) -> str:
        return str(self.page.text_content(css) or "")

    def count(self, css: str) -> int:
        return int(self.page.locator(css).count())

    def screenshot(self, path: str) -> None:
        self.page.screenshot(path=path, full_page=True)

    def errors(self) -> list[str]:
        return list(self._errors)


class PageDeployment:
    """
    A relay serving the page with C{--web} behind a recording proxy (the
    page's origin is the proxy's), a TCP listener for terminal users, and
    the operator's CA certificate to paste into the page.
    """

    def __init__(self, test: unittest.TestCase) -> None:
        self.d = Deployment(test)
        web = free_port()
        self.proxy = RecordingProxy(test, ("127.0.0.1", web))
        self.origin = f"http://127.0.0.1:{self.proxy.port}"
        self.relay = self.d.relay("--listen", "tcp:0:interface=127.0.0.1",
                                  "--web", f"tcp:{web}:interface=127.0.0.1",
                                  "--websocket-origin", self.origin)
        self.server = "tcp:127.0.0.1:" + self.relay.expect(
            r"listening on 127\.0\.0\.1:(\d+)").group(1)
        with open(self.d.ca) as f:
            self.ca_pem = f.read()

    def chat_and_letter(self, test: unittest.TestCase, page: ChatPage) -> None:
        """
        L{chat_and_letter} with bob on the terminal, then the wire check:
        the page came with its Content-Security-Policy, the relay was
        reached over WebSocket, and no text of carol's or bob's crossed
        the proxy.
        """
        bob = self.d.client("bob", self.server)
        bob.expect(r"\* logged in as bob")
        page.goto(self.origin + "/")
        chat_and_letter(test, page, self.d, bob, self.ca_pem, artifacts_dir(test), self.server,
                        self.d.client)
        wire = self.proxy.recorded
        test.assertIn(b"Content-Security-Policy: default-src 'none'", wire)
        test.assertIn(b"HTTP/1.1 101 Switching Protocols", wire)
        for secret in (f"from {page.name}", "hi <b>carol", f"letter from {page.name}", "dear bob"):
            test.assertNotIn(secret.encode(), wire)
        self.relay.expect(r"user carol logged in")

    def letter_to_the_page(self, test: unittest.TestCase, page: ChatPage) -> None:
        """
        carol logs in once from the page, which uploads her prekeys, and
        leaves; bob writes her a letter from the terminal; carol logs in
        again in the same browser profile (her key and her prekeys'
        private halves from IndexedDB), is told of the letter, reads it
        (as text, "Verification: ok"), and bob sees her delivery and read
        receipts verified.  The proxy saw no text of it.
        """
        page.goto(self.origin + "/")
        register_from_page(page, self.d, "carol")
        page.fill("#ca", self.ca_pem)
        page.click("#connect")
        page.wait_text("#log li", "your prekeys are on the relay (100 one-time)")
        page.leave()
        self.relay.expect(r"user carol disconnected")
        bob = self.d.client("bob", self.server)
        bob.expect(r"\* logged in as bob")
        bob.send(f"!letter carol dear carol, a letter for {page.name}")
        bob.expect(r"letter ([0-9a-f]{8}) to carol stored by the relay")
        page.goto(self.origin + "/")
        page.fill("#name", "carol")
        page.fill("#ca", self.ca_pem)
        page.click("#connect")
        page.wait_text("#log li", "you have 1 new letter")
        page.wait_text("#letters li", "from bob")  # the list comes after the count
        page.click("#letters li button")
        page.wait_text("#log li", "from bob, written")
        test.assertIn("Verification: ok", page.text("#log"))
        page.wait_text("#log li", f"| dear carol, a letter for {page.name}")
        bob.expect(r"delivery receipt from carol for letter [0-9a-f]{8}; Verification: ok")
        bob.expect(r"read receipt from carol for letter [0-9a-f]{8}; Verification: ok")
        page.screenshot(os.path.join(artifacts_dir(test), f"browser-letter-{page.name}.png"))
        bob.send("!exit")
        test.assertEqual(bob.wait(), 0, bob.output())
        test.assertEqual(page.errors(), [])
        test.assertNotIn(b"dear carol", self.proxy.recorded)

    def key_file_login(self, test: unittest.TestCase, page: ChatPage) -> None:
        """
        dave's key file made by securechat-admin new-user (encrypted
        PKCS#8) is chosen on the page with its passphrase: decrypted in the
        browser, shown by its public key, and dave logs in with it.  A
        wrong passphrase is one clear line first.
        """
        keys_dir = os.path.join(self.d.dir, "dave-keys")
        admin(self.d.data, "new-user", "dave", "--out", keys_dir, "--passphrase-file",
              self.d.passfiles["alice"])
        with open(self.d.passfiles["alice"]) as f:
            passphrase = f.read().strip()
        page.goto(self.origin + "/")
        page.fill("#name", "dave")
        page.choose_file("#key-file", os.path.join(keys_dir, "dave.key"))
        page.fill("#key-passphrase", "not it")
        page.click("#import")
        page.wait_text("#status", "wrong passphrase")
        page.fill("#key-passphrase", passphrase)
        page.click("#import")
        page.wait_text("#public-key", "BEGIN PUBLIC KEY")
        page.fill("#ca", self.ca_pem)
        page.click("#connect")
        page.wait_text("#status", "logged in as dave")
        test.assertEqual(page.errors(), [])

    def key_change(self, test: unittest.TestCase, page: ChatPage) -> None:
        """
        12.1 on the page: carol chats with bob once (his key is pinned in
        her browser profile); the operator gives bob a new key
        (C{securechat-admin rekey}); carol's next chat request is refused
        by her page with the terminal's warning (pinned and offered
        fingerprints, what to do) and a Trust button, and bob's side sees
        the chat end; after carol presses Trust the chat is secured with the
        new key and a line goes through.
        """
        d = self.d
        page.goto(self.origin + "/")
        register_from_page(page, d, "carol")
        page.fill("#ca", self.ca_pem)
        page.click("#connect")
        page.wait_text("#status", "logged in as carol")
        bob = d.client("bob", self.server)
        bob.expect(r"\* logged in as bob")
        chat_once(page, bob, 1)
        page.click(".pane[data-peer=bob] .stop")
        bob.expect(r"chat with carol ended by carol")
        bob.send("!exit")
        test.assertEqual(bob.wait(), 0, bob.output())
        # The operator gives bob a new key (his old file is replaced).
        subprocess.run(["openssl", "genrsa", "-aes256", "-passout", "pass:bobs-rsa-pass",
                        "-out", d.keys["bob"], "2048"], check=True, capture_output=True)
        new_pub = os.path.join(d.dir, "bob-new.pub")
        subprocess.run(["openssl", "rsa", "-in", d.keys["bob"], "-passin",
                        "pass:bobs-rsa-pass", "-pubout", "-out", new_pub],
                       check=True, capture_output=True)
        admin(d.data, "rekey", "bob", new_pub)
        bob = d.client("bob", self.server)
        bob.expect(r"\* logged in as bob")
        page.fill("#peer", "bob")
        page.click("#ask")
        bob.expect(r"\* carol wants to chat")
        bob.send("!accept carol")
        page.wait_text("#log li.warning", "key CHANGED")
        text = page.text("#log li.warning")
        test.assertIn("!!! WARNING: bob's key CHANGED: pinned SHA256:", text)
        test.assertIn("the relay now offers SHA256:", text)
        test.assertIn("The chat was refused. If bob confirms the new fingerprint out of "
                      "band, press Trust and chat again.", text)
        bob.expect(r"chat with carol TRUNCATED")
        test.assertEqual(page.text(".pane[data-peer=bob]").count("is end-to-end encrypted"), 1)
        page.click("#log button.trust")
        page.wait_text("#log li", "bob is now pinned to SHA256:")
        chat_once(page, bob, 2)
        bob.send("!exit")
        test.assertEqual(bob.wait(), 0, bob.output())
        test.assertEqual(page.errors(), [])

    def several_chats(self, test: unittest.TestCase, page: ChatPage) -> None:
        """
        carol chats with alice and bob at once from the page: one pane per
        peer, each showing only its peer's lines and sending only to that
        peer; closing bob's pane ends his chat (bob sees carol's clean
        end) and alice's chat goes on.
        """
        peers = {name: self.d.client(name, self.server) for name in ("alice", "bob")}
        page.goto(self.origin + "/")
        register_from_page(page, self.d, "carol")
        page.fill("#ca", self.ca_pem)
        page.click("#connect")
        page.wait_text("#status", "logged in as carol")
        for name, peer in peers.items():
            peer.expect(r"\* logged in as")
            page.fill("#peer", name)
            page.click("#ask")
            peer.expect(r"\* carol wants to chat")
            peer.send("!accept carol")
        for name in peers:
            page.wait_text(f".pane[data-peer={name}] li", "is end-to-end encrypted")
        for name, peer in peers.items():
            peer.send(f"{name} here")
            page.fill(f".pane[data-peer={name}] .entry", f"to {name} only")
            page.click(f".pane[data-peer={name}] .send")
            peer.expect(rf"\] carol: to {name} only")
        for name in peers:
            pane = f".pane[data-peer={name}]"
            page.wait_text(f"{pane} li", f"{name}: {name} here")
            other = "bob" if name == "alice" else "alice"
            test.assertNotIn(f"{other} here", page.text(pane))
            test.assertNotIn(f"to {other} only", page.text(pane))
        page.click(".pane[data-peer=bob] .close")
        peers["bob"].expect(r"chat with carol ended by carol \(1 messages received\)")
        test.assertEqual(page.count(".pane[data-peer=bob]"), 0)
        page.fill(".pane[data-peer=alice] .entry", "still here")
        page.click(".pane[data-peer=alice] .send")
        peers["alice"].expect(r"\] carol: still here")
        for peer in peers.values():
            peer.send("!exit")
            test.assertEqual(peer.wait(), 0, peer.output())
        test.assertEqual(page.errors(), [])


    def group_member(self, test: unittest.TestCase, page: ChatPage) -> None:
        """
        Groups (15, 16) between the page and the terminal: carol is on the
        page when bob, on the terminal, creates group 'team' and adds her;
        her page replays and verifies the group's log and shows the members
        and changes in the group's pane.  bob writes (his sender key comes
        in a letter the page takes, never shows); carol answers from the
        pane (her key goes to bob in a letter his client takes).  carol
        logs in again while bob writes once more: the page takes the group
        back from the relay's list and log, and bob's key letter again
        (never deleted, 16.2), and shows the message.  No text of either
        crossed the proxy, and the page listed no key letter as a letter.
        """
        page.goto(self.origin + "/")
        register_from_page(page, self.d, "carol")
        page.fill("#ca", self.ca_pem)
        page.click("#connect")
        page.wait_text("#log li", "your prekeys are on the relay")
        bob = self.d.client("bob", self.server)
        bob.expect(r"\* logged in as bob")
        bob.send("!group create team")
        bob.expect(r"\* #team: bob created the group")
        bob.send("!group add team carol")
        bob.expect(r"\* #team: bob added carol")
        pane = ".group-pane"
        page.wait_text(f"{pane} li", "* bob added carol (epoch 2, verified)")
        test.assertIn("Members (verified): bob (owner), carol", page.text(f"{pane} .group-members"))
        bob.send("!g team hello team <b>from bob</b>")
        bob.expect(r"\] #team <bob> hello team")
        page.wait_text(f"{pane} li", "bob: hello team <b>from bob</b>")
        test.assertEqual(page.count(f"{pane} b"), 0)  # shown as text, never as HTML
        page.fill(f"{pane} .entry", f"hi team from {page.name}")
        page.click(f"{pane} .send")
        bob.expect(rf"#team <carol> hi team from {page.name}")
        page.screenshot(os.path.join(artifacts_dir(test), f"browser-group-{page.name}.png"))
        page.leave()
        self.relay.expect(r"user carol disconnected")
        bob.send("!g team while you were away")
        bob.expect(r"\] #team <bob> while you were away")
        page.goto(self.origin + "/")
        page.fill("#name", "carol")
        page.fill("#ca", self.ca_pem)
        page.click("#connect")
        page.wait_text("#status", "logged in as carol")
        page.wait_text(f"{pane} li", "bob: while you were away")
        page.click("#check-letters")
        page.wait_text("#letters li", "no letters")
        test.assertNotIn("REFUSED", page.text(pane))
        test.assertNotIn("disconnected", page.text("#status"))
        bob.send("!exit")
        test.assertEqual(bob.wait(), 0, bob.output())
        test.assertEqual(page.errors(), [])
        for secret in ("hello team", "hi team from", "while you were away"):
            test.assertNotIn(secret.encode(), self.proxy.recorded)


    def group_owner(self, test: unittest.TestCase, page: ChatPage) -> None:
        """
        A group made on the page: carol creates 'ops' and adds bob, who is
        on the terminal (his client verifies her signed changes); they
        write both ways; carol removes bob from the page, bob is told, and
        carol's next message goes under a new chain bob never gets.
        """
        page.goto(self.origin + "/")
        register_from_page(page, self.d, "carol")
        page.fill("#ca", self.ca_pem)
        page.click("#connect")
        page.wait_text("#log li", "your prekeys are on the relay")
        bob = self.d.client("bob", self.server)
        bob.expect(r"\* logged in as bob")
        page.fill("#group-name", "ops")
        page.click("#create-group")
        pane = ".group-pane"
        page.wait_text(f"{pane} li", "* carol created the group 'ops' (epoch 1, verified)")
        page.fill(f"{pane} .member", "bob")
        page.click(f"{pane} .add")
        page.wait_text(f"{pane} li", "* carol added bob (epoch 2, verified)")
        bob.expect(r"#ops: carol added bob")
        page.fill(f"{pane} .entry", "first from the owner")
        page.click(f"{pane} .send")
        bob.expect(r"#ops <carol> first from the owner")
        bob.send("!g ops ack from bob")
        page.wait_text(f"{pane} li", "bob: ack from bob")
        page.click(f"{pane} .remove")
        page.wait_text(f"{pane} li", "* carol removed bob (epoch 3, verified)")
        bob.expect(r"#ops: carol removed")
        test.assertIn("Members (verified): carol (owner)", page.text(f"{pane} .group-members"))
        page.fill(f"{pane} .entry", "after bob left")
        page.click(f"{pane} .send")
        page.wait_text(f"{pane} li", "me: after bob left")
        bob.send("!exit")
        test.assertEqual(bob.wait(), 0, bob.output())
        test.assertNotIn("after bob left", bob.output())
        test.assertEqual(page.errors(), [])
        for secret in ("first from the owner", "ack from bob", "after bob left"):
            test.assertNotIn(secret.encode(), self.proxy.recorded)


def chat_once(page: ChatPage, bob: Process, nth: int) -> None:
    """
    carol asks bob from the page, bob accepts, the chat is secured (the
    C{nth} time on this page) and carol's line reaches bob.
    """
    page.fill("#peer", "bob")
    page.click("#ask")
    bob.expect(r"\* carol wants to chat")
    bob.send("!accept carol")
    page.wait_text(".pane[data-peer=bob] li", "is end-to-end encrypted", at_least=nth)
    page.fill(".pane[data-peer=bob] .entry", f"line {nth} from the page")
    page.click(".pane[data-peer=bob] .send")
    bob.expect(rf"\] carol: line {nth} from the page")


def free_port() -> int:
    """
    A loopback port free now (for a listener whose port the test must
    know before it starts).
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def artifacts_dir(test: unittest.TestCase) -> str:
    """
    Where screenshots go: C{$SECURECHAT_ARTIFACTS}, else the test's own
    temporary directory.
    """
    path = os.environ.get("SECURECHAT_ARTIFACTS") or os.path.abspath(test.mktemp())
    os.makedirs(path, exist_ok=True)
    return path


def register_from_page(page: ChatPage, d: Deployment, name: str) -> None:
    """
    C{name} makes a key on the page; the operator registers the public key
    the page shows.
    """
    page.fill("#name", name)
    page.click("#generate")
    page.wait_text("#public-key", "BEGIN PUBLIC KEY")
    pub = os.path.join(d.dir, f"{name}.pub")
    with open(pub, "w") as f:
        f.write(page.text("#public-key"))
    admin(d.data, "add-user", name, pub)


def chat_and_letter(test: unittest.TestCase, page: ChatPage, d: Deployment, bob: Process,
                    ca_pem: str, artifacts: str, server: str,
                    start_client: Callable[[str, str], Process]) -> None:
    """
    What carol does on the page, and what bob sees: she makes a key and is
    registered, logs in, chats with bob (his line, which holds HTML, is
    shown as text), ends the chat; bob goes offline; she writes him a
    letter and sees his delivery and read receipts verified.  Her lines
    name the browser (C{from <page.name>}), for the caller's wire check.
    """
    tag = page.name
    register_from_page(page, d, "carol")
    page.fill("#ca", ca_pem)
    page.click("#connect")
    page.wait_text("#status", "logged in as carol")
    page.fill("#peer", "bob")
    page.click("#ask")
    bob.expect(r"\* carol wants to chat")
    bob.send("!accept carol")
    pane = ".pane[data-peer=bob]"
    page.wait_text(f"{pane} li", "is end-to-end encrypted")
    page.fill(f"{pane} .entry", f"hello bob, from {tag}")
    page.click(f"{pane} .send")
    bob.expect(rf"\] carol: hello bob, from {re.escape(tag)}")
    bob.send("hi <b>carol</b>")
    page.wait_text(f"{pane} li", "bob: hi <b>carol</b>")
    test.assertEqual(page.count(f"{pane} b"), 0)  # shown as text, not HTML
    page.click(f"{pane} .stop")
    bob.expect(r"chat with carol ended by carol \(1 messages received\)")
    page.wait_text(f"{pane} li", "stopped by you")
    # bob goes offline; carol writes him a letter and reads his receipts.
    bob.send("!exit")
    test.assertEqual(bob.wait(), 0, bob.output())
    page.fill("#letter-to", "bob")
    page.fill("#letter-text", f"dear bob, a letter from {tag}")
    page.click("#send-letter")
    page.wait_text("#log li", "to bob stored by the relay")
    bob = start_client("bob", server)
    bob.expect(r"\* you have 1 new letter")
    bob.send("!letters new")
    bob.expect(r"\* 1\. \[[0-9a-f]{8}\] from carol, .*, new")
    bob.send("!read 1")
    bob.expect(r"\* letter \[[0-9a-f]{8}\] from carol, written .*; Verification: ok")
    bob.expect(rf"\*   \| dear bob, a letter from {re.escape(tag)}")
    page.wait_text("#log li", "delivered (receipt verified)")
    page.wait_text("#log li", "read (receipt verified)")
    page.screenshot(os.path.join(artifacts, f"browser-chat-{tag}.png"))
    bob.send("!exit")
    test.assertEqual(bob.wait(), 0, bob.output())
    test.assertEqual(page.errors(), [])
