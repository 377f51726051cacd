"""Create the topics and register the schemas (``python -m deploy.local.bootstrap``).

Idempotent: existing topics are kept (their partition count is checked), registering an unchanged
schema returns its existing id. The registry's compatibility is set to FULL_TRANSITIVE
(``fraud_core.topics.COMPATIBILITY``) globally and per subject, because Apicurio enforces nothing
until a rule exists. An existing subject gets the rule before its schema is registered, so a
subject left at an older, weaker level by an earlier bootstrap is checked at the current one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

import schemas
from fraud_core.cli import ENV_NOTE, cli_config, parse_settings
from fraud_core.connections import KafkaConnection, as_connection
from fraud_core.exceptions import FraudPipelineError, StackError
from fraud_core.registry import RegistryClient
from fraud_core.settings import ConnectionSettings
from fraud_core.topics import COMPATIBILITY, TOPICS, TopicSpec

log = logging.getLogger("bootstrap")


def create_topics(bootstrap: str | KafkaConnection, specs: Iterable[TopicSpec]) -> None:
    """Create ``specs`` that do not exist yet; refuse an existing topic with the wrong partition count."""
    admin = AdminClient(as_connection(bootstrap).librdkafka())
    specs = list(specs)
    existing = admin.list_topics(timeout=10).topics
    missing = [s for s in specs if s.name not in existing]
    for spec in specs:
        if spec.name in existing and len(existing[spec.name].partitions) != spec.partitions:
            raise StackError(
                f"topic {spec.name} has {len(existing[spec.name].partitions)} partitions, expected {spec.partitions}"
            )
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                s.name,
                s.partitions,
                1,
                config={"retention.ms": str(s.retention_ms), "min.insync.replicas": "1"},
            )
            for s in missing
        ],
        operation_timeout=15,
    )
    for name, fut in futures.items():
        try:
            fut.result()
            log.info("topic %s created", name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise StackError(f"creating topic {name} failed: {exc}") from exc


def register_schemas(registry_url: str, specs: Iterable[TopicSpec]) -> dict[str, int]:
    """Register each topic's value schema under ``COMPATIBILITY``; returns subject -> schema id."""
    client = RegistryClient(registry_url)
    client.set_compatibility(COMPATIBILITY)
    existing = set(client.subjects())
    ids = {}
    for spec in specs:
        if spec.subject in existing:
            client.set_compatibility(COMPATIBILITY, spec.subject)
        ids[spec.subject] = client.register(spec.subject, schemas.load_text(spec.schema))
        client.set_compatibility(COMPATIBILITY, spec.subject)
    return ids


def bootstrap(
    bootstrap_servers: str | KafkaConnection, registry_url: str, specs: Iterable[TopicSpec] = TOPICS
) -> None:
    specs = list(specs)
    create_topics(bootstrap_servers, specs)
    ids = register_schemas(registry_url, specs)
    log.info("topics ready: %s", ", ".join(s.name for s in specs))
    log.info("schemas registered (%s): %s", COMPATIBILITY, ", ".join(f"{k}={v}" for k, v in ids.items()))


class BootstrapCli(ConnectionSettings):
    __doc__ = (
        "Create the pipeline's topics and register its schemas (idempotent). SASL/TLS settings "
        f"(KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*; the password from the environment only) apply. {ENV_NOTE}"
    )

    model_config = cli_config(
        "python -m deploy.local.bootstrap",
        {"KAFKA_BOOTSTRAP_SERVERS": "bootstrap-servers", "SCHEMA_REGISTRY_URL": "registry-url"},
    )


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 ready, 1 Kafka or the registry failed, 2 invalid setting."""
    settings = parse_settings(BootstrapCli, argv)
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(message)s")
    try:
        bootstrap(settings.kafka, settings.SCHEMA_REGISTRY_URL)
    except FraudPipelineError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
