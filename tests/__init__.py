"""
Tests for securechat, run with C{trial tests}.

Property-based tests (hypothesis) run derandomized by default, with no
example database, so the normal run is the same every time.  For a long
randomized run (new examples each time, more of them)::

    SECURECHAT_HYPOTHESIS=random .venv/bin/python -m twisted.trial --until-failure tests.test_wire tests.test_relay_messages

(and C{python -m tests.test_fuzz --seconds 300} for the relay fuzzer).
"""

import os

from hypothesis import settings

settings.register_profile(
    "deterministic", derandomize=True, database=None, deadline=None, max_examples=300,
    print_blob=True)
settings.register_profile(
    "random", derandomize=False, database=None, deadline=None, max_examples=20_000,
    print_blob=True)
settings.load_profile(os.environ.get("SECURECHAT_HYPOTHESIS", "deterministic"))
