"""Decision rules beside the model: one versioned TOML file, validated at load, evaluated per event.

The file (``default.toml`` beside this module unless ``RULES_FILE`` names another) holds a
``version`` and named rule sets. ``always`` is evaluated on every event, next to the model score;
``fallback`` is evaluated as well when the model could not score (the scoring service is down):
the outage fallback is one rule set among others, taken by the same code path. Each rule::

    [[sets.always]]
    id = "card_testing_burst"          # [a-z][a-z0-9_]*, unique in the file
    action = "BLOCK"                   # REVIEW or BLOCK
    reason = "card-testing burst: ..." # what the analyst reads in the decision's reasons
    enabled = true                     # optional; false keeps the rule in the file, unevaluated
    when = [                           # every clause must hold (AND)
      { field = "txn_count_1m", op = ">=", value = 5 },
      { field = "channel", op = "in", value = ["ECOM", "MOBILE"] },
    ]

``field`` is a model feature (:data:`fraud_core.features.FEATURE_NAMES`, numbers) or a payment
field (:data:`TRANSACTION_FIELDS`). Numbers take ``< <= > >= == !=``; text fields take
``== != in not_in`` with a string or a list of strings. Nothing in the file is executed: a clause
is a field name, an operator from a fixed table and a constant.

A bad file is refused as a whole with every problem listed, each naming the rule id and the
field (:class:`RulesError`); the job then keeps the rules it had (hot reload) or refuses to start.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator
from pydantic import ValidationError as PydanticValidationError

from fraud_core.exceptions import ConfigError
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.transaction import Transaction

log = logging.getLogger(__name__)

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "default.toml"
# model_version of a decision taken while the model could not score (rules only, degraded).
FALLBACK_VERSION = "fallback-rules"

APPROVE = "APPROVE"
REVIEW = "REVIEW"
BLOCK = "BLOCK"
ACTIONS: tuple[str, ...] = (APPROVE, REVIEW, BLOCK)  # in rising severity
ALWAYS = "always"
FALLBACK = "fallback"
RULE_SETS: tuple[str, ...] = (ALWAYS, FALLBACK)

# Payment fields a condition may read: numbers, and text compared as given (upper-case codes).
NUMERIC_TRANSACTION_FIELDS: tuple[str, ...] = ("amount_minor",)
TEXT_TRANSACTION_FIELDS: tuple[str, ...] = (
    "currency",
    "merchant_id",
    "merchant_category",
    "country",
    "channel",
    "device_id",
)
TRANSACTION_FIELDS = NUMERIC_TRANSACTION_FIELDS + TEXT_TRANSACTION_FIELDS
_NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_TEXT_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}
Op = Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in"]


def severity(action: str) -> int:
    """Rank of an action: APPROVE 0 < REVIEW 1 < BLOCK 2."""
    return ACTIONS.index(action)


def strongest(actions: Sequence[str]) -> str:
    """The most severe of ``actions`` (APPROVE when empty)."""
    return max(actions, key=ACTIONS.index, default=APPROVE)


class RulesError(ConfigError):
    """A rules file is unreadable or invalid; the message names each rule and field at fault."""


class Clause(BaseModel):
    """``field op value``; checked against the field's kind (number or text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: StrictStr
    op: Op
    value: StrictInt | StrictFloat | StrictStr | list[StrictStr]

    @model_validator(mode="after")
    def _fits_the_field(self) -> Clause:
        numeric = self.field in FEATURE_NAMES or self.field in NUMERIC_TRANSACTION_FIELDS
        if not numeric and self.field not in TEXT_TRANSACTION_FIELDS:
            raise ValueError(
                f"unknown field {self.field!r}: use a feature of fraud_core.features.FEATURE_NAMES "
                f"or one of the payment fields {', '.join(TRANSACTION_FIELDS)}"
            )
        if numeric:
            if self.op not in _NUMERIC_OPS:
                raise ValueError(f"op {self.op!r} does not apply to the number {self.field!r}")
            if not isinstance(self.value, int | float):
                raise ValueError(f"value {self.value!r} of {self.field!r} must be a number")
        else:
            if self.op not in _TEXT_OPS:
                raise ValueError(f"op {self.op!r} does not apply to the text field {self.field!r}")
            wants_list = self.op in ("in", "not_in")
            if wants_list != isinstance(self.value, list):
                kind = "a list of strings" if wants_list else "a string"
                raise ValueError(f"value {self.value!r} of {self.field!r} with {self.op!r} must be {kind}")
            if not wants_list and not isinstance(self.value, str):
                raise ValueError(f"value {self.value!r} of {self.field!r} must be a string")
        return self


