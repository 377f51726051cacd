"""Notifiers: how a flagged decision reaches a human. Pluggable through :class:`Notifier`."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import requests

from actions.exceptions import NotifyError

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """Delivers one notification. Raises :class:`NotifyError` when delivery is worth retrying."""

    channel: str

    def notify(self, payload: dict[str, Any], headers: dict[str, str]) -> None: ...


class LogNotifier:
    """The default: one structured log line per flagged decision."""

    channel = "log"

    def notify(self, payload: dict[str, Any], headers: dict[str, str]) -> None:
        log.warning("NOTIFY %s", json.dumps(payload, separators=(",", ":"), sort_keys=True))


class WebhookNotifier:
    """POSTs the payload as JSON, with the correlation headers, to a configured URL.

    A 4xx answer is the receiver refusing this payload for good: logged, not retried. Network
    errors, a refused header and 5xx raise :class:`NotifyError`, and the notification dispatcher
    (:mod:`actions.outbox`) tries again later; the decision's effects never wait for it.
    """

    channel = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._session = requests.Session()

    def notify(self, payload: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            resp = self._session.post(self.url, json=payload, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise NotifyError(f"webhook {self.url} unreachable: {exc}") from exc
        if resp.status_code >= 500:
            raise NotifyError(f"webhook {self.url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 400:
            log.error(
                "webhook %s refused notification of event %s: HTTP %d %s",
                self.url,
                payload.get("event_id"),
                resp.status_code,
                resp.text[:200],
            )

    def close(self) -> None:
        self._session.close()


def notifier_for(webhook_url: str | None, timeout_s: float = 5.0) -> Notifier:
    """The webhook notifier when a URL is configured, else the log notifier."""
    return WebhookNotifier(webhook_url, timeout_s) if webhook_url else LogNotifier()
