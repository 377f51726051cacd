"""``--from``/``--to`` in event time: the offsets found by searching each partition equal the ones
a full read of the topic gives (the imported or produced history's dates, not its send time)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import schemas
from backtest import ranges, sources
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka_io import AvroPublisher, Received, read_until
from fraud_core.labels import epoch_ms
from tests.records import payment

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


def _at(r: Received) -> tuple[int, int]:
    return r.partition, r.offset


def test_event_time_bounds_match_a_full_read(stack: Any, make_topic: Callable[..., str]) -> None:
    topic = make_topic("history", 3, schemas.TRANSACTION)
    rng = random.Random(5)
    times = sorted(T0 + rng.randrange(30 * DAY) for _ in range(600))
    publisher = AvroPublisher(stack.bootstrap, stack.registry_url)
    written: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for i, t in enumerate(times):
        user = f"u-{i % 17}"
        record = payment(event_id=str(uuid.UUID(int=i + 1)), user_id=user, event_time=t)
        publisher.send(topic, schemas.TRANSACTION, user, record, new_headers())
    publisher.flush()
    inspector = ranges.TopicInspector(stack.bootstrap, topic, sources.event_time_reader(stack.registry_url))
    try:
        # The oracle: every record read once, in offset order per partition.
        for r in sorted(read_until(stack.bootstrap, stack.registry_url, [topic], len(times), 60), key=_at):
            assert r.record is not None and r.offset == len(written[r.partition])
            written[r.partition].append(epoch_ms(r.record["event_time"]))
        assert sum(len(v) for v in written.values()) == len(times)
        assert inspector.event_time_at(0, 0) == written[0][0]
        for bound in (T0 - DAY, T0 + 7 * DAY + 1, T0 + 40 * DAY):
            want = {
                p: next((i for i, t in enumerate(ts) if t >= bound), len(ts)) for p, ts in written.items()
            }
            assert inspector.offsets_for_event_time(bound) == want, bound
        rng_ = ranges.resolve(inspector, T0 + 7 * DAY, T0 + 19 * DAY, by_event_time=True)
        inside = sum(1 for t in times if T0 + 7 * DAY <= t < T0 + 19 * DAY)
        assert rng_.events == inside
    finally:
        inspector.close()
