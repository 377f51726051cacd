"""The decision rules: the file format and its validation, evaluation beside the model, hot reload,
and the one function (``decide``) that every path decides with."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from fraud_core.decision import ScoreResult, decide, degraded_result, model_action
from fraud_core.entities import StreamFeatures
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.features import BLOCKLIST_REASON, build_features
from fraud_core.reference import CHANNELS, CURRENCIES, MERCHANT_CATEGORIES, to_eur
from fraud_core.rules import (
    DEFAULT_RULES_FILE,
    FALLBACK_VERSION,
    RuleBook,
    RulesError,
    WatchedRules,
    load_rules,
    parse_rules,
)
from fraud_core.settings import ScoringClientSettings
from fraud_core.transaction import Transaction

T0 = 1_767_225_600_000
TXN = Transaction(
    event_id=str(uuid.uuid4()),
    user_id="u-1",
    card_id="c-1",
    amount_minor=100,
    currency="EUR",
    merchant_id="m-1",
    merchant_category="5816",
    country="DE",
    channel="ECOM",
    event_time=T0,
)
NEUTRAL = dict.fromkeys(FEATURE_NAMES, 0.0)
MODEL = ScoreResult(0.1, 0.5, "hgb-1", [], block_threshold=0.9)

GOOD = """
version = "t-1"
[[sets.always]]
id = "tiny_ecom"
action = "REVIEW"
reason = "tiny online payment"
when = [
  { field = "amount_eur", op = "<", value = 2 },
  { field = "channel", op = "in", value = ["ECOM", "MOBILE"] },
]
[[sets.always]]
id = "jpy_burst"
action = "BLOCK"
reason = "yen burst"
when = [{ field = "currency", op = "==", value = "JPY" }, { field = "txn_count_1m", op = ">=", value = 3 }]
[[sets.fallback]]
id = "fallback_foreign"
action = "REVIEW"
reason = "abroad"
when = [{ field = "is_foreign", op = "==", value = 1 }]
"""


def _bad(rule: str, sets: str = "") -> str:
    return f'version = "t-2"\n[sets]\nfallback = []\n{sets}[[sets.always]]\n{rule}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            _bad(
                'id = "r1"\naction = "BLOCK"\nreason = "x"\nwhen = [{field = "txn_count_1x", op = ">", value = 1}]'
            ),
            ["rule 'r1'", "when[0]", "unknown field 'txn_count_1x'"],
        ),
        (
            _bad(
                'id = "r2"\naction = "DECLINE"\nreason = "x"\nwhen = [{field = "txn_count_1m", op = ">", value = 1}]'
            ),
            ["rule 'r2'", "field action", "'DECLINE'"],
        ),
        (
            _bad(
                'id = "r3"\naction = "BLOCK"\nreason = "x"\nwhen = [{field = "txn_count_1m", op = "=>", value = 1}]'
            ),
            ["rule 'r3'", "when[0].op", "'=>'"],
        ),
        (
            _bad(
                'id = "r4"\naction = "BLOCK"\nreason = "x"\nwhen = [{field = "txn_count_1m", op = ">", value = "5"}]'
            ),
            ["rule 'r4'", "when[0]", "must be a number"],
        ),
        (
            _bad(
                'id = "r5"\naction = "BLOCK"\nreason = "x"\nwhen = [{field = "channel", op = "in", value = "ECOM"}]'
            ),
            ["rule 'r5'", "when[0]", "list of strings"],
        ),
        (
            _bad(
                'id = "r6"\naction = "BLOCK"\nreason = "x"\nwhen = [{field = "channel", op = ">", value = "ECOM"}]'
            ),
            ["rule 'r6'", "when[0]", "does not apply to the text field 'channel'"],
        ),
        (_bad('id = "r7"\naction = "BLOCK"\nreason = "x"\nwhen = []'), ["rule 'r7'", "field when"]),
        (
            _bad('id = "r8"\naction = "REVIEW"\nwhen = [{field = "txn_count_1m", op = ">", value = 1}]'),
            ["rule 'r8'", "field reason", "Field required"],
        ),
        (
            _bad(
                'id = "Bad Id"\naction = "REVIEW"\nreason = "x"\nwhen = [{field = "txn_count_1m", op = ">", value = 1}]'
            ),
            ["rule 'Bad Id'", "field id"],
        ),
        (
            _bad(
                'id = "r9"\naction = "REVIEW"\nreason = "x"\ncolour = "red"\n'
                'when = [{field = "txn_count_1m", op = ">", value = 1}]'
            ),
            ["rule 'r9'", "field colour", "Extra inputs"],
        ),
        (
            _bad(
                'id = "dup"\naction = "REVIEW"\nreason = "x"\nwhen = [{field = "txn_count_1m", op = ">", value = 1}]\n'
                '[[sets.always]]\nid = "dup"\naction = "BLOCK"\nreason = "y"\n'
                'when = [{field = "txn_count_1m", op = ">", value = 2}]'
            ),
            ["'dup' is declared twice"],
        ),
        (
            'version = "t"\n[[sets.always]]\nid = "a"\naction = "REVIEW"\nreason = "x"\n'
            'when = [{field = "txn_count_1m", op = ">", value = 1}]',
            ["['fallback'] missing"],
        ),
        ('version = "t"\n[sets]\nalways = []\nfallback = []\nsometimes = []', ["sets.sometimes"]),
        ("[sets]\nalways = []\nfallback = []", ["field version", "Field required"]),
        ("version = ", ["not valid TOML"]),
    ],
)
def test_bad_rule_files_are_refused_naming_the_rule_and_the_field(text: str, expected: list[str]) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "rules/bad.toml")
    message = str(caught.value)
    assert "rules/bad.toml" in message
    for part in expected:
        assert part in message, message


def test_the_shipped_rules_file_loads_and_has_both_sets() -> None:
    rules = load_rules()
    assert rules.version.startswith("2026-") and "+" in rules.version
    assert {r.id for r in rules.always} >= {"card_testing_burst", "card_testing_probe"}
    assert rules.fallback, "the outage fallback is a rule set of the file"
    assert load_rules(DEFAULT_RULES_FILE) == rules


def test_a_missing_rules_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"nope\.toml"):
        load_rules(tmp_path / "nope.toml")


def test_settings_refuse_a_bad_rules_file_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(
        _bad('id = "r1"\naction = "BLOCK"\nreason = "x"\nwhen = [{field = "nope", op = ">", value = 1}]')
    )
    with pytest.raises(ValueError, match="rule 'r1'"):
        ScoringClientSettings(RULES_FILE=str(bad))
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    assert str(good.resolve()) == ScoringClientSettings(RULES_FILE=str(good)).RULES_FILE


def _decide(
    features: dict[str, float], result: ScoreResult = MODEL, blocked: bool = False, **txn: Any
) -> dict[str, Any]:
    payment = dataclasses.replace(TXN, **txn)
    features = {**features, "amount_eur": to_eur(payment.amount_minor, payment.currency)}
    return decide(payment, features, result, blocked, False, T0 + 1, parse_rules(GOOD))


@pytest.mark.parametrize(
    ("score", "features", "txn", "blocked", "action", "fired"),
    [
        (0.10, {}, {"amount_minor": 5000}, False, "APPROVE", []),
        (0.60, {}, {"amount_minor": 5000}, False, "REVIEW", []),  # score >= review threshold
        (0.95, {}, {"amount_minor": 5000}, False, "BLOCK", []),  # score >= block threshold
        (0.10, {}, {}, False, "REVIEW", ["tiny_ecom"]),  # a rule raises APPROVE to REVIEW
        (0.95, {}, {}, False, "BLOCK", ["tiny_ecom"]),  # a rule never lowers the model's BLOCK
        (
            0.10,
            {"txn_count_1m": 3.0},
            {"currency": "JPY", "amount_minor": 50_000},
            False,
            "BLOCK",
            ["jpy_burst"],
        ),
        (
            0.10,
            {"txn_count_1m": 3.0},
            {"currency": "JPY", "amount_minor": 100},
            False,
            "BLOCK",
            ["tiny_ecom", "jpy_burst"],
        ),
        (0.10, {}, {"amount_minor": 5000, "channel": "POS"}, True, "BLOCK", []),  # the blocklist
        (0.10, {"is_foreign": 1.0}, {"amount_minor": 5000}, False, "APPROVE", []),  # fallback set idle
    ],
)
def test_model_rules_and_blocklist_combine_into_the_most_severe_action(
    score: float,
    features: dict[str, float],
    txn: dict[str, Any],
    blocked: bool,
    action: str,
    fired: list[str],
) -> None:
    record = _decide({**NEUTRAL, **features}, dataclasses.replace(MODEL, score=score), blocked, **txn)
    assert record["action"] == action
    assert record["decision"] == ("APPROVED" if action == "APPROVE" else "FLAGGED")
    assert record["rules_fired"] == fired
    assert record["rules_version"] == parse_rules(GOOD).version
    assert record["block_threshold"] == 0.9
    rule_reasons = {"tiny_ecom": "tiny online payment", "jpy_burst": "yen burst"}
    assert record["reasons"] == [BLOCKLIST_REASON] * blocked + [rule_reasons[f] for f in fired]


def test_when_the_model_is_down_the_fallback_set_decides_through_the_same_function() -> None:
    down = degraded_result()
    assert model_action(down) == "APPROVE"
    record = _decide({**NEUTRAL, "is_foreign": 1.0}, down, amount_minor=5000)
    assert record["action"] == "REVIEW" and record["rules_fired"] == ["fallback_foreign"]
    assert record["degraded"] and record["model_version"] == FALLBACK_VERSION
    quiet = _decide(dict(NEUTRAL), down, amount_minor=5000)
    assert quiet["action"] == "APPROVE" and quiet["decision"] == "APPROVED"


def test_a_card_without_block_threshold_never_blocks_on_the_score_alone() -> None:
    assert model_action(ScoreResult(0.999, 0.5, "old-card", [])) == "REVIEW"


def _burst(channel: str, mcc: str, currency: str, n: int = 10) -> list[dict[str, float]]:
    """A card-testing burst by a user with no stored profile: ~1 EUR at a new merchant every 3 s."""
    exponent = CURRENCIES[currency][0]
    rate = CURRENCIES[currency][1]
    amount = max(1, round(1.0 / rate * 10**exponent))  # about 1 EUR in that currency
    state = StreamFeatures()
    out = []
    for i in range(n):
        txn = dataclasses.replace(
            TXN,
            event_id=str(uuid.uuid4()),
            user_id="u-unknown",
            amount_minor=amount,
            currency=currency,
            merchant_id=f"m-{i}",
            merchant_category=mcc,
            channel=channel,
            event_time=T0 + 3000 * i,
        )
        features = build_features(txn, state.observe(txn), None)
        out.append(
            decide(
                txn,
                features,
                ScoreResult(0.01, 0.5, "hgb-1", [], block_threshold=0.9),
                False,
                False,
                0,
                load_rules(),
            )
        )
    return out


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(
    ("mcc", "currency"), [("5411", "EUR"), ("4111", "JPY"), ("5999", "GBP"), ("0742", "INR")]
)
def test_a_card_testing_burst_without_profile_is_caught_by_the_rules_on_any_channel_mcc_currency(
    channel: str, mcc: str, currency: str
) -> None:
    decisions = _burst(channel, mcc, currency)
    actions = [d["action"] for d in decisions]
    assert actions[:2] == ["APPROVE", "APPROVE"]  # two payments are no pattern yet
    assert all(a != "APPROVE" for a in actions[2:]), actions
    assert all(a == "BLOCK" for a in actions[4:]), actions
    assert "card_testing_burst" in decisions[-1]["rules_fired"]
    assert mcc in MERCHANT_CATEGORIES or mcc == "0742"


def test_rules_reload_when_the_file_changes_and_a_bad_edit_keeps_the_old_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD)
    now = [0.0]
    watched = WatchedRules(path, check_every_s=1.0, clock=lambda: now[0])
    first = watched.current()
    assert [r.id for r in first.always] == ["tiny_ecom", "jpy_burst"]

    path.write_text(GOOD.replace('version = "t-1"', 'version = "t-2"').replace("tiny online", "small online"))
    os.utime(path, ns=(1, 1))  # a different modification time, whatever the file system's resolution
    now[0] = 0.5
    assert watched.current() is first  # looked at most once a second
    now[0] = 1.5
    second = watched.current()
    assert second.version.startswith("t-2+") and second.always[0].reason == "small online payment"

    path.write_text(GOOD.replace('action = "REVIEW"', 'action = "MAYBE"', 1))
    os.utime(path, ns=(2, 2))
    now[0] = 3.0
    assert watched.current() is second  # refused, logged; the rules in force stay

    path.write_text(GOOD.replace('version = "t-1"', 'version = "t-3"'))
    os.utime(path, ns=(3, 3))
    now[0] = 4.5
    assert watched.current().version.startswith("t-3+")


def test_a_rule_book_is_its_own_source() -> None:
    rules = parse_rules(GOOD)
    assert isinstance(rules, RuleBook) and rules.current() is rules
