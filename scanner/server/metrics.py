"""Prometheus metrics, one :class:`CollectorRegistry` per app (never the global one, so
two apps in one test process do not share counters).

Counters are labelled by partner and by the short ``reason`` of each error class. Queue
depth and oldest pending age are read from the store at scrape time, so they are right
across restarts and across processes sharing the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StoreCollector(Collector):
    """Gauges computed when scraped: the durable queue and the revoker's health."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        values = self._read()
        for name, doc in (("revoke_queue_depth", "Tokens waiting for a revoke call"),
                          ("revoke_oldest_pending_seconds", "Age of the oldest queued token"),
                          ("revoker_healthy", "1 unless the Cendis credential was refused "
                                              "or the revoker task is down (crashed)")):
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
