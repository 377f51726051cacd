"""How every client connects to Kafka and Redis, written once.

:class:`KafkaConnection` holds the bootstrap servers and the security settings (protocol, SASL
mechanism, user, password, CA file) and renders them for both kinds of client we run:

* :meth:`KafkaConnection.librdkafka` - the dict for confluent-kafka (producers, consumers, admin);
* :meth:`KafkaConnection.flink_properties` - the ``properties.*`` options of Flink's Kafka SQL
  connector. The password is NOT in them: the JAAS line reads it with Kafka's
  ``EnvVarConfigProvider`` from the TaskManager's environment (``${env:KAFKA_SASL_PASSWORD}``),
  so it never lands in the job graph, the DDL or Flink's web UI.

:func:`redis_url` adds Redis credentials (an ACL user and password) to a ``redis://`` URL.
Entrypoints build these from their settings (``fraud_core.settings.ConnectionSettings``);
library code takes the objects as arguments. Neither ``repr`` nor ``str`` shows a password.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# The environment variable the Flink connector's JAAS line reads the password from.
KAFKA_PASSWORD_ENV = "KAFKA_SASL_PASSWORD"
# flink-sql-connector-kafka is a fat jar with Kafka's classes relocated under this prefix: the JAAS
# login module and the config provider must be named with it, or the client cannot load them.
FLINK_KAFKA_SHADED = "org.apache.flink.kafka.shaded."
_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
_ENV_PROVIDER = "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
# The JVM system property that lists the config providers a client may load (Kafka >= 3.8); the
# FlinkDeployment sets it (shaded name) so that only the environment provider is allowed.
FLINK_ALLOWED_PROVIDERS_PROPERTY = FLINK_KAFKA_SHADED + "org.apache.kafka.automatic.config.providers"
FLINK_ENV_PROVIDER_CLASS = FLINK_KAFKA_SHADED + _ENV_PROVIDER


class KafkaConnection(BaseModel):
    """Where Kafka is and how to authenticate to it. PLAINTEXT (the local stack) by default."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> KafkaConnection:
        if not self.bootstrap_servers.strip():
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS must not be empty")
        if self.sasl:
            missing = [
                name
                for name, value in (
                    ("KAFKA_SASL_MECHANISM", self.sasl_mechanism),
                    ("KAFKA_SASL_USERNAME", self.sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.sasl_password),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs {', '.join(missing)}"
                )
        elif self.sasl_username or self.sasl_password:
            raise ValueError(
                f"KAFKA_SASL_USERNAME/PASSWORD are set but KAFKA_SECURITY_PROTOCOL={self.security_protocol} "
                "does not use SASL: set it to SASL_SSL (or SASL_PLAINTEXT on a trusted network)"
            )
        if self.ssl_ca_file and not self.tls:
            raise ValueError(
                f"KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL={self.security_protocol} uses no TLS"
            )
        return self

    def __str__(self) -> str:
        # For messages ("Kafka unreachable at ..."): where, and how, never with whom or which secret.
        return f"{self.bootstrap_servers} ({self.security_protocol})"

    @property
    def sasl(self) -> bool:
        """Whether the protocol authenticates with SASL."""
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the protocol encrypts with TLS."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        """The confluent-kafka client configuration, plus ``extra`` (dots in keys as librdkafka
        spells them: pass them as ``**{"group.id": ...}``). Holds the password: never log it."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl:
            assert self.sasl_password is not None  # checked by the validator
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_file:
            config["ssl.ca.location"] = self.ssl_ca_file
        config.update(extra)
        return config

    def flink_properties(self) -> dict[str, str]:
        """The Flink Kafka SQL connector options for this connection (``properties.*`` are handed
        to the Java client). The password is a ``${env:KAFKA_SASL_PASSWORD}`` reference resolved
        by the client in the TaskManager, so these options are safe to keep in the job graph."""
        props = {
            "properties.bootstrap.servers": self.bootstrap_servers,
            "properties.security.protocol": self.security_protocol,
        }
        if self.sasl:
            assert self.sasl_mechanism is not None and self.sasl_username is not None
            module = FLINK_KAFKA_SHADED + _LOGIN_MODULES[self.sasl_mechanism]
            user = self.sasl_username.replace("\\", "\\\\").replace('"', '\\"')
            props["properties.sasl.mechanism"] = self.sasl_mechanism
            props["properties.sasl.jaas.config"] = (
                f'{module} required username="{user}" password="${{env:{KAFKA_PASSWORD_ENV}}}";'
            )
            props["properties.config.providers"] = "env"
            props["properties.config.providers.env.class"] = FLINK_ENV_PROVIDER_CLASS
            # Only the one variable is readable through the provider.
            props["properties.config.providers.env.param.allowlist.pattern"] = f"^{KAFKA_PASSWORD_ENV}$"
        if self.ssl_ca_file:
            # Kafka's Java clients read a PEM bundle directly with this store type (KIP-651).
            props["properties.ssl.truststore.type"] = "PEM"
            props["properties.ssl.truststore.location"] = self.ssl_ca_file
        return props


def as_connection(kafka: str | KafkaConnection) -> KafkaConnection:
    """A bare bootstrap string (tests, tools on the local stack) is a PLAINTEXT connection."""
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(bootstrap_servers=kafka)


def redis_url(url: str, username: str | None = None, password: SecretStr | None = None) -> str:
    """``url`` with the ACL ``username`` and ``password`` in it (percent-encoded), replacing any
    there. Without either, ``url`` unchanged. The result holds the password: never log it."""
    if not username and password is None:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = quote(username or unquote(parts.username or ""), safe="")
    secret = "" if password is None else ":" + quote(password.get_secret_value(), safe="")
    return urlunsplit(parts._replace(netloc=f"{user}{secret}@{host}"))


def redacted_url(url: str) -> str:
    """``url`` without its password, for logs and for anything that is serialized."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def url_password(url: str) -> SecretStr | None:
    """The password inside ``url`` (percent-decoded), if any."""
    password = urlsplit(url).password
    return None if password is None else SecretStr(unquote(password))
