"""The merchant, card, days-long and label-driven state against brute-force oracles over the raw
event lists (no buckets, no pruning), and its size per key."""

from __future__ import annotations

import math
import pickle
import random
import uuid
from dataclasses import replace

import pytest

from fraud_core.entities import (
    MAX_CARDS_PER_MINUTE,
    MAX_FRAUDS_PER_KEY,
    CardState,
    DaySpend,
    Frauds,
    MerchantState,
    StreamFeatures,
    UserState,
    replay,
)
from fraud_core.feature_catalog import DAY_MS, FEATURE_NAMES, FEATURES, HOUR_MS, MINUTE_MS, names_from
from fraud_core.labels import Label
from fraud_core.transaction import Transaction

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DELAY = 7 * DAY_MS
BASE = Transaction(
    "00000000-0000-0000-0000-000000000000", "u-1", "c-1", 1000, "EUR", "m-1", "5411", "DE", "POS", T0
)


def _txn(i: int, t: int, **fields: object) -> Transaction:
    return replace(BASE, event_id=str(uuid.UUID(int=i + 1)), event_time=t, **fields)  # type: ignore[arg-type]


def _stream(n: int, span_ms: int, seed: int = 3) -> list[Transaction]:
    rng = random.Random(seed)
    times = sorted(T0 + rng.randrange(span_ms) for _ in range(n))
    return [
        _txn(
            i,
            t,
            amount_minor=rng.randrange(100, 50_000),
            card_id=f"c-{rng.randrange(30)}",
            merchant_id=f"m-{rng.randrange(3)}",
            country=rng.choice(("DE", "FR", "NL")),
        )
        for i, t in enumerate(times)
    ]


