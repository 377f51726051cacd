# syntax=docker/dockerfile:1.7
# One image for the Kafka-side Python processes: the topic/schema bootstrap (one-shot), the action
# consumers (`python -m actions`, metrics on 9102) and the transaction producer. The command picks one.
# It installs those deployables' extras only (pyproject.toml): no apache-flink, scikit-learn or matplotlib.
# Build from the repository root:  docker build -f deploy/docker/apps.Dockerfile -t fraud-apps:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN pip install '.[actions,console,producer,compose]'

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ACTIONS_METRICS_PORT=9102
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --no-create-home app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 9102
# Meaningful for the consumers (their metrics endpoint); compose disables it for the one-shot services.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=5 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('ACTIONS_METRICS_PORT', '9102'), timeout=2)"]
CMD ["python", "-m", "actions"]
