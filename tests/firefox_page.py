"""
L{tests.browser_pages.ChatPage} in Firefox: Debian's C{firefox-esr},
headless, on a fresh profile, driven by Mozilla's C{marionette_driver}
through the Marionette server built into Firefox (no geckodriver, nothing
downloaded).  Its Marionette port is 0 (the port it took is read from its
output); its network is loopback only (every proxied request goes to a
port nobody listens on, loopback is never proxied, and its background
services are off); it is stopped by PID when the test ends.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from typing import Any

from twisted.trial import unittest

from tests.browser_pages import HOLDS, WAIT_SECONDS
from tests.processes import Process, environment

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
try:
    from marionette_driver.marionette import Marionette
except ImportError:  # pragma: no cover - depends on the machine
    Marionette = None

# Firefox's preferences for a test profile: Marionette on a port of its
# choosing; nothing but loopback (every proxied request goes to a port
# nobody listens on, and loopback is never proxied); no updates,
# telemetry, remote settings, safe browsing or first-run pages.
_FIREFOX_PREFS = {
    "marionette.port": 0,
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.share_proxy_settings": True,
    "network.dns.disablePrefetch": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "services.settings.server": "data:,#remote-settings-dummy/v1",
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.server": "",
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
}


class FirefoxPage:
    """
    L{ChatPage} in a headless Firefox on its own fresh profile, driven
    through Marionette; stopped by PID when the test ends.
    """

    name = "firefox"

    def __init__(self, test: unittest.TestCase) -> None:
        assert FIREFOX is not None and Marionette is not None
        profile = tempfile.mkdtemp(prefix="sc-firefox-")
        test.addCleanup(shutil.rmtree, profile, True)
        with open(os.path.join(profile, "user.js"), "w") as f:
            for key, value in _FIREFOX_PREFS.items():
                literal = ("true" if value else "false") if isinstance(value, bool) else (
                    str(value) if isinstance(value, int) else f'"{value}"')
                f.write(f'user_pref("{key}", {literal});\n')
        self.process = Process(
            test, [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", profile],
            "firefox", stdin=False, env=environment(MOZ_HEADLESS="1", HOME=profile))
        port = int(self.process.expect(r"Marionette\s+INFO\s+Listening on port (\d+)").group(1))
        self.driver = Marionette(host="127.0.0.1", port=port)
        self.driver.start_session()
        self.driver.timeout.script = WAIT_SECONDS + 5
        test.addCleanup(self._quit)

    def _quit(self) -> None:
        try:
            self.driver.delete_session()
        finally:
            self.process.stop()

    def _script(self, body: str, *args: Any) -> Any:
        return self.driver.execute_script(body, script_args=list(args), new_sandbox=False)

    def goto(self, url: str) -> None:
        self.driver.navigate(url)
        # Errors the page does not catch are kept for errors().
        self._script("window.__errors = []; "
                     "window.addEventListener('error', (e) => window.__errors.push(String(e.message)));"
                     "window.addEventListener('unhandledrejection', "
                     "(e) => window.__errors.push(String(e.reason)));")

    def fill(self, css: str, text: str) -> None:
        element = self.driver.find_element("css selector", css)
        self._script("const [e, t] = arguments; e.focus(); e.value = t;"
                     "e.dispatchEvent(new Event('input', {bubbles: true}));"
                     "e.dispatchEvent(new Event('change', {bubbles: true}));", element, text)

    def click(self, css: str) -> None:
        self.driver.find_element("css selector", css).click()

    def wait_text(self, css: str, text: str, at_least: int = 1) -> None:
        """
        Resolve as soon as C{at_least} elements matching C{css} hold the
        text: checked now and on every change of the document, until
        L{WAIT_SECONDS}.
        """
        found = self.driver.execute_async_script(f"""
            const [css, text, n, seconds, done] = arguments;
            const holds = {HOLDS};
            if (holds(css, text, n)) {{ done(true); return; }}
            const watch = new MutationObserver(() => {{
              if (holds(css, text, n)) {{ watch.disconnect(); clearTimeout(limit); done(true); }}
            }});
            const limit = setTimeout(() => {{ watch.disconnect(); done(false); }}, seconds * 1000);
            watch.observe(document, {{subtree: true, childList: true, characterData: true}});
        """, script_args=[css, text, at_least, WAIT_SECONDS], new_sandbox=False)
        if not found:
            raise AssertionError(f"firefox: no {at_least} {css} holding {text!r} within "
                                 f"{WAIT_SECONDS}s; "
                                 f"status: {self.text('#status')!r}; log: {self.text('#log')[-800:]!r}")

    def choose_file(self, css: str, path: str) -> None:
        self.driver.find_element("css selector", css).send_keys(path)

    def leave(self) -> None:
        """
        Leave the page (its WebSocket closes); the profile stays.
        """
        self.driver.navigate("about:blank")

    def text(self, css: str) -> str:
        return str(self._script("const e = document.querySelector(arguments[0]);"
                                "return e ? e.textContent : '';", css))

    def count(self, css: str) -> int:
        return int(self._script("return document.querySelectorAll(arguments[0]).length;", css))

    def screenshot(self, path: str) -> None:
        png = self.driver.screenshot(format="base64", full=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(png))

    def errors(self) -> list[str]:
        return [str(e) for e in self._script("return window.__errors || [];")]
