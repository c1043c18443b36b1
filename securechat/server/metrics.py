# -*- test-case-name: tests.test_service -*-
"""
The relay's Prometheus metrics, in a registry of their own (so tests and
several relays in one process never share counters), and the HTTP resources
that serve them: C{/metrics} and C{/health}.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request


class RelayMetrics:
    """
    Every metric the relay exports.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Updated for every connection or relayed message: plain integers,
        # read by a collector when /metrics is scraped, so they cost nothing
        # (no lock, no call) where they change.
        self.connections = 0
        self.connections_open = 0
        self.unauthenticated = 0
        self.handshakes = 0
        self.relayed_messages = 0
        self.relayed_bytes = 0
        #: Sums the bytes in every outbound queue; the relay sets it.
        self.queued_source: Callable[[], int] = lambda: 0
        #: Counts the users online; the relay sets it.
        self.sessions_source: Callable[[], int] = lambda: 0
        #: Counts the mailbox store's group commits; the service sets it.
        self.letter_commits_source: Callable[[], int] = lambda: 0
        r.register(_HotPathCollector(self))
        self.refusals = Counter(
            "securechat_refusals", "Connections refused or failed, by reason", ["reason"], registry=r)
        self.chats = Gauge("securechat_chats", "Chats open now", registry=r)
        self.chat_requests = Counter(
            "securechat_chat_requests", "Chat requests, by outcome", ["outcome"], registry=r)
        self.queue_drops = Counter(
            "securechat_queue_drops",
            "Users disconnected for not reading (queue over the hard limit or stalled)",
            registry=r)
        self.senders_paused = Counter(
            "securechat_senders_paused", "Times a sender was paused for a slow recipient", registry=r)
        self.rate_limited = Counter(
            "securechat_rate_limited", "Times a user was throttled for its message rate", registry=r)
        #: Letters committed to the mailbox store (a plain integer, like
        #: the hot path's: it changes for every letter).
        self.letters_stored = 0
        self.letters_refused = Counter(
            "securechat_letters_refused", "Letters refused, by reason", ["reason"], registry=r)
        #: Seconds from a letter's arrival to its LETTER_STORED.
        self.letter_ack_latency = LatencyHistogram(
            "securechat_letter_ack_seconds",
            "Seconds from a letter's arrival to its LETTER_STORED (after the commit)",
            (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0))
        self.group_posts = Counter(
            "securechat_group_posts", "Group messages stored (one per GROUP_POST)", registry=r)
        self.group_copies = Counter(
            "securechat_group_copies", "GROUP_MESSAGE copies queued to online members (the "
            "backlog sent at login included)", registry=r)
        self.group_changes = Counter(
            "securechat_group_changes", "Group changes accepted and committed", registry=r)
        self.group_refusals = Counter(
            "securechat_group_refusals", "Group commands refused, by reason", ["reason"],
            registry=r)
        self.store_unavailable = Counter(
            "securechat_store_unavailable", "Commands (letters, mailbox and group commands) "
            "refused with TRY_AGAIN because the store could not be reached", registry=r)

    @property
    def queued_bytes(self) -> int:
        """
        Bytes waiting in all outbound queues, summed when asked (at scrape
        time), so queueing a message costs no metric update.
        """
        return self.queued_source()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _HotPathCollector:
    """
    Exposes the hot-path integers of L{RelayMetrics} at scrape time.
    """

    def __init__(self, metrics: RelayMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        m = self._metrics
        yield CounterMetricFamily("securechat_connections", "Connections accepted",
                                  value=m.connections)
        yield GaugeMetricFamily("securechat_connections_open", "Connections open now",
                                value=m.connections_open)
        yield GaugeMetricFamily("securechat_unauthenticated_connections",
                                "Connections still in the handshake", value=m.unauthenticated)
        yield CounterMetricFamily("securechat_handshakes", "Completed client-server handshakes",
                                  value=m.handshakes)
        yield GaugeMetricFamily("securechat_sessions", "Authenticated users online",
                                value=m.sessions_source())
        yield CounterMetricFamily("securechat_relayed_messages", "End-to-end frames relayed",
                                  value=m.relayed_messages)
        yield CounterMetricFamily("securechat_relayed_bytes", "End-to-end payload bytes relayed",
                                  value=m.relayed_bytes)
        yield GaugeMetricFamily("securechat_queued_bytes", "Bytes waiting in all outbound queues",
                                value=m.queued_bytes)
        yield CounterMetricFamily("securechat_letters_stored",
                                  "Letters committed to the mailbox store", value=m.letters_stored)
        yield CounterMetricFamily("securechat_letter_commits",
                                  "Transactions that stored letters (group commits; letters "
                                  "stored per commit = letters_stored / this)",
                                  value=m.letter_commits_source())
        yield m.letter_ack_latency.family()


class LatencyHistogram:
    """
    A Prometheus histogram kept as plain numbers (an observation is a
    C{bisect} and three additions: no lock, no per-bucket loop, as
    C{prometheus_client}'s C{Histogram} has), read when C{/metrics} is
    scraped.  The relay is single-threaded where it observes.
    """

    __slots__ = ("name", "documentation", "bounds", "counts", "total", "count")

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        #: Observations per bucket (not cumulative); the last is +Inf's.
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal to" their bound.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def observe_many(self, value: float, times: int) -> None:
        """C{observe(value)} C{times} times, in one step."""
        self.counts[bisect_left(self.bounds, value)] += times
        self.total += value * times
        self.count += times

    def family(self) -> HistogramMetricFamily:
        """The histogram as Prometheus exposes it (cumulative buckets)."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(self.name, self.documentation, buckets=buckets,
                                     sum_value=self.total)


class MetricsResource(Resource):
    """
    C{/metrics} in the Prometheus text format.
    """

    isLeaf = True

    def __init__(self, metrics: RelayMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self._metrics.render()


class HealthResource(Resource):
    """
    C{/health}: C{200 ok} while the relay is listening, C{503} otherwise.
    """

    isLeaf = True

    def __init__(self, healthy: Callable[[], bool]) -> None:
        super().__init__()
        self._healthy = healthy

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        if self._healthy():
            return b"ok\n"
        request.setResponseCode(503)
        return b"not ready\n"


def metrics_root(metrics: RelayMetrics, healthy: Callable[[], bool]) -> Resource:
    """
    The HTTP tree for the metrics endpoint.
    """
    root = Resource()
    root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"health", HealthResource(healthy))
    return root
