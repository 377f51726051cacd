"""The stream's state per entity beyond the user's hour of velocity: the user's days of spending,
the merchant, the card, and the confirmed frauds learned from late labels.

The stream job keeps one of these per key in Flink keyed state (user, merchant and card are three
keyed operators, so each entity's state lives on exactly one subtask); training, the backtest and
the benchmark's baselines run :class:`StreamFeatures`, which holds the same classes in dicts and
calls the same methods in the same order. There is no second implementation to drift.

Semantics (what a replay must reproduce):

* Every state is bucketed by event time (minutes, hours, days), never by wall clock, and pruned
  relative to the newest event time it has seen (``min(t, newest)``, as the user velocity does, so
  one event far ahead neither wipes the state nor stops its pruning). Its size per key is bounded;
  ``tests/fraud_core/test_entities.py`` measures the pickled bytes per key.
* Windows of minutes count the payment itself (like the user velocity); windows of days describe
  the history *before* the payment (a baseline the payment is compared with).
* A label counts for a payment at event time ``t`` when ``labelled_at <= t`` and the labelled
  payment's event time falls in the window ``[t - delay - w, t - delay]`` (in whole UTC days;
  ``delay`` defaults to 7 days). A label that does not carry its payment's event time counts on
  the day it was labelled. Only fraud labels are kept (the rate's denominator is the entity's own
  payment count); a second label of the same payment keeps the earliest ``labelled_at``. In the job,
  a label counts once it has reached the entity's operator: a label that arrives after a payment
  that could have used it is missed by that payment. Replays apply each label at its
  ``labelled_at`` in event-time order, which the job matches when labels are on the topic before
  the payments they concern (as they are live, and in a backtest of a recorded history).
* Order: like the user's velocity, every feature depends on the order in which the entity's
  payments reach its state. A user's payments share one Kafka partition, so their order is fixed;
  a merchant's or a card's come from several users, so from several input partitions (and, at
  parallelism above 1, from several user subtasks) they interleave in fetch order. A replay
  reproduces the job's merchant and card features exactly when the job read one partition in
  order (``tests/flink_jobs/test_feature_parity.py``); otherwise they can differ by the payments
  that arrived within the same few milliseconds.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from zlib import crc32

from fraud_core.feature_catalog import DAY_MS, HOUR_MS, MINUTE_MS
from fraud_core.features import VelocityState
from fraud_core.labels import Label
from fraud_core.reference import to_eur
from fraud_core.transaction import Transaction

DEFAULT_LABEL_DELAY_MS = 7 * DAY_MS
DAY_WINDOWS: dict[str, int] = {"1d": 1, "7d": 7, "30d": 30}
MINUTE_WINDOWS: dict[str, int] = {"1m": 1, "10m": 10, "1h": 60}
LONGEST_DAYS = max(DAY_WINDOWS.values())
RECENT_DAYS = 7  # frauds paid this recently and already reported, without waiting out the delay
RECENT_LABEL_AGE_MS = DAY_MS  # ... counted once their label is this old (see Frauds.rates)


@cache  # per event on the hot path; two prefixes, built once
def _rate_windows(prefix: str) -> tuple[tuple[str, str, int], ...]:
    """(feature, window label, width in days) of each of ``prefix``'s fraud rates."""
    return tuple((f"{prefix}_fraud_rate_{label}", label, width) for label, width in DAY_WINDOWS.items())


@cache
def _label_names(prefix: str) -> tuple[str, ...]:
    return (*(name for name, _label, _width in _rate_windows(prefix)), f"{prefix}_recent_frauds_7d")


# Distinct cards remembered per merchant minute: beyond it the count saturates (a merchant seeing
# more than this many cards a minute is far past any alert already).
MAX_CARDS_PER_MINUTE = 256
MAX_FRAUDS_PER_KEY = 2_000
MAX_CARD_RECENT = 500
# A card's spending level (see CardState): this far above its usual one, a payment is high.
HIGH_LEVEL = 3.0
MIN_USUAL_PAYMENTS = 5  # ... once the usual rests on this many payments
MIN_LEVEL = 1e-4  # a level's floor before its log (a 0.01 EUR payment at a large merchant)


