"""
Tests for the web listener (L{securechat.server.web}): the browser
client's static files with their security headers, and the relay's
WebSocket beside them, over the in-memory network.
"""

from __future__ import annotations

import html.parser
import os
import pathlib

from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from securechat.server.limits import Limits
from securechat.server.web import CONTENT_SECURITY_POLICY, STATIC, web_site
from tests.ws_harness import ORIGIN, WebSocketClient, WebSocketHarness


class HttpClient(Protocol):
    """
    Sends one request, keeps the raw response.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.response = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.response += data

    def parsed(self) -> tuple[int, dict[str, str], bytes]:
        head, _, body = self.response.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers, body


class WebHarness(WebSocketHarness):
    """
    The relay with its web listener serving C{static}.
    """

    def __init__(self, static: str = STATIC, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.site = web_site(self.factory, (ORIGIN,), self.clock, static)

    def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        client = HttpClient(f"{method} {path} HTTP/1.1\r\nHost: chat.example.org\r\n"
                            "Connection: close\r\n\r\n".encode())
        self.open(client)  # type: ignore[arg-type]
        return client.parsed()


class StaticFileTests(unittest.TestCase):
    """
    What C{--web} serves, and the headers it serves it with.
    """

    def test_pageWithStrictPolicy(self) -> None:
        """
        / is index.html, as UTF-8 HTML, with the Content-Security-Policy
        that allows scripts, styles and connections from the page's own
        origin only (no inline script, no eval), nosniff and no framing.
        """
        status, headers, body = WebHarness().get("/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(headers["content-security-policy"], CONTENT_SECURITY_POLICY)
        self.assertIn("script-src 'self';", CONTENT_SECURITY_POLICY)
        self.assertIn("connect-src 'self';", CONTENT_SECURITY_POLICY)
        self.assertIn("default-src 'none';", CONTENT_SECURITY_POLICY)
        self.assertNotIn("unsafe", CONTENT_SECURITY_POLICY)
        self.assertEqual(headers["x-content-type-options"], "nosniff")
        self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertIn(b"<script type=\"module\" src=\"js/app.js\"></script>", body)

    def test_scriptType(self) -> None:
        """
        Scripts are served as text/javascript (what module scripts need
        under nosniff).
        """
        status, headers, _ = WebHarness().get("/js/app.js")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/javascript; charset=utf-8")

    def test_noDirectoryListing(self) -> None:
        """
        A directory without index.html is a 404, never a listing.
        """
        status, headers, body = WebHarness().get("/js/")
        self.assertEqual(status, 404)
        self.assertNotIn(b"app.js", body)
        self.assertEqual(headers["content-security-policy"], CONTENT_SECURITY_POLICY)

    def test_errorsCarryHeaders(self) -> None:
        """
        A missing file, and a path escaping the directory, are 404s with
        the same security headers.
        """
        for path in ("/nothing.html", "/../setup.py", "/js/../../server/web.py"):
            status, headers, body = WebHarness().get(path)
            self.assertEqual(status, 404, path)
            self.assertEqual(headers["x-content-type-options"], "nosniff", path)
            self.assertNotIn(b"import", body)

    def test_unknownTypeNotSniffable(self) -> None:
        """
        A file of a type not listed is application/octet-stream (nosniff
        keeps a browser from running it).
        """
        static = self.mktemp()
        os.makedirs(static)
        pathlib.Path(static, "notes.md").write_text("<script>alert(1)</script>")
        status, headers, _ = WebHarness(static=static).get("/notes.md")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/octet-stream")

    def test_onlyGetAndHead(self) -> None:
        """
        Other methods are refused: 405 for POST (naming GET and HEAD as
        allowed), 501 for methods the server does not implement at all.
        """
        status, headers, _ = WebHarness().get("/", method="POST")
        self.assertEqual(status, 405)
        self.assertEqual(sorted(headers["allow"].split(", ")), ["GET", "HEAD"])
        status, _, _ = WebHarness().get("/", method="DELETE")
        self.assertEqual(status, 501)


class _InlineFinder(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"{tag} has {name}=")
            if value is not None and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"{tag} has a javascript: URL")
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("inline <style>")


class PageRulesTests(unittest.TestCase):
    """
    The shipped pages obey the policy they are served with.
    """

    def test_noInlineScriptOrStyle(self) -> None:
        """
        No shipped page has an inline script, event handler attribute,
        style attribute or element, or javascript: URL (the policy would
        block them: the page would break, not the policy).
        """
        pages = list(pathlib.Path(STATIC).rglob("*.html"))
        self.assertTrue(pages)
        for page in pages:
            finder = _InlineFinder()
            finder.feed(page.read_text())
            self.assertEqual(finder.problems, [], page.name)

    def test_noEvalInScripts(self) -> None:
        """
        No shipped script calls eval or the Function constructor (the
        policy has no 'unsafe-eval').
        """
        import re
        pattern = re.compile(r"\beval\s*\(|\bnew\s+Function\s*\(|\bFunction\s*\(")
        scripts = list(pathlib.Path(STATIC).rglob("*.js"))
        self.assertTrue(scripts)
        for script in scripts:
            self.assertIsNone(pattern.search(script.read_text()), script.name)


class WebSocketBesideThePageTests(unittest.TestCase):
    """
    The page's WebSocket is on its own origin, /relay.
    """

    def test_loginOnWebListener(self) -> None:
        """
        A user logs in through /relay on the web listener.
        """
        h = WebHarness()
        alice, ws = h.connect_websocket("alice")
        self.assertTrue(alice.logged_in, alice.error)

    def test_pageFetchIsNotARelayConnection(self) -> None:
        """
        Fetching the page takes no place in the gate on unauthenticated
        connections, and is not ended by the handshake deadline while a
        request is served; an idle HTTP connection is closed after the
        handshake timeout.
        """
        h = WebHarness(limits=Limits(handshake_timeout=10))
        client = HttpClient(b"GET / HTTP/1.1\r\nHost: chat.example.org\r\n\r\n")
        link = h.open(client)  # type: ignore[arg-type]
        self.assertEqual(h.relay.gate.total, 0)
        self.assertTrue(client.response.startswith(b"HTTP/1.1 200 "))
        self.assertFalse(link.closed)
        h.network.advance(11)
        self.assertTrue(link.closed)

    def test_gateCountsTheUpgrade(self) -> None:
        """
        On the web listener the gate counts a connection at its upgrade
        request: past the limit, that request gets 503 with the reason.
        """
        h = WebHarness(limits=Limits(max_unauthenticated_per_host=1))
        first = WebSocketClient()
        h.open(first)
        self.assertTrue(first.opened)
        self.assertEqual(h.relay.gate.total, 1)
        second = WebSocketClient()
        link = h.open(second)
        self.assertEqual(second.rejected, 503)
        self.assertIn(b"too many connections from your address", second.reject_body)
        self.assertTrue(link.closed)

    def test_badOriginOnWebListener(self) -> None:
        """
        The allow-list holds on the web listener too; the refused request
        never reaches the gate.
        """
        h = WebHarness()
        client = WebSocketClient(origin="https://evil.example")
        link = h.open(client)
        self.assertEqual(client.rejected, 403)
        self.assertTrue(link.closed)
        self.assertEqual(h.relay.gate.total, 0)
