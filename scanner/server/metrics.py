"""Prometheus metrics, one :class:`CollectorRegistry` per app (never the global one, so
two apps in one test process do not share counters).

Counters are labelled by partner and by the short ``reason`` of each error class. Queue
depth and oldest pending age, the outbox's, and the open incidents by severity and triage
state are read from the store at scrape time, so they are right across restarts and
across processes sharing the database. ``deploy/prometheus/alerts.yml`` alerts on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Leak-to-revoke seconds: a revoke within seconds (a partner report) to a day (a sweep
#: of an old repository, a revoke that failed for hours).
LEAK_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)


class _StoreCollector(Collector):
    """Gauges computed when scraped: the durable queue and the revoker's health."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        values = self._read()
        for name, doc in (("revoke_queue_depth", "Tokens waiting for a revoke call"),
                          ("revoke_oldest_pending_seconds", "Age of the oldest queued token"),
                          ("revoker_healthy", "1 unless the Cendis credential was refused "
                                              "or the revoker task is down (crashed)"),
                          ("outbox_depth", "Notifications not yet delivered"),
                          ("outbox_oldest_pending_seconds",
                           "Age of the oldest notification not yet delivered"),
                          ("ready", "1 when /readyz says ready, else 0")):
            family = GaugeMetricFamily(f"cendis_{name}", doc)
            value = values.get(name)
            family.add_metric([], float(value) if value is not None else 0.0)
            yield family
        revoked = CounterMetricFamily("cendis_tokens_revoked",
                                      "Tokens the revoker closed (revoked, already revoked "
                                      "or not found) since start")
        revoked.add_metric([], float(values.get("tokens_revoked") or 0))
        yield revoked
        errors = CounterMetricFamily("cendis_revoke_errors", "Failed revoke calls, by reason",
                                     labels=["reason"])
        for reason, count in sorted((values.get("revoke_errors") or {}).items()):
            errors.add_metric([reason], float(count))
        yield errors
        crashes = CounterMetricFamily("cendis_revoker_crashes", "Revoker task crashes (each "
                                      "restarted with backoff), by reason", labels=["reason"])
        for reason, count in sorted((values.get("revoker_crashes") or {}).items()):
            crashes.add_metric([reason], float(count))
        yield crashes
        open_incidents = GaugeMetricFamily("cendis_open_incidents", "Incidents nobody "
                                           "closed by triage, by severity and triage state",
                                           labels=["severity", "triage"])
        for severity, triage, count in sorted(values.get("open_incidents") or ()):
            open_incidents.add_metric([severity, triage], float(count))
        yield open_incidents
        delivered = CounterMetricFamily("cendis_notifications_delivered", "Outbox rows by "
                                        "channel and outcome (sent; failed: retried; "
                                        "rejected: refused for good, retried at the cap)",
                                        labels=["channel", "outcome"])
        for (channel, outcome), count in sorted(
                (values.get("notifications_delivered") or {}).items()):
            delivered.add_metric([channel, outcome], float(count))
        yield delivered


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.reports = Counter("cendis_reports", "Partner deliveries received, by outcome",
                               ["partner", "outcome"], registry=r)
        self.rejected = Counter("cendis_reports_rejected",
                                "Deliveries refused, by partner and reason",
                                ["partner", "reason"], registry=r)
        self.records = Counter("cendis_records", "Records in accepted deliveries, by outcome "
                               "(accepted, malformed, false_positive)",
                               ["partner", "outcome"], registry=r)
        self.malformed = Counter("cendis_records_malformed", "Records skipped as malformed, "
                                 "by partner and reason", ["partner", "reason"], registry=r)
        self.http_errors = Counter("cendis_malformed_requests", "Malformed HTTP requests "
                                   "refused by the server, by reason", ["reason"], registry=r)
        self.key_fetches = Counter("cendis_partner_key_fetches", "Public-key fetches",
                                   ["partner", "outcome"], registry=r)
        self.triage_actions = Counter("cendis_triage_actions", "Triage actions asked for "
                                      "through POST /incidents/ID/actions, by action and "
                                      "outcome (ok, or the refusal's reason)",
                                      ["action", "outcome"], registry=r)
        self.latency = Histogram("cendis_request_seconds", "Request latency by route",
                                 ["route"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                          2.5, 5, 10))
        self.leak_to_revoke = Histogram("cendis_leak_to_revoke_seconds", "First report "
                                        "received to revoked, per incident (observed when "
                                        "the revoker applies the outcome)", registry=r,
                                        buckets=LEAK_BUCKETS)

    def child(self, metric: Any, *labels: str) -> Any:
        """A labelled child, cached: ``labels()`` takes a lock and builds a tuple each
        time, and the report path calls it a few times per request."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def watch(self, read: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(_StoreCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
