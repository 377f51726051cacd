"""bench/e2e.py without services: its refusals of bad options (before anything starts), the key of
each system's row, and the receiver's reading of a decision's event id."""

from __future__ import annotations

import pytest

from bench.e2e import SYSTEMS, key_of, label, leading_string, main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trials", "0"], "--trials: 0 must be >= 1"),
        (["--loads", "1000,250"], "--loads: '1000,250' must be positive and ascending"),
        (["--loads", "250,lots"], "--loads: '250,lots' is not a comma-separated list of numbers"),
        (["--bisect-tolerance", "1.5"], "--bisect-tolerance: 1.5 must be between 0 and 1"),
        (["--bisect-steps", "-1"], "--bisect-steps: -1 must be >= 0"),
        (["--systems", "pipeline,flink-magic"], "--systems: unknown system 'flink-magic'"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def row(name: str) -> dict[str, object]:
    s = SYSTEMS[name]
    return {
        "system": s.kind,
        "delivery": s.delivery,
        "parallelism": s.parallelism,
        "deployment": s.deployment,
    }


def test_each_system_has_its_own_key() -> None:
    assert (
        [label(row(name)) for name in SYSTEMS]
        == [key_of(name) for name in SYSTEMS]
        == [
            "pipeline",
            "pipeline-exactly-once",
            "pipeline-p2",
            "pipeline-cluster-p2",
            "batched-consumer",
            "naive-baseline",
        ]
    )


def test_leading_string_reads_the_event_id_after_the_confluent_header() -> None:
    event_id = "11111111-1111-4111-8111-111111111111"  # 36 characters: zigzag 72 = 0x48
    value = b"\x00\x00\x00\x00\x07" + b"\x48" + event_id.encode() + b"\x02rest"
    assert leading_string(value) == event_id
    long_id = "x" * 100  # zigzag 200 = 0xC8 0x01 as a varint
    assert leading_string(b"\x00\x00\x00\x00\x07\xc8\x01" + long_id.encode()) == long_id
