"""``python -m bench.monitor_bench``'s command line, in-process: the documented flags land in their
settings, and a bad value (or a folder without a LIVE model) exits 2 naming it before anything is
replayed."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest

from bench import monitor_bench
from bench.monitor_bench import MonitorBenchCli
from fraud_core.cli import parse_settings


def _started(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the bench started instead of refusing")


def test_the_flags_land_in_their_settings() -> None:
    argv = ["--model-dir", "m", "--events", "300", "--batch", "50", "--publish-every", "100"]
    s = parse_settings(MonitorBenchCli, argv)
    assert (
        Path("m"),
        300,
        50,
        100,
    ) == (s.MODEL_DIR, s.MONITOR_BENCH_EVENTS, s.MONITOR_BENCH_BATCH, s.MONITOR_BENCH_PUBLISH_EVERY)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--events", "0"], "--events must be >= 1, got 0"),
        (["--batch", "-1"], "--batch must be >= 1, got -1"),
        (["--publish-every", "0"], "--publish-every must be >= 1, got 0"),
        (["--model-dir", "{tmp}"], "no LIVE model there"),
    ],
)
def test_a_bad_value_exits_2_naming_it(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(monitor_bench, "replay", _started)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exited:
        monitor_bench.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and argv[0] in err
