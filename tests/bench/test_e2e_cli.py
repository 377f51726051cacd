"""bench/e2e.py without services: its command line (each flag, its default, its environment
fallback, its refusal of bad values before anything starts, and where each value lands in
latest.json), the key of each system's row, and the receiver's reading of a decision's event id."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest

from bench import e2e
from bench.e2e import SYSTEMS, BenchCli, _Outcome, _result_document, key_of, label, leading_string, main
from deploy.local.stack import StackConfig
from fraud_core.cli import parse_settings

ALL_SYSTEMS = [
    "pipeline",
    "pipeline-eo",
    "pipeline-p2",
    "pipeline-cluster-p2",
    "batched-consumer",
    "naive-baseline",
]


@pytest.fixture(autouse=True)
def _no_bench_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags fall back to BENCH_* variables: none may leak in from the shell running the tests."""
    for name in BenchCli.model_fields:
        monkeypatch.delenv(name, raising=False)


def _started(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the bench started instead of refusing")


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e2e, "ensure_model", _started)
    monkeypatch.setattr(e2e, "ensure_stack", _started)


def test_the_defaults_are_the_documented_ones() -> None:
    s = parse_settings(BenchCli, [])
    assert s.loads == [100.0, 250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 8000.0]
    assert (s.BENCH_DURATION_S, s.BENCH_TRIALS, s.BENCH_WARMUP_S) == (15.0, 3, 20.0)
    assert (s.BENCH_BISECT_TOLERANCE, s.BENCH_BISECT_STEPS, s.BENCH_CHECKPOINT_MS) == (0.10, 4, 1000)
    assert s.systems == ALL_SYSTEMS
    assert s.BENCH_STAGES_ONLY is False
    assert Path(e2e.__file__).resolve().parent / "results" == s.BENCH_OUT
    assert s.BENCH_SEED == 42


SHORT_FLAGS = [
    "--loads", "50,75.5", "--duration", "2.5", "--trials", "1", "--bisect-tolerance", "0.25",
    "--bisect-steps", "0", "--checkpoint-ms", "100", "--warmup", "0", "--systems", "naive-baseline,pipeline-eo",
    "--out", "somewhere", "--seed", "7",
]  # fmt: skip
LONG_FLAGS = [
    "--BENCH-LOADS=50,75.5", "--BENCH-DURATION-S=2.5", "--BENCH-TRIALS=1", "--BENCH-BISECT-TOLERANCE=0.25",
    "--BENCH-BISECT-STEPS=0", "--BENCH-CHECKPOINT-MS=100", "--BENCH-WARMUP-S=0",
    "--BENCH-SYSTEMS=naive-baseline,pipeline-eo", "--BENCH-OUT=somewhere", "--BENCH-SEED=7",
]  # fmt: skip


@pytest.mark.parametrize("argv", [SHORT_FLAGS, LONG_FLAGS], ids=["short", "long"])
def test_each_flag_lands_in_its_setting(argv: list[str]) -> None:
    s = parse_settings(BenchCli, argv)
    assert s.loads == [50.0, 75.5]
    assert (s.BENCH_DURATION_S, s.BENCH_TRIALS, s.BENCH_WARMUP_S) == (2.5, 1, 0.0)
    assert (s.BENCH_BISECT_TOLERANCE, s.BENCH_BISECT_STEPS, s.BENCH_CHECKPOINT_MS) == (0.25, 0, 100)
    assert s.systems == ["naive-baseline", "pipeline-eo"]  # in the order given
    assert (Path("somewhere"), 7) == (s.BENCH_OUT, s.BENCH_SEED)


def test_stages_only_runs_no_system() -> None:
    s = parse_settings(BenchCli, ["--stages-only", "--systems", "pipeline"])
    assert s.BENCH_STAGES_ONLY is True
    assert s.systems == []


def test_a_flag_falls_back_to_its_environment_variable_and_the_flag_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BENCH_TRIALS", "5")
    monkeypatch.setenv("BENCH_SYSTEMS", "batched-consumer")
    s = parse_settings(BenchCli, ["--trials", "2"])
    assert (s.BENCH_TRIALS, s.systems) == (2, ["batched-consumer"])


