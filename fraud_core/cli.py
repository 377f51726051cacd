"""Command lines generated from settings classes, with pydantic-settings' CLI support.

A deployable's CLI is its settings class with a CLI configuration (:func:`cli_config`) and, where
it has them, CLI-only fields. Every settings field is a flag named after it (``--GROUP-ID``, the
environment variable ``GROUP_ID`` with dashes), plus the short flags the docs use (``--group-id``);
``--help``, types, booleans (``true``/``false``) and the fallback to the environment all come from
the fields. :func:`parse_settings` turns a validation error into exit code 2 and one line per
problem naming the flag (or variable) and the value. :func:`child_env` renders the environment of
a child process from a settings class, so a mistyped name fails in the parent.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar, get_args

import pydantic
from pydantic_settings import BaseSettings, CliApp, CliSettingsSource, SettingsConfigDict

from fraud_core.exceptions import ConfigError

S = TypeVar("S", bound=BaseSettings)

ENV_NOTE = (
    "Each --SETTING-NAME flag falls back to the environment variable SETTING_NAME (dashes as "
    "underscores), then to the default shown."
)


def cli_config(prog: str, flags: Mapping[str, str | list[str]]) -> SettingsConfigDict:
    """The ``model_config`` of a CLI settings class.

    Args:
        prog: the program name shown in usage lines.
        flags: field name -> the short flag(s) it also answers to, without the dashes
            (``{"GROUP_ID": "group-id"}`` adds ``--group-id``).
    """
    return SettingsConfigDict(
        cli_prog_name=prog,
        cli_kebab_case=True,
        cli_shortcuts={name.replace("_", "-"): alias for name, alias in flags.items()},
        cli_exit_on_error=True,
        cli_hide_none_type=True,
        cli_avoid_json=True,
    )


def lower_case_flags(cls: type[BaseSettings], *, skip: Sequence[str] = ()) -> dict[str, str]:
    """Field name -> its lower-case flag (``CONSOLE_PORT`` -> ``console-port``), for every field of
    ``cls``: the short flags of a CLI whose every setting is spelled that way."""
    return {name: name.lower().replace("_", "-") for name in cls.model_fields if name not in skip}


def _flags_of(cls: type[BaseSettings]) -> dict[str, list[str]]:
    """Field name -> every flag that sets it, with dashes."""
    shortcuts: Mapping[str, str | list[str]] = cls.model_config.get("cli_shortcuts") or {}
    out: dict[str, list[str]] = {}
    for name in cls.model_fields:
        kebab = name.replace("_", "-")
        alias = shortcuts.get(kebab, [])
        out[name] = [f"--{kebab}"] + [f"--{a}" for a in ([alias] if isinstance(alias, str) else alias)]
    return out


def _given(cls: type[BaseSettings], argv: Sequence[str]) -> dict[str, str]:
    """Field name -> the flag that set it on this command line (the last one given)."""
    given: dict[str, str] = {}
    for name, flags in _flags_of(cls).items():
        for arg in argv:
            flag = arg.split("=", 1)[0]
            if flag in flags:
                given[name] = flag
    return given


def _show(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value}"


def explain(error: Mapping[str, Any], given: Mapping[str, str]) -> str:
    """One pydantic error as ``SETTING must be ..., got VALUE``, naming the flag when it came from one."""
    if not error.get("loc"):
        message = str(error["msg"]).removeprefix("Value error, ")
        for name, flag in given.items():
            message = message.replace(name, flag)
        return message
    name = str(error["loc"][0])
    shown = given.get(name, name)
    if error["type"] == "value_error":  # our validators' messages name the setting and value already
        return f"{shown}: {str(error['msg']).removeprefix('Value error, ')}"
    ctx = error.get("ctx") or {}
    rule = {
        "greater_than_equal": f"must be >= {_show(ctx.get('ge'))}",
        "greater_than": f"must be > {_show(ctx.get('gt'))}",
        "less_than_equal": f"must be <= {_show(ctx.get('le'))}",
        "less_than": f"must be < {_show(ctx.get('lt'))}",
        "string_too_short": "must not be empty",
    }.get(str(error["type"]), str(error["msg"]).removeprefix("Value error, ").lower())
    return f"{shown} {rule}, got {_show(error.get('input'))}"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - CLI output
    raise SystemExit(code)


def _is_secret(annotation: Any) -> bool:
    return annotation is pydantic.SecretStr or any(_is_secret(a) for a in get_args(annotation))


def parse_settings(cls: type[S], argv: Sequence[str] | None = None) -> S:
    """``cls`` from the command line ``argv`` (default ``sys.argv[1:]``), the environment and the
    defaults, in that order; ``--help`` prints and exits 0, an invalid setting exits 2 naming it.
    A secret given as a flag exits 2 too: it would show in ``ps`` and the shell's history."""
    args = list(sys.argv[1:] if argv is None else argv)
    for name, flag in _given(cls, args).items():
        if _is_secret(cls.model_fields[name].annotation):
            fail(f"{flag} is a secret: set {name} in the environment, never on the command line")
    try:
        return CliApp.run(cls, cli_args=args)
    except pydantic.ValidationError as exc:
        given = _given(cls, args)
        fail("; ".join(explain(e, given) for e in exc.errors()))


def help_text(cls: type[BaseSettings]) -> str:
    """The ``--help`` text of a CLI settings class."""
    source: CliSettingsSource[Any] = CliSettingsSource(cls)
    return str(source.root_parser.format_help())


def _env_value(value: object) -> str:
    if isinstance(value, pydantic.SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | Path):
        return str(value)
    return json.dumps(value)


def child_env(cls: type[BaseSettings], **values: object) -> dict[str, str]:
    """The environment variables of ``values`` for a child process whose settings class is ``cls``:
    the names are checked against its fields and the values validated by it, here in the parent.

    Raises:
        ConfigError: a name is not a setting of ``cls``, or a value is invalid (naming both).
    """
    unknown = sorted(set(values) - set(cls.model_fields))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no setting {', '.join(unknown)}")
    try:
        settings = cls.model_validate(values)
    except pydantic.ValidationError as exc:
        problems = "; ".join(explain(e, {}) for e in exc.errors())
        raise ConfigError(f"invalid {cls.__name__} for a child process: {problems}") from exc
    return {
        name: _env_value(getattr(settings, name)) for name in values if getattr(settings, name) is not None
    }
