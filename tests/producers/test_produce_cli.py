"""The producer's command line refuses bad settings before it touches Kafka: exit 2 and a message
naming the setting and the value. In-process (``main(argv)``), no interpreter started."""

from __future__ import annotations

from typing import NoReturn

import pytest

from producers.produce import main


def _started(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the producer started instead of refusing")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--rate", "-5"], {}, "--rate must be >= 0, got -5"),
        (["--count", "0"], {}, "--count must be > 0, got 0"),
        ([], {"PRODUCER_USERS": "0"}, "PRODUCER_USERS must be >= 1, got 0"),
        (["--label-delay-s", "-1"], {}, "--label-delay-s must be >= 0, got -1"),
        (["--registry-url", "localhost:8081"], {}, "--registry-url must be an http(s) URL"),
        (["--no-kafka"], {}, "--no-kafka needs --avro-file"),
    ],
)
def test_invalid_settings_exit_non_zero_naming_the_setting(
    args: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("producers.produce._events", _started)
    with pytest.raises(SystemExit) as exited:
        main(["--no-progress", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
