"""The command lines of deploy/local (``make up/down/status``, ``make demo``, the bootstrap, the demo's
Prometheus, ``make cluster``), in-process: what the Makefile and the docs pass still parses, and a bad
value exits 2 naming the flag (or variable) and the value before anything is started."""

from __future__ import annotations

from typing import NoReturn

import pytest

from deploy.local import bootstrap, cluster, demo, prometheus, stack
from deploy.local.demo import DemoCli
from deploy.local.prometheus import PrometheusCli
from fraud_core.cli import parse_settings
from fraud_core.connections import KafkaConnection


def _started(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("started something instead of refusing")


def _refused(main: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert callable(main)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_the_stack_commands_of_the_makefile_parse(command: str) -> None:
    assert parse_settings(stack.group_cli("p", "d"), [command]).command == command


@pytest.mark.parametrize("main", [stack.main, cluster.main])
def test_an_unknown_group_command_exits_2_naming_it(
    main: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stack, "Stack", _started)
    monkeypatch.setattr(cluster, "Cluster", _started)
    assert "got sideways" in _refused(main, ["sideways"], capsys)
    assert "COMMAND" in _refused(main, [], capsys)


def test_the_stack_help_names_the_commands_and_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        stack.main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "down: stop what up started, by PID" in out and "KAFKA_PORT" in out and "STACK_DIR" in out


def test_prometheus_takes_its_port_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_PORT", "9191")
    assert parse_settings(PrometheusCli, ["status"]).PROMETHEUS_PORT == 9191
    assert parse_settings(PrometheusCli, ["down", "--port", "9292"]).PROMETHEUS_PORT == 9292


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up"], "should be 'down' or 'status', got up"),
        (["status", "--port", "70000"], "--port must be <= 65535, got 70000"),
    ],
)
def test_prometheus_refuses_a_bad_command_or_port(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(prometheus, "LocalPrometheus", _started)
    assert message in _refused(prometheus.main, argv, capsys)


def test_bootstrap_passes_the_flags_to_the_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[KafkaConnection, str]] = []
    monkeypatch.setenv("APP_ENV", "local")
    monkeypatch.setattr(bootstrap, "bootstrap", lambda kafka, url: seen.append((kafka, url)))
    code = bootstrap.main(
        ["--bootstrap-servers", "kafka-1:9092", "--registry-url", "http://reg:8080/ccompat"]
    )
    assert code == 0
    assert [(k.bootstrap_servers, url) for k, url in seen] == [("kafka-1:9092", "http://reg:8080/ccompat")]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--KAFKA-SECURITY-PROTOCOL", "SASL_SSL"], {"APP_ENV": "local"}, "needs KAFKA_SASL_MECHANISM"),
        (["--KAFKA-SASL-PASSWORD", "hunter2"], {"APP_ENV": "local"}, "is a secret"),
        ([], {"APP_ENV": ""}, "APP_ENV is not set"),
    ],
)
def test_bootstrap_refuses_bad_settings(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(bootstrap, "bootstrap", _started)
    err = _refused(bootstrap.main, argv, capsys)
    assert message in err and "hunter2" not in err


@pytest.mark.parametrize(("value", "keep"), [("1", True), ("0", False), ("", False), ("true", True)])
def test_demo_keep_running_from_the_environment(
    value: str, keep: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEP_RUNNING", value)
    settings = parse_settings(DemoCli, ["--drift", "--rate", "50", "--duration", "5", "--seed", "9"])
    assert settings.KEEP_RUNNING is keep
    assert (settings.DEMO_DRIFT, settings.DEMO_RATE, settings.DEMO_DURATION_S, settings.DEMO_SEED) == (
        True,
        50.0,
        5.0,
        9,
    )


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--rate", "0"], {}, "--rate must be > 0, got 0"),
        (["--duration", "-5"], {}, "--duration must be > 0, got -5"),
        (["--seed", "x"], {}, "--seed input should be a valid integer"),
        ([], {"KEEP_RUNNING": "maybe"}, "KEEP_RUNNING input should be a valid boolean"),
    ],
)
def test_demo_refuses_bad_values_before_starting_anything(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(demo, "ensure_model", _started)
    monkeypatch.setattr(demo, "ensure_stack", _started)
    err = _refused(demo.main, argv, capsys)
    assert message in err and (argv[1] if argv else env["KEEP_RUNNING"]) in err
