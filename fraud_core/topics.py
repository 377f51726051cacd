"""Topic names, partition counts, retention and the schema each topic carries: the one list of them."""

from __future__ import annotations

from dataclasses import dataclass

import schemas

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    schema: str

    @property
    def subject(self) -> str:
        """Registry subject of the topic's values (Confluent TopicNameStrategy)."""
        return f"{self.name}-value"


INITIATED = "payments.initiated"
FLAGGED = "payments.flagged"
APPROVED = "payments.approved"
DLQ = "payments.dlq"
LABELS = "payments.labels"
ACTIONS = "payments.actions"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(INITIATED, 4, 7 * DAY_MS, schemas.TRANSACTION),
    TopicSpec(FLAGGED, 4, 7 * DAY_MS, schemas.DECISION),
    TopicSpec(APPROVED, 4, 7 * DAY_MS, schemas.DECISION),
    TopicSpec(DLQ, 1, 30 * DAY_MS, schemas.DEAD_LETTER),
    TopicSpec(LABELS, 4, 90 * DAY_MS, schemas.LABEL),
    TopicSpec(ACTIONS, 4, 30 * DAY_MS, schemas.ACTION),
)
BY_NAME = {t.name: t for t in TOPICS}

# FULL_TRANSITIVE: producers upgrade before consumers, so a new writer schema must stay readable by
# every old reader (FORWARD) as well as the reverse (BACKWARD), against every earlier version.
COMPATIBILITY = "FULL_TRANSITIVE"
