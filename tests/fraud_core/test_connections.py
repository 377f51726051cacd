"""Connection settings: the librdkafka dict, the Flink connector options and Redis credentials,
rendered once from the settings every deployable shares."""

from __future__ import annotations

import pytest

from actions.settings import ConsumerSettings
from fraud_core.connections import FLINK_ENV_PROVIDER_CLASS, KafkaConnection, redacted_url, redis_url
from fraud_core.settings import ConnectionSettings
from producers.settings import ProducerSettings

SECRET = "kafka-pass-7f3a9c"
REDIS_SECRET = "redis-pass-0b1e"

SCRAM = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9093",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "fraud-job",
    "KAFKA_SASL_PASSWORD": SECRET,
    "KAFKA_SSL_CA_FILE": "/etc/kafka-ca/ca.crt",
}


def test_plaintext_default_is_unchanged() -> None:
    settings = ConnectionSettings()
    assert settings.kafka.librdkafka() == {
        "bootstrap.servers": "localhost:9092",
        "security.protocol": "PLAINTEXT",
    }
    assert settings.kafka.flink_properties() == {
        "properties.bootstrap.servers": "localhost:9092",
        "properties.security.protocol": "PLAINTEXT",
    }
    assert settings.redis_connect_url == "redis://localhost:6379/0"


def test_sasl_ssl_scram_renders_the_librdkafka_keys() -> None:
    config = ConnectionSettings(**SCRAM).kafka.librdkafka(**{"group.id": "g"})
    assert config == {
        "bootstrap.servers": "kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "fraud-job",
        "sasl.password": SECRET,
        "ssl.ca.location": "/etc/kafka-ca/ca.crt",
        "group.id": "g",
    }


def test_flink_properties_reference_the_password_from_the_environment() -> None:
    props = ConnectionSettings(**SCRAM).kafka.flink_properties()
    assert props["properties.security.protocol"] == "SASL_SSL"
    assert props["properties.sasl.mechanism"] == "SCRAM-SHA-512"
    jaas = props["properties.sasl.jaas.config"]
    # The connector jar relocates Kafka's classes: the login module must carry the shaded prefix.
    assert jaas.startswith(
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule"
    )
    assert 'username="fraud-job"' in jaas and 'password="${env:KAFKA_SASL_PASSWORD}"' in jaas
    assert props["properties.config.providers.env.class"] == FLINK_ENV_PROVIDER_CLASS
    assert props["properties.ssl.truststore.type"] == "PEM"
    assert SECRET not in repr(props)


def test_passwords_are_masked_in_repr_and_str() -> None:
    settings = ConnectionSettings(**SCRAM, REDIS_URL=f"redis://fraud-job:{REDIS_SECRET}@redis:6379/0")
    for text in (repr(settings), str(settings), repr(settings.kafka), str(settings.kafka)):
        assert SECRET not in text and REDIS_SECRET not in text
    # A password written inside REDIS_URL moves to REDIS_PASSWORD; REDIS_URL is then safe to log.
    assert settings.REDIS_URL == "redis://fraud-job@redis:6379/0"
    assert settings.redis_connect_url == f"redis://fraud-job:{REDIS_SECRET}@redis:6379/0"


def test_redis_credentials_from_separate_variables_are_percent_encoded() -> None:
    settings = ConnectionSettings(
        REDIS_URL="redis://redis:6379/2", REDIS_USERNAME="actions", REDIS_PASSWORD="p@ss:/"
    )
    assert settings.redis_connect_url == "redis://actions:p%40ss%3A%2F@redis:6379/2"
    assert redacted_url(settings.redis_connect_url) == "redis://actions@redis:6379/2"
    assert redis_url("redis://h:1/0") == "redis://h:1/0"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD",
        ),
        ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "does not use SASL"),
        ({"KAFKA_SSL_CA_FILE": "/ca.pem"}, "uses no TLS"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ],
)
def test_incomplete_security_settings_fail_at_start(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConnectionSettings(**fields)


@pytest.mark.parametrize("settings_class", [ConsumerSettings, ProducerSettings])
def test_every_deployable_reads_the_security_settings_from_the_environment(
    settings_class: type[ConnectionSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SCRAM.items():
        monkeypatch.setenv(name, value)
    assert settings_class().kafka == KafkaConnection(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="fraud-job",
        sasl_password=SECRET,
        ssl_ca_file="/etc/kafka-ca/ca.crt",
    )