def test_the_settings_land_in_latest_json_as_before() -> None:
    s = parse_settings(BenchCli, SHORT_FLAGS)
    document = _result_document(s, s.loads, s.systems, _Outcome(), {}, {}, {})
    assert document["settings"] == {
        "duration_s": 2.5,
        "trials": 1,
        "warmup_s": 0.0,
        "loads": [50.0, 75.5],
        "seed": 7,
        "bisect_tolerance": 0.25,
        "bisect_steps_max": 0,
        "checkpoint_interval_ms": 100,
        "checkpoint_interval_ms_at_least_once": 5000,
        "latency_from": "scheduled send time (open-loop schedule; the input's Kafka timestamp)",
    }
    assert "p99 <= 600 ms" in document["sustained_rule_by_delivery"]["exactly-once"]
    assert list(document["notes"]["scoring_and_encoding"]) == ["naive-baseline", "pipeline-eo"]


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for flag, words in {
        "--loads": "Offered loads, events/s, ascending",
        "--duration": "Seconds per trial. (default: 15.0)",
        "--trials": "Trials per load step",
        "--bisect-tolerance": "within this fraction. (default: 0.1)",
        "--bisect-steps": "extra loads per system. (default: 4)",
        "--checkpoint-ms": "its p99 limit = this + 500 ms. At-least-once systems run at the job's default "
        "interval (5 s). (default: 1000)",
        "--warmup": "Unmeasured seconds at the first load",
        "--systems": "from: pipeline, pipeline-eo, pipeline-p2, pipeline-cluster-p2, batched-consumer, "
        "naive-baseline",
        "--stages-only": "Only the stage costs and the in-process limit",
        "--out": "Folder of latest.json, latest.png and logs/.",
        "--seed": "Simulator seed",
    }.items():
        assert flag in shown and words in shown, flag


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trials", "0"], "--trials: 0 must be >= 1"),
        (["--loads", "1000,250"], "--loads: '1000,250' must be positive and ascending"),
        (["--loads", "250,lots"], "--loads: '250,lots' is not a comma-separated list of numbers"),
        (["--bisect-tolerance", "1.5"], "--bisect-tolerance: 1.5 must be between 0 and 1"),
        (["--bisect-steps", "-1"], "--bisect-steps: -1 must be >= 0"),
        (["--systems", "pipeline,flink-magic"], "--systems: unknown system 'flink-magic'"),
        (["--loads", "0,100"], "--loads: '0,100' must be positive and ascending"),
        (["--loads", "100,nan"], "--loads: '100,nan' must be positive and ascending"),
        (["--duration", "0"], "--duration: 0 must be > 0"),
        (["--duration", "soon"], "--duration input should be a valid number"),
        (["--warmup", "-1"], "--warmup: -1 must be >= 0"),
        (["--checkpoint-ms", "99"], "--checkpoint-ms: 99 must be >= 100"),
        (["--bisect-tolerance", "0"], "--bisect-tolerance: 0 must be between 0 and 1"),
        (["--trials", "2.5"], "--trials input should be a valid integer"),
        (["--seed", "x"], "--seed input should be a valid integer"),
        (["--systems", ""], "--systems: unknown system ''"),
        (["--BENCH-TRIALS", "0"], "--BENCH-TRIALS: 0 must be >= 1"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_environment_value_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    monkeypatch.setenv("BENCH_BISECT_STEPS", "-2")
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "BENCH_BISECT_STEPS: -2 must be >= 0" in capsys.readouterr().err


def test_an_unknown_flag_is_refused(capsys: pytest.CaptureFixture[str], nothing_starts: None) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--load", "100"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --load 100" in capsys.readouterr().err


def row(name: str) -> dict[str, object]:
    s = SYSTEMS[name]
    return {
        "system": s.kind,
        "delivery": s.delivery,
        "parallelism": s.parallelism,
        "deployment": s.deployment,
        "decode_in": s.decode_in,
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
            "pipeline-jvm-decode",
        ]
    )


def test_leading_string_reads_the_event_id_after_the_confluent_header() -> None:
    event_id = "11111111-1111-4111-8111-111111111111"  # 36 characters: zigzag 72 = 0x48
    value = b"\x00\x00\x00\x00\x07" + b"\x48" + event_id.encode() + b"\x02rest"
    assert leading_string(value) == event_id
    long_id = "x" * 100  # zigzag 200 = 0xC8 0x01 as a varint
    assert leading_string(b"\x00\x00\x00\x00\x07\xc8\x01" + long_id.encode()) == long_id


def test_only_exactly_once_runs_at_the_bench_checkpoint_interval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Exactly-once decisions wait for a checkpoint, so its interval is the bench's; at-least-once
    runs at the job's own default, as users run it (1 s checkpoints cost it throughput)."""
    monkeypatch.setenv("APP_ENV", "local")
    envs: dict[str, dict[str, str]] = {}
    monkeypatch.setattr(e2e, "start_job", lambda env, args, log: envs.setdefault(args[1], env))
    cfg = StackConfig(state_dir=tmp_path)
    topics = {"in": "i", "flagged": "f", "approved": "a", "dlq": "d"}
    for name in ("pipeline", "pipeline-eo"):
        e2e.start_system(name, cfg, topics, "http://127.0.0.1:1", "redis://127.0.0.1:1/0", tmp_path, 1000)
    assert envs["exactly-once"]["CHECKPOINT_INTERVAL_MS"] == "1000"
    assert "CHECKPOINT_INTERVAL_MS" not in envs["at-least-once"]
