"""
Tests for L{securechat.server.metrics.LatencyHistogram}: the ack-latency
histogram kept as plain numbers exposes what prometheus_client's own
C{Histogram} would.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from twisted.trial.unittest import TestCase

from securechat.server.metrics import LatencyHistogram, RelayMetrics

BOUNDS = (0.001, 0.01, 0.1, 1.0)
VALUES = (0.0, 0.001, 0.0010001, 0.05, 0.1, 0.7, 1.0, 3.0, 0.01)


class LatencyHistogramTests(TestCase):
    """
    L{LatencyHistogram} against C{prometheus_client.Histogram}.
    """

    def test_sameSamplesAsPrometheusHistogram(self) -> None:
        """
        The same observations give the same bucket counts (cumulative, a
        value equal to a bound counted in that bound's bucket), count and
        sum as C{prometheus_client}'s C{Histogram} (its C{_created} sample
        aside).
        """
        theirs = Histogram("h_seconds", "doc", buckets=BOUNDS, registry=CollectorRegistry())
        ours = LatencyHistogram("h_seconds", "doc", BOUNDS)
        for value in VALUES:
            theirs.observe(value)
            ours.observe(value)

        def samples(family: Any) -> list[tuple[str, str, float]]:
            return sorted((s.name, repr(sorted(s.labels.items())), s.value)
                          for s in family.samples if not s.name.endswith("_created"))
        [family] = list(theirs.collect())
        self.assertEqual(samples(ours.family()), samples(family))

    def test_scraped(self) -> None:
        """
        The relay's registry exposes the histogram and the letters-stored
        counter under their names.
        """
        metrics = RelayMetrics()
        metrics.letters_stored += 2
        metrics.letter_ack_latency.observe(0.003)
        text = metrics.render().decode()
        self.assertIn("securechat_letters_stored_total 2.0", text)
        self.assertIn('securechat_letter_ack_seconds_bucket{le="0.005"} 1.0', text)
        self.assertIn("securechat_letter_ack_seconds_count 1.0", text)

    def test_observeMany(self) -> None:
        """
        C{observe_many(v, n)} leaves the histogram as n C{observe(v)} do
        (the letters of one run share their latency).
        """
        one, many = (LatencyHistogram("h_seconds", "doc", BOUNDS) for _ in range(2))
        for value, times in ((0.0005, 3), (0.003, 1), (7.0, 2), (0.01, 5)):
            for _ in range(times):
                one.observe(value)
            many.observe_many(value, times)
        self.assertEqual((many.counts, many.count), (one.counts, one.count))
        self.assertAlmostEqual(many.total, one.total)

    def test_letterCommitsScraped(self) -> None:
        """
        The group commits are read from their source when scraped (the
        service points it at the SQLite store's count), so
        letters_stored / letter_commits is letters per commit.
        """
        metrics = RelayMetrics()
        self.assertIn("securechat_letter_commits_total 0.0", metrics.render().decode())
        commits = [3]
        metrics.letter_commits_source = lambda: commits[0]
        self.assertIn("securechat_letter_commits_total 3.0", metrics.render().decode())
        commits[0] = 5
        self.assertIn("securechat_letter_commits_total 5.0", metrics.render().decode())
