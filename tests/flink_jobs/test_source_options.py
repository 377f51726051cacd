"""Where the job's source starts and stops: the Kafka SQL options built from the settings."""

from __future__ import annotations

import pytest

from flink_jobs.scoring_job import source_ddl
from flink_jobs.settings import JobSettings
from fraud_core.exceptions import ConfigError


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        ("group-offsets", "none", ["'scan.startup.mode' = 'group-offsets'"]),
        (
            "earliest",
            "latest",
            ["'scan.startup.mode' = 'earliest-offset'", "'scan.bounded.mode' = 'latest-offset'"],
        ),
        (
            "timestamp:5",
            "timestamp:9",
            ["'scan.startup.timestamp-millis' = '5'", "'scan.bounded.timestamp-millis' = '9'"],
        ),
        (
            "specific:partition:0,offset:1",
            "specific:partition:0,offset:7",
            [
                "'scan.startup.specific-offsets' = 'partition:0,offset:1'",
                "'scan.bounded.specific-offsets' = 'partition:0,offset:7'",
            ],
        ),
    ],
)
def test_start_and_stop_positions(start: str, stop: str, expected: list[str]) -> None:
    ddl = source_ddl(JobSettings(START_FROM=start, STOP_AT=stop))
    for option in expected:
        assert option in ddl
    assert ("scan.bounded" in ddl) == (stop != "none")


@pytest.mark.parametrize("settings", [{"START_FROM": "yesterday"}, {"STOP_AT": "soon"}])
def test_unknown_positions_are_refused_naming_the_setting(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(settings))):
        source_ddl(JobSettings(**settings))


def test_checkpoint_interval_defaults_to_the_delivery_modes_needs_and_yields_to_the_setting() -> None:
    assert JobSettings(DELIVERY="exactly-once").checkpoint_interval_ms == 1000
    assert JobSettings(DELIVERY="at-least-once").checkpoint_interval_ms == 5000
    assert JobSettings(DELIVERY="exactly-once", CHECKPOINT_INTERVAL_MS=300).checkpoint_interval_ms == 300
