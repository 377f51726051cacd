"""Reading topics back, over a consumer the caller configured (a throwaway group that never
commits, see :func:`fraud_core.kafka_io.consumer`): partition watermarks, and every record of
given offset ranges (the backtest's replay, labels and live decisions, the tests' checks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from fraud_core.exceptions import ReadTimeout

# (topic, partition) -> (first offset, end offset): a half-open range, or a partition's watermarks.
Bounds = dict[tuple[str, int], tuple[int, int]]
# What a range read yields: (topic, partition, offset, decoded record or None when undecodable).
RangeRecord = tuple[str, int, int, dict[str, Any] | None]


def watermarks(consumer: Consumer, topics: Iterable[str], timeout_s: float = 10.0) -> Bounds:
    """(low, high) watermark of every partition of ``topics``."""
    out: Bounds = {}
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            out[(topic, p)] = (low, high)
    return out


def read_range(
    consumer: Consumer,
    decode: Callable[[bytes | None], dict[str, Any] | None],
    bounds: Mapping[tuple[str, int], tuple[int, int]],
    keep: Callable[[dict[str, Any]], bool] = lambda _r: True,
    timeout_s: float = 120.0,
) -> list[RangeRecord]:
    """Every record of each ``(topic, partition)`` in ``[start, end)`` of ``bounds``, decoded;
    records ``keep`` refuses are dropped while reading (undecodable ones are kept, as None).
    Closes ``consumer``.

    Raises:
        ReadTimeout: the end offsets were not all reached within ``timeout_s``.
    """
    todo = {tp: se for tp, se in bounds.items() if se[1] > se[0]}
    out: list[RangeRecord] = []
    try:
        if not todo:
            return out
        consumer.assign([TopicPartition(t, p, s) for (t, p), (s, _e) in todo.items()])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                missing = ", ".join(f"{t}[{p}] up to {e}" for (t, p), (_s, e) in todo.items())
                raise ReadTimeout(f"reading back timed out after {timeout_s:.0f}s; not reached: {missing}")
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                tp = (str(topic), int(partition or 0))
                if tp not in todo or offset is None:
                    continue
                if offset < todo[tp][1]:
                    record = decode(msg.value())
                    if record is None or keep(record):
                        out.append((tp[0], tp[1], offset, record))
                if offset >= todo[tp][1] - 1:
                    del todo[tp]
                    consumer.incremental_unassign([TopicPartition(*tp)])
            # Transaction markers can occupy the last offsets: a partition whose position
            # reached its end is done.
            if todo:
                for tp_pos in consumer.position([TopicPartition(t, p) for (t, p) in todo]):
                    key = (tp_pos.topic, tp_pos.partition)
                    if tp_pos.offset >= todo[key][1]:
                        del todo[key]
    finally:
        consumer.close()
    return out
