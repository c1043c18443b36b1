"""
Tests for L{securechat.server.collector}: the relay process's garbage
collector settings, and that C{twistd securechat} starts them last.
"""

from __future__ import annotations

import gc

from twisted.application.service import MultiService
from twisted.trial.unittest import TestCase

from securechat.server.collector import YOUNG_THRESHOLD, CollectorTuning


class CollectorTuningTests(TestCase):
    """
    L{CollectorTuning} changes the process's collector only while it runs.
    """

    def setUp(self) -> None:
        self.threshold = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *self.threshold)
        self.addCleanup(gc.unfreeze)

    def test_startFreezesAndRaisesYoungThreshold(self) -> None:
        """
        Started, it freezes the objects that exist (start-up's: never walked
        again by a collection) and raises only the young generation's
        threshold; the older generations' stay as they were.
        """
        service = CollectorTuning()
        service.startService()
        try:
            self.assertGreater(gc.get_freeze_count(), 0)
            self.assertEqual(gc.get_threshold(),
                             (YOUNG_THRESHOLD, self.threshold[1], self.threshold[2]))
        finally:
            service.stopService()

    def test_stopRestores(self) -> None:
        """
        Stopped, it puts the previous thresholds back and unfreezes (the
        relay's service can be started again in the same process, as the
        tests do).
        """
        gc.set_threshold(900, 11, 12)
        service = CollectorTuning(young=5000)
        service.startService()
        service.stopService()
        self.assertEqual((gc.get_threshold(), gc.get_freeze_count()), ((900, 11, 12), 0))

    def test_neverLowersThreshold(self) -> None:
        """
        A process already collecting less often than L{YOUNG_THRESHOLD} is
        left so.
        """
        gc.set_threshold(YOUNG_THRESHOLD * 2, 10, 10)
        service = CollectorTuning()
        service.startService()
        try:
            self.assertEqual(gc.get_threshold()[0], YOUNG_THRESHOLD * 2)
        finally:
            service.stopService()

    def test_makeServiceStartsItLast(self) -> None:
        """
        C{twistd securechat}'s service tree ends with it, so it freezes
        what every other service made when it started.
        """
        from securechat.tap import Options, makeService
        options = Options()
        options.parseOptions(["--data-dir", self.mktemp(), "--init",
                              "--listen", "tcp:0:interface=127.0.0.1"])
        service = makeService(options)
        assert isinstance(service, MultiService)
        self.assertIsInstance(list(service)[-1], CollectorTuning)
