"""Helpers for tests that drive a running job: a feed of simulated payments and a collector of the
decisions, keeping every record it reads so that duplicates can be counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import schemas
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka_io import AvroPublisher, consumer, decoder
from fraud_core.simulator import SimConfig, SimEvent, Simulator


class Collector:
    """Reads decisions as they come, keeping every record (duplicates included)."""

    def __init__(self, stack: Any, topics: list[str]) -> None:
        self._consumer = consumer(stack.bootstrap)
        self._consumer.subscribe(topics)
        self._decode = decoder(stack.registry_url)
        self.records: list[dict[str, Any]] = []

    def wait_for(self, ids: set[str], timeout_s: float = 90.0) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not ids <= {r["event_id"] for r in self.records}:
            msg = self._consumer.poll(0.2)
            if msg is not None and not msg.error():
                record = self._decode(msg.value())
                assert record is not None
                self.records.append(record)
        found = {r["event_id"]: r for r in self.records if r["event_id"] in ids}
        assert set(found) == ids, f"{len(ids - set(found))} of {len(ids)} decisions missing"
        return found

    def drain(self, idle_s: float) -> None:
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            msg = self._consumer.poll(0.2)
            if msg is not None and not msg.error():
                record = self._decode(msg.value())
                assert record is not None
                self.records.append(record)
                last = time.monotonic()

    def close(self) -> None:
        self._consumer.close()


class Feed:
    """Publishes waves of simulated events from one endless stream."""

    def __init__(self, stack: Any, topic: str, seed: int) -> None:
        simulator = Simulator(SimConfig(seed=seed, n_users=200, rate_eps=20.0))
        self.profiles = simulator.profiles()
        self._events: Iterator[SimEvent] = simulator.events()
        self._publisher = AvroPublisher(stack.bootstrap, stack.registry_url)
        self._topic = topic
        self.sent = 0

    def wave(self, n: int, pause_s: float = 0.0) -> set[str]:
        ids = set()
        for _ in range(n):
            txn = next(self._events).txn
            self._publisher.send(
                self._topic, schemas.TRANSACTION, txn.user_id, txn.to_record(), new_headers()
            )
            ids.add(txn.event_id)
            if pause_s:
                time.sleep(pause_s)
        self._publisher.flush()
        self.sent += n
        return ids
