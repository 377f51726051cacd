# syntax=docker/dockerfile:1.7
# Scoring service image: `python -m inference_service` on port 8000, with the model artifacts
# trained at build time (deterministic: --seed 7) and baked in under /app/models. It installs the service's
# and the drift monitor's extras only (compose runs `python -m monitoring` on it): no apache-flink.
# Build from the repository root:  docker build -f deploy/docker/service.Dockerfile -t fraud-scoring:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN pip install '.[service,monitor]' \
 && python -m inference_service.training.train --seed 7 --model-dir /app/models

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    MODEL_DIR=/app/models SCORING_HOST=0.0.0.0 SCORING_PORT=8000
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --no-create-home app
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=10001:10001 /app/models /app/models
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SCORING_PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "inference_service"]
