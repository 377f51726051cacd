"""Where a job without a checkpoint starts reading (the Kafka side is in the checkpoints-lost
fault scenario, tests/faults/test_fault_scenarios.py)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from flink_jobs.resume import Resume, committed_offsets, flink_offsets, rewind_offsets
from flink_jobs.scoring_job import source_ddl
from flink_jobs.settings import JobSettings


def test_each_partition_rewinds_but_never_before_its_oldest_record() -> None:
    committed = {0: 50_000, 1: 300, 2: 7}
    low = {0: 0, 1: 100, 2: 0, 3: 40}
    assert rewind_offsets(committed, low, 20_000) == {0: 30_000, 1: 100, 2: 0, 3: 40}


def test_no_rewind_starts_at_the_committed_offsets() -> None:
    assert rewind_offsets({0: 10, 1: 20}, {0: 0, 1: 0}, 0) == {0: 10, 1: 20}


def _resume() -> Resume:
    return Resume(
        input_topic="in",
        start={0: 30_000, 1: 100},
        committed={0: 50_000, 1: 300},
        input_end={0: 50_010, 1: 300},
        output_end={"out": {0: 9}},
        since_ms=0,
        limited=frozenset({0}),
    )


def test_only_events_older_than_the_launch_can_be_already_decided() -> None:
    resume = _resume()
    assert resume.rewound() == 20_000 + 200
    assert resume.may_be_decided(0, 50_009)
    assert not resume.may_be_decided(0, 50_010)
    assert not resume.may_be_decided(1, 300)
    assert not resume.may_be_decided(5, 0)


def test_the_source_starts_at_the_rewound_offsets() -> None:
    assert flink_offsets({1: 100, 0: 30_000}) == "partition:0,offset:30000;partition:1,offset:100"
    ddl = source_ddl(JobSettings(INPUT_TOPIC="in"), _resume())
    assert "'scan.startup.mode' = 'specific-offsets'" in ddl
    assert "'scan.startup.specific-offsets' = 'partition:0,offset:30000;partition:1,offset:100'" in ddl
    assert "'scan.startup.mode' = 'group-offsets'" in source_ddl(JobSettings(INPUT_TOPIC="in"))


class fake_consumer:  # named like the fakes of tests/README.md
    def __init__(self, failures: list[int]) -> None:
        self.failures = failures
        self.calls = 0

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.calls += 1
        if self.failures:
            raise KafkaException(KafkaError(self.failures.pop(0)))
        return [TopicPartition(p.topic, p.partition, 42) for p in partitions]


def test_committed_offsets_wait_for_a_group_coordinator_that_is_still_loading() -> None:
    c = fake_consumer([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
    got = committed_offsets(c, [TopicPartition("in", 0)], timeout_s=30, retry_s=0.01)
    assert [tp.offset for tp in got] == [42] and c.calls == 3


def test_committed_offsets_raise_other_errors_at_once() -> None:
    c = fake_consumer([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        committed_offsets(c, [TopicPartition("in", 0)], timeout_s=30)
    assert c.calls == 1
