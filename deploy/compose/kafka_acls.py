"""Who may do what on the compose stack's Kafka (``python -m deploy.compose.kafka_acls``).

The broker runs KRaft's ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: a
principal may do only what an ACL below allows. Each compose service authenticates as a user of its
own (SASL/PLAIN, passwords from .env) and gets the least its code needs, as the production overlay's
Strimzi ``KafkaUser`` resources give it (deploy/k8s/overlays/prod/kafka-users.yaml). Topics and
groups are not copied here: they come from ``fraud_core.topics`` and the defaults of each
deployable's settings class, so renaming one there moves its ACL with it.

Only the broker itself and ``fraud_bootstrap`` (this script and the topic bootstrap) are super users.
Since Kafka 3.0 (KIP-679) ``Write`` on a topic implies ``IdempotentWrite`` on the cluster, so the
idempotent producers need no cluster ACL.

Run once per ``docker compose up`` before the registry starts (its kafkasql storage needs its own
ACLs): it creates what is missing and deletes any ACL of a managed principal that is not declared
here, so a grant removed from this file is removed from the broker too.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from pydantic_settings import BaseSettings

from actions.settings import ConsumerSettings
from console.settings import ConsoleSettings
from flink_jobs.settings import JobSettings
from fraud_core.connections import KafkaConnection
from fraud_core.exceptions import StackError
from fraud_core.settings import ConnectionSettings
from monitoring.settings import MonitorSettings
from producers.settings import ProducerSettings

log = logging.getLogger("kafka-acls")

Resource = Literal["topic", "group", "transactional_id"]
Operation = Literal["Read", "Write", "Describe", "Create", "DescribeConfigs"]

READ: tuple[Operation, ...] = ("Read", "Describe")
WRITE: tuple[Operation, ...] = ("Write", "Describe")

# The broker's own user and the one that creates topics and these ACLs: the only super users.
BROKER = "broker"
BOOTSTRAP = "fraud_bootstrap"
SUPER_USERS = (BROKER, BOOTSTRAP)

# Apicurio's kafkasql storage: its journal, snapshots and events topics (all named with this prefix
# in docker-compose.yml) and its consumers' groups (a random name after this prefix per start).
REGISTRY_TOPIC_PREFIX = "kafkasql-"
REGISTRY_GROUP_PREFIX = "fraud-registry-"


@dataclass(frozen=True, order=True)
class Grant:
    """One ACL: ``operations`` on the resource ``name`` (a name prefix when ``prefixed``)."""

    resource: Resource
    name: str
    operations: tuple[Operation, ...]
    prefixed: bool = False


def _default(cls: type[BaseSettings], field: str) -> str:
    """A settings field's default: the value the service runs with unless compose overrides it."""
    value = cls.model_fields[field].default
    if not isinstance(value, str) or not value:
        raise StackError(f"{cls.__name__}.{field} has no default name ({value!r}) to grant an ACL on")
    return value


def _topics(names: Iterable[str], operations: tuple[Operation, ...]) -> list[Grant]:
    return [Grant("topic", name, operations) for name in names]


def _groups(*names: str) -> list[Grant]:
    return [Grant("group", name, ("Read",)) for name in names]


def _job() -> list[Grant]:
    """The scoring job: both sources with their groups; the decisions and dead letters it writes,
    which a restart without a checkpoint also reads back (flink_jobs/resume.py, with a throw-away
    ``resume-scan-`` group); transactional ids ``<prefix>-<sink>-...`` for the exactly-once sinks."""
    group = _default(JobSettings, "GROUP_ID")
    outputs = [_default(JobSettings, f) for f in ("FLAGGED_TOPIC", "APPROVED_TOPIC", "DLQ_TOPIC")]
    inputs = [_default(JobSettings, f) for f in ("INPUT_TOPIC", "LABELS_TOPIC")]
    return [
        *_topics(inputs, READ),
        *_topics(outputs, ("Read", "Write", "Describe")),
        *_groups(group, f"{group}-labels"),
        Grant("group", "resume-scan-", ("Read",), prefixed=True),
        Grant(
            "transactional_id",
            _default(JobSettings, "TRANSACTIONAL_ID_PREFIX") + "-",
            ("Write", "Describe"),
            prefixed=True,
        ),
    ]


def _consumers() -> list[Grant]:
    """The action consumers: decisions in (their group), audit records and dead letters out."""
    return [
        *_topics([_default(ConsumerSettings, f) for f in ("FLAGGED_TOPIC", "APPROVED_TOPIC")], READ),
        *_topics([_default(ConsumerSettings, f) for f in ("ACTIONS_TOPIC", "DLQ_TOPIC")], WRITE),
        *_groups(_default(ConsumerSettings, "GROUP_ID")),
    ]


def _console() -> list[Grant]:
    """The analyst console writes verdicts as labels and their audit records; it reads nothing."""
    return _topics([_default(ConsoleSettings, f) for f in ("LABELS_TOPIC", "ACTIONS_TOPIC")], WRITE)


