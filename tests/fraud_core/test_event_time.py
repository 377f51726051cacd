"""Bounds of ``event_time`` on intake: an event far in the future (which would move the user's
velocity horizon and wipe the history) or absurdly old is refused, naming the field and the value,
and goes to the DLQ as VALIDATION. Unit tier: no processes."""

from __future__ import annotations

from typing import Any

import pytest

import schemas
from flink_jobs.settings import JobSettings
from fraud_core import avro
from fraud_core.exceptions import ValidationError
from fraud_core.features import VelocityState
from fraud_core.scoring_step import Intake
from fraud_core.transaction import DAY_MS, EventTimeBounds, Transaction, validate
from tests.records import NOW, payment

MINUTE = 60_000


@pytest.mark.parametrize(
    ("event_time", "bounds", "says"),
    [
        (NOW + DAY_MS + 1, EventTimeBounds(), "ahead of the processing time"),
        (2**62, EventTimeBounds(), "beyond year 9999"),
        (NOW + 10 * MINUTE + 1, EventTimeBounds(max_ahead_ms=10 * MINUTE), "ahead"),
        (1, EventTimeBounds(), "before 2000-01-01"),
        (946_684_799_999, EventTimeBounds(), "before 2000-01-01"),
        (NOW - 30 * DAY_MS - 1, EventTimeBounds(max_age_ms=30 * DAY_MS), "behind the processing time"),
    ],
)
def test_an_event_time_out_of_bounds_is_refused_naming_field_and_value(
    event_time: int, bounds: EventTimeBounds, says: str
) -> None:
    with pytest.raises(ValidationError) as info:
        validate(payment(event_time=event_time), bounds, now_ms=NOW)
    assert info.value.field == "event_time" and info.value.error_type == "VALIDATION"
    assert f"'event_time'={event_time}" in str(info.value) and says in str(info.value)


@pytest.mark.parametrize(
    ("event_time", "bounds"),
    [
        (NOW + DAY_MS, EventTimeBounds()),
        (NOW - 5 * 365 * DAY_MS, EventTimeBounds()),  # old topics replay: no max age by default
        (946_684_800_000, EventTimeBounds()),
        (NOW - 30 * DAY_MS, EventTimeBounds(max_age_ms=30 * DAY_MS)),
    ],
)
def test_an_event_time_within_bounds_passes(event_time: int, bounds: EventTimeBounds) -> None:
    assert validate(payment(event_time=event_time), bounds, now_ms=NOW).event_time == event_time


class fake_registry:  # named like the fakes of tests/README.md
    def parsed_schema(self, schema_id: int) -> Any:
        return schemas.load(schemas.TRANSACTION)


def test_intake_refuses_a_future_event_so_the_velocity_history_survives() -> None:
    intake = Intake(fake_registry(), None, "dlq", "test", EventTimeBounds())  # type: ignore[arg-type]
    velocity = VelocityState()
    for _ in range(3):
        velocity.observe(intake.decode(avro.encode(1, schemas.load(schemas.TRANSACTION), payment()), NOW))
    future = avro.encode(1, schemas.load(schemas.TRANSACTION), payment(event_time=NOW + 400 * DAY_MS))
    with pytest.raises(ValidationError, match="event_time"):
        intake.decode(future, NOW)
    txn = intake.decode(avro.encode(1, schemas.load(schemas.TRANSACTION), payment()), NOW)
    assert velocity.observe(txn)["txn_count_1m"] == 4


def test_a_future_event_that_gets_past_the_bound_does_not_wipe_the_history() -> None:
    """The second defence: the velocity state prunes relative to the events before a far-future
    one, so the history it already holds survives it (on the old code the count here was 1)."""
    velocity = VelocityState()
    txn = Transaction(**payment())
    for _ in range(3):
        velocity.observe(txn)
    velocity.observe(Transaction(**payment(event_time=NOW + 400 * DAY_MS)))
    assert velocity.observe(txn)["txn_count_1m"] == 4


def test_the_job_settings_carry_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (JobSettings().EVENT_TIME_MAX_AHEAD_MS, JobSettings().EVENT_TIME_MAX_AGE_MS) == (DAY_MS, None)
    monkeypatch.setenv("EVENT_TIME_MAX_AGE_MS", str(30 * DAY_MS))
    assert JobSettings().EVENT_TIME_MAX_AGE_MS == 30 * DAY_MS