class Rule(BaseModel):
    """One rule as written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    action: Literal["REVIEW", "BLOCK"]
    reason: str = Field(min_length=1, max_length=200)
    # A rule that does not earn its place (precision under 20% on the stress set, enforced by
    # tests/fraud_core/test_rule_precision.py) stays in the file, measured, but never fires.
    enabled: bool = Field(True, strict=True)
    when: list[Clause] = Field(min_length=1)


class RulesFile(BaseModel):
    """The whole file: a version and the rule sets by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    sets: dict[Literal["always", "fallback"], list[Rule]]  # the names of RULE_SETS

    @model_validator(mode="after")
    def _ids_unique_and_sets_present(self) -> RulesFile:
        missing = [name for name in RULE_SETS if name not in self.sets]
        if missing:
            raise ValueError(f"sets {missing} missing: the file declares {list(RULE_SETS)} (empty is fine)")
        seen: set[str] = set()
        for rules in self.sets.values():
            for rule in rules:
                if rule.id in seen:
                    raise ValueError(f"rule id {rule.id!r} is declared twice; ids must be unique")
                seen.add(rule.id)
        return self


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A validated rule ready to evaluate: each clause is (is_feature, name, op, constant)."""

    id: str
    action: str
    reason: str
    clauses: tuple[tuple[bool, str, Callable[[Any, Any], bool], Any], ...]

    def matches(self, txn: Transaction, features: Mapping[str, float]) -> bool:
        for is_feature, name, op, value in self.clauses:
            actual = features[name] if is_feature else getattr(txn, name)
            if actual is None or not op(actual, value):
                return False
        return True


def _compile(rule: Rule) -> CompiledRule:
    clauses = []
    for c in rule.when:
        is_feature = c.field in FEATURE_NAMES
        numeric = is_feature or c.field in NUMERIC_TRANSACTION_FIELDS
        op = _NUMERIC_OPS[c.op] if numeric else _TEXT_OPS[c.op]
        value = frozenset(c.value) if isinstance(c.value, list) else c.value
        clauses.append((is_feature, c.field, op, value))
    return CompiledRule(rule.id, rule.action, rule.reason, tuple(clauses))


@dataclass(frozen=True, slots=True)
class RuleBook:
    """The loaded rules: what :func:`fraud_core.decision.decide` evaluates.

    ``version`` is the file's declared version plus the first 8 hex digits of the SHA-256 of its
    bytes, so a decision names the exact rules that judged it even if an edit forgot the bump.
    """

    version: str
    always: tuple[CompiledRule, ...]
    fallback: tuple[CompiledRule, ...]
    disabled: tuple[CompiledRule, ...] = ()  # ``enabled = false`` in the file: never evaluated

    def fired(self, txn: Transaction, features: Mapping[str, float], model_down: bool) -> list[CompiledRule]:
        """The rules that hold for this event, in file order: ``always``, then ``fallback`` when
        the model could not score."""
        hits = [r for r in self.always if r.matches(txn, features)]
        if model_down:
            hits += [r for r in self.fallback if r.matches(txn, features)]
        return hits

    def current(self) -> RuleBook:
        """A fixed rule book is its own source (see :class:`RuleSource`)."""
        return self


class RuleSource(Protocol):
    """Where the decision step gets the rules in force for the next batch."""

    def current(self) -> RuleBook: ...


def _where(raw: Mapping[str, Any], loc: Sequence[int | str]) -> str:
    """``rule 'id' (sets.always[2]), field when[0].op`` for a pydantic error location."""
    if len(loc) >= 3 and loc[0] == "sets" and isinstance(loc[2], int):
        rules = raw.get("sets", {}).get(loc[1], [])
        rule_id = rules[loc[2]].get("id") if loc[2] < len(rules) and isinstance(rules[loc[2]], dict) else None
        rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[3:]).lstrip(".")
        name = f"rule {rule_id!r}" if rule_id else "rule without id"
        return f"{name} (sets.{loc[1]}[{loc[2]}]), field {rest or '(the rule)'}"
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return f"field {path or '(top level)'}"


def parse_rules(text: str, source: str = "<text>") -> RuleBook:
    """Validate and compile the rules in ``text`` (TOML).

    Raises:
        RulesError: naming ``source`` and, for each problem, the rule id and the field.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules file {source}: not valid TOML: {exc}") from exc
    try:
        parsed = RulesFile.model_validate(raw)
    except PydanticValidationError as exc:
        problems = [
            f"{_where(raw, e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            + (
                f" (got {e['input']!r})"
                if e["type"] != "value_error" and not isinstance(e["input"], dict)
                else ""
            )
            for e in exc.errors()
        ]
        raise RulesError(f"rules file {source} refused:\n  " + "\n  ".join(problems)) from exc
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return RuleBook(
        version=f"{parsed.version}+{digest}",
        always=tuple(_compile(r) for r in parsed.sets["always"] if r.enabled),
        fallback=tuple(_compile(r) for r in parsed.sets["fallback"] if r.enabled),
        disabled=tuple(_compile(r) for rules in parsed.sets.values() for r in rules if not r.enabled),
    )


def load_rules(path: Path | str | None = None) -> RuleBook:
    """Load ``path`` (default: :data:`DEFAULT_RULES_FILE`).

    Raises:
        RulesError: the file is missing, unreadable or invalid.
    """
    file = Path(path) if path else DEFAULT_RULES_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(
            f"rules file {file}: cannot read it: {exc}; set RULES_FILE to a readable file"
        ) from exc
    return parse_rules(text, str(file))


class WatchedRules:
    """The rules of one file, reloaded when the file changes, without restarting anything.

    :meth:`current` looks at the file's modification time and size at most once every
    ``check_every_s``; when they changed it loads the file again. A new file that fails
    validation is logged with its problems and the rules in force stay in force (a typo must not
    stop fraud scoring); the next change is tried again. The first load raises instead, so a bad
    file stops a job at start, not silently.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path) if path else DEFAULT_RULES_FILE
        self.check_every_s = check_every_s
        self._clock = clock
        self._stamp = self._stat()
        self._rules = load_rules(self.path)
        self._checked_at = clock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> RuleBook:
        now = self._clock()
        if now - self._checked_at < self.check_every_s:
            return self._rules
        self._checked_at = now
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return self._rules
        self._stamp = stamp
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            log.error("rules not reloaded, keeping version %s: %s", self._rules.version, exc)
            return self._rules
        if rules.version != self._rules.version:
            log.info(
                "rules reloaded from %s: version %s -> %s", self.path, self._rules.version, rules.version
            )
        self._rules = rules
        return rules
