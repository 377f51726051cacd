"""Starting without a checkpoint, and still deciding every event exactly once.

When the checkpoint folder is lost, the consumer group's committed offsets are all that is left of
the last run, and they can be ahead of what that run published:

- events waiting in the scoring operator's buffer when the last checkpoint was taken are in that
  checkpoint's state only; their offsets are committed, their decisions were never written;
- Flink commits the source's offsets and the sink's Kafka transaction in two separate steps after a
  checkpoint; a crash between the two leaves the offsets committed and the transaction open, and a
  job without the checkpoint cannot commit it (the producer id and epoch were in the checkpoint), so
  it aborts it. The reverse order (transaction committed, offsets not) would decide events twice.

Resuming at the committed offsets would therefore lose decisions, and resuming earlier would repeat
them. So the launcher rewinds each input partition by up to ``rewind`` records
(:func:`plan`), and the features operator skips every rewound event whose decision or dead letter
is already committed on the output topics (:func:`already_decided`, read with ``read_committed``
once the new job's sinks have aborted the old run's open transactions). What the old run published
stays; what it lost is decided now; nothing is decided twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from fraud_core import avro
from fraud_core.exceptions import DecodeError, StackError
from fraud_core.registry import RegistryClient

log = logging.getLogger(__name__)

# Output records are stamped by the sink's clock, input records by the producer's: allow for skew.
CLOCK_SKEW_MS = 60_000


def rewind_offsets(committed: Mapping[int, int], low: Mapping[int, int], rewind: int) -> dict[int, int]:
    """Where each partition starts: ``rewind`` records before its committed offset, never before
    the oldest record still in the topic. A partition without a committed offset starts at its
    oldest record, as ``auto.offset.reset=earliest`` would."""
    return {p: max(low[p], committed[p] - rewind) if committed.get(p, -1) >= 0 else low[p] for p in low}


def flink_offsets(offsets: Mapping[int, int]) -> str:
    """``scan.startup.specific-offsets`` of Flink's Kafka SQL connector."""
    return ";".join(f"partition:{p},offset:{o}" for p, o in sorted(offsets.items()))


@dataclass(frozen=True)
class Resume:
    """How a job without a checkpoint resumes: plain values, pickled into the job graph."""

    input_topic: str
    start: dict[int, int]  # first offset read per input partition (rewound)
    committed: dict[int, int]  # the old run's committed offsets
    input_end: dict[int, int]  # input end offsets at launch: later events are new to everyone
    output_end: dict[str, dict[int, int]]  # output end offsets at launch: later records are ours
    since_ms: int  # no output record older than this can be the decision of a rewound event
    limited: frozenset[int] = frozenset()  # partitions where older records exist before the rewind

    def rewound(self) -> int:
        """Records read again, in all partitions."""
        return sum(self.committed[p] - o for p, o in self.start.items() if p in self.committed)

    def may_be_decided(self, partition: int, offset: int) -> bool:
        return offset < self.input_end.get(partition, 0)


def _partitions(c: Consumer, topic: str) -> list[int]:
    meta = c.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        raise StackError(f"topic {topic!r} cannot be described: {getattr(meta, 'error', 'missing')}")
    return sorted(meta.partitions)


def _watermarks(c: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in _partitions(c, topic)}


def plan(
    conf: Mapping[str, Any], input_topic: str, group_id: str, outputs: Iterable[str], rewind: int
) -> Resume | None:
    """The rewound start of a job that has no checkpoint, or None when the group never committed.

    Args:
        conf: librdkafka settings for a consumer (bootstrap servers and security).
        outputs: every topic the job writes (decisions and dead letters).
        rewind: records per partition read again before the committed offset; enough when it covers
            what the old run consumed in its last two checkpoint intervals.
    """
    c = Consumer({**conf, "group.id": group_id, "enable.auto.commit": False})
    try:
        marks = _watermarks(c, input_topic)
        got = committed_offsets(c, [TopicPartition(input_topic, p) for p in marks])
        committed = {tp.partition: tp.offset for tp in got if tp.offset >= 0}
        if not committed:
            return None
        start = rewind_offsets(committed, {p: lo for p, (lo, _) in marks.items()}, rewind)
        stamps = [_timestamp_at(c, input_topic, p, o) for p, o in start.items() if o < marks[p][1]]
        known = [s for s in stamps if s is not None]
        since_ms = (min(known) if known else int(time.time() * 1000)) - CLOCK_SKEW_MS
        output_end = {t: {p: hi for p, (_, hi) in _watermarks(c, t).items()} for t in outputs}
        return Resume(
            input_topic,
            start,
            committed,
            {p: hi for p, (_, hi) in marks.items()},
            output_end,
            since_ms,
            frozenset(p for p, o in start.items() if o > marks[p][0]),
        )
    finally:
        c.close()


