"""Issue 12: a card-testing burst by a user with no profile, on any channel, MCC or currency, is
caught. Checked on the held-out stress set (producers.simulator stress variant: users and merchants
never seen in training, slower timings) with the rules file alone, so it holds whatever the model."""

from __future__ import annotations

from collections import defaultdict

from fraud_core.entities import StreamFeatures
from fraud_core.features import build_features
from fraud_core.rules import APPROVE, load_rules, strongest
from fraud_core.simulator import SimConfig, SimEvent, Simulator

STRESS = SimConfig(seed=1007, n_users=600, n_merchants=200, stress=True, card_testing_rate=0.01)


def _no_profile_bursts() -> list[list[tuple[SimEvent, str]]]:
    """Each card-testing episode of a user without a profile, with the rules' action per payment."""
    simulator = Simulator(STRESS)
    profiles = simulator.profiles()
    rules = load_rules()
    stream = StreamFeatures()
    bursts: dict[str, list[list[tuple[SimEvent, str]]]] = defaultdict(list)
    events = list(simulator.events(count=15_000))  # 22 complete bursts without a profile
    # A user's velocity depends on that user's events alone: only the testers' streams are replayed.
    testers = {e.txn.user_id for e in events if e.fraud_type == "card_testing"} - set(profiles)
    for e in events:
        if e.txn.user_id not in testers:
            continue
        features = build_features(e.txn, stream.observe(e.txn), profiles.get(e.txn.user_id))
        if e.fraud_type != "card_testing" or e.txn.user_id in profiles:
            continue
        # What the rules decide with the model out of the picture (always set only).
        fired = rules.fired(e.txn, features, model_down=False)
        action = strongest([r.action for r in fired])
        groups = bursts[e.txn.user_id]
        if groups and e.txn.event_time - groups[-1][-1][0].txn.event_time < 60_000:
            groups[-1].append((e, action))
        else:
            groups.append([(e, action)])
    return [g for groups in bursts.values() for g in groups if len(g) >= 8]  # complete episodes


def test_every_card_testing_burst_without_profile_is_caught_by_the_rules() -> None:
    bursts = _no_profile_bursts()
    assert len(bursts) >= 10, f"too few complete bursts by users without a profile ({len(bursts)})"
    channels = {e.txn.channel for b in bursts for e, _ in b}
    currencies = {e.txn.currency for b in bursts for e, _ in b}
    categories = {e.txn.merchant_category for b in bursts for e, _ in b}
    assert len(channels) >= 2 and len(currencies) >= 3 and len(categories) >= 5
    for burst in bursts:
        flagged = [action != APPROVE for _, action in burst]
        assert any(flagged[:5]), f"burst of {burst[0][0].txn.user_id} not flagged by its 5th payment"
    payments = [action != APPROVE for b in bursts for _, action in b[4:]]
    assert sum(payments) / len(payments) >= 0.9  # from the 5th payment on, nearly all are flagged
