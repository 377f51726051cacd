"""``python -m console hash-password``'s command line, in-process: its roles are the console's, and a bad
value exits 2 naming the flag and the value before a password is read."""

from __future__ import annotations

import io
from typing import get_args

import pytest

from console import auth
from console.__main__ import HashPasswordCli, main


def test_the_roles_offered_are_the_consoles() -> None:
    assert get_args(HashPasswordCli.model_fields["CONSOLE_USER_ROLE"].annotation) == auth.ROLES


def test_an_entry_for_a_lead_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["hash-password", "--name", "carol", "--role", "lead"]) == 0
    [(name, user)] = auth.parse_users(capsys.readouterr().out).items()
    assert name == "carol" and user.role == "lead" and auth.verify_password("s3cret", user.password_hash)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--role", "boss"], "--role input should be 'analyst' or 'lead', got boss"),
        (["--name", "a:b"], "--name string should match pattern"),
        (["--name", ""], "--name must not be empty"),
    ],
)
def test_a_bad_value_exits_2_before_the_password_is_read(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("never read\n"))
    with pytest.raises(SystemExit) as exited:
        main(["hash-password", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_empty_password_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(SystemExit) as exited:
        main(["hash-password"])
    assert exited.value.code == 2 and "empty password" in capsys.readouterr().err
