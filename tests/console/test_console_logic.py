"""Pure logic of the console: queue order, the timeout policy, password hashes, sessions, CSRF,
verdict audits and labels, the health summary. No processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import schemas
from console import auth, pages
from console.health import Health, histogram_quantile, parse, summarise
from console.settings import DEV_SECRET_KEY, ConsoleSettings
from console.verdicts import label_record, verdict_audits
from fraud_core import avro
from fraud_core.features import Profile
from fraud_core.review_cases import (
    Case,
    Verdict,
    new_case,
    overdue_cutoff_ms,
    policy_verdict,
    priority,
    recent_entry,
)

T0 = 1_700_000_000_000


def _record(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e-1",
        "user_id": "u-1",
        "decision": "FLAGGED",
        "score": 0.62,
        "threshold": 0.5,
        "model_version": "m1",
        "reasons": ["possible card testing"],
        "degraded": False,
        "features": {"amount_eur": 1.5, "txn_count_1m": 3.0},
        "event_time": T0,
        "decided_at": T0 + 5,
        "card_id": "card-1234",
        "amount_minor": 150,
        "currency": "EUR",
        "merchant_id": "m-9",
        "country": "DE",
        "device_id": None,
        "action": "REVIEW",
        "rules_fired": ["card_testing_probe"],
        "rules_version": "r1",
    }
    return base | overrides


def _case(**overrides: object) -> Case:
    raw = new_case(_record(**overrides), T0 + 10, [recent_entry(_record(event_id="e-0", action="APPROVE"))])
    return Case.from_hash({k.encode(): v.encode() for k, v in raw.items()})


def test_queue_orders_by_risk_first_then_amount() -> None:
    cases = {
        "low risk, huge amount": priority(0.55, 9000.0),
        "high risk, small amount": priority(0.91, 5.0),
        "high risk, larger amount": priority(0.912, 50.0),
        "mid risk": priority(0.7, 100.0),
    }
    order = sorted(cases, key=cases.__getitem__, reverse=True)
    assert order == [
        "high risk, larger amount",
        "high risk, small amount",
        "mid risk",
        "low risk, huge amount",
    ]
    assert priority(1.0, 10**12) > priority(0.99, 10**12)  # huge amounts never overflow into the risk


@pytest.mark.parametrize(
    ("eur", "expected"),
    [(499.99, Verdict.POLICY_APPROVE), (500.0, Verdict.POLICY_APPROVE), (500.01, Verdict.POLICY_BLOCK)],
)
def test_policy_blocks_only_above_the_amount(eur: float, expected: Verdict) -> None:
    assert policy_verdict(eur, 500.0) is expected
    assert expected.by_policy


def test_overdue_cutoff() -> None:
    assert overdue_cutoff_ms(T0, 1.5) == T0 - 1500


def test_a_case_keeps_decision_reasons_features_rules_and_recent_payments() -> None:
    case = _case()
    assert case.is_open and case.event_id == "e-1" and case.card_id == "card-1234"
    assert case.reasons == ["possible card testing"]
    assert case.features == {"amount_eur": 1.5, "txn_count_1m": 3.0}
    assert case.rules_fired == ["card_testing_probe"]
    assert [r["event_id"] for r in case.recent] == ["e-0"]
    assert "card" not in json.dumps(case.recent)  # the recent list never holds the card


def test_password_hash_round_trip_and_refusals() -> None:
    stored = auth.hash_password("s3cret", iterations=100_000)
    assert stored.startswith("pbkdf2_sha256$100000$")
    assert auth.verify_password("s3cret", stored)
    assert not auth.verify_password("S3cret", stored)
    assert not auth.verify_password("s3cret", "plain-text")
    assert auth.hash_password("s3cret", iterations=100_000) != stored  # salted


def test_users_parse_and_errors_name_the_entry_not_the_hash() -> None:
    h = auth.hash_password("pw", iterations=100_000)
    assert auth.parse_users(f"alice:{h}, bob:{h}:lead\n# comment\n") == {
        "alice": auth.User(h, "analyst"),
        "bob": auth.User(h, "lead"),
    }
    with pytest.raises(ValueError, match=r"entry 1 \(alice\): role 'admin'"):
        auth.parse_users(f"alice:{h}:admin")
    assert auth.User(h).fingerprint() != auth.User(h, "lead").fingerprint()
    assert auth.User(h).fingerprint() != auth.User(auth.hash_password("pw", iterations=100_000)).fingerprint()
    with pytest.raises(ValueError, match=r"entry 2 \(bob\)") as err:
        auth.parse_users(f"alice:{h},bob:md5$abc")
    assert "md5$abc" not in str(err.value)
    with pytest.raises(ValueError, match="listed twice"):
        auth.parse_users(f"alice:{h},alice:{h}")


def test_session_signature_expiry_and_csrf() -> None:
    key = b"k" * 32
    s = auth.Session.anonymous(now_s=1000, ttl_s=60).logged_in("alice", 1000, 60)
    cookie = auth.sign_session(s, key)
    assert auth.read_session(cookie, key, 1010) == s
    assert auth.read_session(cookie, key, 1061) is None  # expired
    assert auth.read_session(cookie, b"x" * 32, 1010) is None  # other key
    payload, _, mac = cookie.rpartition(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B") + "." + mac
    assert auth.read_session(forged, key, 1010) is None
    assert auth.csrf_ok(s, s.csrf)
    assert not auth.csrf_ok(s, "wrong")
    assert not auth.csrf_ok(s, None)
    assert not auth.csrf_ok(None, s.csrf)
    assert s.csrf != auth.Session.anonymous(1000, 60).csrf


def test_settings_refuse_development_secrets_outside_local() -> None:
    assert ConsoleSettings(APP_ENV="local").secret_key == DEV_SECRET_KEY.encode()
    assert "analyst" in ConsoleSettings(APP_ENV="local").users()
    with pytest.raises(ValueError, match="CONSOLE_SECRET_KEY"):
        ConsoleSettings(APP_ENV="production")
    with pytest.raises(ValueError, match="CONSOLE_USERS"):
        ConsoleSettings(APP_ENV="production", CONSOLE_SECRET_KEY="x" * 40)
    with pytest.raises(ValueError, match="entry 1"):
        ConsoleSettings(CONSOLE_USERS="alice:nothash")


def test_verdict_audits_carry_actor_and_verdict_and_fit_the_schema() -> None:
    case = _case()
    confirm = verdict_audits(case, Verdict.CONFIRM, "analyst:alice", None, Profile(risk_tier=1), T0, 3600)
    assert [r["action"] for r in confirm] == ["BLOCK_CARD", "RAISE_RISK_TIER"]
    assert {r["action_id"] for r in confirm} == {"e-1:CONFIRM:BLOCK_CARD", "e-1:CONFIRM:RAISE_RISK_TIER"}
    assert "analyst alice" in confirm[0]["detail"] and "card-1234" not in confirm[0]["detail"]
    clear = verdict_audits(case, Verdict.POLICY_APPROVE, "policy", None, Profile(), T0, 3600)
    assert [(r["action"], r["actor"], r["verdict"]) for r in clear] == [
        ("NOTIFY", "policy", "POLICY_APPROVE")
    ]
    assert "review hold on card ****1234 lifted" in clear[0]["detail"]
    for r in [*confirm, *clear]:
        avro.encode(1, schemas.load(schemas.ACTION), r)
    label = label_record(case, Verdict.CLEAR, T0)
    assert label["source"] == "analyst" and label["is_fraud"] is False
    avro.encode(1, schemas.load(schemas.LABEL), label)


def test_health_summary_from_prometheus_text() -> None:
    job = parse(
        "# TYPE flink_taskmanager_job_task_operator_fraud_events_in gauge\n"
        'flink_taskmanager_job_task_operator_fraud_events_in{subtask_index="0"} 600\n'
        'flink_taskmanager_job_task_operator_fraud_events_in{subtask_index="1"} 400\n'
        "# TYPE flink_taskmanager_job_task_operator_fraud_scoring_latency_ms gauge\n"
        'flink_taskmanager_job_task_operator_fraud_scoring_latency_ms{quantile="0.5"} 4.0\n'
        'flink_taskmanager_job_task_operator_fraud_scoring_latency_ms{quantile="0.99"} 21.0\n'
        "# TYPE flink_taskmanager_job_task_operator_fraud_decisions_degraded gauge\n"
        "flink_taskmanager_job_task_operator_fraud_decisions_degraded 3\n"
        "# TYPE flink_taskmanager_job_task_operator_fraud_dlq_records gauge\n"
        'flink_taskmanager_job_task_operator_fraud_dlq_records{dlq="VALIDATION"} 2\n'
    )
    consumers = parse(
        "# TYPE fraud_actions_decisions counter\n"
        'fraud_actions_decisions_total{action="REVIEW"} 7\nfraud_actions_decisions_total{action="BLOCK"} 2\n'
        "# TYPE fraud_actions_dead_letters counter\n"
        'fraud_actions_dead_letters_total{error_type="VALIDATION"} 1\n'
    )
    before = Health(at_s=10.0, events_total=800.0)
    h = summarise({"job": job, "consumers": consumers, "service": None}, before, now_s=12.0)
    assert h.events_total == 1000 and h.events_per_s == 100.0
    assert (h.p50_ms, h.p99_ms) == (4.0, 21.0)
    assert h.decisions == {"REVIEW": 7.0, "BLOCK": 2.0}
    assert (h.dlq, h.degraded) == (3.0, 3.0)
    assert h.up == {"job": True, "consumers": True, "service": False}


def test_histogram_quantile_interpolates_within_the_bucket() -> None:
    samples = parse(
        "# TYPE d histogram\n"
        'd_bucket{le="0.01"} 50\nd_bucket{le="0.02"} 90\nd_bucket{le="+Inf"} 100\nd_count 100\nd_sum 1\n'
    )
    assert histogram_quantile(samples, "d", 0.5) == pytest.approx(0.01)
    assert histogram_quantile(samples, "d", 0.7) == pytest.approx(0.015)
    assert histogram_quantile(samples, "d", 0.99) == pytest.approx(0.02)


def test_pages_show_the_case_in_words_escaped_and_without_the_card() -> None:
    case = _case(reasons=["<script>alert(1)</script> new device"], currency="JPY", amount_minor=1500)
    html = pages.case_page(case, True, "alice", "tok").render()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; new device" in html and "<script>alert" not in html
    assert "payments by this user in the last minute" in html and "amount in EUR" in html
    assert "card-1234" not in html and "****1234 (on review hold)" in html
    assert "1,500 JPY" in html  # the currency's own minor unit
    assert html.count('name="csrf" value="tok"') == 3  # confirm, clear, log out
    queue = pages.queue_page([case], [], {"open": 1, "resolved": 0}, 900, "alice", "tok").render()
    assert f'href="/cases/{case.event_id}"' in queue and "card-1234" not in queue


def test_hash_password_prints_an_entry_with_its_role() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "console", "hash-password", "--name", "bob", "--role", "lead"],
        input="s3cret\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [(name, user)] = auth.parse_users(done.stdout).items()
    assert name == "bob" and user.role == "lead" and auth.verify_password("s3cret", user.password_hash)
