"""Where the job's source starts and stops: the Kafka SQL options built from the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from flink_jobs.scoring_job import flink_options, source_ddl, storage_location
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


@pytest.mark.parametrize(
    "uri", ["s3://bucket/fraud/checkpoints", "hdfs://namenode:8020/flink/chk", "gs://b/c", "file:///data/chk"]
)
def test_a_checkpoint_uri_passes_through_unchanged(uri: str) -> None:
    assert storage_location(uri)[0] == uri


def test_only_local_checkpoint_locations_have_a_folder(tmp_path: Path) -> None:
    assert storage_location("s3://bucket/chk")[1] is None
    assert storage_location((tmp_path / "a b").as_uri())[1] == tmp_path / "a b"
    uri, folder = storage_location(str(tmp_path / "chk"))
    assert folder == tmp_path / "chk"
    assert uri == (tmp_path / "chk").as_uri()


def test_the_job_configuration_keeps_an_s3_checkpoint_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flink_jobs.scoring_job.check_embedded_imports", lambda _path: None)
    options = flink_options(JobSettings(CHECKPOINT_DIR="s3://bucket/fraud/chk"), restore="latest")
    assert options["execution.checkpointing.dir"] == "s3://bucket/fraud/chk"
    assert "execution.state-recovery.path" not in options