# The group coordinator is still loading on a broker that just started (or moved): wait, don't fail.
_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def committed_offsets(
    c: Any, partitions: list[TopicPartition], timeout_s: float = 60.0, retry_s: float = 1.0
) -> list[TopicPartition]:
    """The group's committed offsets, asked again every ``retry_s`` while the group coordinator
    is not ready."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return list(c.committed(partitions, timeout=10))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            ready = getattr(err, "code", lambda: None)() not in _COORDINATOR_NOT_READY
            if ready or time.monotonic() > deadline:
                raise
            log.info("group coordinator not ready (%s); asking again", err)
            time.sleep(retry_s)


def _timestamp_at(c: Consumer, topic: str, partition: int, offset: int) -> int | None:
    c.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            return int(msg.timestamp()[1])
    return None


@dataclass
class Decided:
    """What the old run already published for rewound events."""

    event_ids: set[str] = field(default_factory=set)
    dead: set[tuple[int, int]] = field(default_factory=set)  # (partition, offset) of the input


def already_decided(
    conf: Mapping[str, Any],
    registry: RegistryClient,
    resume: Resume,
    dlq_topic: str,
    timeout_s: float = 120.0,
) -> Decided:
    """Read the committed output since ``resume.since_ms`` up to its end at launch.

    ``read_committed`` stops at the first open transaction, so this waits until the new job's sinks
    have aborted the old run's lingering transactions (they do so as they start); it raises
    :class:`StackError` naming the partition if that does not happen within ``timeout_s``, and the
    task restarts.
    """
    c = Consumer(
        {
            **conf,
            "group.id": f"resume-scan-{int(time.time() * 1000)}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    out = Decided()
    try:
        wanted = [
            TopicPartition(t, p, resume.since_ms)
            for t, ends in resume.output_end.items()
            for p, end in ends.items()
            if end > 0
        ]
        if not wanted:
            return out
        positions = c.offsets_for_times(wanted, timeout=10)
        todo = {(tp.topic, tp.partition): resume.output_end[tp.topic][tp.partition] for tp in positions}
        assign = [tp for tp in positions if 0 <= tp.offset < todo[(tp.topic, tp.partition)]]
        todo = {(tp.topic, tp.partition): todo[(tp.topic, tp.partition)] for tp in assign}
        c.assign(assign)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                (topic, p), end = next(iter(todo.items()))
                raise StackError(
                    f"{topic}[{p}] cannot be read up to offset {end} with read_committed within "
                    f"{timeout_s:.0f} s: a transaction of the previous run is still open there"
                )
            for msg in c.consume(500, 0.5):
                if msg.error():
                    continue
                _note(out, msg, dlq_topic, resume.input_topic, registry)
            for tp in c.position([TopicPartition(t, p) for t, p in todo]):
                if tp.offset >= todo[(tp.topic, tp.partition)]:
                    del todo[(tp.topic, tp.partition)]
        return out
    finally:
        c.close()


def _note(out: Decided, msg: Any, dlq_topic: str, input_topic: str, registry: RegistryClient) -> None:
    try:
        record = avro.decode(msg.value(), registry.parsed_schema)
    except DecodeError:
        return  # not ours to judge here; the consumers of that topic dead-letter it
    if msg.topic() == dlq_topic:
        if record.get("source_topic") == input_topic:
            out.dead.add((int(record["source_partition"]), int(record["source_offset"])))
    elif isinstance(record.get("event_id"), str):
        out.event_ids.add(record["event_id"])
