"""
Real services the tests start themselves (DESIGN §9): where a binary a test
needs is missing, the test is skipped with a loud reason, or fails instead
when C{SECURECHAT_REQUIRE_SERVICES=1} (which C{.ci/run} sets, after
installing every such binary).
"""

from __future__ import annotations

import os

from twisted.trial import unittest

#: Set by C{.ci/run}: a missing service is a failure, never a skip.
REQUIRED = os.environ.get("SECURECHAT_REQUIRE_SERVICES") == "1"


def need_service(test: unittest.TestCase, missing: list[str], what: str, install: str) -> None:
    """
    Skip C{test} loudly when C{missing} (names of absent binaries or
    modules) is not empty, or fail it under C{SECURECHAT_REQUIRE_SERVICES=1}.

    @param what: what goes untested, for the message ("the PostgreSQL store").
    @param install: how to get them ("apt-get install postgresql").
    """
    if not missing:
        return
    message = (f"SKIPPED LOUDLY: {', '.join(missing)} not installed: {what} was NOT tested "
               f"({install}; .ci/run does)")
    if REQUIRED:
        test.fail(message + " and SECURECHAT_REQUIRE_SERVICES=1")
    raise unittest.SkipTest(message)
