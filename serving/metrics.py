"""Prometheus metrics of one app (a registry per app, so that apps in one process never share counters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics", "RequestRecorder"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The server's counters and histograms, registered in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "regsim_http_requests",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "regsim_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template (seconds).",
            ("method", "route"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "regsim_decisions",
            "Committed decisions by decision point kind, channel chosen and deciding policy.",
            ("kind", "channel", "policy"),
            registry=self.registry,
        )
        self.policy_latency = Histogram(
            "regsim_policy_decide_seconds",
            "Time of one decide_batch call of the active policy, including the fallback (seconds).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "regsim_fallbacks",
            "Decisions answered by the rule-based fallback, by reason (error, timeout, rule_violation).",
            ("reason",),
            registry=self.registry,
        )
        self.shadow = Counter(
            "regsim_shadow_decisions",
            "Decisions of the shadow policy, by outcome (agree, disagree, error).",
            ("outcome",),
            registry=self.registry,
        )
        self.cancelled = Counter(
            "regsim_cancelled_reminders",
            "Pending messages cancelled, by cause (payment, completed, broken, referred).",
            ("cause",),
            registry=self.registry,
        )
        self.events = Counter(
            "regsim_events",
            "Events recorded through POST /v1/events, by type.",
            ("type",),
            registry=self.registry,
        )
        self.late_events = Counter(
            "regsim_late_events",
            "Events stamped before their arrangement's latest event (history re-derived in event-time order), by type.",
            ("type",),
            registry=self.registry,
        )
        self.incidents = Counter(
            "regsim_incidents",
            "Incidents late events revealed, by kind (sent_after_payment: a reminder sent after the payment).",
            ("kind",),
            registry=self.registry,
        )
        self.updates = Counter(
            "regsim_online_updates",
            "Updates of the online policy from matured rewards.",
            registry=self.registry,
        )
        self.write_group = Histogram(
            "regsim_write_group_requests",
            "Write requests committed together in one transaction (group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            registry=self.registry,
        )


class RequestRecorder:
    """Counts and times answered HTTP requests by method, route template and status.

    Args:
        metrics: The app's metrics, or ``None`` while the app is starting (nothing is recorded then).
    """

    def __init__(self, metrics: Callable[[], Metrics | None]) -> None:
        self.metrics = metrics
        self._children: dict[tuple[Metrics, str, str, int], tuple[Any, Any]] = {}

    def record(self, method: str, template: str, status: int, seconds: float) -> None:
        """One answered request (``template`` is the route's, never the raw path: ids would explode labels)."""
        m = self.metrics()
        if m is None:
            return
        key = (m, method, template, status)
        children = self._children.get(key)
        if children is None:
            # Label look-ups cost more than the observation itself: once per route and status.
            children = (m.requests.labels(method, template, str(status)), m.latency.labels(method, template))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
