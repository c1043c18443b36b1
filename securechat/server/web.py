# -*- test-case-name: tests.test_web -*-
"""
The web listener (C{--web ENDPOINT}, off by default): the browser client's
static files, shipped in the package (C{securechat/web/static/}), and the
relay's WebSocket at C{/relay} beside them, so the page talks to its own
origin.

Every response carries a strict Content-Security-Policy (scripts and
styles from this origin only, no inline script or style, no eval, network
connections to this origin only, no framing), C{X-Content-Type-Options:
nosniff} and an explicit content type; directories are never listed.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import NoResource, Resource
from twisted.web.static import File, getTypeAndEncoding

from securechat.server.relay import RelayFactory
from securechat.server.websocket import RelayRequest, RelayWebSocketSite

#: Where the static files are, in the installed package.
STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "static")

#: The policy on every response.  C{'self'} in C{connect-src} covers
#: C{ws:}/C{wss:} to the same host and port (CSP Level 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

#: The only types served; anything else is application/octet-stream.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}


class WebRequest(RelayRequest):
    """
    A request whose response, whatever it is (404s too), carries
    L{SECURITY_HEADERS}.
    """

    def process(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        super().process()


class StaticFiles(File):
    """
    The static files: C{index.html} for a directory that has one, 404 for
    one that has not (no listing), the types of L{CONTENT_TYPES} only.
    """

    contentTypes = CONTENT_TYPES
    contentEncodings: dict[str, str] = {}
    indexNames = ["index.html"]

    def __init__(self, path: str, defaultType: str = "application/octet-stream",
                 *args: Any, **kw: Any) -> None:
        super().__init__(path, defaultType, *args, **kw)

    def directoryListing(self) -> Resource:
        return NoResource("No such file.")

    def render_GET(self, request: Any) -> bytes:
        """
        The whole file at once (they are small), with its type: no
        producer, no ranges.
        """
        self.restat(False)
        if not self.exists():
            page: bytes = self.childNotFound.render(request)
            return page
        if self.isdir():
            redirect: bytes = self.redirect(request)
            return redirect
        kind, _ = getTypeAndEncoding(self.basename(), self.contentTypes, {}, self.defaultType)
        with self.open() as f:
            data: bytes = f.read()
        request.setHeader("content-type", kind)
        return data

    render_HEAD = render_GET


def web_site(factory: RelayFactory, origins: Sequence[str], clock: IReactorTime,
             static: str = STATIC) -> RelayWebSocketSite:
    """
    The web listener's site: C{static}'s files and the WebSocket at C{/relay}.
    """
    return RelayWebSocketSite(factory, origins, clock, root=StaticFiles(static),
                              request_factory=WebRequest)
