"""The range reader in-process: it reads each partition from its start to its end offset, keeps
undecodable records, drops what ``keep`` refuses, ends early partitions at their end, and times out
naming what it did not reach; against a fake consumer."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from fraud_core.exceptions import ReadTimeout
from fraud_core.kafka.readers import read_range


class fake_message:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        self._coords = (topic, partition, offset)
        self._value = value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._coords[0]

    def partition(self) -> int:
        return self._coords[1]

    def offset(self) -> int:
        return self._coords[2]

    def value(self) -> bytes | None:
        return self._value


class fake_consumer:
    """Serves the records of ``log`` from the assigned positions, a few per consume call."""

    def __init__(self, log: dict[tuple[str, int], list[bytes | None]]) -> None:
        self.log = log
        self.positions: dict[tuple[str, int], int] = {}
        self.closed = False

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = {(p.topic, p.partition): p.offset for p in partitions}

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            del self.positions[(p.topic, p.partition)]

    def consume(self, num_messages: int, timeout: float) -> list[fake_message]:
        out = []
        for (topic, partition), offset in list(self.positions.items()):
            records = self.log[(topic, partition)]
            for o in range(offset, min(offset + 2, len(records))):
                out.append(fake_message(topic, partition, o, records[o]))
            self.positions[(topic, partition)] = min(offset + 2, len(records))
        return out

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, self.positions[(p.topic, p.partition)]) for p in partitions
        ]

    def close(self) -> None:
        self.closed = True


def decode(value: bytes | None) -> dict[str, Any] | None:
    return None if value is None or not value.isdigit() else {"n": int(value)}


def test_each_partition_is_read_from_start_to_end_exclusive() -> None:
    log: dict[tuple[str, int], list[bytes | None]] = {
        ("t", 0): [b"0", b"1", b"2", b"3", b"4", b"5"],
        ("t", 1): [b"10", b"bad", b"12"],
    }
    consumer = fake_consumer(log)
    out = read_range(consumer, decode, {("t", 0): (1, 4), ("t", 1): (0, 3), ("t", 2): (5, 5)})  # type: ignore[arg-type]
    assert sorted((p, o, r) for _t, p, o, r in out) == [
        (0, 1, {"n": 1}), (0, 2, {"n": 2}), (0, 3, {"n": 3}), (1, 0, {"n": 10}), (1, 1, None), (1, 2, {"n": 12}),
    ]  # fmt: skip
    assert consumer.closed


def test_keep_drops_records_while_reading() -> None:
    consumer = fake_consumer({("t", 0): [b"1", b"2", b"3", b"4"]})
    out = read_range(consumer, decode, {("t", 0): (0, 4)}, keep=lambda r: r["n"] % 2 == 0)  # type: ignore[arg-type]
    assert [r for *_c, r in out] == [{"n": 2}, {"n": 4}]


def test_an_unreachable_end_times_out_naming_the_partition() -> None:
    consumer = fake_consumer({("t", 0): [b"1"]})
    with pytest.raises(ReadTimeout, match=r"t\[0\] up to 5"):
        read_range(consumer, decode, {("t", 0): (0, 5)}, timeout_s=0.0)  # type: ignore[arg-type]
    assert consumer.closed
