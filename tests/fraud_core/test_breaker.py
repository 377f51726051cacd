"""The scoring client's circuit breaker, on a clock the test moves by hand."""

from __future__ import annotations

from fraud_core.scoring_client import CircuitBreaker


class fake_clock:  # named like the fakes of tests/README.md
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_the_threshold_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=2.0, clock=fake_clock())
    for _ in range(2):
        breaker.record_failure()
        assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=fake_clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_after_the_pause_exactly_one_probe_goes_through() -> None:
    clock = fake_clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=2.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.allow()
    assert breaker.state == "half-open"
    assert not breaker.allow(), "a second caller must wait for the probe's outcome"


def test_a_failed_probe_opens_again_for_a_full_pause_and_a_good_one_closes() -> None:
    clock = fake_clock()
    breaker = CircuitBreaker(failure_threshold=5, reset_after_s=2.0, clock=clock)
    for _ in range(5):
        breaker.record_failure()
    clock.now += 2.0
    assert breaker.allow()
    breaker.record_failure()  # one failure while probing is enough, whatever the threshold
    assert breaker.state == "open"
    clock.now += 1.0
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()
