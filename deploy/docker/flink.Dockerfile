# syntax=docker/dockerfile:1.7
# PyFlink image for the scoring job: the official Flink 2.2 image (Ubuntu noble, Java 17) plus a
# relocatable CPython 3.11 (python-build-standalone, installed by a pinned uv: Ubuntu noble only ships
# 3.12 and pyproject.toml requires 3.11), the job's extra from pyproject.toml (apache-flink
# 2.2.1 among them), the Kafka SQL connector jar (in /opt/flink/connectors) and our code under /opt/flink/usrlib.
# Build from the repository root:  docker build -f deploy/docker/flink.Dockerfile -t fraud-flink:0.1.0 .

ARG FLINK_IMAGE=flink:2.2.1-java17
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${FLINK_IMAGE} AS build
USER root
COPY --from=uv /uv /usr/local/bin/uv
# uv 0.13.9 resolves "3.11" to one fixed python-build-standalone release, so the interpreter is pinned by the uv pin.
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed UV_NO_CACHE=1 UV_LINK_MODE=copy
RUN uv python install 3.11 && uv venv --python 3.11 /opt/venv
WORKDIR /src
COPY . .
RUN uv pip install --python /opt/venv/bin/python '.[job]'
# Connector jar from Maven Central, checked against its published digest.
ADD --checksum=sha256:5605c691d11a501382c383fecba37a7a552467da5ab7ba904ef5d6f3d62c5616 \
    https://repo1.maven.org/maven2/org/apache/flink/flink-sql-connector-kafka/5.0.0-2.2/flink-sql-connector-kafka-5.0.0-2.2.jar \
    /opt/flink/connectors/flink-sql-connector-kafka-5.0.0-2.2.jar

FROM ${FLINK_IMAGE} AS runtime
USER root
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
# The job adds the connector itself from FLINK_CONNECTOR_DIR (flink_jobs.settings.JobSettings), as it does locally.
COPY --from=build --chmod=0644 /opt/flink/connectors/ /opt/flink/connectors/
# The Python driver must be on the classpath for application mode and `flink run -py`; the
# Prometheus reporter is loaded as a plugin.
RUN cp /opt/flink/opt/flink-python-*.jar /opt/flink/lib/ \
 && if [ ! -d /opt/flink/plugins/metrics-prometheus ]; then \
      mkdir -p /opt/flink/plugins/metrics-prometheus \
      && cp /opt/flink/opt/flink-metrics-prometheus-*.jar /opt/flink/plugins/metrics-prometheus/; \
    fi \
 && mkdir -p /opt/flink/usrlib /flink-data/checkpoints /flink-data/savepoints \
 && chown -R flink:flink /opt/flink/usrlib /flink-data
COPY --chown=flink:flink flink_jobs /opt/flink/usrlib/flink_jobs
ENV PATH=/opt/venv/bin:$PATH PYFLINK_CLIENT_EXECUTABLE=/opt/venv/bin/python FLINK_CONNECTOR_DIR=/opt/flink/connectors
USER flink
EXPOSE 6123 8081 9249
# Both roles run the Prometheus reporter on 9249; a scrape answering means the JVM is up and reporting.
HEALTHCHECK --interval=15s --timeout=3s --start-period=40s --retries=5 \
  CMD ["/opt/venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9249/', timeout=2)"]
