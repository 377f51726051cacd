"""Unit tests of the simulator: determinism, validity, and each fraud scenario's documented signature
(producers/SCENARIOS.md). No processes."""

from __future__ import annotations

import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from fraud_core import simulator as sim
from fraud_core.feature_catalog import SECONDS_SINCE_PREV_CAP
from fraud_core.features import HORIZON_MS, Profile, VelocityState
from fraud_core.reference import MERCHANT_CATEGORIES, mcc_risk, to_eur
from fraud_core.simulator import EPISODE_TYPES, FRAUD_TYPES, SimConfig, SimEvent, Simulator
from fraud_core.transaction import validate
from producers.avro_file import read_config, read_stream, write_stream

DAY_MS = 86_400_000
# The four minute-scale episodes; the day-scale compromises have tests of their own below.
CLASSIC_TYPES = ("card_testing", "account_takeover", "merchant_burst", "impossible_travel")

# Sparse legit traffic and frequent episodes: many complete episodes in a small stream.
DENSE_FRAUD = SimConfig(
    seed=3,
    n_users=400,
    n_merchants=200,
    rate_eps=3.0,
    card_testing_rate=0.004,
    account_takeover_rate=0.006,
    merchant_burst_rate=0.004,
    impossible_travel_rate=0.006,
    compromised_merchant_rate=0.0,
    spending_shift_rate=0.0,
)
TAIL_MS = 40 * 60_000  # longer than any episode: episodes starting closer to the end may be cut short


@pytest.fixture(scope="module")
def dense() -> tuple[Simulator, list[SimEvent]]:
    s = Simulator(DENSE_FRAUD)
    return s, list(s.events(count=15_000))  # 24-37 complete episodes of each type


@pytest.fixture(scope="module")
def profiles(dense: tuple[Simulator, list[SimEvent]]) -> dict[str, Profile]:
    return dense[0].profiles()


def episodes(events: Iterable[SimEvent], fraud_type: str) -> list[list[SimEvent]]:
    """Fraud events of one type grouped per victim; a victim has one episode at a time, and
    consecutive episodes of one victim are at least the cool-down apart."""
    by_user: dict[str, list[list[SimEvent]]] = defaultdict(list)
    for e in events:
        if e.fraud_type != fraud_type:
            continue
        groups = by_user[e.txn.user_id]
        if groups and e.txn.event_time - groups[-1][-1].txn.event_time < sim.EPISODE_COOLDOWN_MS:
            groups[-1].append(e)
        else:
            groups.append([e])
    return [g for groups in by_user.values() for g in groups]


def complete(groups: list[list[SimEvent]], events: list[SimEvent]) -> list[list[SimEvent]]:
    end = events[-1].txn.event_time
    done = [g for g in groups if g[0].txn.event_time < end - TAIL_MS]
    assert len(done) >= 10, f"too few complete episodes to check ({len(done)})"
    return done


def span_ms(group: list[SimEvent]) -> int:
    return group[-1].txn.event_time - group[0].txn.event_time


# Determinism and validity ---------------------------------------------------------------------


def test_same_seed_same_population_and_stream() -> None:
    a, b = Simulator(SimConfig(seed=11, n_users=300)), Simulator(SimConfig(seed=11, n_users=300))
    assert a.profiles() == b.profiles()
    assert list(a.events(count=2000)) == list(b.events(count=2000))


def test_events_restart_on_each_call() -> None:
    s = Simulator(SimConfig(seed=11, n_users=300))
    assert list(s.events(count=1000)) == list(s.events(count=1000))


def test_different_seed_differs() -> None:
    a, b = Simulator(SimConfig(seed=11, n_users=300)), Simulator(SimConfig(seed=12, n_users=300))
    assert a.profiles() != b.profiles()
    ids_a = {e.txn.event_id for e in a.events(count=1000)}
    assert ids_a.isdisjoint(e.txn.event_id for e in b.events(count=1000))