def _monitor() -> list[Grant]:
    """The drift monitor reads the decisions with a group of its own and writes nothing."""
    return [
        *_topics([_default(MonitorSettings, f) for f in ("FLAGGED_TOPIC", "APPROVED_TOPIC")], READ),
        *_groups(_default(MonitorSettings, "GROUP_ID")),
    ]


def _producer() -> list[Grant]:
    """The transaction producer writes payments and, from the simulator, their labels."""
    return _topics(
        [_default(ProducerSettings, f) for f in ("PRODUCER_TOPIC", "PRODUCER_LABELS_TOPIC")], WRITE
    )


def _registry() -> list[Grant]:
    """Apicurio's kafkasql storage creates, checks, writes and reads its own topics."""
    return [
        Grant(
            "topic",
            REGISTRY_TOPIC_PREFIX,
            ("Create", "Read", "Write", "Describe", "DescribeConfigs"),
            prefixed=True,
        ),
        Grant("group", REGISTRY_GROUP_PREFIX, ("Read",), prefixed=True),
    ]


def grants() -> dict[str, list[Grant]]:
    """Principal (the SASL user, without ``User:``) -> its ACLs. The keys are the users of
    docker-compose.yml; super users have none (they need none)."""
    return {
        "fraud_job": _job(),
        "fraud_consumers": _consumers(),
        "fraud_console": _console(),
        "fraud_monitor": _monitor(),
        "fraud_producer": _producer(),
        "fraud_registry": _registry(),
    }


_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}
_OPERATION = {
    "Read": AclOperation.READ,
    "Write": AclOperation.WRITE,
    "Describe": AclOperation.DESCRIBE,
    "Create": AclOperation.CREATE,
    "DescribeConfigs": AclOperation.DESCRIBE_CONFIGS,
}


def bindings(declared: Mapping[str, list[Grant]]) -> set[AclBinding]:
    """The broker's form of ``declared``: one ALLOW binding per principal, resource and operation."""
    return {
        AclBinding(
            _RESOURCE[g.resource],
            g.name,
            ResourcePatternType.PREFIXED if g.prefixed else ResourcePatternType.LITERAL,
            f"User:{user}",
            "*",
            _OPERATION[op],
            AclPermissionType.ALLOW,
        )
        for user, user_grants in declared.items()
        for g in user_grants
        for op in g.operations
    }


def _current(admin: AdminClient, users: Iterable[str]) -> set[AclBinding]:
    """The broker's ACLs of ``users``."""
    found: set[AclBinding] = set()
    for user in users:
        # None matches any name and host (the stubs say str; librdkafka takes NULL as "any").
        principal_filter = AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]
            ResourcePatternType.ANY,
            f"User:{user}",
            None,  # type: ignore[arg-type]
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        try:
            found |= set(admin.describe_acls(principal_filter, request_timeout=15).result())
        except KafkaException as exc:
            raise StackError(f"listing the ACLs of User:{user} failed: {exc}") from exc
    return found


def apply(
    connection: KafkaConnection, declared: Mapping[str, list[Grant]], settle_s: float = 30.0
) -> tuple[int, int]:
    """Make the broker's ACLs of the principals in ``declared`` exactly ``declared``; returns
    (created, deleted) once the broker lists exactly those (KRaft applies ACL changes through its
    metadata log, a moment after it acknowledged them, and the next service must find them in force).

    Raises:
        StackError: the broker refused a change (naming the binding), or did not show the declared
            ACLs within ``settle_s`` seconds.
    """
    admin = AdminClient(connection.librdkafka())
    wanted = bindings(declared)
    existing = _current(admin, declared)
    missing, extra = wanted - existing, existing - wanted
    for binding, future in (admin.create_acls(list(missing), request_timeout=15) if missing else {}).items():
        try:
            future.result()
        except KafkaException as exc:
            raise StackError(f"creating ACL {binding} failed: {exc}") from exc
    if extra:
        filters = [
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
            for b in extra
        ]
        for binding, future in admin.delete_acls(filters, request_timeout=15).items():
            try:
                future.result()
            except KafkaException as exc:
                raise StackError(f"deleting ACL {binding} failed: {exc}") from exc
    deadline = time.monotonic() + settle_s
    while (now := _current(admin, declared)) != wanted:
        if time.monotonic() > deadline:
            raise StackError(
                f"the broker's ACLs did not settle within {settle_s:g} s: missing {sorted(map(str, wanted - now))}, "
                f"extra {sorted(map(str, now - wanted))}"
            )
        time.sleep(0.2)
    return len(missing), len(extra)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        # KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_* from the environment.
        settings = ConnectionSettings()
    except ValueError as exc:
        log.error("error: invalid setting: %s", exc)
        return 2
    if settings.KAFKA_SASL_USERNAME not in SUPER_USERS:
        log.error(
            "error: KAFKA_SASL_USERNAME=%s is not a super user (%s): it cannot grant ACLs",
            settings.KAFKA_SASL_USERNAME,
            ", ".join(SUPER_USERS),
        )
        return 2
    try:
        created, deleted = apply(settings.kafka, grants())
    except StackError as exc:
        log.error("error: %s", exc)
        return 1
    log.info("ACLs of %s: %d created, %d removed", ", ".join(grants()), created, deleted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
