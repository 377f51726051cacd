"""``python -m bench.score_bench``'s command line, in-process: each flag (and its environment
fallback) lands in its setting with the documented default, a bad value exits 2 naming the flag
before any service starts, the API key is refused as a flag, and the settings reach the JSON the
``--clients-only`` run writes under the same keys as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import pytest

from bench import score_bench
from bench.score_bench import ScoreBenchCli
from fraud_core.cli import parse_settings
from fraud_core.settings import DEV_API_KEY


@pytest.fixture(autouse=True)
def _no_bench_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags fall back to variables of their names: none may leak in from the shell."""
    for name in ScoreBenchCli.model_fields:
        monkeypatch.delenv(name, raising=False)


def _started(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the bench started instead of refusing")


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(score_bench, "read_pointer", _started)
    monkeypatch.setattr(score_bench, "client_worker", _started)
    monkeypatch.setattr(score_bench.ScorerSystem, "start", _started)


def test_the_defaults_are_the_documented_ones() -> None:
    s = parse_settings(ScoreBenchCli, [])
    assert (
        Path("models"),
        200.0,
        10.0,
        20_000,
    ) == (s.MODEL_DIR, s.SCORE_BENCH_RATE, s.SCORE_BENCH_SECONDS, s.SCORE_BENCH_EVENTS)
    assert (s.SCORE_BENCH_ROUNDS, s.SCORE_BENCH_CLIENT_SECONDS) == (3, 3.0)
    assert (s.SCORE_BENCH_CLIENT_ONLY, s.SCORE_BENCH_CLIENTS_ONLY) == (False, False)
    assert (s.SCORE_BENCH_COMPARE_REF, s.SCORE_BENCH_CLIENT_WORKER) == (None, None)
    assert s.SCORING_API_KEY.get_secret_value() == DEV_API_KEY


SHORT_FLAGS = [
    "--model-dir", "m", "--rate", "50", "--seconds", "1.5", "--events", "300", "--client-only",
    "--compare-ref", "HEAD~2", "--rounds", "5", "--client-seconds", "0.5", "--clients-only",
]  # fmt: skip
LONG_FLAGS = [
    "--MODEL-DIR=m", "--SCORE-BENCH-RATE=50", "--SCORE-BENCH-SECONDS=1.5", "--SCORE-BENCH-EVENTS=300",
    "--SCORE-BENCH-CLIENT-ONLY", "--SCORE-BENCH-COMPARE-REF=HEAD~2", "--SCORE-BENCH-ROUNDS=5",
    "--SCORE-BENCH-CLIENT-SECONDS=0.5", "--SCORE-BENCH-CLIENTS-ONLY",
]  # fmt: skip


@pytest.mark.parametrize("argv", [SHORT_FLAGS, LONG_FLAGS], ids=["short", "long"])
def test_each_flag_lands_in_its_setting(argv: list[str]) -> None:
    s = parse_settings(ScoreBenchCli, argv)
    assert (Path("m"), 50.0, 1.5, 300) == (
        s.MODEL_DIR,
        s.SCORE_BENCH_RATE,
        s.SCORE_BENCH_SECONDS,
        s.SCORE_BENCH_EVENTS,
    )
    assert (
        s.SCORE_BENCH_CLIENT_ONLY,
        s.SCORE_BENCH_COMPARE_REF,
        s.SCORE_BENCH_ROUNDS,
        s.SCORE_BENCH_CLIENT_SECONDS,
        s.SCORE_BENCH_CLIENTS_ONLY,
    ) == (True, "HEAD~2", 5, 0.5, True)


def test_the_internal_client_worker_flag_is_parsed_but_not_shown(capsys: pytest.CaptureFixture[str]) -> None:
    s = parse_settings(ScoreBenchCli, ["--client-worker", "http://127.0.0.1:9", "--events", "7"])
    assert (s.SCORE_BENCH_CLIENT_WORKER, s.SCORE_BENCH_EVENTS) == ("http://127.0.0.1:9", 7)
    with pytest.raises(SystemExit) as exc:
        score_bench.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "client-worker" not in out and "SCORING-API-KEY" not in out


def test_the_environment_fills_what_the_flags_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORE_BENCH_ROUNDS", "9")
    monkeypatch.setenv("SCORE_BENCH_RATE", "80")
    monkeypatch.setenv("SCORING_API_KEY", "k" * 32)
    s = parse_settings(ScoreBenchCli, ["--rate", "60"])
    assert (s.SCORE_BENCH_ROUNDS, s.SCORE_BENCH_RATE) == (9, 60.0)
    assert s.SCORING_API_KEY.get_secret_value() == "k" * 32


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        score_bench.main(["--help"])
    assert exc.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for flag, words in {
        "--model-dir": "Model registry folder",
        "--rate": "Single-request rate, requests/s. (default: 200.0)",
        "--seconds": "Duration of each HTTP run, seconds. (default: 10.0)",
        "--events": "Simulator events for sample rows. (default: 20000)",
        "--client-only": "Only the BatchScorer table",
        "--compare-ref": "service and client of this git commit",
        "--rounds": "the median is kept. (default: 3)",
        "--client-seconds": "Duration of one BatchScorer run, seconds. (default: 3.0)",
        "--clients-only": "Only the HTTP client comparison at batch 64.",
    }.items():
        assert f"{flag} " in shown and words in shown, flag


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "0"], "--rate must be > 0, got 0"),
        (["--seconds", "-1"], "--seconds must be > 0, got -1"),
        (["--events", "0"], "--events must be >= 1, got 0"),
        (["--rounds", "0"], "--rounds must be >= 1, got 0"),
        (["--client-seconds", "0"], "--client-seconds must be > 0, got 0"),
        (["--compare-ref", ""], "--compare-ref must not be empty"),
        (["--rounds", "many"], "--rounds input should be a valid integer"),
        (["--SCORING-API-KEY", "x"], "--SCORING-API-KEY is a secret"),
    ],
)
def test_a_bad_value_exits_2_naming_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    with pytest.raises(SystemExit) as exc:
        score_bench.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_folder_without_a_live_model_is_refused_before_any_service_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(score_bench.ScorerSystem, "start", _started)
    with pytest.raises(SystemExit) as exc:
        score_bench.main(["--model-dir", str(tmp_path)])
    assert exc.value.code == f"no {tmp_path}/LIVE: train a model first (make model)"


def test_the_client_figures_are_written_with_the_run_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(score_bench, "CLIENT_RESULTS", tmp_path / "scoring_clients.json")
    s = parse_settings(ScoreBenchCli, ["--rounds", "4", "--client-seconds", "0.25"])
    clients = {"batch": 64, "us_per_row": {}, "hand_written_saving_vs_best_library": {}}
    score_bench._write_clients(clients, "v9", s)
    written = json.loads((tmp_path / "scoring_clients.json").read_text())
    assert (written["model_version"], written["rounds"], written["seconds_per_run"]) == ("v9", 4, 0.25)
    assert written["clients_batch64"] == clients
    assert capsys.readouterr().out == f"written to {tmp_path / 'scoring_clients.json'}\n"
