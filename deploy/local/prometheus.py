"""A local Prometheus for ``make demo``: scrapes every component and evaluates the alert rules.

It runs Debian's ``prometheus`` package (``/usr/bin/prometheus``). When it is not installed and we
are root, it is installed with apt-get, as ``make test`` installs ``promtool`` from the same
package; otherwise the error says what to run. Like the stack's services it is started and
stopped by its PID file (``<state>/prometheus.pid``), never by name; its configuration is written
to ``<state>/prometheus.yml`` and points at the one rules file, ``deploy/prometheus/alerts.yml``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import requests
import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, CliPositionalArg, SettingsConfigDict

from deploy.local.stack import REPO_ROOT, Service, ServiceGroup, StackConfig
from fraud_core.cli import ENV_NOTE, cli_config, parse_settings
from fraud_core.exceptions import StackError

ALERTS_FILE = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
PACKAGE = "prometheus"
# Faster than compose's 5 s / 15 s, so a one-minute demo shows an alert's whole life.
SCRAPE_INTERVAL = "2s"
EVALUATION_INTERVAL = "2s"


def prometheus_binary() -> str:
    """The prometheus executable, installing Debian's package first when missing and allowed."""
    found = shutil.which("prometheus")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", PACKAGE],
        ):
            if subprocess.run(cmd, env=env, check=False).returncode != 0:
                raise StackError(f"`{' '.join(cmd)}` failed; install Debian's prometheus package by hand")
        found = shutil.which("prometheus")
        if found:
            return found
    raise StackError(
        "prometheus not found: install it with `sudo apt-get install prometheus` (Debian's package)"
    )


def render_config(targets: Mapping[str, str], rules_file: Path = ALERTS_FILE) -> dict[str, Any]:
    """Prometheus configuration: one scrape job per ``name -> host:port[/path]`` and the rules file."""
    jobs = []
    for name, target in targets.items():
        address, _, path = target.partition("/")
        jobs.append(
            {"job_name": name, "metrics_path": f"/{path}", "static_configs": [{"targets": [address]}]}
        )
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": EVALUATION_INTERVAL},
        "rule_files": [str(rules_file)],
        "scrape_configs": jobs,
    }


class LocalPrometheus(ServiceGroup):
    """Prometheus on ``port`` with its data and configuration under ``state``."""

    port_hint = "PROMETHEUS_PORT"

    def __init__(self, state: Path, port: int, targets: Mapping[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = state / "prometheus.yml"
        self.targets = {**targets, "prometheus": f"127.0.0.1:{port}/metrics"}
        service = Service(
            name="prometheus",
            port=port,
            command=self._command,
            healthy=self._ready,
            prepare=self._write_config,
        )
        super().__init__(state, [service])

    def _write_config(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(render_config(self.targets), sort_keys=False))

    def _command(self) -> list[str]:
        return [
            prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.state / 'prometheus-data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def up(self) -> str:
        """Start Prometheus (unless this state folder's one runs) and wait until it is ready."""
        return self.start(self.services[0])

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Prometheus holds now (state ``pending`` or ``firing``); empty when unreachable."""
        try:
            body = requests.get(f"{self.url}/api/v1/alerts", timeout=2).json()
        except (requests.RequestException, ValueError):
            return []
        alerts: list[dict[str, Any]] = body.get("data", {}).get("alerts", [])
        return alerts

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; empty when unreachable."""
        try:
            body = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=2).json()
        except (requests.RequestException, ValueError):
            return []
        result: list[dict[str, Any]] = body.get("data", {}).get("result", [])
        return result


class PrometheusCli(BaseSettings):
    __doc__ = (
        "Stop, or show, the local Prometheus a KEEP_RUNNING demo left up. Its folder is under STACK_DIR "
        f"(.stack/state). {ENV_NOTE}"
    )

    model_config = SettingsConfigDict(
        **cli_config("python -m deploy.local.prometheus", {"PROMETHEUS_PORT": "port"}),
        frozen=True,
        case_sensitive=True,
    )

    command: CliPositionalArg[Literal["down", "status"]] = Field(
        description="down: stop it by PID; status: its state, port and PID (exit 1 when it is down)."
    )
    PROMETHEUS_PORT: int = Field(9090, ge=1, le=65535, description="Port the demo's Prometheus listens on.")


def main(argv: list[str] | None = None) -> int:
    """``python -m deploy.local.prometheus down|status``: for a Prometheus a KEEP_RUNNING demo left up."""
    args = parse_settings(PrometheusCli, argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prom = LocalPrometheus(StackConfig.from_env().state_dir, args.PROMETHEUS_PORT, {})
    if args.command == "down":
        prom.down()
        return 0
    return 0 if prom.status() else 1


if __name__ == "__main__":
    sys.exit(main())
