"""Kafka's SASL/PLAIN, as compose runs it, against a real broker: a private single-node KRaft
broker (the local stack's Kafka, ``deploy/local/stack.py``) whose only client listener is
SASL_PLAINTEXT with an inter-broker user and an application user. Every client is built from
``KafkaConnection.librdkafka()`` or, for the Flink job, ``KafkaConnection.flink_properties()``,
whose JAAS line leaves the password to ``${env:KAFKA_SASL_PASSWORD}`` in the TaskManager.

The job keeps the session's registry and Redis (plaintext, as in compose only Kafka has SASL);
its Kafka source and sinks go through the SASL broker only.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

import schemas
from deploy.local.bootstrap import create_topics
from deploy.local.processes import start_job
from deploy.local.stack import Stack, StackConfig, free_port
from fraud_core.connections import KafkaConnection, SecurityProtocol
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka_io import AvroPublisher, read_until
from fraud_core.registry import RegistryClient
from fraud_core.simulator import SimConfig, Simulator
from fraud_core.topics import COMPATIBILITY, TopicSpec
from producers.profiles import seed_profiles
from tests.conftest import JobTopics

pytestmark = pytest.mark.integration

ADMIN = "admin"  # the broker's own (inter-broker) user
APP = "fraud_job"
N_PAYMENTS = 300
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


@dataclass(frozen=True)
class SaslBroker:
    bootstrap: str
    passwords: dict[str, str]

    def connection(
        self, user: str = APP, password: str | None = None, protocol: SecurityProtocol = "SASL_PLAINTEXT"
    ) -> KafkaConnection:
        """How ``user`` connects (with its own password unless ``password``); PLAINTEXT: no SASL."""
        if protocol == "PLAINTEXT":
            return KafkaConnection(bootstrap_servers=self.bootstrap)
        return KafkaConnection(
            bootstrap_servers=self.bootstrap,
            security_protocol=protocol,
            sasl_mechanism="PLAIN",
            sasl_username=user,
            sasl_password=SecretStr(password or self.passwords[user]),
        )


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    """The local stack's Kafka with one SASL_PLAINTEXT listener (PLAIN, users in a JAAS line as in
    docker-compose.yml), on free ports in a folder of its own; only the Kafka service is started."""
    port, controller = free_port(), free_port()
    passwords = {user: secrets.token_urlsafe(18) for user in (ADMIN, APP)}
    users = " ".join(f'user_{user}="{password}"' for user, password in passwords.items())
    jaas = f'{PLAIN_MODULE} required username="{ADMIN}" password="{passwords[ADMIN]}" {users};'
    broker = SaslBroker(f"127.0.0.1:{port}", passwords)
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("sasl-kafka"),
        kafka_port=port,
        controller_port=controller,
        registry_port=free_port(),
        redis_port=free_port(),
        kafka_properties=(
            f"listeners=SASL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=SASL://127.0.0.1:{port}",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT",
            "inter.broker.listener.name=SASL",
            "sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            f"listener.name.sasl.plain.sasl.jaas.config={jaas}",
        ),
        kafka_client=broker.connection(ADMIN),
    )
    stack = Stack(config)
    kafka = next(svc for svc in stack.services if svc.name == "kafka")
    try:
        stack.start(kafka)
        yield broker
    finally:
        stack.stop(kafka)


def _refusal(conf: dict[str, Any], wanted: set[int]) -> tuple[KafkaException, list[KafkaError]]:
    """The client errors librdkafka reports (error_cb) to a client with ``conf`` until one with a
    code in ``wanted`` arrived (or 30 s passed), and the error it then gets asking for metadata."""
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(e.code() in wanted for e in errors):
        producer.poll(0.2)
    with pytest.raises(KafkaException) as refused:
        producer.list_topics(timeout=3)
    return refused.value, errors


def test_the_right_password_creates_a_topic_produces_and_consumes(sasl_broker: SaslBroker) -> None:
    conf = sasl_broker.connection().librdkafka()
    topic = f"sasl.{uuid.uuid4().hex[:10]}"
    admin = AdminClient(conf)  # kept referenced: a collected client cancels its futures
    admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=15)[topic].result()
    producer = Producer(conf)
    producer.produce(topic, key=b"u-1", value=b"hello through SASL")
    assert producer.flush(30) == 0
    consumer = Consumer({**conf, "group.id": f"g-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        msg = None
        while time.monotonic() < deadline and (msg is None or msg.error()):
            msg = consumer.poll(0.5)
    finally:
        consumer.close()
    assert msg is not None and msg.error() is None, msg and msg.error()
    assert (msg.key(), msg.value()) == (b"u-1", b"hello through SASL")


def test_a_wrong_password_is_refused_as_an_authentication_failure(sasl_broker: SaslBroker) -> None:
    conf = sasl_broker.connection(APP, password="not-" + sasl_broker.passwords[APP]).librdkafka()
    refused, errors = _refusal(conf, {KafkaError._AUTHENTICATION})
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth, f"no authentication error; librdkafka reported {errors}, list_topics {refused}"
    assert "Authentication failed" in auth[0].str(), auth[0].str()
    # Nothing of the password in what the client reports.
    assert sasl_broker.passwords[APP] not in " ".join(e.str() for e in errors) + str(refused)


def test_plaintext_without_sasl_cannot_talk_to_the_sasl_listener(sasl_broker: SaslBroker) -> None:
    conf = sasl_broker.connection(protocol="PLAINTEXT").librdkafka()
    dropped = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
    refused, errors = _refusal(conf, dropped)
    assert any(e.code() in dropped for e in errors), f"librdkafka reported {errors}, list_topics {refused}"


def _sasl_job_topics(broker: SaslBroker, registry_url: str) -> JobTopics:
    """The job's five topics on the SASL broker, their schemas in the session registry."""
    suffix = uuid.uuid4().hex[:10]
    specs = [
        TopicSpec(f"{name}.{suffix}", partitions, 24 * 3600 * 1000, schema)
        for name, partitions, schema in (
            ("in", 4, schemas.TRANSACTION),
            ("flagged", 4, schemas.DECISION),
            ("approved", 4, schemas.DECISION),
            ("dlq", 1, schemas.DEAD_LETTER),
            ("labels", 4, schemas.LABEL),
        )
    ]
    create_topics(broker.connection(ADMIN), specs)
    registry = RegistryClient(registry_url)
    for spec in specs:
        registry.register(spec.subject, schemas.load_text(spec.schema))
        registry.set_compatibility(COMPATIBILITY, spec.subject)
    return JobTopics(*(spec.name for spec in specs))


