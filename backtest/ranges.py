"""Which records a backtest replays: parse timestamps or offsets, then resolve them against the
topic into exact ``[start, end)`` offsets per partition, refusing ranges the topic no longer holds.

Resolving timestamps to offsets once, before anything runs, makes the run reproducible: the job
gets explicit start and stop offsets (Flink's ``specific-offsets``), so records that arrive on the
live topic while the backtest runs are not part of it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition

from backtest.exceptions import BadInputError, EmptyRangeError, RetentionError
from fraud_core.connections import KafkaConnection, as_connection

_OFFSETS_ITEM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*-\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition; from ``warmup_start`` (<= start) records are
    replayed to rebuild state but not evaluated."""

    partition: int
    start: int
    end: int
    warmup_start: int

    @property
    def count(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class ReplayRange:
    """The resolved range of one topic: every partition appears (empty ones with start == end)."""

    topic: str
    partitions: tuple[PartitionRange, ...]
    requested: str  # how the user asked for it, for the report

    @property
    def events(self) -> int:
        """Records in the range (an upper bound on events: transaction markers take offsets too)."""
        return sum(p.count for p in self.partitions)

    @property
    def warmup_events(self) -> int:
        return sum(p.start - p.warmup_start for p in self.partitions)

    def flink_start(self) -> str:
        """``START_FROM`` of the job: the warm-up start of every partition."""
        return "specific:" + ";".join(
            f"partition:{p.partition},offset:{p.warmup_start}" for p in self.partitions
        )

    def flink_stop(self) -> str:
        """``STOP_AT`` of the job: the exclusive end of every partition."""
        return "specific:" + ";".join(f"partition:{p.partition},offset:{p.end}" for p in self.partitions)

    def describe(self) -> str:
        parts = ", ".join(f"p{p.partition}:{p.start}-{p.end}" for p in self.partitions)
        return f"{self.topic} [{parts}] ({self.events} records)"


def parse_time(text: str) -> int:
    """Epoch milliseconds from epoch milliseconds or ISO-8601 (UTC when no offset is given).

    Raises:
        BadInputError: neither form.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInputError(
            f"time {text!r} is neither epoch milliseconds nor ISO-8601 (e.g. 2025-01-31T12:00:00Z)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """ISO-8601 UTC of epoch milliseconds, for messages and reports."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_offsets(text: str) -> dict[int, tuple[int, int]]:
    """``"0:10-200,1:0-50"`` -> ``{0: (10, 200), 1: (0, 50)}`` (start inclusive, end exclusive).

    Raises:
        BadInputError: bad syntax, a partition named twice, or start > end.
    """
    out: dict[int, tuple[int, int]] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        match = _OFFSETS_ITEM.match(item)
        if not match:
            raise BadInputError(
                f"--offsets item {item.strip()!r}: expected partition:start-end, e.g. 0:100-2000"
            )
        partition, start, end = (int(g) for g in match.groups())
        if partition in out:
            raise BadInputError(f"--offsets names partition {partition} twice")
        if start > end:
            raise BadInputError(f"--offsets {item.strip()!r}: start {start} is after end {end}")
        out[partition] = (start, end)
    if not out:
        raise BadInputError("--offsets is empty: expected partition:start-end[,...]")
    return out


@dataclass(frozen=True, slots=True)
class _Partition:
    low: int
    high: int


class TopicInspector:
    """Watermarks, timestamp lookups and first-record timestamps of one topic (read-only, no commits)."""

    def __init__(
        self,
        bootstrap: str | KafkaConnection,
        topic: str,
        event_time: Callable[[bytes | None], int | None] | None = None,
    ) -> None:
        self.topic = topic
        self._event_time = event_time
        self._consumer = Consumer(
            as_connection(bootstrap).librdkafka(
                **{
                    "group.id": f"backtest-inspect-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    # Each probe reassigns the partition, and its fetch waits for the previous one,
                    # which the broker holds at the end of the partition for up to this long (500 ms by
                    # default): a binary search of three partitions for two bounds spent half a minute.
                    "fetch.wait.max.ms": 10,
                }
            )
        )
        try:
            # All topics, not list_topics(topic): asking for one topic may auto-create it.
            meta = self._consumer.list_topics(timeout=10).topics.get(topic)
        except KafkaException as exc:
            self.close()
            raise BadInputError(f"cannot read the metadata of topic {topic!r} at {bootstrap}: {exc}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            self.close()
            raise BadInputError(f"topic {topic!r} does not exist at {bootstrap}")
        self.partitions: dict[int, _Partition] = {}
        for p in sorted(meta.partitions):
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            self.partitions[p] = _Partition(low, high)

    def offsets_for_time(self, ms: int) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is >= ``ms`` (the high watermark if none)."""
        query = [TopicPartition(self.topic, p, ms) for p in self.partitions]
        found = self._consumer.offsets_for_times(query, timeout=10)
        return {
            tp.partition: tp.offset if tp.offset >= 0 else self.partitions[tp.partition].high for tp in found
        }

    def timestamp_at(self, partition: int, offset: int, timeout_s: float = 10.0) -> int | None:
        """The timestamp of the first readable record at or after ``offset`` of ``partition``."""
        self._consumer.assign([TopicPartition(self.topic, partition, offset)])
        try:
            msg = self._consumer.poll(timeout_s)
            if msg is None or msg.error():
                return None
            return int(msg.timestamp()[1])
        finally:
            self._consumer.unassign()

    def event_time_at(self, partition: int, offset: int, timeout_s: float = 10.0) -> int | None:
        """The ``event_time`` of the first readable record at or after ``offset`` (None: none, or
        the record is not a payment)."""
        if self._event_time is None:
            raise BadInputError("no event-time decoder: this inspector reads Kafka timestamps only")
        self._consumer.assign([TopicPartition(self.topic, partition, offset)])
        try:
            msg = self._consumer.poll(timeout_s)
            if msg is None or msg.error():
                return None
            return self._event_time(msg.value())
        finally:
            self._consumer.unassign()

    def offsets_for_event_time(self, ms: int) -> dict[int, int]:
        """Per partition, the first offset whose payment has ``event_time >= ms`` (the high watermark
        if none), by binary search: producers and ``make import`` write each partition in event-time
        order, so only payments that arrived late sit out of place (a late one is counted with its
        neighbours). A record that is not a payment counts as past ``ms``."""
        out: dict[int, int] = {}
        for p, part in self.partitions.items():
            lo, hi = part.low, part.high
            while lo < hi:
                mid = (lo + hi) // 2
                t = self.event_time_at(p, mid)
                if t is not None and t < ms:
                    lo = mid + 1
                else:
                    hi = mid
            out[p] = lo
        return out

    def close(self) -> None:
        self._consumer.close()


def resolve(
    inspector: TopicInspector,
    from_ms: int | None = None,
    to_ms: int | None = None,
    offsets: Mapping[int, tuple[int, int]] | None = None,
    warmup_ms: int = 0,
    by_event_time: bool = False,
) -> ReplayRange:
    """Exact offsets for a time range or an offset range of ``inspector``'s topic.

    With ``by_event_time`` the bounds are the payments' ``event_time``
    (:meth:`TopicInspector.offsets_for_event_time`), else the records' Kafka timestamps (their send
    time). Without any bound the range is everything retained, up to the end offsets at this moment. The
    warm-up (``warmup_ms`` before the range's first record, never below the oldest retained offset)
    rebuilds the velocity state the live job had when the range began.

    Raises:
        BadInputError: an unknown partition, or an end beyond the topic's end.
        RetentionError: the range starts below a partition's oldest retained offset, or ``from_ms``
            is older than the oldest record retained in a partition that has lost records.
        EmptyRangeError: the range holds no records.
    """
    topic, parts = inspector.topic, inspector.partitions
    bounds: dict[int, tuple[int, int]] = {}
    if offsets is not None:
        requested = "offsets " + ",".join(f"{p}:{s}-{e}" for p, (s, e) in sorted(offsets.items()))
        for p, (start, end) in offsets.items():
            if p not in parts:
                raise BadInputError(f"{topic} has no partition {p} (partitions: {sorted(parts)})")
            if start < parts[p].low:
                raise RetentionError(
                    f"{topic}[{p}] offset {start} is past retention: the oldest retained offset is "
                    f"{parts[p].low}. Choose a start >= {parts[p].low}."
                )
            if end > parts[p].high:
                raise BadInputError(
                    f"{topic}[{p}] end offset {end} is beyond the end of the partition ({parts[p].high})"
                )
        bounds = {p: offsets.get(p, (parts[p].high, parts[p].high)) for p in parts}
    else:
        requested = f"time {format_ms(from_ms) if from_ms is not None else 'oldest retained'} .. " + (
            format_ms(to_ms) if to_ms is not None else "end at start of backtest"
        )
        if from_ms is not None and to_ms is not None and from_ms >= to_ms:
            raise BadInputError(f"--from {format_ms(from_ms)} is not before --to {format_ms(to_ms)}")
        find = inspector.offsets_for_event_time if by_event_time else inspector.offsets_for_time
        if by_event_time:
            requested = "event " + requested
        starts = find(from_ms) if from_ms is not None else {p: v.low for p, v in parts.items()}
        ends = find(to_ms) if to_ms is not None else {p: v.high for p, v in parts.items()}
        if from_ms is not None and not by_event_time:
            _check_time_retention(inspector, from_ms)
        bounds = {p: (starts[p], max(starts[p], ends[p])) for p in parts}
    warmups = _warmup_starts(inspector, bounds, warmup_ms)
    ranges = tuple(PartitionRange(p, s, e, warmups[p]) for p, (s, e) in sorted(bounds.items()))
    replay = ReplayRange(topic, ranges, requested)
    if replay.events == 0:
        raise EmptyRangeError(f"no events in {topic} for {requested}: nothing to backtest")
    return replay


def _check_time_retention(inspector: TopicInspector, from_ms: int) -> None:
    for p, v in inspector.partitions.items():
        if v.low == 0 or v.low >= v.high:
            continue  # nothing deleted yet, or nothing left to compare with
        oldest = inspector.timestamp_at(p, v.low)
        if oldest is not None and from_ms < oldest:
            raise RetentionError(
                f"--from {format_ms(from_ms)} is past the retention of {inspector.topic}: partition {p} "
                f"has already deleted its records before offset {v.low}, whose timestamp is "
                f"{format_ms(oldest)}. Choose --from at or after {format_ms(oldest)}."
            )


def _warmup_starts(
    inspector: TopicInspector, bounds: Mapping[int, tuple[int, int]], warmup_ms: int
) -> dict[int, int]:
    """Per partition, the offset ``warmup_ms`` before the first record of the range (Kafka time)."""
    starts = {p: s for p, (s, e) in bounds.items()}
    if warmup_ms <= 0:
        return starts
    first = [ts for p, (s, e) in bounds.items() if e > s and (ts := inspector.timestamp_at(p, s)) is not None]
    if not first:
        return starts
    before = inspector.offsets_for_time(min(first) - warmup_ms)
    return {
        p: max(inspector.partitions[p].low, min(before[p], s)) if e > s else s for p, (s, e) in bounds.items()
    }
