"""Fixtures of the action consumer tests: unique topics and consumer group per test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import schemas
from actions.settings import ConsumerSettings
from tests.actions.action_helpers import Topics, consumer_settings


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
    return consumer_settings(
        stack,
        flagged=topics.flagged,
        approved=topics.approved,
        actions=topics.actions,
        dlq=topics.dlq,
        BLOCK_TTL_S=3600,
        IDEMPOTENCY_TTL_S=3600,
    )
