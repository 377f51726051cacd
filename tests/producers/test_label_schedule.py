"""Unit tests of the producer's label schedule (labels at their simulated delay, in event time):
no Kafka, the stream of a small simulation."""

from __future__ import annotations

from bisect import bisect_left

from fraud_core.simulator import SimConfig, Simulator
from producers.publish import LabelSchedule
from producers.settings import ProducerSettings


def test_labels_are_due_once_the_stream_reaches_their_labelled_at_and_missing_ones_never() -> None:
    events = list(Simulator(SimConfig(seed=3, n_users=200)).events(count=4000))
    schedule = LabelSchedule()
    sent: list[tuple[str, int]] = []  # (event_id, event time of the payment after which it was sent)
    for e in events:
        schedule.add(e, [("correlation_id", e.txn.event_id.encode())])
        sent += [(d.txn.event_id, e.txn.event_time) for d, _ in schedule.due(e.txn.event_time)]
    after_end = schedule.rest()
    assert len(schedule) == 0
    by_id = {e.txn.event_id: e for e in events}
    missing = {e.txn.event_id for e in events if e.labelled_at is None}
    assert schedule.missing == len(missing) > 0
    assert {i for i, _ in sent} | {d.txn.event_id for d, _ in after_end} == set(by_id) - missing
    for event_id, stream_time in sent:
        labelled_at = by_id[event_id].labelled_at
        assert labelled_at is not None and labelled_at <= stream_time  # never before it is known
    # ... and no later than the first payment at or after it: the previous one was before it.
    times = [e.txn.event_time for e in events]
    for event_id, stream_time in sent:
        before = bisect_left(times, stream_time)
        assert before == 0 or times[before - 1] < (by_id[event_id].labelled_at or 0)
    last = events[-1].txn.event_time
    assert all((d.labelled_at or 0) > last for d, _ in after_end)
    ats = [by_id[i].labelled_at or 0 for i, _ in sent]
    assert ats == sorted(ats)  # in labelled_at order, not payment order
    first, headers = after_end[0]
    assert headers == [("correlation_id", first.txn.event_id.encode())]  # the payment's headers travel


def test_the_producer_defaults_to_simulated_label_delays() -> None:
    assert ProducerSettings().PRODUCER_LABEL_DELAY_S is None
    assert ProducerSettings(PRODUCER_LABEL_DELAY_S=2.5).PRODUCER_LABEL_DELAY_S == 2.5