def _ratio(amount: float, total: float, count: int) -> float:
    """This amount against the average of ``count`` earlier payments (1.0 when there are none)."""
    if count <= 0:
        return 1.0
    return round(amount / max(total / count, 1.0), 4)


# Feature names built once (per event on the hot path): (count, sum, mean) per day window, and
# (count, distinct cards) per minute window.
_DAY_SPEND_NAMES = tuple((f"user_count_{w}", f"user_sum_{w}", f"user_mean_{w}") for w in DAY_WINDOWS)
_MERCHANT_MINUTE_NAMES = tuple((f"merchant_count_{w}", f"merchant_cards_{w}") for w in MINUTE_WINDOWS)


@dataclass(slots=True)
class DaySpend:
    """A user's spending over days: hourly buckets for the last 24 hours, daily buckets for 30 days.

    ``(hour or day index) -> [count, sum in EUR]``: at most 25 + 31 buckets a user, whatever the
    rate of payments.
    """

    hours: dict[int, list[float]] = field(default_factory=dict)
    days: dict[int, list[float]] = field(default_factory=dict)
    newest: int = 0

    def observe(self, t: int, amount: float) -> dict[str, float]:
        """The features of a payment of ``amount`` EUR at ``t`` (from the history before it); then remember it."""
        hour, day = t // HOUR_MS, t // DAY_MS
        n1 = n7 = n30 = 0.0
        s1 = s7 = s30 = 0.0
        for h, (n, total) in self.hours.items():
            if hour - 24 < h <= hour:
                n1 += n
                s1 += total
        for d, (n, total) in self.days.items():
            if day - 30 < d <= day:
                n30 += n
                s30 += total
                if d > day - 7:
                    n7 += n
                    s7 += total
        out: dict[str, float] = {}
        for (count_name, sum_name, mean_name), count, total in zip(
            _DAY_SPEND_NAMES, (n1, n7, n30), (s1, s7, s30), strict=True
        ):
            out[count_name] = count
            out[sum_name] = round(total, 2)
            out[mean_name] = round(total / count, 2) if count else 0.0
        count30 = int(out["user_count_30d"])
        out["amount_to_mean_30d"] = _ratio(amount, out["user_sum_30d"], count30)
        reference = min(t, self.newest) if self.days else t
        self.newest = max(self.newest, t)
        _add(self.hours, hour, amount)
        _add(self.days, day, amount)
        _prune(self.hours, reference // HOUR_MS - 24)
        _prune(self.days, reference // DAY_MS - LONGEST_DAYS)
        return out


def _add(buckets: dict[int, list[float]], index: int, amount: float) -> None:
    bucket = buckets.get(index)
    if bucket is None:
        buckets[index] = [1.0, amount]
    else:
        bucket[0] += 1
        bucket[1] += amount


def _prune(buckets: dict[int, Any], oldest_kept: int) -> None:
    if buckets and min(buckets) < oldest_kept:
        for k in [k for k in buckets if k < oldest_kept]:
            del buckets[k]


@dataclass(slots=True)
class UserState:
    """Everything the job keeps per user: the hour of velocity and the days of spending."""

    velocity: VelocityState = field(default_factory=VelocityState)
    spend: DaySpend = field(default_factory=DaySpend)

    def observe(self, txn: Transaction) -> dict[str, float]:
        out = self.velocity.observe(txn)
        out.update(self.spend.observe(txn.event_time, to_eur(txn.amount_minor, txn.currency)))
        return out

    def to_state(self) -> tuple[Any, ...]:
        s = self.spend
        return self.velocity.to_state(), s.hours, s.days, s.newest

    @classmethod
    def from_state(cls, state: tuple[Any, ...] | None) -> UserState:
        if state is None:
            return cls()
        velocity, hours, days, newest = state
        return cls(VelocityState.from_state(velocity), DaySpend(hours, days, newest))


@dataclass(slots=True)
class Frauds:
    """Confirmed frauds of one merchant or card, learned from labels, and its payments per day
    (the rate's denominator): ``event_id -> (day of the payment, labelled_at)``."""

    delay_ms: int
    confirmed: dict[str, tuple[int, int]] = field(default_factory=dict)
    payments: dict[int, int] = field(default_factory=dict)

    def retained_days(self) -> int:
        return LONGEST_DAYS + -(-self.delay_ms // DAY_MS) + 1

    def learn(self, label: Label) -> None:
        if not label.is_fraud:
            return
        day = (label.event_time if label.event_time is not None else label.labelled_at) // DAY_MS
        known = self.confirmed.get(label.event_id)
        if known is None or label.labelled_at < known[1]:
            self.confirmed[label.event_id] = (day, label.labelled_at)
        if len(self.confirmed) > MAX_FRAUDS_PER_KEY:  # the oldest payments' frauds go first
            oldest = min(self.confirmed, key=lambda e: self.confirmed[e])
            del self.confirmed[oldest]

    def rates(self, t: int, prefix: str) -> dict[str, float]:
        """``<prefix>_fraud_rate_<w>``: frauds known at ``t`` over payments, in ``[t - delay - w, t - delay]``;
        ``<prefix>_recent_frauds_7d``: frauds paid in the last 7 days (by day) whose label is at least
        :data:`RECENT_LABEL_AGE_MS` old at ``t``.

        The rates wait out the label delay so that their denominator is labelled; the recent count
        does not, so an ongoing compromise shows from its first labels rather than a delay later,
        and fades within 7 days of its end (the payments since then are not frauds). It counts a
        label only once it is a day old: a replay reads ``payments.labels`` and the payments at
        different paces, and a label just known could reach the job before or after a payment of
        the same moment; a day is far beyond that skew, so live and replay count the same labels.
        One pass over the confirmed frauds."""
        if not self.confirmed:
            return dict.fromkeys(_label_names(prefix), 0.0)
        end = (t - self.delay_ms) // DAY_MS
        recent_from = t // DAY_MS - RECENT_DAYS
        settled = t - RECENT_LABEL_AGE_MS
        counts = dict.fromkeys(DAY_WINDOWS, 0)
        recent = 0
        for d, known in self.confirmed.values():
            if known > t:
                continue
            if d > recent_from and known <= settled:
                recent += 1
            age = end - d
            if 0 <= age < LONGEST_DAYS:
                for label, width in DAY_WINDOWS.items():
                    if age < width:
                        counts[label] += 1
        out: dict[str, float] = {}
        for name, label, width in _rate_windows(prefix):
            frauds = counts[label]
            payments = sum(c for d, c in self.payments.items() if end - width < d <= end) if frauds else 0
            out[name] = round(frauds / max(payments, frauds, 1), 6)
        out[_label_names(prefix)[-1]] = float(recent)
        return out

    def count_payment(self, t: int, reference: int) -> None:
        day = t // DAY_MS
        self.payments[day] = self.payments.get(day, 0) + 1
        oldest = reference // DAY_MS - self.retained_days()
        _prune(self.payments, oldest)
        if any(d < oldest for d, _ in self.confirmed.values()):
            self.confirmed = {e: v for e, v in self.confirmed.items() if v[0] >= oldest}

    def to_state(self) -> tuple[Any, ...]:
        return self.confirmed, self.payments

    @classmethod
    def from_state(cls, delay_ms: int, state: tuple[Any, ...]) -> Frauds:
        confirmed, payments = state
        return cls(delay_ms, confirmed, payments)


@dataclass(slots=True)
class MerchantState:
    """A merchant's last hour by minute (payments, distinct cards), its daily amounts over 30 days
    (its typical payment), and its confirmed frauds."""

    frauds: Frauds
    minutes: dict[int, list[Any]] = field(default_factory=dict)  # minute -> [count, {card hash}]
    amounts: dict[int, list[float]] = field(default_factory=dict)  # day -> [count, sum EUR]
    newest: int = 0

    def observe(self, txn: Transaction, upstream: Mapping[str, float]) -> dict[str, float]:
        """The merchant's features of ``txn``; then remember it. ``upstream`` (the user hop's
        features) is unused: every entity hop has the same signature."""
        t = txn.event_time
        minute, day = t // MINUTE_MS, t // DAY_MS
        amount = to_eur(txn.amount_minor, txn.currency)
        reference = min(t, self.newest) if self.minutes else t
        self.newest = max(self.newest, t)
        bucket = self.minutes.get(minute)
        if bucket is None:
            bucket = self.minutes[minute] = [0, set()]
        bucket[0] += 1
        if len(bucket[1]) < MAX_CARDS_PER_MINUTE:
            bucket[1].add(crc32(txn.card_id.encode()))
        # The minutes by age, in three rings (under 1, 1-9, 10-59): the windows nest.
        counts = [0, 0, 0]
        rings: list[set[int]] = [set(), set(), set()]
        for m, (n, seen) in self.minutes.items():
            age = minute - m
            if 0 <= age < 60:
                ring = 0 if age < 1 else 1 if age < 10 else 2
                counts[ring] += n
                rings[ring].update(seen)
        counts[1] += counts[0]
        counts[2] += counts[1]
        rings[1] |= rings[0]
        rings[2] |= rings[1]
        cards = rings
        out: dict[str, float] = {}
        for k, (count_name, cards_name) in enumerate(_MERCHANT_MINUTE_NAMES):
            out[count_name] = float(counts[k])
            out[cards_name] = float(len(cards[k]))
        history = [v for d, v in self.amounts.items() if day - LONGEST_DAYS < d <= day]
        out["merchant_amount_ratio"] = _ratio(
            amount, sum(v[1] for v in history), int(sum(v[0] for v in history))
        )
        out.update(self.frauds.rates(t, "merchant"))
        _add(self.amounts, day, amount)
        self.frauds.count_payment(t, reference)
        _prune(self.minutes, reference // MINUTE_MS - 60)
        _prune(self.amounts, reference // DAY_MS - LONGEST_DAYS)
        return out

    def to_state(self) -> tuple[Any, ...]:
        return self.minutes, self.amounts, self.newest, self.frauds.to_state()

    @classmethod
    def from_state(cls, delay_ms: int, state: tuple[Any, ...] | None) -> MerchantState:
        if state is None:
            return cls(Frauds(delay_ms))
        minutes, amounts, newest, frauds = state
        return cls(Frauds.from_state(delay_ms, frauds), minutes, amounts, newest)


@dataclass(slots=True)
class CardState:
    """A card's last ten minutes (merchants, countries), its usual spending level over 30 days, and
    its confirmed frauds.

    The spending level is the payment's ``merchant_amount_ratio`` (the amount against the merchant's
    typical one, from the merchant hop before this one), so it does not depend on which merchants
    the card visits: a customer who spends twice the typical amount everywhere has a level of 2.
    ``levels`` holds ``day -> [payments, sum of log levels, high payments]``: at most 31 buckets.
    A payment at :data:`HIGH_LEVEL`x the usual level or more counts as high and stays out of the
    usual, so a fraudster spending big on the card for days does not become the card's usual.
    """

    frauds: Frauds
    recent: list[tuple[int, str, str]] = field(default_factory=list)  # (event time, merchant, country)
    newest: int = 0
    levels: dict[int, list[float]] = field(default_factory=dict)

    def observe(self, txn: Transaction, upstream: Mapping[str, float]) -> dict[str, float]:
        t = txn.event_time
        reference = min(t, self.newest) if self.recent else t
        self.newest = max(self.newest, t)
        self.recent.append((t, txn.merchant_id, txn.country))
        lo = t - 10 * MINUTE_MS
        window = [e for e in self.recent if lo < e[0] <= t]
        out = {
            "card_merchants_10m": float(len({e[1] for e in window})),
            "card_countries_10m": float(len({e[2] for e in window})),
        }
        out.update(self._level(t, upstream["merchant_amount_ratio"], reference))
        out.update(self.frauds.rates(t, "card"))
        self.frauds.count_payment(t, reference)
        cutoff = reference - 10 * MINUTE_MS
        if self.recent[0][0] <= cutoff or len(self.recent) > MAX_CARD_RECENT:
            self.recent = [e for e in self.recent if e[0] > cutoff][-MAX_CARD_RECENT:]
        return out

    def _level(self, t: int, ratio: float, reference: int) -> dict[str, float]:
        """``card_level_vs_usual`` (this payment's level over the card's usual, the geometric mean of
        its earlier 30 days' levels; 1.0 without history) and ``card_high_levels_7d`` (its high
        payments of the last 7 days before this one)."""
        day = t // DAY_MS
        count = total = high = 0.0
        for d, (n, logs, highs) in self.levels.items():
            if day - LONGEST_DAYS < d <= day:
                count += n
                total += logs
                if d > day - RECENT_DAYS:
                    high += highs
        log_level = math.log(max(ratio, MIN_LEVEL))
        vs_usual = math.exp(log_level - total / count) if count else 1.0
        bucket = self.levels.setdefault(day, [0.0, 0.0, 0.0])
        if count >= MIN_USUAL_PAYMENTS and vs_usual >= HIGH_LEVEL:
            bucket[2] += 1
        else:
            bucket[0] += 1
            bucket[1] += log_level
        _prune(self.levels, reference // DAY_MS - LONGEST_DAYS)
        return {"card_level_vs_usual": round(vs_usual, 4), "card_high_levels_7d": high}

    def to_state(self) -> tuple[Any, ...]:
        return self.recent, self.newest, self.frauds.to_state(), self.levels

    @classmethod
    def from_state(cls, delay_ms: int, state: tuple[Any, ...] | None) -> CardState:
        if state is None:
            return cls(Frauds(delay_ms))
        recent, newest, frauds, levels = state
        return cls(Frauds.from_state(delay_ms, frauds), recent, newest, levels)


class StreamFeatures:
    """Every feature the stream keeps state for, for a whole stream in one process: the job's three
    keyed operators as three dicts. Call :meth:`label` and :meth:`observe` in the order the job
    would see them (:func:`replay` does)."""

    def __init__(self, label_delay_ms: int = DEFAULT_LABEL_DELAY_MS) -> None:
        self.label_delay_ms = label_delay_ms
        self.users: dict[str, UserState] = {}
        self.merchants: dict[str, MerchantState] = {}
        self.cards: dict[str, CardState] = {}

    def observe(self, txn: Transaction) -> dict[str, float]:
        user = self.users.get(txn.user_id)
        if user is None:
            user = self.users[txn.user_id] = UserState()
        out = user.observe(txn)
        out.update(self._merchant(txn.merchant_id).observe(txn, out))
        out.update(self._card(txn.card_id).observe(txn, out))
        return out

    def label(self, label: Label) -> None:
        if label.merchant_id:
            self._merchant(label.merchant_id).frauds.learn(label)
        if label.card_id:
            self._card(label.card_id).frauds.learn(label)

    def _merchant(self, merchant_id: str) -> MerchantState:
        state = self.merchants.get(merchant_id)
        if state is None:
            state = self.merchants[merchant_id] = MerchantState(Frauds(self.label_delay_ms))
        return state

    def _card(self, card_id: str) -> CardState:
        state = self.cards.get(card_id)
        if state is None:
            state = self.cards[card_id] = CardState(Frauds(self.label_delay_ms))
        return state


def replay(
    events: Iterable[Transaction], labels: Iterable[Label], engine: StreamFeatures | None = None
) -> Iterator[tuple[Transaction, dict[str, float]]]:
    """The stream features of ``events`` (in the order given: event-time order for a replay),
    each label applied once its ``labelled_at`` is at or before the payment's event time."""
    engine = engine or StreamFeatures()
    pending = [(lab.labelled_at, i, lab) for i, lab in enumerate(labels)]
    heapq.heapify(pending)
    for txn in events:
        while pending and pending[0][0] <= txn.event_time:
            engine.label(heapq.heappop(pending)[2])
        yield txn, engine.observe(txn)


def label_index(labels: Iterable[Label]) -> Mapping[str, Label]:
    """The label of each payment as known last (the latest ``labelled_at`` wins)."""
    out: dict[str, Label] = {}
    for lab in labels:
        known = out.get(lab.event_id)
        if known is None or lab.labelled_at >= known.labelled_at:
            out[lab.event_id] = lab
    return out
