"""Compose's Kafka authorization on a real broker: a private KRaft broker (the local stack's Kafka,
``deploy/local/stack.py``) set up as docker-compose.yml sets up its ``kafka`` service (SASL/PLAIN on
every listener the controller's included, ``StandardAuthorizer``, deny without an ACL, super users
``broker`` and ``fraud_bootstrap``), the ACLs applied by ``deploy.compose.kafka_acls.apply`` as the
``kafka-acls`` service applies them, and each user then allowed what its ACLs say and refused the rest.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from deploy.compose.kafka_acls import SUPER_USERS, Grant, apply, grants
from deploy.local.bootstrap import create_topics
from deploy.local.stack import Stack, StackConfig, free_port
from fraud_core.connections import KafkaConnection
from fraud_core.exceptions import StackError
from fraud_core.topics import ACTIONS, FLAGGED, INITIATED, TOPICS

pytestmark = pytest.mark.integration

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


@dataclass(frozen=True)
class AclBroker:
    bootstrap: str
    passwords: dict[str, str]

    def connection(self, user: str) -> KafkaConnection:
        return KafkaConnection(
            bootstrap_servers=self.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username=user,
            sasl_password=SecretStr(self.passwords[user]),
        )

    def conf(self, user: str, **extra: object) -> dict[str, object]:
        return self.connection(user).librdkafka(**extra)


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclBroker]:
    port, controller = free_port(), free_port()
    users = (*SUPER_USERS, *grants())
    passwords = {user: secrets.token_urlsafe(18) for user in users}
    user_lines = " ".join(f'user_{u}="{p}"' for u, p in passwords.items())
    login = f'username="broker" password="{passwords["broker"]}"'
    broker = AclBroker(f"127.0.0.1:{port}", passwords)
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("acl-kafka"),
        kafka_port=port,
        controller_port=controller,
        registry_port=free_port(),
        redis_port=free_port(),
        kafka_properties=(
            f"listeners=SASL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=SASL://127.0.0.1:{port}",
            "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL:SASL_PLAINTEXT",
            "inter.broker.listener.name=SASL",
            "sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            "sasl.mechanism.controller.protocol=PLAIN",
            f"listener.name.sasl.plain.sasl.jaas.config={PLAIN_MODULE} required {login} {user_lines};",
            f'listener.name.controller.plain.sasl.jaas.config={PLAIN_MODULE} required {login} user_broker="{passwords["broker"]}";',
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            "super.users=" + ";".join(f"User:{u}" for u in SUPER_USERS),
        ),
        kafka_client=broker.connection("broker"),
    )
    stack = Stack(config)
    kafka = next(svc for svc in stack.services if svc.name == "kafka")
    try:
        stack.start(kafka)
        create_topics(broker.connection("fraud_bootstrap"), TOPICS)
        apply(broker.connection("fraud_bootstrap"), grants())
        yield broker
    finally:
        stack.stop(kafka)


def produce_error(conf: dict[str, object], topic: str, idempotent: bool = True) -> KafkaError | None:
    """The delivery error of one record to ``topic`` (None: delivered). Idempotent as the
    applications produce; a user who may write no topic at all cannot even get an idempotent
    producer id (cluster authorization), so its refusal is checked without idempotence."""
    result: list[KafkaError | None] = []
    settings = {"enable.idempotence": idempotent, "acks": "all", "message.timeout.ms": 20000}
    producer = Producer({**conf, **settings})
    producer.produce(topic, key=b"u-1", value=b"v", on_delivery=lambda err, _msg: result.append(err))
    producer.flush(30)
    assert result, f"no delivery report for {topic}"
    return result[0]


def consume_error(conf: dict[str, object], topic: str, group: str) -> KafkaError | None:
    """The first error a consumer of ``topic`` in ``group`` meets, or None once a record arrives."""
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                return msg.error()
        pytest.fail(f"neither a record nor an error from {topic} as group {group}")
    finally:
        consumer.close()


def test_applying_twice_changes_nothing_and_a_stray_acl_is_removed(acl_broker: AclBroker) -> None:
    bootstrap = acl_broker.connection("fraud_bootstrap")
    assert apply(bootstrap, grants()) == (0, 0)
    stray = {**grants(), "fraud_console": [*grants()["fraud_console"], Grant("topic", INITIATED, ("Write",))]}
    assert apply(bootstrap, stray) == (1, 0)
    assert produce_error(acl_broker.conf("fraud_console"), INITIATED) is None
    assert apply(bootstrap, grants()) == (0, 1)
    err = produce_error(acl_broker.conf("fraud_console"), INITIATED)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_an_application_user_may_not_grant_itself_anything(acl_broker: AclBroker) -> None:
    with pytest.raises(StackError, match=r"(?i)authoriz"):
        apply(acl_broker.connection("fraud_consumers"), grants())


def test_each_user_writes_only_its_own_topics(acl_broker: AclBroker) -> None:
    # The idempotent producers need no cluster ACL: Write on the topic is enough.
    assert produce_error(acl_broker.conf("fraud_producer"), INITIATED) is None
    assert produce_error(acl_broker.conf("fraud_job"), FLAGGED) is None
    assert produce_error(acl_broker.conf("fraud_consumers"), ACTIONS) is None
    for user, topic in [
        ("fraud_consumers", INITIATED),
        ("fraud_monitor", FLAGGED),
        ("fraud_producer", FLAGGED),
        ("fraud_registry", INITIATED),
    ]:
        err = produce_error(acl_broker.conf(user), topic, idempotent=False)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (user, topic, err)


def test_each_user_reads_only_with_its_own_group_and_topics(acl_broker: AclBroker) -> None:
    assert produce_error(acl_broker.conf("fraud_job"), FLAGGED) is None
    assert consume_error(acl_broker.conf("fraud_monitor"), FLAGGED, "fraud-drift-monitor") is None
    assert consume_error(acl_broker.conf("fraud_consumers"), FLAGGED, "fraud-actions") is None
    err = consume_error(acl_broker.conf("fraud_monitor"), FLAGGED, f"other-{uuid.uuid4().hex[:6]}")
    assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    err = consume_error(acl_broker.conf("fraud_console"), FLAGGED, "fraud-actions")
    assert err is not None and err.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    ), err


def test_the_job_may_use_only_its_transactional_ids(acl_broker: AclBroker) -> None:
    ok = Producer(acl_broker.conf("fraud_job", **{"transactional.id": "fraud-scoring-flagged-0-1"}))
    ok.init_transactions(30)
    ok.begin_transaction()
    ok.produce(FLAGGED, key=b"u-1", value=b"v")
    ok.commit_transaction(30)
    refused = Producer(acl_broker.conf("fraud_job", **{"transactional.id": "someone-else-0"}))
    with pytest.raises(KafkaException) as raised:
        refused.init_transactions(30)
    assert raised.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_no_application_creates_topics(acl_broker: AclBroker) -> None:
    admin = AdminClient(acl_broker.conf("fraud_job"))
    topic = f"payments.rogue-{uuid.uuid4().hex[:6]}"
    with pytest.raises(KafkaException) as raised:
        admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=15)[topic].result()
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