def test_every_event_is_a_valid_transaction(dense: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = dense
    for e in events:
        assert validate(e.txn.to_record()) == e.txn


def test_ids_are_tokens_and_uuid4(dense: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = dense
    assert len({e.txn.event_id for e in events}) == len(events)
    for e in events[:5000]:
        assert uuid.UUID(e.txn.event_id).version == 4
        assert re.fullmatch(r"card_[0-9a-f]{16}", e.txn.card_id)
        assert e.txn.device_id is None or re.fullmatch(r"dev_[0-9a-f]{12}", e.txn.device_id)


def test_event_time_is_non_decreasing_and_starts_at_start_ms(dense: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = dense
    times = [e.txn.event_time for e in events]
    assert times == sorted(times)
    assert times[0] >= DENSE_FRAUD.start_ms


def test_count_and_duration_bound_the_stream() -> None:
    s = Simulator(SimConfig(seed=5, n_users=200, rate_eps=50))
    assert len(list(s.events(count=777))) == 777
    timed = list(s.events(duration_s=30))
    assert timed and all(e.txn.event_time < s.config.start_ms + 30_000 for e in timed)
    assert 50 * 30 * 0.8 < len(timed) < 50 * 30 * 1.3  # legit rate ~50 eps plus a little fraud
    assert list(s.events(count=0)) == []


def test_invalid_config_is_refused() -> None:
    with pytest.raises(ValueError, match="n_users"):
        SimConfig(n_users=0)
    with pytest.raises(ValueError, match="card_testing_rate"):
        SimConfig(card_testing_rate=1.5)


def test_labels_match_ground_truth(dense: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = dense
    for e in events:
        assert e.is_fraud == (e.fraud_type is not None)
        assert e.fraud_type is None or e.fraud_type in FRAUD_TYPES
        label = e.label_record(delay_ms=5000)
        assert label == {
            "event_id": e.txn.event_id,
            "is_fraud": e.is_fraud,
            "fraud_type": e.fraud_type,
            "labelled_at": e.txn.event_time + 5000,
            "source": "simulator",
            "card_id": e.txn.card_id,
            "merchant_id": e.txn.merchant_id,
            "event_time": e.txn.event_time,
        }


def test_default_config_fraud_share_is_one_to_three_percent() -> None:
    # 10,000 events (2.3 days): the share is 1.8-2.4 % across seeds 1-5, inside the bounds; the
    # compromises (28 days of a merchant, 14 of a customer) mostly start later.
    events = list(Simulator(SimConfig()).events(count=10_000))
    share = sum(e.is_fraud for e in events) / len(events)
    assert 0.01 <= share <= 0.03
    assert set(CLASSIC_TYPES) <= set(Counter(e.fraud_type for e in events if e.is_fraud))


def test_default_config_spans_weeks_of_event_time() -> None:
    """A training-sized stream at the default pace covers 30-60 days: the 7-day label delay and the
    30-day windows see more than their own length. 200,000 events of the default 2,000 customers
    (``ensure_model``'s default) are the same weeks as 20,000 of a tenth of them, each paying at the
    default pace: the tenth is simulated, in a tenth of the time (a 200,000-event stream spans 45
    days, a tenth of it 45-46 days for seeds 1, 7 and 8)."""
    default = SimConfig()
    tenth = replace(
        default,
        n_users=default.n_users // 10,
        n_merchants=default.n_merchants // 10,
        rate_eps=default.rate_eps / 10,
    )
    *_, last = Simulator(tenth).events(count=20_000)
    days = (last.txn.event_time - default.start_ms) / DAY_MS
    assert 30 <= days <= 60


def test_profiles_describe_every_user(
    dense: tuple[Simulator, list[SimEvent]], profiles: dict[str, Profile]
) -> None:
    simulator, _ = dense
    assert set(profiles) == {u.user_id for u in simulator.users if u.has_profile}
    for p in profiles.values():
        assert p.avg_amount > 0 and p.devices and p.countries[0] == p.home_country
        assert p.account_created_ms < DENSE_FRAUD.start_ms
        assert Profile.from_mapping(p.to_mapping()) == p


def test_legit_events_match_the_profile(
    dense: tuple[Simulator, list[SimEvent]], profiles: dict[str, Profile]
) -> None:
    _, events = dense
    legit = [e.txn for e in events if not e.is_fraud and e.txn.user_id in profiles]
    for t in legit:
        p = profiles[t.user_id]
        micro = t.channel in ("ECOM", "MOBILE") and to_eur(t.amount_minor, t.currency) <= 2.0
        # Legit micro-payments sometimes come from a new phone (see SCENARIOS.md).
        assert t.device_id is None or t.device_id in p.devices or micro
        assert t.country in p.countries
    mean_ratio = sum(
        to_eur(t.amount_minor, t.currency) / profiles[t.user_id].avg_amount for t in legit
    ) / len(legit)
    assert 0.7 < mean_ratio < 1.4  # avg_amount is the expected amount of the user's payments


# Scenario signatures (numbers from SCENARIOS.md) ------------------------------------------------


def test_card_testing_signature(
    dense: tuple[Simulator, list[SimEvent]], profiles: dict[str, Profile]
) -> None:
    _, events = dense
    for group in complete(episodes(events, "card_testing"), events):
        txns = [e.txn for e in group]
        assert 8 <= len(txns) <= 15
        assert span_ms(group) <= 55_000
        assert all(to_eur(t.amount_minor, t.currency) < 2.00 for t in txns)
        assert len({t.merchant_id for t in txns}) == len(txns)  # every payment at a different merchant
        assert len({t.channel for t in txns}) == 1 and len({t.country for t in txns}) == 1
        assert len({t.card_id for t in txns}) == 1
        assert len({t.device_id for t in txns}) == 1
        profile = profiles.get(txns[0].user_id)
        if txns[0].channel != "POS" and profile is not None:
            assert txns[0].device_id not in profile.devices


def test_account_takeover_signature(
    dense: tuple[Simulator, list[SimEvent]], profiles: dict[str, Profile]
) -> None:
    simulator, events = dense
    users = {u.user_id: u for u in simulator.users}
    for group in complete(episodes(events, "account_takeover"), events):
        txns = [e.txn for e in group]
        u = users[txns[0].user_id]
        assert 3 <= len(txns) <= 5
        assert span_ms(group) <= 30 * 60_000
        assert len({t.device_id for t in txns}) == 1 and txns[0].device_id not in u.devices
        assert len({t.country for t in txns}) == 1 and len({t.channel for t in txns}) == 1
        assert txns[0].country not in {u.home_country, u.location, *u.visited}
        for t in txns:
            eur = to_eur(t.amount_minor, t.currency)
            assert eur >= 150 and eur >= 6 * u.avg_amount - 0.01
            assert t.channel in ("ECOM", "MOBILE")


def test_merchant_burst_signature(dense: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = dense
    for group in complete(episodes(events, "merchant_burst"), events):
        txns = [e.txn for e in group]
        assert 4 <= len(txns) <= 7
        assert span_ms(group) <= 5 * 60_000
        assert all(mcc_risk(t.merchant_category) == 2 for t in txns)
        assert len({t.merchant_id for t in txns}) == len(txns)
        assert all(30 <= to_eur(t.amount_minor, t.currency) <= 500.01 for t in txns)


def test_impossible_travel_signature(dense: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = dense
    by_user: dict[str, list[SimEvent]] = defaultdict(list)
    for e in events:
        by_user[e.txn.user_id].append(e)
    for group in complete(episodes(events, "impossible_travel"), events):
        txns = [e.txn for e in group]
        assert 2 <= len(txns) <= 3
        assert len({t.country for t in txns}) == 1 and len({t.channel for t in txns}) == 1
        assert txns[0].channel in ("POS", "MOBILE")
        far = txns[0].country
        # The genuine card holder paid at home, on the same card, 1-10 minutes before.
        before = [
            e.txn
            for e in by_user[txns[0].user_id]
            if not e.is_fraud and 0 < txns[0].event_time - e.txn.event_time <= 10 * 60_000
        ]
        anchors = [t for t in before if t.card_id == txns[0].card_id and t.channel == "POS"]
        assert anchors, "no legit payment of the card holder shortly before"
        assert all(sim.COUNTRIES[a.country][1] != sim.COUNTRIES[far][1] for a in anchors)
        assert span_ms(group) + (txns[0].event_time - anchors[-1].event_time) <= 20 * 60_000


def test_velocity_features_see_the_scenarios(dense: tuple[Simulator, list[SimEvent]]) -> None:
    """The shared feature code (fraud_core.features) picks the signatures up in the mixed stream."""
    _, events = dense
    assert SECONDS_SINCE_PREV_CAP * 1000 <= HORIZON_MS  # what makes replaying the last hour enough
    at_last: dict[str, list[dict[str, float]]] = defaultdict(list)
    # Episodes still running when the stream was cut at `count` are incomplete: leave them out.
    cut = events[-1].txn.event_time - 10 * 60_000
    by_user: dict[str, list[SimEvent]] = defaultdict(list)
    for e in events:
        by_user[e.txn.user_id].append(e)
    for fraud_type in CLASSIC_TYPES:
        for group in episodes(events, fraud_type):
            last = group[-1]
            if last.txn.event_time >= cut:
                continue
            # Older events than the longest window change no feature (the gap to the previous
            # event is capped at that window): the user's last hour up to the episode's end is replayed.
            state = VelocityState()
            for e in by_user[last.txn.user_id]:
                if e.txn.event_time > last.txn.event_time - HORIZON_MS:
                    features = state.observe(e.txn)
                if e is last:
                    break
            at_last[fraud_type].append(features)
    assert all(at_last[t] for t in ("card_testing", "merchant_burst", "impossible_travel"))
    assert all(f["txn_count_1m"] >= 8 and f["distinct_merchants_1h"] >= 8 for f in at_last["card_testing"])
    assert all(f["txn_count_10m"] >= 4 for f in at_last["merchant_burst"])
    assert all(f["distinct_countries_1h"] >= 2 for f in at_last["impossible_travel"])


# No shortcuts: variety, users without a profile, reissued cards (issue 12) ----------------------


@pytest.mark.parametrize("fraud_type", CLASSIC_TYPES)
def test_every_scenario_spans_channels_currencies_and_merchant_categories(
    dense: tuple[Simulator, list[SimEvent]], fraud_type: str
) -> None:
    _, events = dense
    txns = [e.txn for e in events if e.fraud_type == fraud_type]
    assert len({t.channel for t in txns}) >= 2
    assert len({t.currency for t in txns}) >= 4
    assert len({t.country for t in txns}) >= 4
    assert len({t.merchant_category for t in txns}) >= 4
    amounts = sorted(to_eur(t.amount_minor, t.currency) for t in txns)
    assert amounts[-1] > 1.5 * amounts[len(amounts) // 10]  # amounts spread within the range


def test_users_without_a_profile_pay_and_are_defrauded(
    dense: tuple[Simulator, list[SimEvent]], profiles: dict[str, Profile]
) -> None:
    simulator, events = dense
    assert 0.04 < sum(not u.has_profile for u in simulator.users) / len(simulator.users) < 0.15
    legit = [e for e in events if not e.is_fraud]
    fraud = [e for e in events if e.is_fraud]
    legit_share = sum(e.txn.user_id not in profiles for e in legit) / len(legit)
    fraud_share = sum(e.txn.user_id not in profiles for e in fraud) / len(fraud)
    assert 0.02 < legit_share < 0.2 and 0.02 < fraud_share < 0.25
    no_profile_testers = {e.txn.user_id for e in fraud if e.fraud_type == "card_testing"} - set(profiles)
    assert no_profile_testers, "card testing never hits a user without a profile"
    young = [p for p in profiles.values() if DENSE_FRAUD.start_ms - p.account_created_ms <= 31 * 86_400_000]
    assert young, "no new customers (accounts of at most 30 days) among the profiled users"


def test_card_is_reissued_after_fraud(dense: tuple[Simulator, list[SimEvent]]) -> None:
    """After confirmed fraud the genuine customer never pays with the defrauded card again (once
    the reissue delay has passed) and continues on a new card the population did not hold."""
    simulator, events = dense
    population_cards = {c for u in simulator.users for c in u.cards}
    by_user: dict[str, list[SimEvent]] = defaultdict(list)
    for e in events:
        by_user[e.txn.user_id].append(e)
    reissued = 0
    for fraud_type in CLASSIC_TYPES:
        for group in complete(episodes(events, fraud_type), events):
            user, card = group[-1].txn.user_id, group[-1].txn.card_id
            after = group[-1].txn.event_time + sim.REISSUE_DELAY_MS[1]
            later = [e.txn for e in by_user[user] if e.txn.event_time > after]
            assert all(t.card_id != card for t in later)
            reissued += any(t.card_id not in population_cards for t in later)
    assert reissued >= 20


def test_stress_variant_is_another_population_with_slower_timings() -> None:
    # More frequent episodes than DENSE_FRAUD: 51 complete takeovers and 43 card tests in 12,000 events.
    config = replace(DENSE_FRAUD, seed=99, stress=True, account_takeover_rate=0.02, card_testing_rate=0.02)
    stress = Simulator(config)
    events = list(stress.events(count=12_000))
    assert events[:2000] == list(Simulator(config).events(count=2000))  # deterministic too
    train = Simulator(DENSE_FRAUD)
    assert not {u.user_id for u in stress.users} & {u.user_id for u in train.users}
    assert not {m.merchant_id for m in stress.merchants} & {m.merchant_id for m in train.merchants}
    assert sum(not u.has_profile for u in stress.users) / len(stress.users) > 0.12
    for group in complete(episodes(events, "account_takeover"), events):
        gaps = [b.txn.event_time - a.txn.event_time for a, b in pairwise(group)]
        assert all(4 * 60_000 <= g < 7 * 60_000 for g in gaps)  # the slow half of 1-7 min
    for group in complete(episodes(events, "card_testing"), events):
        assert span_ms(group) <= 55_000
        assert all(1.0 <= to_eur(e.txn.amount_minor, e.txn.currency) < 2.0 for e in group)


# Avro stream files --------------------------------------------------------------------------------


def test_avro_stream_file_round_trip(tmp_path: Path) -> None:
    config = SimConfig(seed=9, n_users=100)
    events = list(Simulator(config).events(count=2000))
    path = tmp_path / "stream.avro"
    assert write_stream(path, events, config) == 2000
    assert (tmp_path / "stream.labels.avro").exists()
    assert list(read_stream(path)) == events
    assert read_config(path) == config


def _abroad_share(events: list[SimEvent], homes: dict[str, str]) -> float:
    return sum(e.txn.country != homes[e.txn.user_id] for e in events) / len(events)


def test_drift_switch_leaves_the_stream_before_it_unchanged_and_shifts_it_after() -> None:
    base = SimConfig(seed=4, n_users=300)
    plain = list(Simulator(base).events(count=3000))
    shifted = list(Simulator(replace(base, drift_at=1500)).events(count=3000))
    assert [e.txn.to_record() for e in shifted[:1500]] == [e.txn.to_record() for e in plain[:1500]]
    homes = {u.user_id: u.home_country for u in Simulator(base).users}
    unshifted, after = plain[1500:], shifted[1500:]
    assert _abroad_share(after, homes) > _abroad_share(unshifted, homes) + 0.4
    risky = {m for m, (_label, risk) in MERCHANT_CATEGORIES.items() if risk == 2}
    share_risky = [
        sum(e.txn.merchant_category in risky for e in part) / len(part) for part in (unshifted, after)
    ]
    assert share_risky[1] > 2 * share_risky[0]
    median_eur = [
        sorted(to_eur(e.txn.amount_minor, e.txn.currency) for e in part)[len(part) // 2]
        for part in (unshifted, after)
    ]
    assert median_eur[1] > 2 * median_eur[0]
    for e in after:
        validate(e.txn.to_record())
    again = list(Simulator(replace(base, drift_at=1500)).events(count=3000))
    assert [e.txn.to_record() for e in again] == [e.txn.to_record() for e in shifted]


def test_drift_at_must_be_an_event_count() -> None:
    with pytest.raises(ValueError, match="drift_at must be >= 0"):
        SimConfig(drift_at=-1)


# Compromises over days and late labels (issue 22) ---------------------------------------------------

# 300 users paying about 3 times a day for 23 days, with frequent compromises: 7 compromised
# merchants, 32 customers whose spending shifts, 26 cards defrauded after paying at a compromised one.
DAYS = SimConfig(
    seed=5,
    n_users=300,
    n_merchants=100,
    rate_eps=0.01,
    card_testing_rate=0.0002,
    account_takeover_rate=0.0002,
    merchant_burst_rate=0.0002,
    impossible_travel_rate=0.0002,
    compromised_merchant_rate=0.0006,
    spending_shift_rate=0.002,
)


@pytest.fixture(scope="module")
def days() -> tuple[Simulator, list[SimEvent]]:
    s = Simulator(DAYS)
    return s, list(s.events(count=20_000))


def test_compromises_are_deterministic(days: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = days
    assert list(Simulator(DAYS).events(count=20_000)) == events
    other = list(Simulator(replace(DAYS, seed=6)).events(count=20_000))
    assert {e.txn.merchant_id for e in other if e.fraud_type == "compromised_merchant"} != {
        e.txn.merchant_id for e in events if e.fraud_type == "compromised_merchant"
    }


def test_every_payment_at_a_compromised_merchant_is_fraud_for_up_to_28_days(
    days: tuple[Simulator, list[SimEvent]],
) -> None:
    simulator, events = days
    by_merchant: dict[str, list[SimEvent]] = defaultdict(list)
    for e in events:
        by_merchant[e.txn.merchant_id].append(e)
    compromised = {e.txn.merchant_id for e in events if e.fraud_type == "compromised_merchant"}
    assert len(compromised) >= 4
    categories = {m.merchant_id: m.mcc for m in simulator.merchants}
    assert len({categories[m] for m in compromised}) >= 3  # not tied to one kind of merchant
    windows = 0
    for merchant in compromised:
        paid = by_merchant[merchant]
        times = [e.txn.event_time for e in paid if e.fraud_type == "compromised_merchant"]
        start = times[0]
        while True:
            last = max(t for t in times if t < start + 28 * DAY_MS)
            windows += 1
            # Every payment there from the first to the last compromised one is fraud (another
            # episode's fraud may pass through the merchant too).
            assert all(e.is_fraud for e in paid if start <= e.txn.event_time <= last)
            later = [t for t in times if t >= start + 28 * DAY_MS]
            if not later:
                break
            start = later[0]
    assert windows >= len(compromised)


def test_payments_at_a_compromised_merchant_are_the_customers_own(
    days: tuple[Simulator, list[SimEvent]],
) -> None:
    """No shortcut: what makes them fraud is where they were paid, nothing in the payment itself
    (the customer's own device, country and amounts)."""
    simulator, events = days
    profiles = simulator.profiles()
    txns = [e.txn for e in events if e.fraud_type == "compromised_merchant" and e.txn.user_id in profiles]
    assert len(txns) >= 100
    for t in txns:
        p = profiles[t.user_id]
        micro = t.channel in ("ECOM", "MOBILE") and to_eur(t.amount_minor, t.currency) <= 2.0
        assert t.device_id is None or t.device_id in p.devices or micro
        assert t.country in p.countries
    ratio = sum(to_eur(t.amount_minor, t.currency) / profiles[t.user_id].avg_amount for t in txns) / len(txns)
    assert 0.5 < ratio < 2.0


def test_cards_that_paid_at_a_compromised_merchant_are_defrauded_days_later(
    days: tuple[Simulator, list[SimEvent]],
) -> None:
    _, events = days
    first_there: dict[str, int] = {}
    for e in events:
        if e.fraud_type == "compromised_merchant":
            first_there.setdefault(e.txn.card_id, e.txn.event_time)
    stolen: dict[str, list[SimEvent]] = defaultdict(list)
    for e in events:
        if e.fraud_type == "compromised_card":
            stolen[e.txn.card_id].append(e)
    assert len(stolen) >= 10
    for card, group in stolen.items():
        assert card in first_there, "a card defrauded without having paid at a compromised merchant"
        lag = group[0].txn.event_time - first_there[card]
        assert 2 * DAY_MS <= lag < 14 * DAY_MS
        end = events[-1].txn.event_time
        if group[0].txn.event_time < end - TAIL_MS:
            assert 2 <= len(group) <= 4
            assert span_ms(group) <= 3 * 30 * 60_000
        assert len({e.txn.channel for e in group}) == 1 and len({e.txn.country for e in group}) == 1
    # About 30% of the cards seen there, counting those with time left for their fraud to come.
    settled = [c for c, t in first_there.items() if t < events[-1].txn.event_time - 14 * DAY_MS]
    share = sum(c in stolen for c in settled) / len(settled)
    assert 0.15 < share < 0.45


def test_spending_shift_multiplies_a_third_of_the_payments_for_14_days(
    days: tuple[Simulator, list[SimEvent]],
) -> None:
    simulator, events = days
    avg = {u.user_id: u.avg_amount for u in simulator.users}
    profiles = simulator.profiles()
    shifted: dict[str, list[SimEvent]] = defaultdict(list)
    for e in events:
        if e.fraud_type == "spending_shift":
            shifted[e.txn.user_id].append(e)
    assert len(shifted) >= 15
    in_window = 0
    total = 0
    for user, group in shifted.items():
        first, last = group[0].txn.event_time, group[-1].txn.event_time
        assert last - first <= 14 * DAY_MS
        own = [e for e in events if e.txn.user_id == user and first <= e.txn.event_time <= last]
        in_window += len(group)
        total += len(own)
        for e in group:  # the customer's usual merchants, devices and country: only the amount changes
            assert e.txn.country in ((*profiles[user].countries,) if user in profiles else (e.txn.country,))
    assert 0.25 < in_window / total < 0.6  # a third of the payments, counted from the first shifted one
    ratios = [
        to_eur(e.txn.amount_minor, e.txn.currency) / avg[e.txn.user_id] for g in shifted.values() for e in g
    ]
    assert 3.5 < sum(ratios) / len(ratios) < 7.5  # five times the usual (whose mean ratio is ~1)


def test_the_new_types_are_labelled_and_triggered(days: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = days
    assert {"compromised_merchant", "spending_shift", "compromised_card"} <= set(FRAUD_TYPES)
    assert set(EPISODE_TYPES) == set(DAYS.fraud_rates())
    seen = Counter(e.fraud_type for e in events if e.is_fraud)
    assert set(seen) == set(FRAUD_TYPES)


def test_labels_arrive_days_late_and_some_never(dense: tuple[Simulator, list[SimEvent]]) -> None:
    _, events = dense
    delays = [e.label_delay_ms for e in events]
    missing = sum(d is None for d in delays) / len(delays)
    assert 0.035 < missing < 0.065  # 5 %
    known = sorted(d for d in delays if d is not None)
    assert known[0] >= 12 * 3_600_000 and known[-1] <= 60 * DAY_MS
    q = [known[int(f * len(known))] / DAY_MS for f in (0.05, 0.5, 0.95)]
    # lognormal, median 6 days, sigma 0.7: 6 * exp(-+1.645 * 0.7) = 1.90 and 18.9 days
    assert 1.6 < q[0] < 2.2 and 5.5 < q[1] < 6.5 and 16 < q[2] < 22
    fraud_missing = sum(e.label_delay_ms is None for e in events if e.is_fraud)
    assert fraud_missing > 0, "every fraud's label arrives: none is missed"
    for e in events[:3000]:
        label = e.simulated_label()
        if e.label_delay_ms is None:
            assert label is None and e.labelled_at is None
        else:
            assert label == e.label_record(e.label_delay_ms)
            assert label["labelled_at"] == e.labelled_at == e.txn.event_time + e.label_delay_ms
    # The fixed-delay record callers used before is unchanged.
    assert events[0].label_record()["labelled_at"] == events[0].txn.event_time


def test_label_delays_survive_a_stream_file(tmp_path: Path) -> None:
    events = list(Simulator(SimConfig(seed=9, n_users=100)).events(count=500))
    path = tmp_path / "stream.avro"
    write_stream(path, events)
    again = list(read_stream(path))
    assert [e.label_delay_ms for e in again] == [e.label_delay_ms for e in events]
    assert len({e.label_delay_ms for e in events}) > 400  # drawn per label, not one constant


def test_an_id_salt_renames_users_merchants_and_cards_and_changes_nothing_else() -> None:
    plain_sim, salted_sim = (
        Simulator(SimConfig(seed=4, n_users=200)),
        Simulator(SimConfig(seed=4, n_users=200, id_salt="run1")),
    )
    plain, salted = list(plain_sim.events(count=3000)), list(salted_sim.events(count=3000))
    plain_ids = (
        {e.txn.user_id for e in plain} | {e.txn.merchant_id for e in plain} | {e.txn.card_id for e in plain}
    )
    salted_ids = {e.txn.user_id for e in salted} | {e.txn.merchant_id for e in salted}
    salted_ids |= {e.txn.card_id for e in salted}
    assert plain_ids.isdisjoint(salted_ids)
    assert all(re.fullmatch(r"card_[0-9a-f]{16}", e.txn.card_id) for e in salted)
    assert all(e.txn.user_id.startswith("user_run1_") for e in salted)
    # The same stream otherwise: amounts, times, labels and their delays, event ids.
    fields = ("event_id", "amount_minor", "currency", "country", "channel", "event_time", "merchant_category")
    assert [[getattr(e.txn, f) for f in fields] + [e.fraud_type, e.label_delay_ms] for e in plain] == [
        [getattr(e.txn, f) for f in fields] + [e.fraud_type, e.label_delay_ms] for e in salted
    ]
    assert (
        Simulator(SimConfig(seed=4, n_users=200, id_salt="run2")).users[0].cards != salted_sim.users[0].cards
    )
    with pytest.raises(ValueError, match="id_salt"):
        SimConfig(id_salt="Bad Salt")
