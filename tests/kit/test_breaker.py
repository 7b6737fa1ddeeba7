"""CircuitBreaker state machine, driven by an injected clock."""

from __future__ import annotations

import pytest

from kindred.kit.breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("test", failure_threshold=3, reset_timeout=5.0, clock=clock)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()


def test_new_breaker_is_closed_and_allows_calls(breaker: CircuitBreaker) -> None:
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(10))


def test_failures_below_threshold_keep_it_closed(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_threshold_consecutive_failures_open_it_and_refuse_calls(breaker: CircuitBreaker) -> None:
    trip(breaker)
    assert breaker.state == "open"
    assert not breaker.allow()


def test_a_success_resets_the_consecutive_failure_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_it_stays_open_until_the_reset_timeout_has_passed(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(4.99)
    assert breaker.state == "open"
    assert not breaker.allow()


def test_after_the_reset_timeout_it_is_half_open_and_lets_exactly_one_trial_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    trip(breaker)
    clock.advance(5.0)
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()
    assert not breaker.allow()
    assert breaker.state == "half_open"


def test_a_successful_trial_closes_it(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(5.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(5))


def test_a_failed_trial_reopens_it_for_a_full_reset_timeout(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(5.0)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()


def test_after_closing_it_takes_the_full_threshold_to_open_again(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(5.0)
    breaker.allow()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"


def test_a_trial_that_never_reports_is_replaced_after_another_reset_timeout(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    trip(breaker)
    clock.advance(5.0)
    assert breaker.allow()  # this trial's caller is cancelled and never reports
    clock.advance(4.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()
    assert not breaker.allow()


def test_a_threshold_of_one_opens_on_the_first_failure(clock: FakeClock) -> None:
    breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout=1.0, clock=clock)
    breaker.record_failure()
    assert breaker.state == "open"


@pytest.mark.parametrize(("threshold", "reset_timeout"), [(0, 5.0), (-1, 5.0), (3, 0.0), (3, -1.0), (3, float("nan"))])
def test_invalid_settings_are_rejected(threshold: int, reset_timeout: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("bad", failure_threshold=threshold, reset_timeout=reset_timeout)
