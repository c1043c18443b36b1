"""
Tests that the project's promises about itself stay true: the README's test
command is the one CI runs, and the protocol core imports no Twisted.
"""

from __future__ import annotations

import ast
import pathlib

from twisted.trial import unittest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _command_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "twisted.trial tests" in line]


class PromiseTests(unittest.TestCase):
    """
    The README, CI and the layout agree.
    """

    def test_ciRunsReadmeTestCommand(self) -> None:
        """
        The test command in README.rst appears verbatim in .ci/run.
        """
        readme = _command_lines((ROOT / "README.rst").read_text())
        ci = _command_lines((ROOT / ".ci" / "run").read_text())
        self.assertEqual(len(readme), 1)
        self.assertEqual(readme, ci)

    def test_coreImportsNoTwisted(self) -> None:
        """
        Nothing under securechat/wire or securechat/crypto imports Twisted
        or does socket IO.
        """
        forbidden = ("twisted", "socket", "asyncio", "select")
        for package in ("wire", "crypto"):
            for path in (ROOT / "securechat" / package).glob("*.py"):
                tree = ast.parse(path.read_text())
                for node in ast.walk(tree):
                    names: list[str] = []
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.module:
                        names = [node.module]
                    for name in names:
                        self.assertFalse(
                            name.split(".")[0] in forbidden,
                            f"{path.name} imports {name}",
                        )


class DocumentTests(unittest.TestCase):
    """
    The documents render without warnings.
    """

    def test_restructuredTextClean(self) -> None:
        """
        README.rst, docs/protocol.rst and docs/security.rst are valid reStructuredText: docutils
        reports no warning or error.
        """
        import io

        from docutils.core import publish_doctree

        for path in (ROOT / "README.rst", ROOT / "docs" / "protocol.rst", ROOT / "docs" / "security.rst"):
            warnings = io.StringIO()
            publish_doctree(
                path.read_text(),
                source_path=str(path),
                settings_overrides={"warning_stream": warnings, "report_level": 2},
            )
            self.assertEqual(warnings.getvalue(), "", path.name)


class InstallTests(unittest.TestCase):
    """
    What an installation (also a contributor's `pip install -e .`) offers.
    """

    def test_twistdFindsPlugin(self) -> None:
        """
        The environment running the tests finds the securechat twistd
        plugin from outside the source tree and without PYTHONPATH: a
        setuptools editable install hides twisted/plugins from Twisted's
        plugin search unless setup.cfg's package_dir puts the tree on
        sys.path.
        """
        import os
        import subprocess
        import sys
        import tempfile
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        code = ("from twisted.plugin import getPlugins\n"
                "from twisted.application.service import IServiceMaker\n"
                "print(sorted(p.tapname for p in getPlugins(IServiceMaker)))\n")
        with tempfile.TemporaryDirectory() as elsewhere:
            result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                                    capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("'securechat'", result.stdout)

    def test_setupDeclaresTopLevelPackageDir(self) -> None:
        """
        setup.cfg says the packages live at the top of the tree (what makes
        the editable install put the tree on sys.path).
        """
        import configparser
        cp = configparser.ConfigParser()
        cp.read(ROOT / "setup.cfg")
        self.assertEqual(cp["options"]["package_dir"].split(), ["=", "."])

    def test_clientVersion(self) -> None:
        """
        securechat-client --version prints its name and version.
        """
        import contextlib
        import io

        from securechat import __version__
        from securechat.client.cli import parser
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            e = self.assertRaises(SystemExit, parser().parse_args, ["--version"])
        self.assertEqual(e.code, 0)
        self.assertEqual(out.getvalue(), f"securechat-client {__version__}\n")

    def test_installShipsBrowserClient(self) -> None:
        """
        An installation from the tree holds the browser client's static
        files (what C{--web} serves; setuptools' build_py, which a wheel is
        made of), so C{pip install .} needs no Node.
        """
        import subprocess
        import sys
        import tempfile
        shipped = sorted(str(p.relative_to(ROOT)) for p in
                         (ROOT / "securechat" / "web" / "static").rglob("*") if p.is_file())
        self.assertIn("securechat/web/static/index.html", shipped)
        import shutil
        with tempfile.TemporaryDirectory() as tmp:
            # A copy of the sources alone: a securechat.egg-info left in the
            # tree by an earlier install would list the files by itself.
            tree, out = pathlib.Path(tmp, "tree"), pathlib.Path(tmp, "out")
            skip = shutil.ignore_patterns("*.egg-info", "__pycache__", "dropin.cache")
            for name in ("setup.py", "setup.cfg", "README.rst"):
                tree.mkdir(exist_ok=True)
                shutil.copy(ROOT / name, tree / name)
            for name in ("securechat", "twisted"):
                shutil.copytree(ROOT / name, tree / name, ignore=skip)
            result = subprocess.run(
                [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(out)],
                cwd=tree, capture_output=True, text=True, timeout=300)
            self.assertEqual(result.returncode, 0, result.stderr)
            names = {str(p.relative_to(out)) for p in out.rglob("*")}
        self.assertEqual([p for p in shipped if p not in names], [])

    def test_readmeContributorInstall(self) -> None:
        """
        The README tells contributors how to install for development.
        """
        self.assertIn("pip install -e '.[test]'", (ROOT / "README.rst").read_text())
