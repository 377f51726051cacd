"""Fixtures of the action consumer tests: unique topics and consumer group per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

import schemas
from actions.settings import ConsumerSettings
from tests.actions.action_helpers import Topics


@pytest.fixture
def topics(make_topic: Callable[..., str]) -> Topics:
    return Topics(
        flagged=make_topic("flagged", schema=schemas.DECISION),
        approved=make_topic("approved", schema=schemas.DECISION),
        actions=make_topic("actions", schema=schemas.ACTION),
        dlq=make_topic("dlq", partitions=1, schema=schemas.DEAD_LETTER),
    )


@pytest.fixture
def settings(stack: Any, topics: Topics) -> ConsumerSettings:
    return ConsumerSettings(
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        SCHEMA_REGISTRY_URL=stack.registry_url,
        REDIS_URL=stack.redis_url,
        FLAGGED_TOPIC=topics.flagged,
        APPROVED_TOPIC=topics.approved,
        ACTIONS_TOPIC=topics.actions,
        DLQ_TOPIC=topics.dlq,
        GROUP_ID=f"actions-test-{uuid.uuid4().hex[:10]}",
        ACTIONS_METRICS_PORT=0,
        BLOCK_TTL_S=3600,
        IDEMPOTENCY_TTL_S=3600,
    )
