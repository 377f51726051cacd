"""The fraud-scoring streaming job: ``payments.initiated`` -> decisions on ``payments.flagged`` /
``payments.approved``, bad records on ``payments.dlq``.

Locally (``make job``) it runs in PyFlink's embedded mini-cluster; on a cluster the same file runs
with ``flink run -py flink_jobs/scoring_job.py`` (``make job ARGS="--cluster"`` does that for the
local standalone cluster of ``make cluster``) or the Kubernetes operator. The Kafka source and
sinks are Flink SQL tables in ``raw`` format (so partition, offset, timestamp and headers are
available, and the exactly-once sink is Flink's own); everything between is Python.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import CliSuppress, CliToggleFlag
from pyflink.common import Configuration, Types
from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment

from flink_jobs import jvm_decode
from flink_jobs.operators import (
    CARD_LABELS_TAG,
    DLQ_TAG,
    KAFKA_ROW,
    KEYED_EVENT,
    SHARDED_EVENT,
    SOURCE_RECORD,
    EntityFunction,
    FeaturesFunction,
    LabelsFunction,
    ScoringFunction,
)
from flink_jobs.resume import Resume, flink_offsets, plan
from flink_jobs.settings import REPO_ROOT, JobSettings
from fraud_core.cli import ENV_NOTE, cli_config, parse_settings
from fraud_core.connections import FLINK_ALLOWED_PROVIDERS_PROPERTY, FLINK_ENV_PROVIDER_CLASS
from fraud_core.exceptions import ConfigError, StackError
from fraud_core.transaction import EventTimeBounds

log = logging.getLogger("scoring_job")

# Fixed, so that shard keys and key groups stay where they are across restarts and rescaling.
MAX_PARALLELISM = 128


def _kafka_options(settings: JobSettings, topic: str) -> dict[str, str]:
    return {
        "connector": "kafka",
        "topic": topic,
        # Bootstrap servers and security; the SASL password stays an ${env:...} reference.
        **settings.kafka.flink_properties(),
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
    }


def _with(options: dict[str, str]) -> str:
    def quoted(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    return ", ".join(f"{quoted(k)} = {quoted(v)}" for k, v in options.items())


def _position(options: dict[str, str], prefix: str, value: str) -> bool:
    """Set ``<prefix>.mode`` and its argument for ``timestamp:<ms>`` or ``specific:<offsets>``
    (the same syntax for where the source starts and where a bounded run stops)."""
    kind, _, arg = value.partition(":")
    if kind == "timestamp":
        options[f"{prefix}.mode"] = "timestamp"
        options[f"{prefix}.timestamp-millis"] = arg
    elif kind == "specific":
        options[f"{prefix}.mode"] = "specific-offsets"
        options[f"{prefix}.specific-offsets"] = arg
    else:
        return False
    return True


def source_ddl(settings: JobSettings, resume: Resume | None = None) -> str:
    """The input table: raw key and value plus the record's partition, offset, timestamp and headers.

    With ``resume`` (no checkpoint, see :mod:`flink_jobs.resume`) it starts at the rewound offsets.
    """
    options = _kafka_options(settings, settings.INPUT_TOPIC)
    options["properties.group.id"] = settings.GROUP_ID
    options["properties.isolation.level"] = "read_committed"
    options["properties.auto.offset.reset"] = "earliest"
    # Fetch in batches under load (the broker answers once 8 KB are there) but never wait more
    # than 5 ms at low rates; with the default 1 byte the broker served a fetch per few records.
    options["properties.fetch.min.bytes"] = "8192"
    options["properties.fetch.max.wait.ms"] = "5"
    start = f"specific:{flink_offsets(resume.start)}" if resume is not None else settings.START_FROM
    if start == "group-offsets":
        options["scan.startup.mode"] = "group-offsets"
    elif start in ("earliest", "latest"):
        options["scan.startup.mode"] = f"{start}-offset"
    elif not _position(options, "scan.startup", start):
        raise ConfigError(
            f"START_FROM={start!r}: use group-offsets, earliest, latest, timestamp:<ms> or specific:<p>"
        )
    stop = settings.STOP_AT
    if stop == "latest":
        options["scan.bounded.mode"] = "latest-offset"
    elif stop != "none" and not _position(options, "scan.bounded", stop):
        raise ConfigError(f"STOP_AT={stop!r}: use none, latest, timestamp:<ms> or specific:<offsets>")
    return _source_table("source_events", options)


def _source_table(table: str, options: dict[str, str]) -> str:
    return (
        f"CREATE TABLE {table} (k BYTES, v BYTES, `partition` INT METADATA VIRTUAL, "
        "`offset` BIGINT METADATA VIRTUAL, headers MAP<STRING, BYTES> METADATA VIRTUAL, "
        f"`topic` STRING METADATA VIRTUAL) WITH ({_with(options)})"
    )


def labels_source_ddl(settings: JobSettings) -> str:
    """The labels table: every retained label from the oldest (the fraud counts are rebuilt from
    them when the job starts without a checkpoint), then new ones as they come. A bounded run
    (``STOP_AT``) reads the labels present when it starts."""
    options = _kafka_options(settings, settings.LABELS_TOPIC)
    options["properties.group.id"] = f"{settings.GROUP_ID}-labels"
    options["properties.isolation.level"] = "read_committed"
    options["scan.startup.mode"] = "earliest-offset"
    if settings.STOP_AT != "none":
        options["scan.bounded.mode"] = "latest-offset"
    return _source_table("source_labels", options)


def sink_ddl(settings: JobSettings, table: str, topic: str) -> str:
    """An output table; exactly-once uses Kafka transactions committed at checkpoints."""
    options = _kafka_options(settings, topic)
    if settings.DELIVERY == "exactly-once":
        options["sink.delivery-guarantee"] = "exactly-once"
        # Stable across restarts, distinct per sink, so lingering transactions are aborted on recovery.
        options["sink.transactional-id-prefix"] = f"{settings.TRANSACTIONAL_ID_PREFIX}-{table}"
        # Must stay below the broker's transaction.max.timeout.ms (15 min locally).
        options["properties.transaction.timeout.ms"] = "600000"
    else:
        options["sink.delivery-guarantee"] = "at-least-once"
        options["properties.linger.ms"] = "5"
    options["properties.enable.idempotence"] = "true"
    options["properties.acks"] = "all"
    return f"CREATE TABLE {table} (k BYTES, v BYTES, headers MAP<STRING, BYTES> METADATA) WITH ({_with(options)})"


def storage_location(value: str) -> tuple[str, Path | None]:
    """A checkpoint folder or restore path as Flink's URI, and as a local folder when it is one.

    Any URI (``s3://``, ``hdfs://``, ``gs://``, ``file://``) passes through unchanged: on a
    cluster the checkpoints must land on durable storage, not on a pod's disk. A plain path is
    resolved against the working directory.
    """
    scheme, sep, _path = value.partition("://")
    if not sep:
        path = Path(value).resolve()
        return path.as_uri(), path
    if scheme == "file":
        return value, Path(unquote(urlsplit(value).path))
    return value, None


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest completed checkpoint (a ``chk-N`` folder with ``_metadata``) under ``checkpoint_dir``."""
    done = [p.parent for p in checkpoint_dir.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: p.stat().st_mtime, default=None)


def embedded_pythonpath() -> str:
    """What THREAD mode's embedded interpreter must see: our code and this environment's packages.

    PEMJA starts the *base* interpreter's libpython inside the JVM, so a virtualenv's
    site-packages (pemja, find_libpython, fastavro, our dependencies) and the repository are not
    on its path unless ``python.pythonpath`` names them.
    """
    site = sysconfig.get_paths()
    entries = [str(REPO_ROOT), site["purelib"], site["platlib"]]
    return os.pathsep.join(dict.fromkeys(entries))


def check_embedded_imports(pythonpath: str) -> None:
    """Fail at start, with the reason, when the embedded interpreter could not import the job.

    Without this, a missing package surfaces as "No module named pemja" inside a task, and the
    restart strategy retries it forever. The check runs the base interpreter (the one PEMJA
    embeds) with only ``pythonpath`` added, and imports what the operators import.
    """
    base = os.path.realpath(sys.executable)
    probe = "import pemja, find_libpython, flink_jobs.operators"
    env = {**os.environ, "PYTHONPATH": pythonpath}
    res = subprocess.run([base, "-c", probe], env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        detail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(
            f"THREAD mode: the embedded interpreter ({base}) cannot import the job with "
            f"python.pythonpath={pythonpath!r}: {detail}. Run `make install` (it installs pemja and "
            "find_libpython into .venv), or set PYFLINK_PYTHONPATH to where they are installed."
        )


def flink_configuration(settings: JobSettings, restore: str) -> Configuration:
    """The Flink configuration of :func:`flink_options`; creating it starts the JVM."""
    if settings.METRICS_PORT:
        # The Prometheus reporter ships in the wheel as a plugin, but the embedded mini-cluster
        # does not load plugins; its reporter factories come from the JVM's classpath. PyFlink's
        # gateway launcher appends HADOOP_CLASSPATH to that classpath, read when the JVM starts
        # (on the first Java object created), so it is set before anything touches Java. On a
        # real Flink cluster the reporter is a plugin as usual and this changes nothing.
        import pyflink

        jar = next((Path(pyflink.__file__).parent / "plugins" / "metrics-prometheus").glob("*.jar"), None)
        if jar is not None and str(jar) not in os.environ.get("HADOOP_CLASSPATH", ""):
            os.environ["HADOOP_CLASSPATH"] = os.pathsep.join(
                filter(None, [os.environ.get("HADOOP_CLASSPATH"), str(jar)])
            )
    conf = Configuration()
    for key, value in flink_options(settings, restore).items():
        conf.set_string(key, value)
    return conf


def flink_options(settings: JobSettings, restore: str) -> dict[str, str]:
    """The Flink settings, with the latency knobs documented in flink_jobs/README.md (no JVM needed)."""
    opts: dict[str, str] = {}
    jars = sorted(Path(settings.FLINK_CONNECTOR_DIR).glob("*.jar"))
    if settings.DECODE_IN == "jvm":
        decoder = Path(settings.DECODER_JAR)
        if not decoder.is_file():
            raise ConfigError(
                f"DECODE_IN=jvm: DECODER_JAR={settings.DECODER_JAR!r} is not a file; `make fetch` builds it "
                "from deploy/maven/decoder"
            )
        jars.append(decoder)  # shipped with the job, as the connector is
    if jars:  # on a cluster the connector sits in Flink's lib/ instead
        opts["pipeline.jars"] = ";".join(p.resolve().as_uri() for p in jars)
    # THREAD mode: the Python functions run inside the TaskManager's JVM (PEMJA), so an event
    # crosses into Python by a JNI call instead of a gRPC round trip per bundle to a worker process.
    opts["python.execution-mode"] = "thread"
    pythonpath = os.environ.get("PYFLINK_PYTHONPATH") or embedded_pythonpath()
    check_embedded_imports(pythonpath)
    opts["python.pythonpath"] = pythonpath
    opts["pipeline.max-parallelism"] = str(MAX_PARALLELISM)
    opts["execution.buffer-timeout.interval"] = f"{settings.BUFFER_TIMEOUT_MS}ms"
    opts["python.executable"] = os.environ.get("PYFLINK_PYTHON", sys.executable)
    opts["python.client.executable"] = os.environ.get("PYFLINK_PYTHON", sys.executable)
    opts["execution.checkpointing.interval"] = f"{settings.checkpoint_interval_ms}ms"
    opts["execution.checkpointing.mode"] = "EXACTLY_ONCE"
    opts["execution.checkpointing.externalized-checkpoint-retention"] = "RETAIN_ON_CANCELLATION"
    opts["execution.checkpointing.num-retained"] = "2"
    checkpoint_uri, checkpoint_dir = storage_location(
        settings.CHECKPOINT_DIR or str(REPO_ROOT / ".stack" / "state" / "checkpoints" / settings.JOB_NAME)
    )
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    opts["execution.checkpointing.dir"] = checkpoint_uri
    if restore == "latest":
        found = latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
        if found is not None:
            log.info("restoring from checkpoint %s", found)
            opts["execution.state-recovery.path"] = found.resolve().as_uri()
        elif checkpoint_dir is None:
            log.info(
                "checkpoints go to %s; --restore latest lists only local folders, so this start "
                "restores nothing (on a cluster, the operator's last-state upgrade restores)",
                checkpoint_uri,
            )
        else:
            log.warning(
                "no completed checkpoint under %s: starting from the source's start position "
                "(START_FROM=%s; group-offsets resumes at the offsets the last checkpoints committed)",
                checkpoint_uri,
                settings.START_FROM,
            )
    elif restore != "none":
        opts["execution.state-recovery.path"] = storage_location(restore)[0]
    opts["restart-strategy.type"] = "exponential-delay"
    opts["restart-strategy.exponential-delay.initial-backoff"] = "1s"
    opts["restart-strategy.exponential-delay.max-backoff"] = "30s"
    if settings.METRICS_PORT:
        opts["metrics.reporter.prom.factory.class"] = (
            "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
        )
        opts["metrics.reporter.prom.port"] = str(settings.METRICS_PORT)
    opts["parallelism.default"] = str(settings.JOB_PARALLELISM)
    if settings.PYTHON_PROFILE:
        opts["python.profile.enabled"] = "true"
    return opts


def score_config(settings: JobSettings) -> dict[str, Any]:
    """The plain values the scoring operator needs (pickled into the job graph). No secret: the
    API key and the Redis password are read from the environment in ``open()``
    (:class:`flink_jobs.settings.OperatorSecrets`); ``REDIS_URL`` here has no password."""
    return {
        "registry_url": settings.SCHEMA_REGISTRY_URL,
        "redis_url": settings.REDIS_URL,
        "scoring_url": settings.SCORING_URL,
        "flagged_topic": settings.FLAGGED_TOPIC,
        "approved_topic": settings.APPROVED_TOPIC,
        "rules_file": settings.RULES_FILE,
        "batch_max": settings.SCORING_BATCH_MAX,
        "linger_ms": settings.SCORING_LINGER_MS,
        "linger_max_ms": settings.SCORING_LINGER_MAX_MS,
        "scoring_timeout_ms": settings.SCORING_TIMEOUT_MS,
        "scoring_retries": settings.SCORING_RETRIES,
        "redis_timeout_ms": settings.REDIS_TIMEOUT_MS,
        "blocklist_when_unavailable": settings.BLOCKLIST_WHEN_UNAVAILABLE,
        "blocklist_closed_above_eur": settings.BLOCKLIST_CLOSED_ABOVE_EUR,
    }


def keyed_by_first_field(stream: DataStream, key_type: Any) -> KeyedStream:
    """Key a stream of ``Row(key, value)`` by its first field without a Python key selector.

    ``DataStream.key_by`` inserts a Python operator that only computes the key; here the rows
    arrive with their key already (from SQL, or from the previous Python operator), so the keying
    is Java's alone. It is what ``key_by`` does after its key operator (PyFlink 2.2's
    ``KeyByKeySelector``), and the keyed Python function receives ``value``. The value type stays
    unset: only KeyedStream's reduce/window helpers read it, and this job calls ``process`` only.
    """
    j_selector = get_gateway().jvm.KeyByKeySelector()
    j_key_type = Types.ROW([key_type]).get_java_type_info()
    return KeyedStream(stream._j_data_stream.keyBy(j_selector, j_key_type), None, stream)


def shard_keys(parallelism: int, per_subtask: int = 1) -> list[int]:
    """Scoring shard keys, ``per_subtask`` of them landing on each scoring subtask.

    Flink assigns a key to a subtask by a hash of it; a handful of arbitrary keys would leave some
    subtasks without a shard and others with several. Each key is therefore picked by asking
    Flink's own ``KeyGroupRangeAssignment`` where it lands.
    """
    jvm = get_gateway().jvm
    assign = jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment.assignKeyToParallelOperator
    wanted = {subtask: per_subtask for subtask in range(parallelism)}
    keys: list[int] = []
    candidate = 0
    while any(wanted.values()):
        row = jvm.org.apache.flink.types.Row(1)
        row.setField(0, candidate)
        subtask = assign(row, MAX_PARALLELISM, parallelism)
        if wanted[subtask]:
            wanted[subtask] -= 1
            keys.append(candidate)
        candidate += 1
    return keys


def resume_without_checkpoint(settings: JobSettings) -> Resume | None:
    """The rewound start of a job that resumes from committed offsets without its checkpoint."""
    if settings.START_FROM != "group-offsets" or not settings.RESUME_REWIND_RECORDS:
        return None
    outputs = [settings.FLAGGED_TOPIC, settings.APPROVED_TOPIC, settings.DLQ_TOPIC]
    conf = settings.kafka.librdkafka()
    resume = plan(conf, settings.INPUT_TOPIC, settings.GROUP_ID, outputs, settings.RESUME_REWIND_RECORDS)
    if resume is None:
        log.info("group %s has no committed offsets: starting at the oldest records", settings.GROUP_ID)
        return None
    log.warning(
        "no checkpoint: the last run of group %s committed %s; reading %d records again from %s, "
        "and skipping each one whose decision or dead letter is already published",
        settings.GROUP_ID,
        ", ".join(f"{settings.INPUT_TOPIC}[{p}]@{o}" for p, o in sorted(resume.committed.items())),
        resume.rewound(),
        ", ".join(f"[{p}]@{o}" for p, o in sorted(resume.start.items())),
    )
    return resume


def build(settings: JobSettings, restore: str = "latest") -> StreamExecutionEnvironment:
    """Build the job graph; the caller runs ``env.execute``."""
    conf = flink_configuration(settings, restore)
    restoring = bool(conf.get_string("execution.state-recovery.path", ""))
    resume = None if restoring else resume_without_checkpoint(settings)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(source_ddl(settings, resume))
    t_env.execute_sql(labels_source_ddl(settings))
    outputs = {"flagged_sink": settings.FLAGGED_TOPIC, "approved_sink": settings.APPROVED_TOPIC}
    outputs["dlq_sink"] = settings.DLQ_TOPIC
    for table, topic in outputs.items():
        t_env.execute_sql(sink_ddl(settings, table, topic))

    # Keyed by the Kafka record key (the user id) in SQL, so no Python runs before the shuffle.
    # DECODE_IN=jvm: the value is decoded in Java beside its bytes (flink_jobs/jvm_decode.py).
    if settings.DECODE_IN == "jvm":
        jvm_decode.register(t_env)
        by_user = t_env.sql_query(jvm_decode.source_query(settings.SCHEMA_REGISTRY_URL))
        record_type = jvm_decode.DECODED_SOURCE_RECORD
    else:
        by_user = t_env.sql_query(
            "SELECT CAST(k AS STRING) AS user_key, ROW(k, v, `partition`, `offset`, headers, `topic`) AS rec "
            "FROM source_events"
        )
        record_type = SOURCE_RECORD
    # A RowTypeInfo (not to_data_stream's ExternalTypeInfo): keyed Python operators require one.
    raw = t_env.to_append_stream(by_user, Types.ROW([Types.STRING(), record_type]))
    shards = shard_keys(settings.JOB_PARALLELISM, settings.SCORING_SHARDS_PER_SUBTASK)
    by_user = (
        keyed_by_first_field(raw, Types.STRING())
        .process(
            FeaturesFunction(
                settings.SCHEMA_REGISTRY_URL,
                settings.DLQ_TOPIC,
                EventTimeBounds(settings.EVENT_TIME_MAX_AHEAD_MS, settings.EVENT_TIME_MAX_AGE_MS),
                resume,
                settings.KAFKA_BOOTSTRAP_SERVERS,
                decoded_in_jvm=settings.DECODE_IN == "jvm",
            ),
            KEYED_EVENT,
        )
        .name("decode-validate-user")
    )
    label_rows = t_env.to_append_stream(
        t_env.sql_query("SELECT k, v, `partition`, `offset`, headers, `topic` FROM source_labels"),
        SOURCE_RECORD,
    )
    labels = label_rows.process(
        LabelsFunction(settings.SCHEMA_REGISTRY_URL, settings.DLQ_TOPIC), KEYED_EVENT
    ).name("decode-labels")
    # Each hop keys by one entity, so that entity's state lives on exactly one subtask.
    by_merchant = (
        keyed_by_first_field(by_user, Types.STRING())
        .connect(keyed_by_first_field(labels, Types.STRING()))
        .process(EntityFunction("merchant", settings.LABEL_DELAY_MS), KEYED_EVENT)
        .name("merchant-state")
    )
    features = (
        keyed_by_first_field(by_merchant, Types.STRING())
        .connect(keyed_by_first_field(labels.get_side_output(CARD_LABELS_TAG), Types.STRING()))
        .process(EntityFunction("card", settings.LABEL_DELAY_MS, shards), SHARDED_EVENT)
        .name("card-state")
    )
    decisions = (
        keyed_by_first_field(features, Types.INT())
        .process(ScoringFunction(score_config(settings)), KAFKA_ROW)
        .name("enrich-score-decide")
    )
    records = decisions.union(by_user.get_side_output(DLQ_TAG), labels.get_side_output(DLQ_TAG))
    t_env.create_temporary_view("out_records", records)
    statements = t_env.create_statement_set()
    for table, topic in outputs.items():
        statements.add_insert_sql(
            f"INSERT INTO {table} SELECT k, v, headers FROM out_records WHERE topic = '{topic}'"
        )
    statements.attach_as_datastream()
    return env


class JobCli(JobSettings):
    __doc__ = (
        "Score payments.initiated into payments.flagged / payments.approved (bad records to "
        f"payments.dlq). {ENV_NOTE}"
    )

    model_config = cli_config(
        "python -m flink_jobs.scoring_job",
        {
            "DELIVERY": "delivery",
            "JOB_PARALLELISM": "parallelism",
            "CHECKPOINT_INTERVAL_MS": "checkpoint-interval-ms",
            "CHECKPOINT_DIR": "checkpoint-dir",
            "GROUP_ID": "group-id",
            "START_FROM": "start-from",
            "STOP_AT": "stop-at",
            "INPUT_TOPIC": "input-topic",
            "FLAGGED_TOPIC": "flagged-topic",
            "APPROVED_TOPIC": "approved-topic",
            "DLQ_TOPIC": "dlq-topic",
            "LABELS_TOPIC": "labels-topic",
            "LABEL_DELAY_MS": "label-delay-ms",
            "METRICS_PORT": "metrics-port",
        },
    )

    # Secrets come from the environment only: a flag would show the key in `ps` and shell history.
    SCORING_API_KEY: CliSuppress[SecretStr | None] = None
    restore: str = Field(
        "latest", description="latest (newest retained checkpoint, if any) | none | <checkpoint path>"
    )
    cluster: CliToggleFlag[bool] = Field(
        False,
        description="submit this file with `flink run -py` to the local standalone cluster of `make "
        "cluster` (FLINK_REST_PORT, default 8091) instead of running a mini-cluster; parallelism 2 "
        "unless set, checkpoints under the cluster's state folder unless CHECKPOINT_DIR is set",
    )


def submit_to_cluster(settings: JobCli, argv: list[str]) -> int:
    """``--cluster``: run ``bin/flink run -py <this file> <the other flags>`` against the local
    standalone cluster, in the foreground; the submitted file then builds the same job graph, and
    ``get_execution_environment`` inside ``flink run`` returns the cluster's environment."""
    from fraud_core.flink_cluster import ClusterConfig, run_attached

    cluster = ClusterConfig.from_env()
    job_env: dict[str, str] = {}
    if "JOB_PARALLELISM" not in settings.model_fields_set:  # neither the flag nor the variable
        job_env["JOB_PARALLELISM"] = "2"
    if not settings.CHECKPOINT_DIR:
        job_env["CHECKPOINT_DIR"] = str(cluster.job_checkpoint_dir(settings.JOB_NAME).resolve())
    try:
        return run_attached(cluster, job_env, [a for a in argv if a != "--cluster"])
    except StackError as exc:
        log.error("cannot submit: %s", exc)
        return 2


def _cluster_config(env: StreamExecutionEnvironment) -> dict[str, str] | None:
    """The client configuration when this file runs inside ``flink run`` (the environment then
    submits to a cluster), else None (the embedded mini-cluster)."""
    j_env = env._j_stream_execution_environment
    if j_env.getClass().getSimpleName() != "StreamContextEnvironment":
        return None
    return dict(j_env.getConfiguration().toMap())


def job_log_dir(settings: JobSettings) -> Path:
    """Point the JVM's logging at a folder of this job's own, with warnings also on stdout.

    Must run before the JVM starts (PyFlink reads ``FLINK_LOG_DIR`` and ``LOG4J_PROPERTIES`` when
    it launches it). The Python operators log through the JVM in THREAD mode, so this is where
    their lines land too.
    """
    if "FLINK_LOG_DIR" not in os.environ:
        folder = REPO_ROOT / ".stack" / "logs" / "flink" / f"{settings.JOB_NAME}-{os.getpid()}"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["FLINK_LOG_DIR"] = str(folder)
    os.environ.setdefault("LOG4J_PROPERTIES", str(Path(__file__).with_name("log4j-job.properties")))
    return Path(os.environ["FLINK_LOG_DIR"])


ENV_PROVIDER_JVM_OPTION = f"-D{FLINK_ALLOWED_PROVIDERS_PROPERTY}={FLINK_ENV_PROVIDER_CLASS}"


def allow_env_config_provider(settings: JobSettings) -> None:
    """With SASL, let the connector's Kafka clients load the environment config provider, and no other.

    The JAAS line reads the password through ``${env:KAFKA_SASL_PASSWORD}``; the JVM property
    limits the providers a client may load, so a ``config.providers`` option cannot read files.
    Compose and Kubernetes set it in ``env.java.opts.all``; the mini-cluster runs in the JVM that
    PyFlink launches with ``JVM_ARGS``, so this must run before that JVM starts.
    """
    if not settings.kafka.sasl:
        return
    current = os.environ.get("JVM_ARGS", "").split()
    if ENV_PROVIDER_JVM_OPTION not in current:
        os.environ["JVM_ARGS"] = " ".join([*current, ENV_PROVIDER_JVM_OPTION])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = parse_settings(JobCli, argv)
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.cluster:
        return submit_to_cluster(settings, argv)
    log.info("Flink's and the operators' logs: %s (warnings also here)", job_log_dir(settings))
    allow_env_config_provider(settings)
    log.info(
        "starting %s: %s -> %s / %s (dlq %s), delivery=%s, checkpoint every %d ms, parallelism %d",
        settings.JOB_NAME,
        settings.INPUT_TOPIC,
        settings.FLAGGED_TOPIC,
        settings.APPROVED_TOPIC,
        settings.DLQ_TOPIC,
        settings.DELIVERY,
        settings.checkpoint_interval_ms,
        settings.JOB_PARALLELISM,
    )
    try:
        env = build(settings, settings.restore)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    client_conf = _cluster_config(env)
    try:
        if client_conf is None:
            env.execute(settings.JOB_NAME)
            return 0
        client = env.execute_async(settings.JOB_NAME)
        job_id = str(client.get_job_id())
        web = f"http://{client_conf.get('rest.address', 'localhost')}:{client_conf.get('rest.port', '8081')}"
        log.info("submitted: job id %s, web UI %s/#/job/running/%s/overview", job_id, web, job_id)
        if client_conf.get("execution.attached", "false") == "true":
            client.get_job_execution_result().result()
    except KeyboardInterrupt:
        log.info("interrupted; the last checkpoint is retained for the next start")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
