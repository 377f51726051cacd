"""``python -m deploy.prometheus.render``: write the Kubernetes PrometheusRule from alerts.yml.

The alerting rules live in one file, ``deploy/prometheus/alerts.yml``; the PrometheusRule in
``deploy/k8s/base/prometheus-rules.yaml`` carries the same groups (kustomize reads only files below
its own folder, and a PrometheusRule is not a ConfigMap, so it cannot include the file). Run this
after editing alerts.yml; ``tests/deploy/test_alert_rules.py`` fails while the two differ.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "alerts.yml"
RULE_MANIFEST = HERE.parent / "k8s" / "base" / "prometheus-rules.yaml"
HEADER = (
    "# GENERATED from deploy/prometheus/alerts.yml by `python -m deploy.prometheus.render`; do not edit.\n"
    "# The Prometheus Operator loads it into every Prometheus whose ruleSelector matches its labels.\n"
)


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The PrometheusRule resource holding ``groups``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "fraud-pipeline-alerts", "labels": {"app.kubernetes.io/name": "fraud-alerts"}},
        "spec": {"groups": groups},
    }


def render() -> str:
    """The manifest text for the current alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    body: str = yaml.safe_dump(prometheus_rule(groups), sort_keys=False, width=100)
    return HEADER + body


def main() -> int:
    RULE_MANIFEST.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {RULE_MANIFEST.relative_to(HERE.parents[1])}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