@pytest.mark.flink
def test_the_job_scores_every_payment_through_sasl_without_the_password_in_its_logs(
    sasl_broker: SaslBroker,
    stack: Any,
    job_env: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    topics = _sasl_job_topics(sasl_broker, stack.registry_url)
    simulator = Simulator(SimConfig(seed=3, n_users=100, rate_eps=20.0))
    seed_profiles(stack.redis_url, simulator.profiles())
    publisher = AvroPublisher(sasl_broker.connection(), stack.registry_url)
    sent = set()
    for event in simulator.events(count=N_PAYMENTS):
        txn = event.txn
        publisher.send(topics.input, schemas.TRANSACTION, txn.user_id, txn.to_record(), new_headers())
        sent.add(txn.event_id)
    publisher.flush()

    password = sasl_broker.passwords[APP]
    sasl = {
        "KAFKA_BOOTSTRAP_SERVERS": sasl_broker.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": APP,
        "KAFKA_SASL_PASSWORD": password,
    }
    # Bounded, with patient timeouts so that a loaded machine does not degrade decisions.
    bounded = {"STOP_AT": "latest", "SCORING_TIMEOUT_MS": "10000", "REDIS_TIMEOUT_MS": "5000"}
    variables = job_env(topics, tmp_path / "checkpoints", env={**sasl, **bounded})
    log_dir = tmp_path / "flink-logs"
    job = start_job({**variables, "FLINK_LOG_DIR": str(log_dir)}, [], tmp_path / "job.log")
    try:
        assert job.proc.wait(timeout=600) == 0, job.tail(60)
    finally:
        job.stop(timeout_s=10)

    out = read_until(sasl_broker.connection(), stack.registry_url, topics.outputs, N_PAYMENTS, 60, idle_s=3)
    decided = [r.record["event_id"] for r in out if r.topic != topics.dlq and r.record is not None]
    assert len(decided) == N_PAYMENTS and set(decided) == sent, (
        f"{len(decided)} decisions for {len(sent)} payments, {len(set(decided))} distinct, "
        f"{len([r for r in out if r.topic == topics.dlq])} dead letters"
    )
    assert not [r for r in out if r.topic == topics.dlq]

    # The password reached the job only through its environment: no log line, no option, no
    # serialized graph or checkpoint in the job's folders holds it.
    files = [
        p
        for p in (tmp_path / "job.log", *log_dir.rglob("*"), *tmp_path.rglob("checkpoints/**/*"))
        if p.is_file()
    ]
    flink_log = "".join(p.read_text(errors="replace") for p in log_dir.glob("*.log"))
    # Where the connector's Kafka clients print their settings (the JAAS line masked by Kafka).
    assert "security.protocol = SASL_PLAINTEXT" in flink_log and "sasl.jaas.config = [hidden]" in flink_log
    leaked = [str(p) for p in files if password.encode() in p.read_bytes()]
    assert not leaked, f"the SASL password is written in {leaked}"
