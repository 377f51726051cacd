"""Secrets never travel in the Flink job graph: the pickled Python operators and the SQL options
carry no API key or password; the operators read them from the TaskManager's environment."""

from __future__ import annotations

import os

import cloudpickle
import pytest
import yaml

from flink_jobs.operators import FeaturesFunction, ScoringFunction
from flink_jobs.scoring_job import (
    ENV_PROVIDER_JVM_OPTION,
    allow_env_config_provider,
    score_config,
    sink_ddl,
    source_ddl,
)
from flink_jobs.settings import REPO_ROOT, JobSettings, OperatorSecrets

API_KEY = "scoring-key-5d0c1f1e8a7b4b09a0f1c2d3e4f5a6b7"
KAFKA_PASSWORD = "kafka-pass-9e8d7c6b5a4f3e2d"
REDIS_PASSWORD = "redis-pass-1a2b3c4d5e6f7a8b"

SECRET_ENV = {
    "APP_ENV": "production",
    "SCORING_API_KEY": API_KEY,
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "fraud-job",
    "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
    "REDIS_URL": f"redis://fraud-job:{REDIS_PASSWORD}@redis:6379/0",
}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> JobSettings:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    return JobSettings()


def test_pickled_operators_carry_no_secret(settings: JobSettings) -> None:
    operators = [
        FeaturesFunction(settings.SCHEMA_REGISTRY_URL, settings.DLQ_TOPIC, [0, 1]),
        ScoringFunction(score_config(settings)),
    ]
    blob = cloudpickle.dumps(operators)
    for secret in (API_KEY, KAFKA_PASSWORD, REDIS_PASSWORD):
        assert secret.encode() not in blob
    # What the operator does need is there: where Redis is, with its ACL user.
    assert b"redis://fraud-job@redis:6379/0" in blob


def test_kafka_sql_options_carry_no_password(settings: JobSettings) -> None:
    ddls = [source_ddl(settings), sink_ddl(settings, "flagged_sink", settings.FLAGGED_TOPIC)]
    for ddl in ddls:
        assert KAFKA_PASSWORD not in ddl
        assert "'properties.security.protocol' = 'SASL_SSL'" in ddl
        assert "'properties.sasl.mechanism' = 'SCRAM-SHA-512'" in ddl
        assert "${env:KAFKA_SASL_PASSWORD}" in ddl


def test_operators_read_the_secrets_from_the_environment_at_open(settings: JobSettings) -> None:
    config = score_config(settings)
    secrets = OperatorSecrets()
    assert secrets.api_key == API_KEY
    assert secrets.redis_url(config["redis_url"]) == f"redis://fraud-job:{REDIS_PASSWORD}@redis:6379/0"


def test_operator_secrets_refuse_a_missing_key_outside_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("SCORING_API_KEY", raising=False)
    with pytest.raises(ValueError, match="SCORING_API_KEY must be set"):
        OperatorSecrets()


def test_with_sasl_the_mini_cluster_jvm_may_load_the_env_provider_only(
    settings: JobSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JVM_ARGS", "-Xss2m")
    allow_env_config_provider(settings)
    allow_env_config_provider(settings)  # idempotent: a second call adds nothing
    assert os.environ["JVM_ARGS"].split() == ["-Xss2m", ENV_PROVIDER_JVM_OPTION]


def _deployed_flink_configurations() -> dict[str, dict[str, object]]:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    manifests = yaml.safe_load_all((REPO_ROOT / "deploy/k8s/base/flink.yaml").read_text())
    k8s = next(m for m in manifests if m and m["kind"] == "FlinkDeployment")
    return {
        "compose": yaml.safe_load(compose["x-flink-properties"]["FLINK_PROPERTIES"]),
        "k8s": k8s["spec"]["flinkConfiguration"],
    }


@pytest.mark.parametrize("deployment", ["compose", "k8s"])
def test_deployed_flink_allows_the_env_provider_and_keeps_the_java_17_opens(deployment: str) -> None:
    conf = _deployed_flink_configurations()[deployment]
    # The same property and provider as the local job, for both processes that open Kafka clients.
    assert conf["env.java.opts.jobmanager"] == ENV_PROVIDER_JVM_OPTION
    assert conf["env.java.opts.taskmanager"] == ENV_PROVIDER_JVM_OPTION
    # env.java.opts.all holds the image's --add-opens for Java 17: setting it would replace them.
    assert "env.java.opts.all" not in conf


def test_without_sasl_the_jvm_options_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JVM_ARGS", raising=False)
    allow_env_config_provider(JobSettings(KAFKA_SECURITY_PROTOCOL="PLAINTEXT"))
    assert "JVM_ARGS" not in os.environ
