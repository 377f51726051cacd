"""The console's pages: which template each one renders and the values it shows.

The HTML is in ``console/templates/`` (Jinja2 with autoescape and ``StrictUndefined``, set up in
:mod:`console.templating`). The functions here only gather values; they escape nothing, since the
templates escape every value they print. Feature wording comes from the feature catalogue
(:data:`fraud_core.feature_catalog.FEATURE_WORDS`), declared there once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from console.templating import View, money, when
from fraud_core.feature_catalog import FEATURE_WORDS
from fraud_core.review_cases import Case

__all__ = ["View", "case_page", "login_page", "message_page", "money", "queue_page", "when"]


class RecentPayment(NamedTuple):
    """One of the user's earlier payments, as the case page shows it."""

    event_time: int
    amount_minor: int
    currency: str
    merchant_id: str
    country: str
    action: str
    score: float


def login_page(csrf: str, error: str = "") -> View:
    return View("login.html", {"user": None, "csrf": csrf, "error": error})


def message_page(title: str, text: str, user: str | None = None, csrf: str = "") -> View:
    return View("message.html", {"user": user, "csrf": csrf, "title": title, "text": text})


def queue_page(
    open_cases: list[Case],
    resolved: list[Case],
    counts: dict[str, int],
    timeout_s: float,
    user: str,
    csrf: str,
) -> View:
    """The open cases in queue order, and the latest resolved ones."""
    return View(
        "queue.html",
        {
            "user": user,
            "csrf": csrf,
            "open_cases": open_cases,
            "resolved": resolved,
            "counts": counts,
            "timeout_s": timeout_s,
        },
    )


def signals(features: dict[str, Any]) -> list[tuple[str, str]]:
    """The decision's features in words, each value in the catalogue's format."""
    rows = []
    for name, value in features.items():
        words, fmt = FEATURE_WORDS.get(name, (name, "{:g}"))
        rows.append((words, fmt.format(value)))
    return rows


def recent_payments(recent: list[dict[str, Any]]) -> list[RecentPayment]:
    """The user's recent decisions as stored on the case (fields may be missing in old entries)."""
    return [
        RecentPayment(
            int(r.get("event_time") or 0),
            int(r.get("amount_minor") or 0),
            str(r.get("currency", "")),
            str(r.get("merchant_id", "")),
            str(r.get("country", "")),
            str(r.get("action", "")),
            float(r.get("score") or 0),
        )
        for r in recent
    ]


def case_page(case: Case, on_hold: bool, user: str, csrf: str, message: str = "", error: str = "") -> View:
    """One case: the payment, why it was sent to review, the signals in words, the user's recent
    payments, and the verdict buttons (or the verdict, once resolved)."""
    return View(
        "case.html",
        {
            "user": user,
            "csrf": csrf,
            "case": case,
            "on_hold": on_hold,
            "message": message,
            "error": error,
            "signals": signals(case.features),
            "recent": recent_payments(case.recent),
        },
    )


def comparisons_page(body_context: dict[str, Any], user: str, csrf: str) -> View:
    """The model comparisons (:func:`console.comparisons.comparisons_context`) inside the frame."""
    return View("comparisons.html", {"user": user, "csrf": csrf, **body_context})