def test_days_of_spending_match_the_history_before_each_payment() -> None:
    events = _stream(400, 45 * DAY_MS)
    spend = DaySpend()
    for i, txn in enumerate(events):
        got = spend.observe(txn.event_time, txn.amount_minor / 100)
        earlier = events[:i]
        hour, day = txn.event_time // HOUR_MS, txn.event_time // DAY_MS
        for label, unit, now, width in (
            ("1d", HOUR_MS, hour, 24),
            ("7d", DAY_MS, day, 7),
            ("30d", DAY_MS, day, 30),
        ):
            amounts = [e.amount_minor / 100 for e in earlier if now - width < e.event_time // unit <= now]
            assert got[f"user_count_{label}"] == len(amounts)
            assert got[f"user_sum_{label}"] == pytest.approx(sum(amounts), abs=0.01)
            mean = sum(amounts) / len(amounts) if amounts else 0.0
            assert got[f"user_mean_{label}"] == pytest.approx(mean, abs=0.01)
        amounts30 = [e.amount_minor / 100 for e in earlier if day - 30 < e.event_time // DAY_MS <= day]
        ratio = txn.amount_minor / 100 / max(sum(amounts30) / len(amounts30), 1.0) if amounts30 else 1.0
        assert got["amount_to_mean_30d"] == pytest.approx(ratio, abs=1e-4)


def test_merchant_minutes_count_payments_and_distinct_cards_with_the_payment_itself() -> None:
    events = [e for e in _stream(600, 3 * HOUR_MS) if e.merchant_id == "m-0"]
    state = MerchantState(Frauds(DELAY))
    for i, txn in enumerate(events):
        got = state.observe(txn, {})
        minute = txn.event_time // MINUTE_MS
        for label, width in (("1m", 1), ("10m", 10), ("1h", 60)):
            window = [e for e in events[: i + 1] if minute - width < e.event_time // MINUTE_MS <= minute]
            assert got[f"merchant_count_{label}"] == len(window)
            assert got[f"merchant_cards_{label}"] == len({e.card_id for e in window})
        day = txn.event_time // DAY_MS
        before = [e.amount_minor / 100 for e in events[:i] if day - 30 < e.event_time // DAY_MS <= day]
        typical = sum(before) / len(before) if before else None
        expected = txn.amount_minor / 100 / max(typical, 1.0) if typical is not None else 1.0
        assert got["merchant_amount_ratio"] == pytest.approx(expected, abs=1e-4)


def test_card_counts_merchants_and_countries_of_the_last_ten_minutes() -> None:
    events = [e for e in _stream(3000, 2 * HOUR_MS) if e.card_id == "c-7"]
    assert len(events) > 50
    state = CardState(Frauds(DELAY))
    for i, txn in enumerate(events):
        got = state.observe(txn, {"merchant_amount_ratio": 1.0})
        window = [
            e for e in events[: i + 1] if txn.event_time - 10 * MINUTE_MS < e.event_time <= txn.event_time
        ]
        assert got["card_merchants_10m"] == len({e.merchant_id for e in window})
        assert got["card_countries_10m"] == len({e.country for e in window})


def test_card_level_against_its_usual_and_its_high_payments_of_the_last_7_days() -> None:
    """The card's spending level (the merchant hop's ratio) against the geometric mean of its earlier
    30 days' ordinary levels; a payment 3x its usual or more (once the usual rests on 5 payments) is
    high, stays out of the usual, and counts for 7 days. Checked against the raw list of payments."""
    rng = random.Random(5)
    times = sorted(T0 + rng.randrange(50 * DAY_MS) for _ in range(400))
    # A customer spending about 1.5x the typical amount, then a fortnight where a third is 5x that.
    shifted = range(T0 + 30 * DAY_MS, T0 + 44 * DAY_MS)
    levels = [
        1.5 * math.exp(rng.gauss(0, 0.5)) * (5 if t in shifted and rng.random() < 1 / 3 else 1) for t in times
    ]
    state = CardState(Frauds(DELAY))
    history: list[tuple[int, float, bool]] = []  # (day, log level, high)
    highs_seen = 0
    for i, (t, level) in enumerate(zip(times, levels, strict=True)):
        got = state.observe(_txn(i, t), {"merchant_amount_ratio": round(level, 4)})
        day = t // DAY_MS
        usual = [lg for d, lg, high in history if day - 30 < d <= day and not high]
        expected = math.exp(math.log(round(level, 4)) - sum(usual) / len(usual)) if usual else 1.0
        assert got["card_level_vs_usual"] == pytest.approx(expected, rel=1e-3)
        assert got["card_high_levels_7d"] == sum(1 for d, _, high in history if day - 7 < d <= day and high)
        high = len(usual) >= 5 and expected >= 3.0
        highs_seen += high
        history.append((day, math.log(round(level, 4)), high))
    assert highs_seen > 10  # the shift was seen: the test exercised both paths


def _label(i: int, event_time: int | None, labelled_at: int, fraud: bool = True, **ids: str) -> Label:
    return Label(
        str(uuid.UUID(int=10_000 + i)), fraud, labelled_at, ids.get("card"), ids.get("merchant"), event_time
    )


def test_a_fraud_counts_from_its_labelled_at_for_payments_of_the_delayed_window() -> None:
    frauds = Frauds(DELAY)
    for d in range(26):  # ten payments a day at the merchant, days 0..25
        for k in range(10):
            frauds.count_payment(T0 + d * DAY_MS + k * HOUR_MS, T0 + d * DAY_MS)
    day3 = T0 + 3 * DAY_MS + HOUR_MS
    frauds.learn(_label(1, day3, labelled_at=T0 + 12 * DAY_MS))
    frauds.learn(_label(1, day3, labelled_at=T0 + 13 * DAY_MS))  # the same payment again: once
    frauds.learn(_label(2, day3, labelled_at=T0 + 11 * DAY_MS, fraud=False))  # legitimate: ignored
    # At day 10.5 the delayed 1-day window is day 3, but the label is not known until day 12.
    at = T0 + 10 * DAY_MS + 12 * HOUR_MS
    assert frauds.rates(at, "merchant")["merchant_fraud_rate_1d"] == 0.0
    frauds.learn(_label(3, day3, labelled_at=T0 + 10 * DAY_MS))  # known at day 10: counts
    assert frauds.rates(at, "merchant")["merchant_fraud_rate_1d"] == pytest.approx(1 / 10, abs=1e-6)
    # At day 12.5 the windows end at day 5: 1 day misses day 3; 7 days hold days 0..5 (60 payments).
    rates = frauds.rates(T0 + 12 * DAY_MS + 12 * HOUR_MS, "merchant")
    assert rates["merchant_fraud_rate_1d"] == 0.0
    assert rates["merchant_fraud_rate_7d"] == pytest.approx(2 / 60, abs=1e-6)
    # At day 25.5 they end at day 18: 7 days (12..18) miss it, 30 days hold days 0..18.
    rates = frauds.rates(T0 + 25 * DAY_MS + 12 * HOUR_MS, "merchant")
    assert rates["merchant_fraud_rate_7d"] == 0.0
    assert rates["merchant_fraud_rate_30d"] == pytest.approx(2 / 190, abs=1e-6)


def test_recent_frauds_count_reported_payments_of_the_last_7_days_without_the_delay() -> None:
    """An ongoing compromise shows from its first labels once they are a day old (a replay's two
    sources cannot race for them), not a label delay later, and fades once its payments are more
    than 7 days old, however late their labels keep arriving."""
    frauds = Frauds(DELAY)
    for d in range(20):
        frauds.count_payment(T0 + d * DAY_MS, T0 + d * DAY_MS)
    day10 = T0 + 10 * DAY_MS + HOUR_MS
    frauds.learn(_label(1, day10, labelled_at=day10 + 12 * HOUR_MS))  # reported the same day
    frauds.learn(_label(2, day10, labelled_at=day10 + 4 * DAY_MS))  # reported four days later
    frauds.learn(_label(3, day10, labelled_at=day10 + HOUR_MS, fraud=False))  # legitimate: ignored
    frauds.learn(_label(4, T0 + 2 * DAY_MS, labelled_at=day10))  # paid eight days earlier: not recent
    recent = "merchant_recent_frauds_7d"
    assert frauds.rates(day10 + 13 * HOUR_MS, "merchant")[recent] == 0.0  # known, not yet a day old
    assert frauds.rates(day10 + 36 * HOUR_MS - 1, "merchant")[recent] == 0.0
    at = day10 + 36 * HOUR_MS  # label 1 is a day old
    assert frauds.rates(at, "merchant")[recent] == 1.0
    # The delayed 7-day rate (days -3..4) holds only the older fraud: day 10's wait out the delay.
    assert frauds.rates(at, "merchant")["merchant_fraud_rate_7d"] == pytest.approx(1 / 5, abs=1e-6)
    assert frauds.rates(day10 + 5 * DAY_MS, "merchant")[recent] == 2.0
    assert frauds.rates(T0 + 16 * DAY_MS + HOUR_MS, "merchant")[recent] == 2.0  # day 10 is 6 days old
    assert frauds.rates(T0 + 17 * DAY_MS + HOUR_MS, "merchant")[recent] == 0.0  # 7 days: faded
    assert Frauds(DELAY).rates(at, "card")["card_recent_frauds_7d"] == 0.0


def test_a_label_without_its_payments_time_counts_on_the_day_it_was_labelled() -> None:
    frauds = Frauds(DELAY)
    frauds.count_payment(T0 + 2 * DAY_MS, T0 + 2 * DAY_MS)
    frauds.learn(_label(1, None, labelled_at=T0 + 2 * DAY_MS + HOUR_MS))
    assert frauds.rates(T0 + 9 * DAY_MS + 2 * HOUR_MS, "card")["card_fraud_rate_1d"] == 1.0
    assert frauds.rates(T0 + 8 * DAY_MS, "card")["card_fraud_rate_1d"] == 0.0


def test_replay_applies_each_label_at_its_labelled_at_and_feeds_merchant_and_card() -> None:
    payments = [_txn(i, T0 + i * HOUR_MS, card_id=f"c-{i % 5}", merchant_id="m-0") for i in range(24 * 20)]
    fraud = payments[30]  # day 1
    labels = [
        Label(
            fraud.event_id,
            True,
            fraud.event_time + DELAY + 5 * HOUR_MS,
            fraud.card_id,
            "m-0",
            fraud.event_time,
        )
    ]
    features = dict((t.event_id, f) for t, f in replay(payments, labels))
    known_at = labels[0].labelled_at
    before = [t for t in payments if t.event_time < known_at]
    after = [t for t in payments if known_at <= t.event_time < known_at + DAY_MS * 20]
    assert all(features[t.event_id]["merchant_fraud_rate_30d"] == 0.0 for t in before)
    assert all(features[t.event_id]["merchant_fraud_rate_30d"] > 0.0 for t in after)
    assert features[after[0].event_id]["card_fraud_rate_30d"] > 0.0 or after[0].card_id != fraud.card_id
    same_card = [t for t in after if t.card_id == fraud.card_id]
    assert same_card and all(features[t.event_id]["card_fraud_rate_30d"] > 0.0 for t in same_card)


def test_the_engine_computes_every_stream_feature_and_nothing_else() -> None:
    engine = StreamFeatures()
    got = engine.observe(BASE)
    expected = set(names_from("user") + names_from("merchant") + names_from("card"))
    assert set(got) == expected
    assert set(FEATURE_NAMES) == {f.name for f in FEATURES}


def test_state_per_key_stays_bounded_whatever_the_rate() -> None:
    """The bytes per key CAPACITY.md states: a merchant seeing every card of a city, a user paying
    all day, a card used constantly; measured on the pickled state the job stores."""
    rng = random.Random(1)
    merchant = MerchantState(Frauds(DELAY))
    user = UserState()
    card = CardState(Frauds(DELAY))

    # Every cap reached with as few payments as reach it (each one re-reads the frauds known): a
    # minute of 300 distinct cards a day (5 a second; more than MAX_CARDS_PER_MINUTE) for 40 days
    # (more than any window and the label delay), every payment of the last ten days a fraud
    # (3,000: more than MAX_FRAUDS_PER_KEY). The frauds are learned after the payments: the state
    # kept is the same as if each label came right after its payment (every one is younger than
    # the days retained, and the cap keeps the newest), while each payment made with 2,000 frauds
    # known re-reads them all and took most of the time.
    def time_of(i: int) -> int:
        return T0 + (i // 300) * DAY_MS + (i % 300) * 200

    for i in range(12_000):
        txn = _txn(i, time_of(i), card_id=f"c-{rng.randrange(10**6)}")
        card.observe(txn, merchant.observe(txn, {}))
    for i in range(9_000, 12_000):
        merchant.frauds.learn(_label(i, time_of(i), time_of(i)))
    assert len(merchant.frauds.confirmed) == MAX_FRAUDS_PER_KEY
    for i in range(5_000):
        user.observe(_txn(i, T0 + i * 600_000))  # every 10 minutes for 35 days
    sizes = {
        name: len(pickle.dumps(s.to_state()))
        for name, s in (("merchant", merchant), ("user", user), ("card", card))
    }
    assert all(len(b[1]) <= MAX_CARDS_PER_MINUTE for b in merchant.minutes.values())
    assert len(merchant.minutes) <= 61 and len(merchant.amounts) <= 31
    assert len(user.spend.hours) <= 25 and len(user.spend.days) <= 31
    assert len(card.levels) <= 31
    assert sizes["merchant"] < 400_000, sizes
    assert sizes["user"] < 10_000, sizes
    assert sizes["card"] < 200_000, sizes
